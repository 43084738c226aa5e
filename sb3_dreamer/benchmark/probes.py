"""
Linear probes: how much a set of features (a world model's recurrent states, or hand-made ones) tells about a binary
event, measured by a logistic regression fit on the first half of the samples and ranked on the second.
"""

import numpy as np
import torch as th

from sb3_dreamer.benchmark.model_play import rank_auc


def linear_probe_auc(features: np.ndarray, labels: np.ndarray, l2: float = 1e-3, max_iter: int = 200) -> float:
    """
    The held-out AUC of a logistic regression of ``labels`` on ``features``: fit on the first half of the samples
    (features standardised with that half's mean and standard deviation, L2 penalty ``l2`` on the weights, L-BFGS),
    ranked on the second half (0.5 for features that tell nothing, 1 for a linear separation). Samples in time order
    keep the halves apart in time (e.g. one episode each).

    :param features: (n, d)
    :param labels: (n,), booleans
    :return: NaN where either half lacks either label
    """
    if features.ndim != 2 or labels.shape != features.shape[:1]:
        raise ValueError(f"features (n, d) and labels (n,), got {features.shape} and {labels.shape}")
    half = len(labels) // 2
    if len(set(labels[:half].tolist())) < 2:
        return float("nan")
    x = th.as_tensor(features, dtype=th.float32)
    y = th.as_tensor(labels, dtype=th.float32)
    mean, std = x[:half].mean(0), x[:half].std(0) + 1e-6
    x = (x - mean) / std
    weights = th.zeros(x.shape[1], requires_grad=True)
    bias = th.zeros(1, requires_grad=True)
    optimizer = th.optim.LBFGS([weights, bias], max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> th.Tensor:
        optimizer.zero_grad()
        logits = x[:half] @ weights + bias
        loss = th.nn.functional.binary_cross_entropy_with_logits(logits, y[:half]) + l2 * weights.square().sum()
        loss.backward()
        return loss

    with th.enable_grad():
        optimizer.step(closure)
    with th.no_grad():
        scores = (x[half:] @ weights + bias).numpy()
    held_out = labels[half:].astype(bool)
    return rank_auc(scores[held_out], scores[~held_out])

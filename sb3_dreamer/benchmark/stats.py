"""
The statistics of the benchmark report: the bootstrap interval of a mean over seeds, the normalisation of scores per
env, and rliable's stratified-bootstrap estimates of the aggregate over envs, seeded so that the same runs give the
same report.
"""

from collections.abc import Callable

import numpy as np

from sb3_dreamer.benchmark.extras import import_rliable

#: Bootstrap of the report's intervals: replications (default of ``--bootstrap-reps``), seed of its random numbers (the
#: same runs give the same report) and coverage
BOOTSTRAP_REPS = 2000
BOOTSTRAP_SEED = 0
CONFIDENCE = 0.95


def bootstrap_interval(values: np.ndarray, reps: int = BOOTSTRAP_REPS, seed: int = BOOTSTRAP_SEED) -> tuple[float, float]:
    """
    Percentile bootstrap interval (coverage :data:`CONFIDENCE`) of the mean of ``values`` (seeds,): ``reps`` resamples
    with replacement drawn by a generator seeded with ``seed``.
    """
    resamples = np.random.default_rng(seed).integers(len(values), size=(reps, len(values)))  # (reps, seeds)
    tail = 50 * (1 - CONFIDENCE)
    low, high = np.percentile(values[resamples].mean(axis=1), [tail, 100 - tail])
    return float(low), float(high)


def normalise(values: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """
    ``(values - low) / (high - low)`` (broadcast), 0 where ``high <= low`` (every run scored the same, or none scored
    above a random policy's ``low``: no scale to measure them on).
    """
    span = high - low
    return np.where(span > 0, (values - low) / np.where(span > 0, span, 1.0), 0.0)


def improvement_probability(scores_x: np.ndarray, scores_y: np.ndarray) -> np.ndarray:
    """
    rliable's ``metrics.probability_of_improvement`` of ``scores_x`` (runs_x, envs) over ``scores_y`` (runs_y, envs)
    (per env Mann-Whitney's U / (runs_x runs_y): P(X > Y) + P(X = Y) / 2, averaged over the envs), as an array (1,),
    counted without scipy's test, which takes milliseconds a call: the bootstrap calls it thousands of times.
    """
    pairs = scores_x[:, None, :] - scores_y[None, :, :]  # (runs_x, runs_y, envs)
    return np.array([np.mean((pairs > 0).mean(axis=(0, 1)) + (pairs == 0).mean(axis=(0, 1)) / 2)])


def iqm_curve(scores: np.ndarray) -> np.ndarray:
    """
    rliable's IQM (``metrics.aggregate_iqm``, the mean of the middle 50% of the scores of all runs on all envs) at each
    point of ``scores`` (runs, envs, points): (points,).
    """
    _, metrics, _ = import_rliable()
    return np.array([metrics.aggregate_iqm(scores[..., point]) for point in range(scores.shape[-1])])


def seeded_estimates(
    scores: np.ndarray | tuple[np.ndarray, ...], function: Callable[..., np.ndarray], reps: int
) -> tuple[np.ndarray, np.ndarray]:
    """
    rliable's stratified-bootstrap point estimate and :data:`CONFIDENCE` percentile interval (2, ...) of ``function``
    of ``scores`` (runs, envs, ...) with ``reps`` replications, NumPy's global random numbers (rliable's resampling
    draws from them) seeded with :data:`BOOTSTRAP_SEED` and restored afterwards.
    """
    library, _, _ = import_rliable()
    state = np.random.get_state()
    np.random.seed(BOOTSTRAP_SEED)
    try:
        points, intervals = library.get_interval_estimates(
            {"scores": scores}, function, reps=reps, confidence_interval_size=CONFIDENCE
        )
    finally:
        np.random.set_state(state)
    return points["scores"], intervals["scores"]

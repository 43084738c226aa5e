"""LaProp with per-tensor AGC and linear warmup (DreamerV3's optimiser) against a plain float64 reference, on the CPU."""

import io
import math

import numpy as np
import pytest
import torch as th

from sb3_dreamer.common.laprop import LaProp, agc_clip_


def reference_laprop(
    params: list[np.ndarray],
    grads_per_step: list[list[np.ndarray]],
    lr: float,
    betas: tuple[float, float],
    eps: float,
    agc: float,
    pmin: float,
    warmup: int,
) -> tuple[list[list[np.ndarray]], list[list[bool]]]:
    """The formulas of DreamerV3's optimiser in float64: the parameters after each step, and which tensors AGC clipped."""
    beta1, beta2 = betas
    params = [p.astype(np.float64) for p in params]
    exp_avgs = [np.zeros_like(p) for p in params]
    exp_avg_sqs = [np.zeros_like(p) for p in params]
    history, clipped = [], []
    for t, grads in enumerate(grads_per_step, start=1):
        clipped.append([])
        for i, grad in enumerate(grads):
            g = grad.astype(np.float64)
            ratio = np.linalg.norm(g) / (agc * max(pmin, np.linalg.norm(params[i])))
            clipped[-1].append(bool(ratio > 1))
            g = g / max(1.0, ratio)
            exp_avg_sqs[i] = beta2 * exp_avg_sqs[i] + (1 - beta2) * g * g
            u = g / (np.sqrt(exp_avg_sqs[i] / (1 - beta2**t)) + eps)
            exp_avgs[i] = beta1 * exp_avgs[i] + (1 - beta1) * u
            lr_t = lr * min(1.0, t / warmup)
            params[i] = params[i] - lr_t * exp_avgs[i] / (1 - beta1**t)
        history.append([p.copy() for p in params])
    return history, clipped


def set_grads(params: list[th.Tensor], grads: list[np.ndarray]) -> None:
    for p, g in zip(params, grads, strict=True):
        p.grad = th.tensor(g, dtype=th.float32)


def test_matches_reference_with_warmup_and_agc():
    rng = np.random.default_rng(0)
    shapes = [(4, 3), (3,), (5,)]
    # Gradient scales: tensor 0 far above its AGC threshold (0.3 * ||p|| ~ 1), tensor 1 far below it.
    scales = [30.0, 0.05, 1.0]
    init = [rng.normal(size=shape).astype(np.float32) for shape in shapes]
    grads_per_step = [[scale * rng.normal(size=shape) for shape, scale in zip(shapes, scales, strict=True)] for _ in range(5)]
    kwargs = dict(lr=0.05, betas=(0.9, 0.999), eps=1e-20, agc=0.3, warmup=3)
    expected, clipped = reference_laprop(init, grads_per_step, pmin=1e-3, **kwargs)
    assert all(step[:2] == [True, False] for step in clipped)

    params = [th.tensor(p, requires_grad=True) for p in init]
    optimizer = LaProp(params, agc_pmin=1e-3, **kwargs)
    for grads, expected_params in zip(grads_per_step, expected, strict=True):
        set_grads(params, grads)
        optimizer.step()
        for p, e in zip(params, expected_params, strict=True):
            np.testing.assert_allclose(p.detach().numpy(), e, rtol=0, atol=1e-6)
    assert [optimizer.state[p]["step"].item() for p in params] == [5.0] * 3
    assert all(optimizer.state[p]["step"].device.type == "cpu" for p in params)


def test_warmup_counts_each_parameters_own_updates():
    a, b = th.zeros(2, requires_grad=True), th.zeros(3, requires_grad=True)
    optimizer = LaProp([a, b], lr=1.0, warmup=10, agc=0.0)
    a.grad = th.ones(2)
    optimizer.step()
    assert th.equal(b, th.zeros(3)) and b not in optimizer.state
    a.grad, b.grad = th.ones(2), th.tensor([2.0, -3.0, 0.5])
    optimizer.step()
    assert optimizer.state[a]["step"].item() == 2.0 and optimizer.state[b]["step"].item() == 1.0
    # b's first update: lr * 1 / warmup times the normalised gradient, its sign.
    th.testing.assert_close(b.detach(), th.tensor([-0.1, 0.1, -0.1]))


def test_agc_clip_alone():
    below = th.tensor([3.0, 4.0], requires_grad=True)  # ||p|| = 5, threshold 0.3 * 5 = 1.5
    above = th.tensor([3.0, 4.0], requires_grad=True)
    zero = th.zeros(3, requires_grad=True)  # threshold 0.3 * pmin
    no_grad = th.ones(2, requires_grad=True)
    below.grad = th.tensor([0.6, -0.8])  # norm 1
    above.grad = th.tensor([6.0, -8.0])  # norm 10
    zero.grad = th.tensor([1.0, 2.0, -2.0])  # norm 3
    below_grad, above_grad, zero_grad = below.grad.clone(), above.grad.clone(), zero.grad.clone()

    agc_clip_([below, above, zero, no_grad], agc=0.3, pmin=1e-3)

    assert th.equal(below.grad, below_grad)
    th.testing.assert_close(above.grad, above_grad * 1.5 / 10, rtol=1e-6, atol=0)
    th.testing.assert_close(above.grad.norm(), th.tensor(1.5), rtol=1e-6, atol=0)
    th.testing.assert_close(zero.grad, zero_grad * 0.3e-3 / 3, rtol=1e-6, atol=0)
    th.testing.assert_close(zero.grad.norm(), th.tensor(0.3e-3), rtol=1e-6, atol=0)
    assert no_grad.grad is None

    agc_clip_([above], agc=0.0, pmin=1e-3)  # disabled
    th.testing.assert_close(above.grad.norm(), th.tensor(1.5), rtol=1e-6, atol=0)


def test_momentum_after_normalisation_is_not_adam():
    lr, beta1, beta2 = 0.1, 0.9, 0.999
    gradients = [1.0, 10.0]
    laprop_param = th.zeros(1, requires_grad=True)
    adam_param = th.zeros(1, requires_grad=True)
    laprop = LaProp([laprop_param], lr=lr, betas=(beta1, beta2), agc=0.0, warmup=0)
    adam = th.optim.Adam([adam_param], lr=lr, betas=(beta1, beta2), eps=1e-20)
    for g in gradients:
        laprop_param.grad, adam_param.grad = th.tensor([g]), th.tensor([g])
        laprop.step()
        adam.step()

    # Step 1 is -lr for both; step 2 by hand.
    nu_hat = (beta2 * (1 - beta2) * 1.0 + (1 - beta2) * 100.0) / (1 - beta2**2)
    laprop_m = beta1 * (1 - beta1) * 1.0 + (1 - beta1) * 10.0 / math.sqrt(nu_hat)
    adam_m = beta1 * (1 - beta1) * 1.0 + (1 - beta1) * 10.0
    expected_laprop = -lr - lr * laprop_m / (1 - beta1**2)
    expected_adam = -lr - lr * adam_m / (1 - beta1**2) / math.sqrt(nu_hat)
    assert laprop_param.item() == pytest.approx(expected_laprop, rel=1e-6)
    assert adam_param.item() == pytest.approx(expected_adam, rel=1e-6)
    assert abs(laprop_param.item() - adam_param.item()) > 0.03


def test_state_dict_round_trip_resumes_bit_exactly():
    rng = np.random.default_rng(1)
    shapes = [(3, 2), (2,)]
    grads_per_step = [[10.0 * rng.normal(size=shape) for shape in shapes] for _ in range(5)]
    params_a = [th.tensor(rng.normal(size=shape), dtype=th.float32, requires_grad=True) for shape in shapes]
    optimizer_a = LaProp(params_a, lr=0.01, warmup=4)
    for grads in grads_per_step[:3]:
        set_grads(params_a, grads)
        optimizer_a.step()

    params_b = [p.detach().clone().requires_grad_() for p in params_a]
    optimizer_b = LaProp(params_b, lr=0.01, warmup=4)
    buffer = io.BytesIO()
    th.save(optimizer_a.state_dict(), buffer)
    buffer.seek(0)
    optimizer_b.load_state_dict(th.load(buffer))
    for grads in grads_per_step[3:]:
        set_grads(params_a, grads)
        set_grads(params_b, grads)
        optimizer_a.step()
        optimizer_b.step()
    assert all(th.equal(a, b) for a, b in zip(params_a, params_b, strict=True))
    assert optimizer_b.state[params_b[0]]["step"].item() == 5.0


@pytest.mark.parametrize(
    "name, value",
    [
        ("lr", -1e-4),
        ("lr", float("nan")),
        ("betas", (1.0, 0.999)),
        ("betas", (0.9, -0.1)),
        ("eps", -1e-8),
        ("agc", -0.1),
        ("agc_pmin", 0.0),
        ("warmup", -1),
        ("warmup", 2.5),
        ("warmup", True),
    ],
)
def test_bad_arguments(name, value):
    with pytest.raises(ValueError, match=f"^{name} "):
        LaProp([th.zeros(1, requires_grad=True)], **{name: value})


def test_learning_rate_changes_in_param_groups_take_effect():
    params = [th.ones(3, requires_grad=True) for _ in range(2)]
    optimizers = [LaProp([p], lr=0.01, agc=0.0, warmup=0) for p in params]
    gradients = [th.tensor([1.0, -2.0, 3.0]), th.tensor([3.0, 1.0, -1.0])]

    def step_both(grad: th.Tensor) -> list[th.Tensor]:
        before = [p.detach().clone() for p in params]
        for p, optimizer in zip(params, optimizers, strict=True):
            p.grad = grad.clone()
            optimizer.step()
        return [p.detach() - b for p, b in zip(params, before, strict=True)]

    step_both(gradients[0])
    optimizers[1].param_groups[0]["lr"] = 0.02
    update, doubled = step_both(gradients[1])
    th.testing.assert_close(doubled, 2 * update)

    optimizers[1].param_groups[0]["lr"] = 0.0
    frozen = params[1].detach().clone()
    step_both(gradients[0])
    assert th.equal(params[1], frozen)

"""
The CUDA path, checked on the CPU where possible: the ``meta`` device stands in for a GPU (a value read from it, or a
copy from it to the host, is where the host would wait for a GPU), dispatch modes record what runs. Tests marked
``cuda`` run where a GPU exists and are skipped elsewhere.
"""

import io
from unittest import mock

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from conftest import TINY_POLICY, tiny_model
from stable_baselines3.common.logger import configure
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

from sb3_dreamer import DreamerV2
from sb3_dreamer.common.optimizers import keep_steps_on_cpu, with_fused_default
from sb3_dreamer.common.save_util import get_rng_states, set_rng_states
from sb3_dreamer.world_model.rssm import GRUCell

cuda = pytest.mark.skipif(not th.cuda.is_available(), reason="needs a CUDA GPU")


class DeviceWaits(TorchDispatchMode):
    """
    Records the operations that make the host wait for the ``meta`` device (reading a value, copying to the host),
    answering them with zeros, and the copies to it.
    """

    def __init__(self) -> None:
        super().__init__()
        self.waits: list[str] = []
        self.copies_to_device: list[dict] = []
        #: shapes of the copies to the host that do not wait (``non_blocking=True``)
        self.async_copies_to_host: list[tuple[int, ...]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        source = args[0] if args and isinstance(args[0], th.Tensor) else None
        if source is not None and source.device.type == "meta":
            if func is th.ops.aten._local_scalar_dense.default:
                self.waits.append("read a value")
                return 0.0
            if func is th.ops.aten._to_copy.default and th.device(kwargs.get("device") or "meta").type == "cpu":
                if kwargs.get("non_blocking"):
                    self.async_copies_to_host.append(tuple(source.shape))
                else:
                    self.waits.append("copy to the host")
                return th.zeros(source.shape, dtype=kwargs.get("dtype") or source.dtype)
        if func is th.ops.aten._to_copy.default and source is not None and source.device.type == "cpu":
            if th.device(kwargs.get("device") or "cpu").type == "meta":
                self.copies_to_device.append(kwargs)
        return func(*args, **kwargs)


def model_on_meta(**kwargs) -> DreamerV2:
    """A tiny model on the ``meta`` device, with the replay buffer of a tiny CPU model that collected 60 steps."""
    cpu = tiny_model(**kwargs).learn(60)
    model = tiny_model(device="meta", diagnostics_interval=0, **kwargs)
    policy = model.policy
    # Moving to meta replaced the parameters (a GPU keeps them): give the optimizers the module's
    for name, module in (("world_model", policy.world_model), ("actor", policy.actor), ("critic", policy.critic)):
        setattr(policy, f"{name}_optimizer", th.optim.Adam(module.parameters(), lr=1e-4))
    model.replay_buffer = cpu.replay_buffer
    model.replay_buffer.device = th.device("meta")
    model._current_progress_remaining = 0.5
    model.set_logger(configure(None, []))
    return model


def test_one_wait_per_train_call():
    """Gradient steps queue on the device without the host waiting; the metrics of the call come back once."""
    model = model_on_meta()
    with DeviceWaits() as recorder:
        model.train(gradient_steps=3, batch_size=4)
    assert recorder.waits == ["copy to the host"]


def test_replayed_batches_copied_without_waiting():
    model = model_on_meta()
    with DeviceWaits() as recorder:
        samples = [tensor for tensor in model.replay_buffer.sample(4) if tensor is not None]
    assert all(tensor.device.type == "meta" for tensor in samples)
    assert len(recorder.copies_to_device) == len(samples) and not recorder.waits
    assert all(copy.get("non_blocking") for copy in recorder.copies_to_device)


def test_adam_runs_fused_unless_told_otherwise():
    """Fused Adam (one pass per parameter) by default; an implementation or optimizer the user chooses is kept."""
    policy = tiny_model().policy
    assert all(
        optimizer.defaults["fused"]
        for optimizer in (policy.world_model_optimizer, policy.actor_optimizer, policy.critic_optimizer)
    )
    assert with_fused_default(th.optim.Adam, {"eps": 1e-5}) == {"eps": 1e-5, "fused": True}
    for chosen in ({"foreach": True}, {"fused": False}, {"differentiable": True}):
        assert with_fused_default(th.optim.Adam, chosen) == chosen
    assert with_fused_default(th.optim.RMSprop, {}) == {}  # no fused implementation
    model = tiny_model(policy_kwargs={**TINY_POLICY, "optimizer_kwargs": {"foreach": True}})
    defaults = model.policy.critic_optimizer.defaults
    assert defaults["foreach"] and not defaults["fused"]
    # An optimizer saved with the for-loop (as before fused became the default) loads as it was saved
    model.policy.world_model_optimizer = th.optim.Adam(model.policy.world_model.parameters(), lr=1e-4)
    buffer = io.BytesIO()
    model.learn(50).save(buffer)
    buffer.seek(0)
    loaded = DreamerV2.load(buffer).policy
    assert loaded.world_model_optimizer.param_groups[0]["fused"] is None
    assert loaded.actor_optimizer.param_groups[0]["foreach"]


def test_loaded_adam_steps_stay_on_the_cpu():
    # Foreach Adam, the implementation that reads each counter on the host (the default fused one keeps them with the
    # parameters)
    model = tiny_model(policy_kwargs={**TINY_POLICY, "optimizer_kwargs": {"foreach": True}}).learn(60)
    optimizer = model.policy.world_model_optimizer
    steps = [state["step"] for state in optimizer.state.values()]
    assert steps and all(step.device.type == "cpu" for step in steps)
    # A state dict loaded onto a GPU puts the counters there; keep_steps_on_cpu moves them back
    on_gpu = mock.MagicMock(spec=th.Tensor, device=th.device("cuda"))
    on_gpu.to.return_value = th.tensor(5.0)
    state = next(iter(optimizer.state.values()))
    state["step"] = on_gpu
    keep_steps_on_cpu(optimizer)
    on_gpu.to.assert_called_once_with("cpu")
    assert state["step"].device.type == "cpu"
    # Capturable or fused Adam keeps them on the device, as it needs them there
    state["step"] = on_gpu
    optimizer.param_groups[0]["capturable"] = True
    keep_steps_on_cpu(optimizer)
    assert state["step"] is on_gpu


def test_load_calls_keep_steps_on_cpu():
    model = tiny_model().learn(60)
    buffer = io.BytesIO()
    model.save(buffer)
    buffer.seek(0)
    with mock.patch("sb3_dreamer.common.base_class.keep_steps_on_cpu") as keep:
        DreamerV2.load(buffer)
    assert keep.call_count == 3


def test_gru_state_stays_float32_under_autocast():
    """The GRU never calls aten's gru_cell, which CUDA's autocast runs in bfloat16 with its state."""
    th.manual_seed(0)
    cell = GRUCell(6, 4)
    inputs, state = th.randn(3, 6), th.randn(3, 4)
    expected = th.nn.GRUCell.forward(cell, inputs, state)
    assert th.equal(cell(inputs, state), expected)  # bit for bit nn.GRUCell in float32

    class Calls(TorchFunctionMode):
        def __init__(self):
            super().__init__()
            self.names: list[str] = []

        def __torch_function__(self, func, types, args=(), kwargs=None):
            self.names.append(getattr(func, "__name__", str(func)))
            return func(*args, **(kwargs or {}))

    with Calls() as calls, th.autocast("cpu", dtype=th.bfloat16):
        new_state = cell(inputs.bfloat16(), state)
    assert new_state.dtype == th.float32 and "gru_cell" not in calls.names
    assert th.allclose(new_state, expected, atol=0.05)
    model = tiny_model(mixed_precision=True)
    samples = model.learn(60).replay_buffer.sample(4)
    with model._autocast():
        _, _, posterior = model.policy.world_model.loss(samples, model.world_model_loss_config)
    assert posterior.deter.dtype == th.float32


def test_autocast_is_not_built_when_off():
    model = tiny_model(mixed_precision=False)
    with mock.patch("torch.autocast", side_effect=RuntimeError("unknown device type")):
        with model._autocast():
            pass
    model.bfloat16_autocast = True
    assert isinstance(model._autocast(), th.autocast)


@cuda
def test_cuda_loaded_steps_on_cpu_and_samples_pinned():
    model = tiny_model(device="cuda", policy_kwargs=TINY_POLICY).learn(60)
    buffer = io.BytesIO()
    model.save(buffer)
    buffer.seek(0)
    loaded = DreamerV2.load(buffer, device="cuda")
    for optimizer in (loaded.policy.world_model_optimizer, loaded.policy.actor_optimizer):
        assert all(state["step"].device.type == "cpu" for state in optimizer.state.values())
    with mock.patch.object(th.Tensor, "pin_memory", autospec=True, side_effect=th.Tensor.pin_memory) as pin:
        samples = model.replay_buffer.sample(4)
    # DreamerV2 keeps no model states in its replay: its start is None, neither pinned nor copied
    assert pin.call_count == sum(tensor is not None for tensor in samples) == 5 and samples.observations.is_cuda
    np.testing.assert_array_equal(samples.is_first.cpu().numpy().shape, (8, 4))


@cuda
def test_cuda_gru_state_float32_in_mixed_precision():
    model = tiny_model(device="cuda", mixed_precision=True).learn(60)
    samples = model.replay_buffer.sample(4)
    with model._autocast():
        _, _, posterior = model.policy.world_model.loss(samples, model.world_model_loss_config)
    assert posterior.deter.dtype == th.float32


def test_cuda_generator_of_the_model_device_saved_and_restored():
    """The model's GPU's generator, whatever the number of visible GPUs; a warning where it cannot be restored."""
    space = gym.spaces.Discrete(3)
    with mock.patch.object(th.cuda, "get_rng_state", return_value=th.arange(4, dtype=th.uint8)) as get_state:
        states = get_rng_states(space, th.device("cuda:1"))
    get_state.assert_called_once_with(th.device("cuda:1"))
    assert get_rng_states(space, th.device("cpu"))["cuda"] is None
    with mock.patch.object(th.cuda, "set_rng_state") as set_state:
        set_rng_states(states, space, th.device("cuda:0"))
    set_state.assert_called_once()
    assert th.equal(set_state.call_args.args[0], th.arange(4, dtype=th.uint8))
    with pytest.warns(UserWarning, match="cannot be restored for a model on cpu"):
        set_rng_states(states, space, th.device("cpu"))
    # Checkpoints that saved every visible GPU's generator: the model's one is restored
    states["cuda"] = [th.zeros(4, dtype=th.uint8), th.ones(4, dtype=th.uint8)]
    with mock.patch.object(th.cuda, "set_rng_state") as set_state:
        set_rng_states(states, space, th.device("cuda:1"))
    assert th.equal(set_state.call_args.args[0], th.ones(4, dtype=th.uint8))


@cuda
def test_cuda_generator_restored_on_resume(tmp_path):
    model = tiny_model(device="cuda").learn(60)
    model.save_checkpoint(tmp_path / "checkpoint")
    expected = th.rand(3, device=model.device)
    th.cuda.manual_seed(123)
    DreamerV2.load_checkpoint(tmp_path / "checkpoint", device="cuda")
    assert th.equal(th.rand(3, device=model.device), expected)


def test_one_wait_per_dreamerv3_train_call():
    """DreamerV3's gradient steps (one loss, LaProp with AGC, the slow critic's update) queue without the host waiting."""
    from test_dreamerv3 import tiny_v3

    from sb3_dreamer.common.laprop import LaProp

    cpu = tiny_v3().learn(60)
    model = tiny_v3(device="meta", diagnostics_interval=0)
    policy = model.policy
    # Moving to meta replaced the parameters (a GPU keeps them): give the optimizer the modules'
    modules = (policy.world_model, policy.actor, policy.critic)
    policy.optimizer = LaProp([p for module in modules for p in module.parameters()], lr=1e-4)
    model._update_snapshot.optimizers = [policy.optimizer]
    model.replay_buffer = cpu.replay_buffer
    model.replay_buffer.device = th.device("meta")
    model._current_progress_remaining = 0.5
    model.set_logger(configure(None, []))
    with DeviceWaits() as recorder:
        model.train(gradient_steps=3, batch_size=4)
    assert recorder.waits == ["copy to the host"]
    # Replay context: the posterior states of the 3 x 8 x 4 replayed steps go to the host without a wait of their own
    assert recorder.async_copies_to_host == [(96, 32), (96, 16)]

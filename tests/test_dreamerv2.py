"""The SB3 algorithm contract for DreamerV2, on tiny configurations."""

import functools
import inspect
import io

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from conftest import TINY, TINY_POLICY, assert_same_predictions, assert_same_weights, tiny_model
from PIL import Image
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.envs import FakeImageEnv
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.utils import FloatSchedule, update_learning_rate

from sb3_dreamer import DreamerV2
from sb3_dreamer.common import precision
from sb3_dreamer.common.precision import prefers_bfloat16, resolve_mixed_precision
from sb3_dreamer.world_model.networks import ConvDecoder, ConvEncoder
from sb3_dreamer.world_model.rssm import detached


@pytest.mark.parametrize(
    "env, policy",
    [
        ("Breakout-MinAtar", "CnnPolicy"),
        ("SpaceInvadersPOMDP-MinAtar", "CnnPolicy"),
        (FakeImageEnv(screen_height=40, screen_width=40, n_channels=1, discrete=True, channel_first=True), "CnnPolicy"),
        ("CartPole-v1", "MlpPolicy"),
    ],
)
def test_learn_policies(env, policy):
    model = tiny_model(env, policy).learn(128)
    assert model.num_timesteps == 128
    assert model._n_updates > 0


def test_cnn_on_large_images_downsamples():
    env = FakeImageEnv(screen_height=84, screen_width=84, n_channels=3, discrete=True, channel_first=True)
    model = tiny_model(env)
    encoder = model.policy.world_model.encoder
    assert encoder.strides[0] == 2
    observations = th.zeros(2, 3, 84, 84)
    features = th.zeros(2, model.policy.rssm.feature_dim)
    assert model.policy.world_model.decoder(features).shape == observations.shape
    assert encoder(observations).shape == (2, TINY_POLICY["embedding_dim"])


@pytest.mark.parametrize("n_envs", [1, 4])
def test_multi_env(n_envs):
    env = make_vec_env("Breakout-MinAtar", n_envs=n_envs, seed=0)
    model = tiny_model(env).learn(200)
    assert model.num_timesteps >= 200
    assert model._n_updates > 0
    assert model._acting_state.deter.shape == (n_envs, TINY_POLICY["deter_size"])


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(actor_grad="dynamics"),
        dict(actor_grad="both", policy_kwargs={**TINY_POLICY, "image_likelihood": "bernoulli"}, free_nats=1.0),
        dict(policy_kwargs={**TINY_POLICY, "latent_type": "gaussian"}, tau=0.05),
        dict(actor_grad="dynamics", round_discount=False),
    ],
)
def test_algorithm_variants(kwargs):
    model = tiny_model(**kwargs).learn(100)
    assert model._n_updates > 0
    for parameter in model.policy.parameters():
        assert th.isfinite(parameter).all()


def test_dynamics_gradients_reach_actor_only():
    model = tiny_model(actor_grad="dynamics").learn(60)
    world_model_before = [p.detach().clone() for p in model.policy.world_model.parameters()]
    actor_before = [p.detach().clone() for p in model.policy.actor.parameters()]
    samples = model.replay_buffer.sample(4)
    _, posterior = model._train_world_model(samples)
    world_model_after = [p.detach().clone() for p in model.policy.world_model.parameters()]
    model._train_actor_critic(posterior, samples.terminated)
    # The actor-critic step moves the actor and leaves the world model where its own step put it.
    assert all(th.equal(a, b) for a, b in zip(world_model_after, model.policy.world_model.parameters(), strict=True))
    assert not all(th.equal(a, b) for a, b in zip(world_model_before, world_model_after, strict=True))
    assert not all(th.equal(a, b) for a, b in zip(actor_before, model.policy.actor.parameters(), strict=True))


def nonzero(gradients: tuple[th.Tensor | None, ...]) -> bool:
    return any(gradient is not None and bool(gradient.any()) for gradient in gradients)


@pytest.mark.parametrize("actor_grad", ["reinforce", "dynamics"])
def test_actor_gradient_paths(actor_grad):
    """
    Without the entropy bonus, ``dynamics`` reaches the actor only through the imagined returns (the reward head and the
    dynamics), ``reinforce`` only through the log-probabilities; the critic's loss never reaches the actor.
    """
    model = tiny_model(actor_grad=actor_grad, actor_entropy_scale=0.0).learn(60)
    samples = model.replay_buffer.sample(4)
    _, posterior = model._train_world_model(samples)
    actor_loss, critic_loss, _ = model._actor_critic_losses(posterior, samples.terminated, 0.0)
    actor = list(model.policy.actor.parameters())
    reward_head = list(model.policy.world_model.reward_head.parameters())
    gradients = th.autograd.grad(actor_loss, actor + reward_head, allow_unused=True, retain_graph=True)
    assert nonzero(gradients[: len(actor)])
    assert nonzero(gradients[len(actor) :]) == (actor_grad == "dynamics")
    assert not nonzero(th.autograd.grad(critic_loss, actor, allow_unused=True))


def test_predict_shapes_and_state():
    model = tiny_model()
    env = gym.make("Breakout-MinAtar")
    obs, _ = env.reset(seed=0)
    action, state = model.predict(obs)
    assert np.shape(action) == () and env.action_space.contains(int(action))
    deter, stoch, prev_action = state
    assert deter.shape == (1, 16) and stoch.shape == (1, 16) and prev_action.shape == (1, env.action_space.n)
    assert prev_action[0, int(action)] == 1.0

    vec_obs = np.stack([obs] * 3)
    actions, state = model.predict(vec_obs, state=None, episode_start=np.ones(3, dtype=bool))
    assert actions.shape == (3,)
    actions, state = model.predict(vec_obs, state=state, episode_start=np.zeros(3, dtype=bool))
    assert actions.shape == (3,) and state[0].shape == (3, 16)


def test_predict_switches_to_eval_mode_once(monkeypatch):
    model = tiny_model()
    model.policy.set_training_mode(True)
    obs, _ = gym.make("Breakout-MinAtar").reset(seed=0)
    _, state = model.predict(obs)
    assert not any(module.training for module in model.policy.modules())
    walks = []
    monkeypatch.setattr(th.nn.Module, "train", lambda module, mode=True: walks.append(mode))
    for _ in range(3):
        _, state = model.predict(obs, state=state)
    assert walks == []
    monkeypatch.undo()
    model.learn(64)  # train() puts the policy back in training mode; the next predict leaves it again
    assert model.policy.training
    model.predict(obs)
    assert not any(module.training for module in model.policy.modules())


def test_deterministic_predict_is_deterministic():
    model = tiny_model().learn(60)
    obs = np.stack([gym.make("Breakout-MinAtar").reset(seed=s)[0] for s in range(5)])
    state = None
    for step in range(4):
        actions_a, state_a = model.predict(obs, state=state, episode_start=np.full(5, step == 0), deterministic=True)
        actions_b, state_b = model.predict(obs, state=state, episode_start=np.full(5, step == 0), deterministic=True)
        np.testing.assert_array_equal(actions_a, actions_b)
        for a, b in zip(state_a, state_b, strict=True):
            np.testing.assert_array_equal(a, b)
        state = state_a


def test_episode_start_resets_state():
    model = tiny_model()
    obs = np.stack([gym.make("Breakout-MinAtar").reset(seed=0)[0]] * 2)
    _, state = model.predict(obs, deterministic=True)
    _, state = model.predict(obs, state=state, deterministic=True)
    _, fresh = model.predict(obs, deterministic=True)
    _, reset = model.predict(obs, state=state, episode_start=np.ones(2, dtype=bool), deterministic=True)
    for a, b in zip(fresh, reset, strict=True):
        np.testing.assert_array_equal(a, b)
    # A start in one env resets that env only: the other goes on as on a step without starts
    _, carried = model.predict(obs, state=state, deterministic=True)
    _, one_reset = model.predict(obs, state=state, episode_start=np.array([True, False]), deterministic=True)
    for fresh_x, carried_x, one_reset_x in zip(fresh, carried, one_reset, strict=True):
        np.testing.assert_array_equal(one_reset_x[0], fresh_x[0])
        np.testing.assert_array_equal(one_reset_x[1], carried_x[1])
    assert not np.array_equal(carried[0], fresh[0])


def test_save_load_identical_predictions_and_continue(tmp_path):
    model = tiny_model().learn(100)
    model.save(tmp_path / "model.zip")
    loaded = DreamerV2.load(tmp_path / "model.zip", env=make_vec_env("Breakout-MinAtar", n_envs=1))
    # The replay buffer is not saved with the model and a loaded model does not allocate one.
    assert loaded.replay_buffer.observations is None
    for name in ("world_model_optimizer", "actor_optimizer", "critic_optimizer"):
        saved = getattr(model.policy, name).state_dict()["state"]
        restored = getattr(loaded.policy, name).state_dict()["state"]
        assert saved.keys() == restored.keys()
        for key in saved:
            assert th.equal(saved[key]["exp_avg"], restored[key]["exp_avg"])
    assert_same_weights(model, loaded)
    obs = np.stack([gym.make("Breakout-MinAtar").reset(seed=s)[0] for s in range(3)])
    assert_same_predictions(model, loaded, obs, n_steps=5)
    assert loaded.learning_starts == model.learning_starts
    assert loaded.sequence_length == model.sequence_length
    loaded.learn(100)
    assert loaded._n_updates > 0


def test_replay_buffer_save_load(tmp_path):
    model = tiny_model().learn(100)
    model.save_replay_buffer(tmp_path / "buffer.pkl")
    loaded = tiny_model()
    loaded.load_replay_buffer(tmp_path / "buffer.pkl")
    assert loaded.replay_buffer.size() == model.replay_buffer.size()
    np.random.seed(0)
    samples_a = model.replay_buffer.sample(4)
    np.random.seed(0)
    samples_b = loaded.replay_buffer.sample(4)
    for a, b in zip(samples_a, samples_b, strict=True):
        assert a is b is None or th.equal(a, b)
    loaded.learn(60, reset_num_timesteps=False)
    assert loaded._n_updates > 0


def test_callback_locals_and_stop():
    class StopAfter(BaseCallback):
        def __init__(self, n_calls: int) -> None:
            super().__init__()
            self.max_calls = n_calls
            self.seen: set[str] = set()

        def _on_step(self) -> bool:
            self.seen |= {key for key in ("new_obs", "rewards", "dones", "infos", "actions") if key in self.locals}
            return self.n_calls < self.max_calls

    callback = StopAfter(70)
    model = tiny_model().learn(1_000, callback=callback)
    assert callback.seen == {"new_obs", "rewards", "dones", "infos", "actions"}
    assert model.num_timesteps == 70


def test_tensorboard_train_keys(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    model = tiny_model(tensorboard_log=str(tmp_path), verbose=0)
    model.learn(300, log_interval=1, tb_log_name="dreamer")
    run_dirs = list(tmp_path.glob("dreamer_*"))
    assert len(run_dirs) == 1
    events = EventAccumulator(str(run_dirs[0]))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    expected = {
        "train/world_model_loss",
        "train/reconstruction_loss",
        "train/reward_loss",
        "train/discount_loss",
        "train/kl",
        "train/prior_entropy",
        "train/posterior_entropy",
        "train/actor_loss",
        "train/critic_loss",
        "train/actor_entropy",
        "train/lambda_return_mean",
        "train/lambda_return_std",
        "train/world_model_grad_norm",
        "train/actor_grad_norm",
        "train/critic_grad_norm",
        "train/world_model_learning_rate",
        "rollout/ep_rew_mean",
        "rollout/exploration_rate",
    }
    assert expected <= tags


def test_training_mode_switching():
    model = tiny_model()
    modes = []
    original_train = model._train_world_model

    def recording_train(samples):
        modes.append(model.policy.training)
        return original_train(samples)

    model._train_world_model = recording_train
    model.learn(80)
    assert modes and all(modes)
    model.predict(gym.make("Breakout-MinAtar").reset(seed=0)[0])
    assert not model.policy.training


def test_evaluate_policy_and_progress_bar():
    model = tiny_model().learn(60, progress_bar=True)
    env = make_vec_env("Breakout-MinAtar", n_envs=2, seed=1)
    mean_reward, std_reward = evaluate_policy(model, env, n_eval_episodes=4)
    assert np.isfinite(mean_reward) and std_reward >= 0


def test_schedules_and_exploration():
    # Rollouts of 16 steps: the last update happens at step 96, where the remaining progress is 0.
    model = tiny_model(learning_rate=lambda progress: 1e-5 + 1e-3 * progress, exploration_decay_steps=50)
    assert model.policy.world_model_optimizer.param_groups[0]["lr"] == pytest.approx(1e-5 + 1e-3)
    model.learn(96)
    assert model.policy.world_model_optimizer.param_groups[0]["lr"] == pytest.approx(1e-5)
    assert model.policy.actor_optimizer.param_groups[0]["lr"] == pytest.approx(model.actor_learning_rate)
    assert model.exploration_rate == pytest.approx(model.exploration_final_eps)


def test_entropy_scale_schedule():
    def schedule(progress_remaining: float) -> float:
        return 0.5 * progress_remaining

    model = tiny_model(actor_entropy_scale=schedule).learn(60)
    model._current_progress_remaining = 0.4
    model.train(gradient_steps=1, batch_size=4)
    assert model.logger.name_to_value["train/actor_entropy_scale"] == pytest.approx(0.2)
    # Learning rates of zero keep the actor and critic where they are, so every call computes its loss on the same state
    for optimizer in (model.policy.actor_optimizer, model.policy.critic_optimizer):
        update_learning_rate(optimizer, 0.0)
    samples = model.replay_buffer.sample(4)
    _, posterior = model._train_world_model(samples)
    actor_losses = []
    for scale in (schedule, 0.2, 0.0):
        model.actor_entropy_schedule = FloatSchedule(scale)
        th.manual_seed(0)
        actor_losses.append(model._train_actor_critic(posterior, samples.terminated)["actor_loss"])
    assert th.equal(actor_losses[0], actor_losses[1]) and actor_losses[1] < actor_losses[2]


def test_mixed_precision_close_to_float32():
    model = tiny_model(mixed_precision=True).learn(100)
    assert model._n_updates > 0
    assert all(parameter.dtype == th.float32 for parameter in model.policy.parameters())
    samples = model.replay_buffer.sample(4)
    losses = {}
    for mixed_precision in (False, True):
        model.bfloat16_autocast = mixed_precision
        th.manual_seed(0)
        with model._autocast():
            world_model_loss, _, posterior = model.policy.world_model.loss(samples, model.world_model_loss_config)
            actor_loss, critic_loss, _ = model._actor_critic_losses(posterior, samples.terminated, 1e-3)
        losses[mixed_precision] = th.stack([world_model_loss, actor_loss, critic_loss])
    # Distributions and losses are float32 either way; the bfloat16 matmuls move the world-model loss by under 1%
    assert losses[True].dtype == th.float32 and th.isfinite(losses[True]).all()
    assert losses[True][0] != losses[False][0]
    assert th.isclose(losses[True][0], losses[False][0], rtol=1e-2)
    buffer = io.BytesIO()
    model.save(buffer)
    buffer.seek(0)
    assert DreamerV2.load(buffer).mixed_precision is True


def test_compiled_losses_equal_the_eager_ones_and_compile_once(monkeypatch, tmp_path):
    """
    ``compile_losses=True`` captures the world model's loss and the actor's and critic's in one graph each, once: the
    entropy scale that changes at every update compiles nothing again. On a fixed batch the compiled losses and their
    gradients equal the eager ones within float32 rounding. The ``aot_eager`` backend runs the captured forward and
    backward graphs without generating code (inductor's code generation takes minutes).
    """
    monkeypatch.setattr(th, "compile", functools.partial(th.compile, backend="aot_eager"))
    th._dynamo.reset()
    counters = th._dynamo.utils.counters
    counters.clear()
    # Short windows and horizon keep the traced graphs small; "both" and the return scale trace every actor branch
    settings = dict(sequence_length=4, imagination_horizon=2, actor_grad="both", normalize_returns=True)
    model = tiny_model(compile_losses=True, actor_entropy_scale=lambda progress: 1e-2 * progress, **settings).learn(64)
    assert counters["stats"]["unique_graphs"] == 2 and not counters["graph_break"]
    model.learn(32, reset_num_timesteps=False)
    assert counters["stats"]["unique_graphs"] == 2 and model._n_updates > 4

    samples = model.replay_buffer.sample(4)
    parameters = [parameter for parameter in model.policy.parameters() if parameter.requires_grad]
    eager = (model.policy.world_model.loss, model._actor_critic_losses)
    compiled = (model._world_model_loss_function, model._actor_critic_loss_function)
    results = []
    for world_model_loss, actor_critic_losses in (eager, compiled):
        th.manual_seed(0)
        loss, _, posterior = world_model_loss(samples, model.world_model_loss_config)
        entropy_scale = model._current_entropy_scale()
        actor_loss, critic_loss, _ = actor_critic_losses(detached(posterior), samples.terminated, entropy_scale)
        losses = th.stack([loss, actor_loss, critic_loss])
        gradients = th.autograd.grad(losses.sum(), parameters)
        results.append((losses, th.cat([gradient.flatten() for gradient in gradients])))
    (eager_losses, eager_gradients), (compiled_losses, compiled_gradients) = results
    assert th.allclose(compiled_losses, eager_losses, rtol=1e-5)
    assert th.allclose(compiled_gradients, eager_gradients, rtol=1e-4, atol=1e-5 * eager_gradients.abs().max())
    # Saved without the compiled functions, which loading builds again
    model.save(tmp_path / "model.zip")
    loaded = DreamerV2.load(tmp_path / "model.zip", device="cpu")
    assert loaded.compile_losses and loaded._actor_critic_loss_function != loaded._actor_critic_losses


def test_mixed_precision_needs_bfloat16_on_cuda(monkeypatch):
    # The model's GPU is asked, and emulated bfloat16 (which is_bf16_supported() counts) does not do
    monkeypatch.setattr(th.cuda, "is_bf16_supported", lambda *args, **kwargs: True)
    capabilities = {0: (8, 0), 1: (7, 5)}
    monkeypatch.setattr(th.cuda, "get_device_capability", lambda device: capabilities[th.device(device).index])
    monkeypatch.setattr(th.cuda, "get_device_name", lambda device: f"GPU {th.device(device).index}")
    assert resolve_mixed_precision(True, th.device("cuda:0")) is True
    with pytest.raises(ValueError, match=r"GPU 1 \(compute capability 7.5\) does not support"):
        resolve_mixed_precision(True, th.device("cuda:1"))


@pytest.mark.parametrize(
    "device, capability, cpu_probes, speedup, expected",
    [
        ("cuda", (8, 0), (False, False), 0.5, True),
        ("cuda", (7, 5), (True, True), 4.0, False),
        ("cpu", None, (True, False), 4.3, True),
        ("cpu", None, (False, True), 1.3, True),
        ("cpu", None, (True, False), 0.6, False),  # AVX512-BF16 whose bfloat16 matmul is slower than float32
        ("cpu", None, (False, False), 4.0, False),
        ("mps", None, (True, True), 4.0, False),
    ],
)
def test_mixed_precision_auto(monkeypatch, device, capability, cpu_probes, speedup, expected):
    monkeypatch.setattr(th.cuda, "get_device_capability", lambda device: capability)
    monkeypatch.setattr(th.cpu, "_is_avx512_bf16_supported", lambda: cpu_probes[0])
    monkeypatch.setattr(th.cpu, "_is_amx_tile_supported", lambda: cpu_probes[1])
    monkeypatch.setattr(precision, "cpu_bfloat16_speedup", lambda threads: speedup)
    assert prefers_bfloat16(th.device(device)) is expected
    assert resolve_mixed_precision("auto", th.device(device)) is expected
    # True and False override the hardware (an old GPU is refused above)
    assert resolve_mixed_precision(False, th.device(device)) is False


def test_cpu_bfloat16_speedup_is_measured_once_per_thread_count():
    precision.cpu_bfloat16_speedup.cache_clear()
    generator_state = th.get_rng_state()
    speedup = precision.cpu_bfloat16_speedup(1)
    assert speedup > 0 and precision.cpu_bfloat16_speedup(1) == speedup
    assert precision.cpu_bfloat16_speedup.cache_info().hits == 1
    assert th.equal(th.get_rng_state(), generator_state)  # seeded runs are not disturbed


def test_mixed_precision_auto_is_the_default_and_logged(monkeypatch):
    monkeypatch.setattr(th.cpu, "_is_avx512_bf16_supported", lambda: True)
    for speedup in (4.0, 0.5):
        monkeypatch.setattr(precision, "cpu_bfloat16_speedup", lambda threads, speedup=speedup: speedup)
        model = DreamerV2("CnnPolicy", "Breakout-MinAtar", **{**TINY, "mixed_precision": "auto"})
        assert inspect.signature(DreamerV2).parameters["mixed_precision"].default == "auto"
        native = speedup > 1
        assert model.bfloat16_autocast is native
        model.learn(60)
        assert model.logger.name_to_value["train/mixed_precision"] == int(native)
        # A saved "auto" is decided again on the machine that loads it
        buffer = io.BytesIO()
        model.save(buffer)
        buffer.seek(0)
        monkeypatch.setattr(precision, "cpu_bfloat16_speedup", lambda threads, speedup=speedup: 1 / speedup)
        loaded = DreamerV2.load(buffer)
        assert loaded.mixed_precision == "auto" and loaded.bfloat16_autocast is not native


def test_imagined_discounts_rounded_or_probabilities():
    logits = th.tensor([-3.0, -0.1, 0.0, 0.1, 3.0])
    rounded = tiny_model(gamma=0.9).imagined_discounts(logits)
    assert th.equal(rounded, th.tensor([0.0, 0.0, 0.0, 0.9, 0.9]))
    probabilities = tiny_model(gamma=0.9, round_discount=False).imagined_discounts(logits)
    assert th.allclose(probabilities, 0.9 * th.tensor([0.0474259, 0.4750208, 0.5, 0.5249792, 0.9525741]))


def test_target_critic_hard_update():
    model = tiny_model(target_update_interval=1_000_000)
    model.learn(100)
    critic, target = model.policy.critic, model.policy.critic_target
    assert not all(th.equal(a, b) for a, b in zip(critic.parameters(), target.parameters(), strict=True))
    model.target_update_interval = 1
    model._on_step()
    assert all(th.equal(a, b) for a, b in zip(critic.parameters(), target.parameters(), strict=True))


def test_cnn_policy_rejects_flat_observations():
    with pytest.raises(ValueError, match="MlpPolicy"):
        tiny_model("CartPole-v1", "CnnPolicy")


def test_dream_diagnostics_in_tensorboard(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    model = tiny_model(tensorboard_log=str(tmp_path), diagnostics_interval=2)
    model.learn(200, log_interval=1, tb_log_name="dreams")
    events = EventAccumulator(str(next(tmp_path.glob("dreams_*"))))
    events.Reload()
    assert {"diagnostics/open_loop_observation_mse", "diagnostics/open_loop_reward_error"} <= set(events.Tags()["scalars"])
    dreams = events.Images("diagnostics/dream")
    assert len(dreams) >= 2
    # 4 sequences of 10x10 frames scaled x7, stacked vertically; truth, model and error side by side.
    assert (dreams[-1].height, dreams[-1].width) == (4 * 70, 3 * 70)
    gif = Image.open(io.BytesIO(dreams[-1].encoded_image_string))
    assert gif.n_frames == TINY["sequence_length"]


def test_diagnostics_can_be_switched_off(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    model = tiny_model(tensorboard_log=str(tmp_path), diagnostics_interval=0)
    model.learn(200, log_interval=1, tb_log_name="quiet")
    events = EventAccumulator(str(next(tmp_path.glob("quiet_*"))))
    events.Reload()
    assert events.Tags()["images"] == []
    assert not any(tag.startswith("diagnostics/") for tag in events.Tags()["scalars"])


def test_set_env_and_continue():
    model = tiny_model().learn(64)
    model.set_env(make_vec_env("Breakout-MinAtar", n_envs=1, seed=3))
    model.learn(64, reset_num_timesteps=False)
    assert model.num_timesteps == 128
    assert model._n_updates > 0


@pytest.mark.parametrize("observation_shape", [(4, 10, 10), (3, 40, 40)])
def test_channels_last_convs_match_channels_first(observation_shape):
    """The conv stacks run on channels-last tensors; outputs and gradients are those of the usual layout."""
    th.manual_seed(0)
    encoder = ConvEncoder(observation_shape, 32, depth=8, n_layers=3, kernel_size=3, activation_fn=th.nn.ELU)
    decoder = ConvDecoder(16, encoder, th.nn.ELU)
    parameters = [*encoder.parameters(), *decoder.parameters()]
    observations, features = th.rand(5, *observation_shape), th.randn(5, 16)

    embedding, reconstruction = encoder(observations), decoder(features)
    assert reconstruction.shape == (5, *observation_shape) and reconstruction.is_contiguous()
    (embedding.sum() + reconstruction.pow(2).sum()).backward()
    gradients = [parameter.grad.clone() for parameter in parameters]

    channels_first_embedding = encoder.linear(encoder.convs(observations.contiguous()))
    conv_input = decoder.linear(features).view(-1, *decoder.conv_input_shape)
    channels_first_reconstruction = decoder.deconvs(conv_input)
    assert channels_first_reconstruction.is_contiguous()  # the reference computation stays channels-first
    assert th.allclose(embedding, channels_first_embedding, atol=1e-5)
    assert th.allclose(reconstruction, channels_first_reconstruction, atol=1e-5)
    for parameter in parameters:
        parameter.grad = None
    (channels_first_embedding.sum() + channels_first_reconstruction.pow(2).sum()).backward()
    reference = [parameter.grad for parameter in parameters]
    for gradient, expected in zip(gradients, reference, strict=True):
        assert th.allclose(gradient, expected, atol=1e-4, rtol=1e-4)


def test_default_log_interval_dumps_every_50_episodes():
    from stable_baselines3.common.logger import Logger

    dumps = []
    logger = Logger(folder=None, output_formats=[])
    logger.dump = lambda step=0: dumps.append(step)
    model = tiny_model(learning_starts=1_000)
    model.set_logger(logger)
    # Random actions in Breakout: episodes of about ten steps, so 1,000 steps end some 100 of them
    model.learn(1_000)
    assert model._episode_num >= 60
    # SB3's default of 4 would dump at every fourth episode
    assert len(dumps) == model._episode_num // 50


def test_dream_frames():
    from sb3_dreamer.world_model.diagnostics import to_rgb

    model = tiny_model().learn(100)
    env = gym.make("Breakout-MinAtar")
    observation, _ = env.reset(seed=0)
    observations, actions = [], []
    for _ in range(12):
        action = env.action_space.sample()
        observations.append(observation)
        actions.append(action)
        observation, *_ = env.step(action)
    # Two copies of the sequence: N = 2
    observations = np.stack([observations, observations], axis=1)  # (12, 2, 4, 10, 10)
    actions = np.stack([actions, actions], axis=1)  # (12, 2)
    frames = model.dream(observations, actions, context=4)
    # Truth, model and error panels side by side, each 10 x 10 pixels scaled x7
    assert frames.shape == (12, 2, 3, 70, 3 * 70) and frames.dtype == np.uint8
    truth = to_rgb(model.policy.world_model.preprocess(th.as_tensor(observations))).numpy()
    np.testing.assert_array_equal(frames[..., :70], truth)
    # The model's panel: its decoded states, within [0, 1] as the truth
    assert frames[..., 70:140].any()
    # After the context, the model predicts from the actions alone: other observations there change the truth and the
    # error panels, not the model's (the observed steps' latents drawn with the same seed)
    altered = observations.copy()
    altered[4:] = ~altered[4:]
    th.manual_seed(0)
    frames = model.dream(observations, actions, context=4)
    th.manual_seed(0)
    altered_frames = model.dream(altered, actions, context=4)
    np.testing.assert_array_equal(altered_frames[..., 70:140], frames[..., 70:140])
    for panel in (slice(0, 70), slice(140, 210)):
        np.testing.assert_array_equal(altered_frames[:4, ..., panel], frames[:4, ..., panel])
        assert not np.array_equal(altered_frames[4:, ..., panel], frames[4:, ..., panel])
    # Observed, the same observations change the model's panel
    observed = []
    for sequence in (observations, altered):
        th.manual_seed(0)
        observed.append(model.dream(sequence, actions, context=12)[4:, ..., 70:140])
    assert not np.array_equal(*observed)
    with pytest.raises(ValueError, match="context"):
        model.dream(observations, actions, context=13)

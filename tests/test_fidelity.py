"""DreamerV2's pieces against their formulas in the paper and the official code, computed independently on tiny inputs."""

import io
from pathlib import Path

import numpy as np
import pytest
import torch as th
import yaml
from conftest import TINY_POLICY, tiny_model
from stable_baselines3.common.utils import update_learning_rate

import sb3_dreamer
from sb3_dreamer import DreamerV2
from sb3_dreamer.world_model.layers import PartLinear
from sb3_dreamer.world_model.returns import lambda_return
from sb3_dreamer.world_model.rssm import LatentState, LayerNormGRUCell

REPO = Path(__file__).resolve().parents[1]


def record_exploration(model: DreamerV2) -> list[tuple[int, float]]:
    """(num_timesteps, epsilon) at each action the actor picks from now on."""
    records: list[tuple[int, float]] = []
    sample_action = model._sample_action

    def recording(learning_starts, action_noise=None, n_envs=1):
        if model.num_timesteps >= learning_starts:
            records.append((model.num_timesteps, model.exploration_rate))
        return sample_action(learning_starts, action_noise, n_envs)

    model._sample_action = recording
    return records


def reference_epsilon(actor_step: int, initial: float, final: float, decay_steps: int) -> float:
    """The reference's ``max(final, initial - k * (initial - final) / decay_steps)`` at the actor's k-th step (from 0)."""
    return max(final, initial - actor_step * (initial - final) / decay_steps)


def test_epsilon_starts_after_the_random_warm_up_and_survives_save_load():
    model = tiny_model(learning_starts=40, exploration_decay_steps=35)
    records = record_exploration(model)
    model.learn(64)
    assert records[0] == (40, pytest.approx(0.4))  # the actor's first action explores with the initial epsilon
    for num_timesteps, epsilon in records:
        assert epsilon == pytest.approx(reference_epsilon(num_timesteps - 40, 0.4, 0.05, 35))
    assert 0.05 < records[-1][1] < 0.4  # mid-decay

    buffer = io.BytesIO()
    model.save(buffer)
    buffer.seek(0)
    loaded = DreamerV2.load(buffer, env=model.get_env())
    loaded_records = record_exploration(loaded)
    loaded.learn(48, reset_num_timesteps=False)
    assert loaded_records[0][0] == records[-1][0] + 1
    for num_timesteps, epsilon in loaded_records:
        assert epsilon == pytest.approx(reference_epsilon(num_timesteps - 40, 0.4, 0.05, 35))
    assert loaded_records[-1][1] == pytest.approx(0.05)


def test_actor_reads_the_imagined_state_as_a_constant():
    """With dynamics gradients the actor's outputs do not depend on the model, while the returns depend on the actor."""
    policy = tiny_model(actor_grad="dynamics").policy
    rssm = policy.rssm
    th.manual_seed(0)
    start = rssm.initial_state(6, policy.device)
    start = LatentState(th.randn_like(start.deter), rssm.latent.sample(th.randn(6, rssm.latent.stats_dim)))
    trajectory = policy.imagine(start, horizon=3, dynamics_gradients=True)
    model_parameters = list(rssm.parameters())
    gradients = th.autograd.grad(trajectory.action_params.sum(), model_parameters, allow_unused=True, retain_graph=True)
    assert all(gradient is None for gradient in gradients)
    actor_gradients = th.autograd.grad(trajectory.rewards.sum(), list(policy.actor.parameters()), allow_unused=True)
    assert any(gradient is not None and gradient.abs().sum() > 0 for gradient in actor_gradients)


def actor_loss(model: DreamerV2, start: LatentState, terminated: th.Tensor, actor_grad: str, mix: float) -> th.Tensor:
    model.actor_grad, model.actor_grad_mix = actor_grad, mix
    th.manual_seed(1)
    loss, _, _ = model._actor_critic_losses(start, terminated, model.actor_entropy_scale)
    return loss


def test_actor_grad_mix_is_the_weight_of_the_dynamics_objective():
    """Official DreamerV2: ``mix * dynamics + (1 - mix) * reinforce``."""
    model = tiny_model().learn(60)
    samples = model.replay_buffer.sample(4)
    _, posterior = model._train_world_model(samples)
    dynamics = actor_loss(model, posterior, samples.terminated, "dynamics", 0.0)
    losses = {mix: actor_loss(model, posterior, samples.terminated, "both", mix) for mix in (0.0, 0.3, 1.0)}
    assert th.allclose(losses[1.0], dynamics)
    assert not th.allclose(losses[0.0], losses[1.0])
    assert th.allclose(losses[0.3], 0.3 * losses[1.0] + 0.7 * losses[0.0], atol=1e-6)


def official_lambda_return(
    reward: th.Tensor, value: th.Tensor, pcont: th.Tensor, bootstrap: th.Tensor, lambda_: float
) -> th.Tensor:
    """``common.lambda_return`` of the official DreamerV2 (time axis 0), line by line."""
    next_values = th.cat([value[1:], bootstrap[None]], 0)
    inputs = reward + pcont * next_values * (1 - lambda_)
    returns, last = [], bootstrap
    for t in reversed(range(reward.shape[0])):
        last = inputs[t] + pcont[t] * lambda_ * last
        returns.append(last)
    return th.stack(returns[::-1])


@pytest.mark.parametrize("lambda_", [0.0, 0.5, 0.95, 1.0])
def test_lambda_return_matches_the_official_recursion(lambda_):
    """Ours reads v(s_{t+1}) at index t; the official code reads next_values = value[1:] + bootstrap."""
    generator = th.Generator().manual_seed(0)
    rewards, values = th.randn(6, 5, generator=generator), th.randn(6, 5, generator=generator)
    discounts = 0.99 * (th.rand(6, 5, generator=generator) > 0.2).float()  # terminal states have discount 0
    official = official_lambda_return(rewards, th.cat([th.zeros(1, 5), values[:-1]]), discounts, values[-1], lambda_)
    assert th.allclose(lambda_return(rewards, values, discounts, lambda_), official, atol=1e-6)
    # After a terminal state, nothing of what follows reaches the return
    terminal = discounts[2] == 0
    assert th.allclose(lambda_return(rewards, values, discounts, lambda_)[2][terminal], rewards[2][terminal])


def test_layer_norm_gru_cell_equations():
    """The official DreamerV2's GRUCell(norm=True), computed by hand from the cell's weights."""
    th.manual_seed(0)
    cell = LayerNormGRUCell(input_size=5, hidden_size=4)
    with th.no_grad():  # a non-trivial layer norm scale and shift
        cell.norm.weight.uniform_(0.5, 1.5)
        cell.norm.bias.uniform_(-0.5, 0.5)
    inputs, state = th.randn(3, 5), th.randn(3, 4)
    parts = th.cat([inputs, state], -1) @ cell.linear.weight.T  # (3, 12), no bias
    mean, var = parts.mean(-1, keepdim=True), parts.var(-1, unbiased=False, keepdim=True)
    parts = (parts - mean) / th.sqrt(var + 1e-3) * cell.norm.weight + cell.norm.bias
    reset, candidate, update = parts[:, :4], parts[:, 4:8], parts[:, 8:]
    candidate = th.tanh(th.sigmoid(reset) * candidate)
    update = th.sigmoid(update - 1.0)
    expected = update * candidate + (1 - update) * state
    assert th.allclose(cell(inputs, state), expected, atol=1e-6)
    # At initialisation (unit scale, zero shift) the update gate starts near sigmoid(-1): the state is mostly kept
    fresh = LayerNormGRUCell(5, 4)
    assert cell.linear.bias is None and fresh.norm.eps == 1e-3
    assert th.allclose(fresh(th.zeros(3, 5), th.zeros(3, 4)), th.zeros(3, 4))


def test_layer_norm_gru_in_the_model_and_in_mixed_precision():
    model = tiny_model(policy_kwargs={**TINY_POLICY, "layer_norm_gru": True}, mixed_precision=True).learn(60)
    assert isinstance(model.policy.rssm.gru, LayerNormGRUCell) and model._n_updates > 0
    samples = model.replay_buffer.sample(4)
    with model._autocast():
        _, _, posterior = model.policy.world_model.loss(samples, model.world_model_loss_config)
    assert posterior.deter.dtype == th.float32  # the GRU state stays float32 under autocast
    assert isinstance(tiny_model().policy.rssm.gru, th.nn.GRUCell)


def test_centred_images_are_the_official_inputs_and_targets():
    th.manual_seed(0)
    plain = tiny_model().policy
    centred = tiny_model(policy_kwargs={**TINY_POLICY, "center_images": True}).policy
    centred.world_model.load_state_dict(plain.world_model.state_dict())
    images = (th.rand(6, 4, 10, 10) > 0.5).float()
    # The encoder reads x - 0.5; the decoder's raw output predicts x - 0.5 and is returned shifted back to [0, 1]
    assert th.allclose(centred.world_model.encoder(images), plain.world_model.encoder(images - 0.5), atol=1e-6)
    features = th.randn(6, centred.rssm.feature_dim)
    assert th.allclose(centred.world_model.decoder(features), plain.world_model.decoder(features) + 0.5, atol=1e-6)
    # So the reconstruction error is the official one: (decoder output - (x - 0.5))^2
    raw = plain.world_model.decoder(features)
    assert th.allclose((centred.world_model.decoder(features) - images).pow(2), (raw - (images - 0.5)).pow(2), atol=1e-5)


def test_weight_decay_multiplies_every_parameter_before_each_step():
    model = tiny_model(weight_decay=1e-2).learn(60)
    optimizers = (model.policy.world_model_optimizer, model.policy.actor_optimizer, model.policy.critic_optimizer)
    for optimizer in optimizers:
        update_learning_rate(optimizer, 0.0)  # Adam's step then moves nothing: only the decay acts
    before = {name: parameter.detach().clone() for name, parameter in model.policy.named_parameters()}
    model._update_schedules = lambda: None  # keep the zero learning rates
    model.train(gradient_steps=1, batch_size=4)
    for name, parameter in model.policy.named_parameters():
        if name.startswith("critic_target"):
            continue  # not optimised
        assert th.allclose(parameter, before[name] * (1 - 1e-2), rtol=1e-6, atol=0), name


def test_target_critic_copied_every_interval_of_gradient_steps():
    """The official slow_target_update: a hard copy after update 0, then after every interval-th update."""
    model = tiny_model(target_update_unit="gradient_steps", target_update_interval=3, gradient_steps=2)
    copies: list[int] = []
    model._update_target_critic = lambda: copies.append(model._n_updates)
    model.learn(40 + 5 * 16)  # 6 train() calls of 2 gradient steps after the warm-up
    assert model._n_updates == 12
    assert copies == [0, 2, 6, 8]  # n_updates before the call whose steps 0, 3, 6, 9 copied
    model = tiny_model(target_update_unit="gradient_steps", target_update_interval=1)
    model.learn(60)
    critic, target = model.policy.critic, model.policy.critic_target
    assert all(th.equal(a, b) for a, b in zip(critic.parameters(), target.parameters(), strict=True))


@pytest.mark.parametrize("transform, function", [("tanh", th.tanh), ("sign", th.sign)])
def test_reward_transform_applies_to_the_learned_rewards(transform, function):
    model = tiny_model(reward_transform=transform).learn(60)
    model.replay_buffer.rewards[:] = np.random.default_rng(0).uniform(-3, 3, model.replay_buffer.rewards.shape)
    np.random.seed(0)
    raw = model.replay_buffer.sample(4)
    np.random.seed(0)
    assert th.equal(model._sample(4).rewards, function(raw.rewards))
    assert model.ep_info_buffer is not None  # episode returns are the env's, logged by SB3 from the Monitor


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(target_update_unit="updates"), "target_update_unit"),
        (dict(reward_transform="clip"), "reward_transform"),
        (dict(weight_decay=-1e-6), "weight_decay"),
        (dict(policy_kwargs={**TINY_POLICY, "layer_norm_gru": "yes"}), "layer_norm_gru"),
        (dict(policy="MlpPolicy", policy_kwargs={**TINY_POLICY, "center_images": True}), "center_images"),
        (dict(policy_kwargs={**TINY_POLICY, "image_likelihood": "bernoulli", "center_images": True}), "center_images"),
    ],
)
def test_bad_official_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        tiny_model(**kwargs)


def test_glorot_init_is_keras_default():
    kwargs = {**TINY_POLICY, "weight_init": "glorot", "symlog_twohot": True}
    policy = tiny_model(policy_kwargs=kwargs).policy
    layers = [m for m in policy.modules() if isinstance(m, th.nn.Linear | th.nn.Conv2d | th.nn.ConvTranspose2d)]
    for layer in layers:
        fan_in, fan_out = th.nn.init._calculate_fan_in_and_fan_out(layer.weight)
        assert layer.weight.abs().max() <= (6 / (fan_in + fan_out)) ** 0.5
        assert layer.bias is None or not layer.bias.any()
    # Zero-initialised outputs (the two-hot reward head and critic) stay zero; the target critic copies the critic
    assert not policy.critic.body[-1].weight.any() and not policy.world_model.reward_head.body[-1].weight.any()
    for a, b in zip(policy.critic.parameters(), policy.critic_target.parameters(), strict=True):
        assert th.equal(a, b)
    gru = tiny_model(policy_kwargs={**TINY_POLICY, "weight_init": "glorot"}).policy.rssm.gru
    assert not gru.bias_ih.any() and not gru.bias_hh.any()
    # The default keeps PyTorch's initialisation: biases drawn like the weights
    assert tiny_model().policy.actor.deter_in.bias.any()


@pytest.mark.parametrize("weight_init", ["torch", "glorot"])
@pytest.mark.parametrize("part_init", ["layer", "part"])
def test_split_layers_start_as_one_layer_on_the_concatenation(weight_init, part_init):
    """
    The reference reads (stoch, action), (deter, embedding) and the heads' (deter, stoch) with one ``nn.Linear`` on the
    concatenation; the parts that read them apart here draw from that layer's distribution (its fan-in, not theirs):
    uniform in +-1/sqrt(fan_in) with PyTorch's initialisation, Glorot's bound with the whole layer's fans. With
    ``part_init="part"`` each part draws as a layer of its own (its own fans).
    """
    policy_kwargs = dict(weight_init=weight_init, part_init=part_init)
    policy = DreamerV2("CnnPolicy", "Breakout-MinAtar", policy_kwargs=policy_kwargs, seed=0).policy
    rssm = policy.rssm
    heads = (policy.actor, policy.critic, policy.world_model.reward_head, policy.world_model.discount_head)
    groups = [(rssm.stoch_in, rssm.action_in), (rssm.post_deter_in, rssm.post_embed_in)]
    groups += [(head.deter_in, head.stoch_in) for head in heads]
    for parts in groups:
        assert sum(part.bias is not None for part in parts) == 1
        for part in parts:
            fan_in = sum(other.in_features for other in parts) if part_init == "layer" else part.in_features
            fan_out = part.out_features
            bound = (6.0 / (fan_in + fan_out)) ** 0.5 if weight_init == "glorot" else fan_in**-0.5
            for tensor in (part.weight, part.bias):
                if tensor is None or (weight_init == "glorot" and tensor.dim() == 1):
                    assert tensor is None or not tensor.any()
                    continue
                # Uniform in [-bound, bound]: every draw within it, the spread of the whole range (std bound / sqrt(3))
                assert tensor.abs().max() <= bound
                assert abs(tensor.std().item() / (bound / 3**0.5) - 1.0) < 0.15, (tuple(tensor.shape), bound)
    with pytest.raises(ValueError, match="part of 10 inputs cannot belong to a layer of 4"):
        PartLinear(10, 3, layer_in_features=4)
    with pytest.raises(ValueError, match="Unknown part_init 'parts': use one of"):
        DreamerV2("CnnPolicy", "Breakout-MinAtar", policy_kwargs=dict(part_init="parts"))


def test_part_init_draws_as_a_layer_of_its_own():
    """``part_init="part"``: the same numbers as an ``nn.Linear`` of the part's inputs (this package before a185d39)."""
    th.manual_seed(3)
    part = PartLinear(3, 8, layer_in_features=403, bias=True, part_init="part")
    th.manual_seed(3)
    alone = th.nn.Linear(3, 8)
    assert th.equal(part.weight, alone.weight) and th.equal(part.bias, alone.bias)
    # The whole layer's initialisation draws the same numbers, scaled to its smaller bound
    th.manual_seed(3)
    whole = PartLinear(3, 8, layer_in_features=403)
    ratio = (whole.weight / part.weight).flatten()
    assert th.allclose(ratio, th.full_like(ratio, (3 / 403) ** 0.5), rtol=1e-5)


def test_official_yaml_holds_the_official_choices_for_every_minatar_id():
    packaged = Path(sb3_dreamer.__file__).parent / "zoo" / "hyperparams"
    assert (REPO / "hyperparams" / "dreamerv2_official.yml").resolve() == (packaged / "dreamerv2_official.yml").resolve()
    with open(packaged / "dreamerv2_official.yml") as file:
        official = yaml.safe_load(file)
    with open(packaged / "dreamerv2.yml") as file:
        reference = yaml.safe_load(file)
    games = ("Asterix", "Breakout", "Freeway", "Seaquest", "SpaceInvaders")
    assert set(official) == {f"{game}{variant}-MinAtar" for game in games for variant in ("", "POMDP")}
    expected = dict(
        reward_transform="tanh",
        round_discount=False,
        target_update_unit="gradient_steps",
        target_update_interval=100,
        weight_decay=1e-6,
        exploration_initial_eps=0.0,
        exploration_final_eps=0.0,
    )
    for env_id, entry in official.items():
        entry = dict(entry)
        assert {key: entry.pop(key) for key in expected} == expected, env_id
        policy_kwargs = eval(entry.pop("policy_kwargs"))
        assert policy_kwargs == dict(
            deter_size=200,
            stoch_size=20,
            class_size=20,
            layer_norm_gru=True,
            center_images=True,
            weight_init="glorot",
            optimizer_kwargs=dict(eps=1e-5),
        )
        # Every other setting is the packaged MinAtar one
        same = {key: value for key, value in reference[env_id].items() if key in entry}
        assert entry == same, env_id
    hyperparams = {key: value for key, value in official["Breakout-MinAtar"].items() if key not in ("n_timesteps", "n_envs")}
    hyperparams["policy_kwargs"] = eval(hyperparams["policy_kwargs"])
    model = DreamerV2(env="Breakout-MinAtar", **hyperparams)
    assert model.policy.rssm.gru.__class__ is LayerNormGRUCell and model.policy.world_model_optimizer.defaults["eps"] == 1e-5


def test_episode_replay_waits_for_a_finished_episode_of_a_window():
    """The official replay draws windows inside finished episodes: updates wait until one holds a whole window."""
    # Every Pendulum-v1 episode lasts 200 steps: after 48 (the first update's turn) none has finished
    waiting = tiny_model("Pendulum-v1", "MlpPolicy", replay_buffer_kwargs=dict(sampling="episodes"), sequence_length=8)
    waiting.learn(48)
    assert not waiting.replay_buffer.can_sample() and waiting._n_updates == 0
    assert waiting.logger.name_to_value["train/waiting_for_episodes"] == 1
    waiting.learn(160, reset_num_timesteps=False)
    assert waiting.replay_buffer.can_sample() and waiting._n_updates > 0

    model = tiny_model(replay_buffer_kwargs=dict(sampling="episodes", prioritize_ends=True), sequence_length=8)
    buffer = model.replay_buffer
    model.learn(448)
    assert buffer.can_sample() and model._n_updates > 0
    samples = buffer.sample(4)
    assert samples.is_first[0].eq(1).all() and not samples.is_first[1:].any()
    # A loaded buffer samples as the model says
    path = io.BytesIO()
    model.save_replay_buffer(path)
    path.seek(0)
    uniform = tiny_model()
    uniform.load_replay_buffer(path)
    assert uniform.replay_buffer.sampling == "uniform" and not uniform.replay_buffer.prioritize_ends

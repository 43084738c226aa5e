"""DreamerV2 policies: the world model (encoder, RSSM, decoder, reward and discount heads), actor and critic."""

from numbers import Real
from typing import Any, NamedTuple

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.type_aliases import Schedule
from torch import nn

from sb3_dreamer.common.checks import (
    check_booleans,
    check_finite,
    check_non_negative,
    check_non_negative_integers,
    check_positive,
    check_positive_integers,
    check_subclasses,
    describe,
)
from sb3_dreamer.common.optimizers import with_fused_default
from sb3_dreamer.common.policies import DreamerPolicy
from sb3_dreamer.world_model.distributions import (
    ActionDistribution,
    CategoricalAction,
    NormalScalar,
    ScalarDistribution,
    SymlogTwoHot,
    TanhNormalAction,
)
from sb3_dreamer.world_model.layers import PART_INITS
from sb3_dreamer.world_model.model import WorldModel
from sb3_dreamer.world_model.networks import (
    WEIGHT_INITS,
    ConvDecoder,
    ConvEncoder,
    LatentMLP,
    MlpDecoder,
    MlpEncoder,
    glorot_init,
)
from sb3_dreamer.world_model.rssm import RSSM, LatentState, detached, slice_states


class ImaginedTrajectory(NamedTuple):
    """
    What :meth:`DreamerV2Policy.imagine` predicts along trajectories s_0 .. s_H imagined from N start states.

    Only these per-step predictions are kept, not the states: the heads are applied step by step.
    """

    #: parameters of the actor's distribution at s_0 .. s_{H-1}, (H, N, param_dim), with gradients to the actor
    action_params: th.Tensor
    #: a_0 .. a_{H-1} as action vectors (one-hot, or in [-1, 1]), (H, N, action_dim), sampled with gradients to the actor
    actions: th.Tensor
    #: predicted reward for arriving at s_1 .. s_H, (H, N)
    rewards: th.Tensor
    #: logit of the continuation (non-terminal) probability at s_1 .. s_H, (H, N)
    continue_logits: th.Tensor
    #: target critic's predictions at s_0 .. s_H, (H + 1, N)
    target_values: th.Tensor
    #: critic's outputs at s_0 .. s_{H-1} (see ``DreamerV2Policy.value_dist``), (H, N, value_dim), with gradients to
    #: the critic only
    value_outputs: th.Tensor


class DreamerV2Policy(DreamerPolicy):
    """
    Policy of DreamerV2: a world model, an actor and a critic acting on the model state
    ``cat(deter, stoch)``, and a slow target critic.

    :param observation_space: observation space (a Box: images (C, H, W) for the CNN, any shape for the MLP)
    :param action_space: action space: ``Discrete`` (categorical actor) or a bounded ``Box`` (tanh-Normal actor, whose
        actions in [-1, 1] are rescaled to the bounds)
    :param lr_schedule: learning rate schedule of the world model (the algorithm sets each optimizer's rate)
    :param encoder_type: ``"cnn"`` or ``"mlp"``
    :param embedding_dim: size of the observation embedding
    :param deter_size: size of the RSSM's GRU state
    :param stoch_size: number of stochastic latent variables
    :param class_size: classes of each categorical latent
    :param rssm_hidden_size: hidden units of the RSSM's MLPs
    :param latent_type: ``"discrete"`` (DreamerV2) or ``"gaussian"`` (DreamerV1)
    :param min_std: lower bound of the Gaussian latent's standard deviation
    :param cnn_depth: channels of the first conv layer (doubled per layer)
    :param cnn_layers: number of conv layers
    :param cnn_kernel_size: kernel size of the conv layers
    :param mlp_units: hidden units of the MLP encoder and decoder
    :param mlp_layers: hidden layers of the MLP encoder and decoder
    :param head_units: hidden units of the actor, critic, reward and discount heads
    :param head_layers: hidden layers of those heads
    :param actor_min_std: lower bound of the std of the tanh-Normal actor (Box action spaces)
    :param actor_init_std: offset of the tanh-Normal actor's raw std before the softplus (Box action spaces)
    :param symlog_observations: DreamerV3's symlog inputs: the encoder reads ``symlog(obs)`` and the decoder
        reconstructs ``symlog(obs)`` (squared error in symlog space). Vector observations only (``MlpPolicy``): images
        are left as they are, as in DreamerV3, and ``CnnPolicy`` refuses it. False: DreamerV2, True: DreamerV3
    :param symlog_twohot: DreamerV3's reward head and critic (and target critic): logits over 255 bins evenly spaced in
        symlog space over [-20, 20], trained by cross-entropy against the two-hot encoding of ``symlog(target)``,
        predicting ``symexp`` of the softmax-weighted mean bin, with a zero-initialised output layer
        (:class:`SymlogTwoHot`). False: DreamerV2's unit-variance Normal (squared error), True: DreamerV3
    :param unimix: DreamerV3's uniform mix: the categorical latents (prior and posterior) and the categorical actor
        (``Discrete`` actions) use ``(1 - unimix) * softmax(logits) + unimix / classes`` for their samples,
        straight-through gradients, entropies and KLs; in [0, 1), 0: DreamerV2, 0.01: DreamerV3
    :param layer_norm_gru: the official DreamerV2's GRU cell: layer-normalised gates, the reset gate on the whole
        candidate, update gate bias -1 (:class:`LayerNormGRUCell`). False: ``nn.GRUCell`` (the reference's)
    :param center_images: the official DreamerV2's image inputs: the encoder reads images in [-0.5, 0.5] and the
        decoder predicts them centred likewise (its output is shifted back to [0, 1], the same loss). ``CnnPolicy``
        only. False: images in [0, 1] (the reference's)
    :param weight_init: ``"torch"`` (PyTorch's default initialisation, the reference's) or ``"glorot"`` (Keras' Glorot
        uniform weights and zero biases, the official DreamerV2's; :func:`glorot_init`)
    :param part_init: how the layers that read a concatenation in parts (the RSSM's input, ``(stoch, action)``, and its
        posterior's, ``(deter, embedding)``; the first layer of the actor, critic, reward and discount heads,
        ``(deter, stoch)``) draw their initial weights: ``"layer"`` with the whole layer's fans, as the reference's
        one layer on the concatenation; ``"part"`` each part with its own, as separate layers (this package's
        initialisation before commit a185d39: on Breakout-MinAtar the RSSM's action weights start 11.6 times larger,
        the posterior's 1.41, the heads' 1.22-1.73), which the packaged MinAtar setting uses (:class:`PartLinear`)
    :param image_likelihood: how the decoder predicts the observations: ``"normal"`` (unit-variance Gaussian per entry)
        or ``"bernoulli"`` (binary frames, e.g. MinAtar's). With the packaged MinAtar setting, ``"bernoulli"`` made
        every categorical latent deterministic and the same in prior and posterior within the first few hundred
        updates, so that no observation reached the model (``benchmarks/minatar-100k.md``,
        ``scripts/latent_probe.py``); DreamerV3, whose latents survive it, is the algorithm to use it with
    :param activation_fn: activation function of every network
    :param normalize_images: divide uint8 images in [0, 255] by 255
    :param optimizer_class: optimizer of the world model, actor and critic
    :param optimizer_kwargs: keyword arguments of the optimizers, excluding the learning rate; an optimizer with a
        fused implementation (Adam) runs it unless these choose one (:func:`with_fused_default`)
    """

    algorithm_name = "DreamerV2"

    # The options (see :meth:`option_names`), set from the constructor's arguments of the same names
    encoder_type: str
    embedding_dim: int
    deter_size: int
    stoch_size: int
    class_size: int
    rssm_hidden_size: int
    latent_type: str
    min_std: float
    cnn_depth: int
    cnn_layers: int
    cnn_kernel_size: int
    mlp_units: int
    mlp_layers: int
    head_units: int
    head_layers: int
    actor_min_std: float
    actor_init_std: float
    symlog_observations: bool
    symlog_twohot: bool
    unimix: float
    layer_norm_gru: bool
    center_images: bool
    weight_init: str
    part_init: str
    image_likelihood: str
    activation_fn: type[nn.Module]

    def __init__(
        self,
        observation_space: spaces.Box,
        action_space: spaces.Discrete | spaces.Box,
        lr_schedule: Schedule,
        encoder_type: str = "cnn",
        embedding_dim: int = 200,
        deter_size: int = 200,
        stoch_size: int = 20,
        class_size: int = 20,
        rssm_hidden_size: int = 200,
        latent_type: str = "discrete",
        min_std: float = 0.1,
        cnn_depth: int = 16,
        cnn_layers: int = 3,
        cnn_kernel_size: int = 3,
        mlp_units: int = 400,
        mlp_layers: int = 2,
        head_units: int = 100,
        head_layers: int = 3,
        actor_min_std: float = 0.1,
        actor_init_std: float = 0.0,
        symlog_observations: bool = False,
        symlog_twohot: bool = False,
        unimix: float = 0.0,
        layer_norm_gru: bool = False,
        center_images: bool = False,
        weight_init: str = "torch",
        part_init: str = "layer",
        image_likelihood: str = "normal",
        activation_fn: type[nn.Module] = nn.ELU,
        normalize_images: bool = True,
        optimizer_class: type[th.optim.Optimizer] = th.optim.Adam,
        optimizer_kwargs: dict[str, Any] | None = None,
    ) -> None:
        # Before any other local: the options, stored as attributes below and saved by _get_constructor_parameters
        options = {name: value for name, value in locals().items() if name in DreamerV2Policy.option_names()}
        super().__init__(observation_space, action_space, encoder_type, normalize_images, optimizer_class, optimizer_kwargs)
        check_positive_integers(
            embedding_dim=embedding_dim,
            deter_size=deter_size,
            stoch_size=stoch_size,
            class_size=class_size,
            rssm_hidden_size=rssm_hidden_size,
            cnn_depth=cnn_depth,
            cnn_kernel_size=cnn_kernel_size,
            mlp_units=mlp_units,
            head_units=head_units,
            head_layers=head_layers,
        )
        check_non_negative_integers(cnn_layers=cnn_layers, mlp_layers=mlp_layers)
        check_non_negative(min_std=min_std)
        check_positive(actor_min_std=actor_min_std)
        check_finite(actor_init_std=actor_init_std)
        check_booleans(
            symlog_observations=symlog_observations,
            symlog_twohot=symlog_twohot,
            layer_norm_gru=layer_norm_gru,
            center_images=center_images,
            normalize_images=normalize_images,
        )
        check_subclasses(nn.Module, "torch.nn.ReLU", activation_fn=activation_fn)
        check_subclasses(th.optim.Optimizer, "torch.optim.Adam", optimizer_class=optimizer_class)
        if not isinstance(self.optimizer_kwargs, dict):
            raise ValueError(f"optimizer_kwargs must be a dict or None, got {describe(optimizer_kwargs)}")
        if weight_init not in WEIGHT_INITS:
            raise ValueError(f"Unknown weight_init {weight_init!r}: use one of {WEIGHT_INITS}")
        if part_init not in PART_INITS:
            raise ValueError(f"Unknown part_init {part_init!r}: use one of {PART_INITS}")
        if image_likelihood == "bernoulli" and center_images:
            raise ValueError(
                "image_likelihood='bernoulli' predicts pixels in {0, 1}, but center_images=True centres the images: use "
                "image_likelihood='normal' (the official DreamerV2's unit-variance Gaussian)"
            )
        if image_likelihood == "bernoulli" and symlog_observations:
            raise ValueError(
                "image_likelihood='bernoulli' needs binary targets, but symlog_observations=True makes the decoder's "
                "targets symlog(obs): use image_likelihood='normal' (DreamerV3's squared error in symlog space)"
            )
        if center_images and encoder_type != "cnn":
            raise ValueError(
                "center_images=True centres the images of the conv encoder (CnnPolicy, encoder_type='cnn'), as the "
                "official DreamerV2 does: leave it False with MlpPolicy"
            )
        if symlog_observations and encoder_type == "cnn":
            raise ValueError(
                "symlog_observations=True applies to vector observations (MlpPolicy, encoder_type='mlp'); images are "
                "left as they are, as in DreamerV3: leave it False with CnnPolicy"
            )
        if not (isinstance(unimix, Real) and 0.0 <= unimix < 1.0):
            raise ValueError(f"unimix must be in [0, 1), got {unimix!r}")
        if unimix > 0 and latent_type != "discrete" and not isinstance(action_space, spaces.Discrete):
            raise ValueError(
                f"unimix={unimix} would have no effect: it mixes a uniform into categorical latents "
                f"(latent_type='discrete') and categorical actions (Discrete action spaces), and here neither is "
                f"categorical (latent_type={latent_type!r}, action space {action_space})"
            )
        vars(self).update(options)
        self.action_dist: ActionDistribution
        if isinstance(action_space, spaces.Discrete):
            self.action_dist = CategoricalAction(int(action_space.n), unimix)
        else:
            self.action_dist = TanhNormalAction(action_space.shape, actor_min_std, actor_init_std)
        self._build(lr_schedule)

    def _build(self, lr_schedule: Schedule) -> None:
        obs_shape = tuple(self.observation_space.shape)
        rssm = RSSM(
            action_dim=self.action_dist.action_dim,
            embedding_dim=self.embedding_dim,
            deter_size=self.deter_size,
            stoch_size=self.stoch_size,
            class_size=self.class_size,
            hidden_size=self.rssm_hidden_size,
            latent_type=self.latent_type,
            min_std=self.min_std,
            activation_fn=self.activation_fn,
            unimix=self.unimix,
            layer_norm_gru=self.layer_norm_gru,
            part_init=self.part_init,
        )
        encoder: nn.Module
        decoder: nn.Module
        if self.encoder_type == "cnn":
            encoder = ConvEncoder(
                obs_shape,
                self.embedding_dim,
                self.cnn_depth,
                self.cnn_layers,
                self.cnn_kernel_size,
                self.activation_fn,
                input_offset=-0.5 if self.center_images else 0.0,
            )
            decoder = ConvDecoder(rssm.feature_dim, encoder, self.activation_fn)
        else:
            obs_dim = int(np.prod(obs_shape))
            encoder = MlpEncoder(obs_dim, self.embedding_dim, self.mlp_units, self.mlp_layers, self.activation_fn)
            decoder = MlpDecoder(rssm.feature_dim, obs_shape, self.mlp_units, self.mlp_layers, self.activation_fn)
        scalar_dist = SymlogTwoHot if self.symlog_twohot else NormalScalar
        reward_dist = scalar_dist()
        head_sizes = (rssm.deter_size, rssm.stoch_dim)
        head = (self.head_units, self.head_layers, self.activation_fn)
        reward_sizes = (*head_sizes, reward_dist.param_dim, *head)
        reward_head = LatentMLP(*reward_sizes, zero_output=reward_dist.zero_init_output, part_init=self.part_init)
        discount_sizes = (*head_sizes, 1, *head)
        discount_head = LatentMLP(*discount_sizes, part_init=self.part_init)
        self.world_model = WorldModel(
            self.observation_space,
            self.action_dist,
            encoder,
            decoder,
            rssm,
            reward_dist,
            reward_head,
            discount_head,
            self.normalize_images,
            self.symlog_observations,
            self.image_likelihood,
        )
        actor_sizes = (*head_sizes, self.action_dist.param_dim, *head)
        self.actor = LatentMLP(*actor_sizes, part_init=self.part_init)
        #: how the critic's (and target critic's) outputs predict a value
        self.value_dist: ScalarDistribution = scalar_dist()
        value_head = (*head_sizes, self.value_dist.param_dim, *head)
        self.critic = LatentMLP(*value_head, zero_output=self.value_dist.zero_init_output, part_init=self.part_init)
        if self.weight_init == "glorot":
            for module in (self.world_model, self.actor, self.critic):
                glorot_init(module)
        self.critic_target = LatentMLP(*value_head, part_init=self.part_init)
        self.critic_target.load_state_dict(self.critic.state_dict())
        self.critic_target.requires_grad_(False)

        optimizer_kwargs = with_fused_default(self.optimizer_class, self.optimizer_kwargs)
        self.world_model_optimizer, self.actor_optimizer, self.critic_optimizer = (
            self.optimizer_class(module.parameters(), lr=lr_schedule(1), **optimizer_kwargs)  # type: ignore[call-arg]
            for module in (self.world_model, self.actor, self.critic)
        )

    def imagine(self, start: LatentState, horizon: int, dynamics_gradients: bool) -> ImaginedTrajectory:
        """
        Roll the prior forward from ``start`` with actions of the actor (:meth:`rollout`), then apply the other heads to
        all imagined states at once: one call per head on (H + 1) * N states rather than one per step (on a GPU,
        hundreds of kernel launches fewer per gradient step).

        :param start: start states, (N, ...); treated as constants
        :param horizon: number of imagined steps H
        :param dynamics_gradients: keep the graph through the dynamics and the reward, continuation and target
            value heads (for ``dynamics`` actor gradients); otherwise the trajectory is a constant and only the
            actor's outputs (parameters and samples) and the critic's outputs carry gradients
        """
        world_model = self.world_model
        model_grad = dynamics_gradients and th.is_grad_enabled()
        first, arrived, params, actions = self.rollout(start, horizon, dynamics_gradients)
        # s_0 is dense where the others may hold indices: its heads are applied apart
        n_starts = start.deter.shape[0]
        with th.set_grad_enabled(model_grad):
            target_values = th.cat([self.critic_target(first), self.critic_target(arrived)])
            rewards = world_model.reward(arrived).view(horizon, n_starts)
            continue_logits = world_model.discount_head(arrived).view(horizon, n_starts)
        value_outputs = th.cat([self.critic(first), self.critic(detached(slice_states(arrived, (horizon - 1) * n_starts)))])
        return ImaginedTrajectory(
            th.stack(params),
            th.stack(actions),
            rewards,
            continue_logits,
            self.value_dist.predict(target_values).view(horizon + 1, n_starts),
            value_outputs.view(horizon, n_starts, -1),
        )


class CnnPolicy(DreamerV2Policy):
    """DreamerV2 policy with a conv encoder and decoder for channels-first images (C, H, W)."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("encoder_type", "cnn")
        super().__init__(*args, **kwargs)


class MlpPolicy(DreamerV2Policy):
    """DreamerV2 policy with an MLP encoder and decoder for observations of any shape."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("encoder_type", "mlp")
        super().__init__(*args, **kwargs)

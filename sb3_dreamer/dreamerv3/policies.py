"""DreamerV3 policies: the world model with the block RSSM, actor, critic and slow critic, all RMS-normalised."""

import itertools
from numbers import Real
from typing import Any, NamedTuple, cast

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.type_aliases import Schedule

from sb3_dreamer.common.checks import (
    check_booleans,
    check_positive,
    check_positive_integers,
    check_subclasses,
    describe,
)
from sb3_dreamer.common.laprop import LaProp
from sb3_dreamer.common.policies import DreamerPolicy
from sb3_dreamer.world_model.block_rssm import BlockRSSM
from sb3_dreamer.world_model.conv_v3 import ConvDecoderV3, ConvEncoderV3
from sb3_dreamer.world_model.distributions import (
    ActionDistribution,
    BoundedNormalAction,
    CategoricalAction,
    SymexpTwoHot,
)
from sb3_dreamer.world_model.model import IMAGE_LIKELIHOODS, WorldModel
from sb3_dreamer.world_model.networks import NormLatentMLP, NormMlpDecoder, NormMlpEncoder
from sb3_dreamer.world_model.rssm import LatentState, slice_states

#: the networks that the optimizer trains, in its order of parameters: the names of its groups where
#: ``separate_learning_rates`` gives each its own
OPTIMIZER_GROUPS = ("world_model", "actor", "critic")

#: DreamerV3's model sizes (the official ``configs.yaml`` presets): recurrent state, units of every MLP and of the RSSM,
#: classes of each of the 32 latents, and the CNN's base depth
MODEL_SIZES: dict[str, dict[str, int]] = {
    "size1m": dict(deter_size=512, units=64, class_size=4, cnn_depth=4),
    "size12m": dict(deter_size=2048, units=256, class_size=16, cnn_depth=16),
    "size25m": dict(deter_size=3072, units=384, class_size=24, cnn_depth=24),
    "size50m": dict(deter_size=4096, units=512, class_size=32, cnn_depth=32),
    "size100m": dict(deter_size=6144, units=768, class_size=48, cnn_depth=48),
    "size200m": dict(deter_size=8192, units=1024, class_size=64, cnn_depth=64),
    "size400m": dict(deter_size=12288, units=1536, class_size=96, cnn_depth=96),
}


class ImaginedTrajectoryV3(NamedTuple):
    """What :meth:`DreamerV3Policy.imagine` predicts along trajectories s_0 .. s_H imagined from N start states."""

    #: parameters of the actor's distribution at s_0 .. s_{H-1}, (H, N, param_dim), with gradients to the actor
    action_params: th.Tensor
    #: a_0 .. a_{H-1} as action vectors, (H, N, action_dim), constants
    actions: th.Tensor
    #: predicted reward for arriving at s_1 .. s_H, (H, N)
    rewards: th.Tensor
    #: predicted continuation probability (times the discount, which the continue head learns) at s_0 .. s_H, (H + 1, N)
    continues: th.Tensor
    #: the critic's values at s_0 .. s_H, (H + 1, N), constants
    values: th.Tensor
    #: the critic's outputs at s_0 .. s_{H-1}, (H, N, bins), with gradients to the critic
    value_outputs: th.Tensor
    #: the slow critic's values at s_0 .. s_{H-1}, (H, N)
    slow_values: th.Tensor


class DreamerV3Policy(DreamerPolicy):
    """
    Policy of DreamerV3 (the current official code): a world model (RMS-normalised encoder and decoder, block RSSM with
    32 categorical latents, two-hot reward head, continue head), a REINFORCE actor, a two-hot critic and its slow copy,
    trained by one optimizer.

    :param observation_space: observation space (images (C, H, W) for the CNN, any shape for the MLP)
    :param action_space: ``Discrete`` (categorical actor) or a bounded ``Box`` (:class:`BoundedNormalAction`)
    :param lr_schedule: learning rate schedule of the optimizer
    :param encoder_type: ``"cnn"`` or ``"mlp"``; vector observations are read and reconstructed as ``symlog(obs)``
    :param model_size: one of :data:`MODEL_SIZES`, which sets ``deter_size``, ``units``, ``class_size`` and ``cnn_depth``
        where they are None
    :param deter_size: size of the recurrent state (a multiple of ``blocks``)
    :param units: units of the RSSM's layers and of every MLP
    :param class_size: classes of each categorical latent
    :param cnn_depth: channels of the first conv stage (then times 3/2, 2, 2)
    :param cnn_min_resolution: smallest side that the encoder's 2x2 max-pooling may produce (official ``minres``): a
        stage pools while the side entering it is at least twice this, and the decoder upsamples where it did. With
        the official 4, MinAtar's 10 x 10 frames are pooled to 5 x 5 by the first stage; from 6 on they keep their grid
    :param stoch_size: number of categorical latents
    :param blocks: groups of the block GRU and of the decoder's stem
    :param mlp_layers: hidden layers of the vector encoder and decoder
    :param reward_layers: hidden layers of the reward head
    :param continue_layers: hidden layers of the continue head
    :param actor_layers: hidden layers of the actor
    :param critic_layers: hidden layers of the critic
    :param unimix: weight of the uniform mixed into the latents' categoricals
    :param actor_unimix: weight of the uniform mixed into the categorical actor: 0 in the official code (its setting
        reaches no categorical actor), 0.01 in the paper
    :param bins: bins of the two-hot reward head and critic (odd)
    :param actor_min_std: lower bound of the Normal actor's std (``Box`` actions)
    :param actor_max_std: upper bound of the Normal actor's std (``Box`` actions)
    :param image_likelihood: how the decoder predicts observations (see :data:`IMAGE_LIKELIHOODS`); None: DreamerV3's
        squared error, of the sigmoid for images (``"sigmoid_mse"``) and of the symlog values for vectors (``"mse"``)
    :param separate_learning_rates: give the optimizer one parameter group per network, named in
        :data:`OPTIMIZER_GROUPS`, so that their learning rates can differ (the algorithm sets it where
        ``actor_learning_rate`` or ``critic_learning_rate`` is given); otherwise one group holds every parameter
    :param normalize_images: divide uint8 images in [0, 255] by 255
    :param optimizer_class: the optimizer of all networks (DreamerV3: :class:`LaProp` with AGC and warmup)
    :param optimizer_kwargs: its keyword arguments, excluding the learning rate
    """

    algorithm_name = "DreamerV3"

    # The options (see :meth:`option_names`), set from the constructor's arguments of the same names (the sizes that
    # are None from ``model_size``)
    encoder_type: str
    model_size: str
    deter_size: int
    units: int
    class_size: int
    cnn_depth: int
    cnn_min_resolution: int
    stoch_size: int
    blocks: int
    mlp_layers: int
    reward_layers: int
    continue_layers: int
    actor_layers: int
    critic_layers: int
    unimix: float
    actor_unimix: float
    bins: int
    actor_min_std: float
    actor_max_std: float
    image_likelihood: str | None
    separate_learning_rates: bool

    def __init__(
        self,
        observation_space: spaces.Box,
        action_space: spaces.Discrete | spaces.Box,
        lr_schedule: Schedule,
        encoder_type: str = "cnn",
        model_size: str = "size12m",
        deter_size: int | None = None,
        units: int | None = None,
        class_size: int | None = None,
        cnn_depth: int | None = None,
        cnn_min_resolution: int = 4,
        stoch_size: int = 32,
        blocks: int = 8,
        mlp_layers: int = 3,
        reward_layers: int = 1,
        continue_layers: int = 1,
        actor_layers: int = 3,
        critic_layers: int = 3,
        unimix: float = 0.01,
        actor_unimix: float = 0.0,
        bins: int = 255,
        actor_min_std: float = 0.1,
        actor_max_std: float = 1.0,
        image_likelihood: str | None = None,
        separate_learning_rates: bool = False,
        normalize_images: bool = True,
        optimizer_class: type[th.optim.Optimizer] = LaProp,
        optimizer_kwargs: dict[str, Any] | None = None,
    ) -> None:
        options = {name: value for name, value in locals().items() if name in DreamerV3Policy.option_names()}
        super().__init__(observation_space, action_space, encoder_type, normalize_images, optimizer_class, optimizer_kwargs)
        if model_size not in MODEL_SIZES:
            raise ValueError(f"Unknown model_size {model_size!r}: use one of {tuple(MODEL_SIZES)}")
        for name, size in MODEL_SIZES[model_size].items():
            if options[name] is None:
                options[name] = size
        check_positive_integers(
            **{name: options[name] for name in ("deter_size", "units", "class_size", "cnn_depth")},
            cnn_min_resolution=cnn_min_resolution,
            stoch_size=stoch_size,
            blocks=blocks,
            mlp_layers=mlp_layers,
            reward_layers=reward_layers,
            continue_layers=continue_layers,
            actor_layers=actor_layers,
            critic_layers=critic_layers,
            bins=bins,
        )
        if options["deter_size"] % blocks:
            raise ValueError(f"deter_size={options['deter_size']} must be a multiple of blocks={blocks}")
        if bins < 3 or bins % 2 == 0:
            raise ValueError(f"bins must be odd and at least 3 (the two-hot bins are symmetric around 0), got {bins}")
        for name, value in (("unimix", unimix), ("actor_unimix", actor_unimix)):
            if not (isinstance(value, Real) and not isinstance(value, bool) and 0.0 <= value < 1.0):
                raise ValueError(f"{name} must be in [0, 1), got {describe(value)}")
        check_positive(actor_min_std=actor_min_std, actor_max_std=actor_max_std)
        if actor_min_std >= actor_max_std:
            raise ValueError(f"actor_min_std={actor_min_std} must be below actor_max_std={actor_max_std}")
        if image_likelihood is not None and image_likelihood not in IMAGE_LIKELIHOODS:
            raise ValueError(f"Unknown image_likelihood={image_likelihood!r}: use one of {IMAGE_LIKELIHOODS} or None")
        if image_likelihood == "bernoulli" and encoder_type == "mlp":
            raise ValueError(
                "image_likelihood='bernoulli' needs binary targets, but the MLP decoder reconstructs symlog(obs), as in "
                "DreamerV3: use None (its squared error) or 'mse'"
            )
        check_booleans(normalize_images=normalize_images, separate_learning_rates=separate_learning_rates)
        check_subclasses(th.optim.Optimizer, "sb3_dreamer.common.laprop.LaProp", optimizer_class=optimizer_class)
        if not isinstance(self.optimizer_kwargs, dict):
            raise ValueError(f"optimizer_kwargs must be a dict or None, got {describe(optimizer_kwargs)}")
        vars(self).update(options)
        self.action_dist: ActionDistribution
        if isinstance(action_space, spaces.Discrete):
            self.action_dist = CategoricalAction(int(action_space.n), actor_unimix)
        else:
            self.action_dist = BoundedNormalAction(action_space.shape, actor_min_std, actor_max_std)
        self._build(lr_schedule)

    def _build(self, lr_schedule: Schedule) -> None:
        obs_shape = tuple(self.observation_space.shape)
        images = self.encoder_type == "cnn"
        encoder: th.nn.Module
        decoder: th.nn.Module
        if images:
            encoder = ConvEncoderV3(obs_shape, self.cnn_depth, min_resolution=self.cnn_min_resolution)
            embedding_dim = encoder.output_dim
        else:
            encoder = NormMlpEncoder(int(np.prod(obs_shape)), self.units, self.mlp_layers)
            embedding_dim = self.units
        rssm = BlockRSSM(
            self.action_dist.action_dim,
            embedding_dim,
            self.deter_size,
            self.stoch_size,
            self.class_size,
            self.units,
            self.blocks,
            self.unimix,
        )
        if images:
            decoder = ConvDecoderV3(rssm.feature_dim, rssm.deter_size, cast(ConvEncoderV3, encoder), self.units, self.blocks)
        else:
            decoder = NormMlpDecoder(rssm.feature_dim, obs_shape, self.units, self.mlp_layers)
        sizes = (rssm.deter_size, rssm.stoch_dim)
        reward_dist = SymexpTwoHot(self.bins)
        default_likelihood = "sigmoid_mse" if images else "mse"
        self.world_model = WorldModel(
            self.observation_space,
            self.action_dist,
            encoder,
            decoder,
            rssm,
            reward_dist,
            NormLatentMLP(*sizes, self.bins, self.units, self.reward_layers, outscale=0.0),
            NormLatentMLP(*sizes, 1, self.units, self.continue_layers, outscale=1.0),
            self.normalize_images,
            symlog_observations=not images,
            image_likelihood=self.image_likelihood or default_likelihood,
        )
        self.actor = NormLatentMLP(*sizes, self.action_dist.param_dim, self.units, self.actor_layers, outscale=0.01)
        #: how the critic's (and slow critic's) outputs predict a value
        self.value_dist = SymexpTwoHot(self.bins)
        self.critic = NormLatentMLP(*sizes, self.bins, self.units, self.critic_layers, outscale=0.0)
        self.critic_target = NormLatentMLP(*sizes, self.bins, self.units, self.critic_layers, outscale=0.0)
        self.critic_target.load_state_dict(self.critic.state_dict())
        self.critic_target.requires_grad_(False)
        parameters: list[dict[str, Any]] | itertools.chain[th.nn.Parameter]
        if self.separate_learning_rates:
            parameters = [{"name": name, "params": list(getattr(self, name).parameters())} for name in OPTIMIZER_GROUPS]
        else:
            parameters = itertools.chain(*(getattr(self, name).parameters() for name in OPTIMIZER_GROUPS))
        self.optimizer = self.optimizer_class(parameters, lr=lr_schedule(1), **self.optimizer_kwargs)  # type: ignore[call-arg]

    def imagine(self, start: LatentState, horizon: int) -> ImaginedTrajectoryV3:
        """
        Trajectories imagined from ``start`` with the actor's samples (:meth:`rollout`, the states as constants), and
        the heads' predictions along them: every head but the actor and the critic's outputs without gradients.

        :param start: start states, (N, ...); treated as constants
        :param horizon: number of imagined steps H
        """
        first, arrived, params, actions = self.rollout(start, horizon, dynamics_gradients=False)
        n_starts = start.deter.shape[0]
        world_model = self.world_model
        with th.no_grad():
            rewards = world_model.reward(arrived).view(horizon, n_starts)
            continue_logits = th.cat([world_model.discount_head(first), world_model.discount_head(arrived)])
            before_last = slice_states(arrived, (horizon - 1) * n_starts)
            slow_outputs = th.cat([self.critic_target(first), self.critic_target(before_last)])
        value_outputs = th.cat([self.critic(first), self.critic(arrived)]).view(horizon + 1, n_starts, -1)
        return ImaginedTrajectoryV3(
            th.stack(params),
            th.stack(actions).detach(),
            rewards,
            th.sigmoid(continue_logits).view(horizon + 1, n_starts),
            self.value_dist.predict(value_outputs.detach()),
            value_outputs[:-1],
            self.value_dist.predict(slow_outputs).view(horizon, n_starts),
        )


class CnnPolicy(DreamerV3Policy):
    """DreamerV3 policy with its conv encoder and decoder for channels-first images (C, H, W)."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("encoder_type", "cnn")
        super().__init__(*args, **kwargs)


class MlpPolicy(DreamerV3Policy):
    """DreamerV3 policy with its MLP encoder and decoder for vector observations of any shape (read as symlog)."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("encoder_type", "mlp")
        super().__init__(*args, **kwargs)

import contextlib
import io
import math
import os
import pathlib
import pickle
import time
from collections.abc import Iterable
from numbers import Integral
from typing import Any, ClassVar, NoReturn, TypeVar

import numpy as np
import torch as th
import torch.nn.functional as F
from gymnasium import spaces
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.save_util import load_from_zip_file
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback, Schedule
from stable_baselines3.common.utils import FloatSchedule, obs_as_tensor, polyak_update, update_learning_rate
from stable_baselines3.common.vec_env import VecEnv
from torch import nn

from sb3_dreamer.common.buffers import SequenceReplayBuffer, SequenceSamples, action_layout
from sb3_dreamer.common.checks import (
    check_booleans,
    check_non_negative,
    check_non_negative_integers,
    check_non_negative_schedules,
    check_optional_paths,
    check_positive,
    check_positive_integers,
    check_probabilities,
    check_spaces,
    check_train_freq,
    describe,
)
from sb3_dreamer.common.diagnostics import DREAM_TAG, dream_frames, dream_video, open_loop_prediction, write_gif_summary
from sb3_dreamer.common.distributions import balanced_kl_loss
from sb3_dreamer.common.guards import NonFiniteError, UpdateSnapshot
from sb3_dreamer.common.optimizers import keep_steps_on_cpu
from sb3_dreamer.common.precision import resolve_mixed_precision
from sb3_dreamer.common.returns import ReturnScale, lambda_return
from sb3_dreamer.common.rssm import LatentState
from sb3_dreamer.common.save_util import (
    CORRUPTED_FILE_ERRORS,
    atomic_directory,
    atomic_open,
    check_model_file,
    corrupted_file_error,
    file_digest,
    get_rng_states,
    load_pickle,
    make_vec_env_from_state,
    set_rng_states,
    vec_env_state,
)
from sb3_dreamer.dreamerv2.policies import ActingState, CnnPolicy, DreamerV2Policy, MlpPolicy

SelfDreamerV2 = TypeVar("SelfDreamerV2", bound="DreamerV2")

ACTOR_GRADIENTS = ("reinforce", "dynamics", "both")
IMAGE_LIKELIHOODS = ("normal", "bernoulli")
TARGET_UPDATE_UNITS = ("env_steps", "gradient_steps")
#: transforms of the replayed rewards that the world model learns to predict (the official DreamerV2's clip_rewards)
REWARD_TRANSFORMS = {"identity": None, "tanh": th.tanh, "sign": th.sign}
#: Metrics checked for NaN and infinity after each train() call: the losses and gradient norms
GUARDED_METRICS = ("_loss", "_grad_norm")
#: Files of a checkpoint directory (see DreamerV2.save_checkpoint)
CHECKPOINT_MODEL, CHECKPOINT_BUFFER, CHECKPOINT_STATE = "model.zip", "replay_buffer.pkl", "checkpoint.pkl"
#: What ``checkpoint.pkl`` holds
CHECKPOINT_STATE_KEYS = ("digests", "rng_states", "acting_state", "episode_starts", "envs")
#: The optimizers, saved as state dicts of these names besides the policy's
OPTIMIZERS = ("policy.world_model_optimizer", "policy.actor_optimizer", "policy.critic_optimizer")
#: Default recovery_dir: a subfolder per recovery checkpoint is made in it, so that concurrent runs do not share one
DEFAULT_RECOVERY_DIR = "dreamerv2_recovery"
#: Default episodes between two dumps of the logger in ``learn`` (SB3's 4 floods the console on MinAtar's short episodes)
LOG_INTERVAL = 50


class DreamerV2(OffPolicyAlgorithm):
    """
    DreamerV2: a world model with discrete latents learned from replayed sequences, and an actor-critic
    trained on trajectories imagined by that model.

    Paper: "Mastering Atari with Discrete World Models", Hafner et al. 2020, https://arxiv.org/abs/2010.02193
    Defaults are those of the PyTorch DreamerV2 for MinAtar this package replaces.

    ``Discrete`` action spaces get a categorical actor with epsilon-greedy exploration; bounded ``Box`` action spaces
    a tanh-Normal actor whose actions in [-1, 1] are stored in the replay buffer and rescaled to the bounds for the env
    (as SB3 does), with optional Gaussian exploration noise (the paper's continuous-control setting).

    :param policy: the policy model to use (CnnPolicy, MlpPolicy, ...)
    :param env: the environment to learn from (if registered in Gym, can be str)
    :param learning_rate: learning rate of the world model, a constant or a schedule of the remaining progress
    :param actor_learning_rate: learning rate of the actor, a constant or a schedule
    :param critic_learning_rate: learning rate of the critic, a constant or a schedule
    :param buffer_size: replay capacity in observations (rows), split evenly between envs
    :param learning_starts: env steps of uniformly random actions (``action_space.sample()``) before learning starts
    :param batch_size: number of sequences per gradient step
    :param sequence_length: length of each replayed sequence
    :param train_freq: update the model every ``train_freq`` env steps (per env)
    :param gradient_steps: gradient steps (each on world model, actor and critic) after each rollout
    :param gamma: discount factor of imagined returns
    :param return_lambda: lambda of the imagined TD(lambda) returns
    :param imagination_horizon: length of imagined trajectories
    :param kl_scale: weight of the KL term in the world-model loss
    :param kl_balance: fraction of the KL gradient that trains the prior (the rest regularises the posterior)
    :param free_nats: DreamerV2's free nats: the batch mean of each KL term (prior and posterior) is clipped below at
        this value, so that the whole term has no gradient while the mean KL is below it (0 disables)
    :param free_bits: DreamerV3's free bits: each KL term is clipped below at this value per sample (the KL summed over
        the latent variables of one state) before the batch mean, so that only the states whose KL is below it have no
        gradient; 0 disables it (DreamerV2), DreamerV3 uses 1.0. Applied before ``free_nats`` when both are set
    :param reward_transform: what the reward head learns to predict, and so what the imagined returns add up:
        ``"identity"`` (the reward, the reference's), ``"tanh"`` (``tanh(reward)``, the official DreamerV2's Atari
        setting) or ``"sign"``; the logged episode returns stay the env's
    :param reward_scale: weight of the reward prediction loss
    :param discount_scale: weight of the discount (continuation) prediction loss
    :param round_discount: imagined discounts are gamma times the predicted continuation probability rounded to 0 or
        1 (True, the reference's MinAtar implementation) or the probability itself (False, the official DreamerV2): an
        imagined trajectory is then discounted by the model's doubt about the episode going on, where a rounded one
        runs on undiscounted until the model is sure that it ends
    :param image_likelihood: ``"normal"`` (unit-variance Gaussian per entry) or ``"bernoulli"`` (binary frames)
    :param actor_grad: ``"reinforce"``, ``"dynamics"`` (backpropagation through the model) or ``"both"``; None picks
        the paper's choice for the action space: ``"reinforce"`` for ``Discrete`` actions, ``"dynamics"`` for ``Box`` ones
    :param actor_grad_mix: with ``actor_grad="both"``, the weight of the dynamics objective: the actor maximises
        ``actor_grad_mix * dynamics + (1 - actor_grad_mix) * reinforce``, as the official DreamerV2's option of the
        same name (0.1: 10% backpropagation through the model, 90% REINFORCE)
    :param actor_entropy_scale: weight of the actor's entropy bonus, a constant or a schedule of the remaining progress
        (e.g. a decay: a high weight protects the young actor from the inflated returns of a young world model)
    :param normalize_returns: DreamerV3's return normalisation: the actor's advantages (``reinforce``) or returns
        (``dynamics``) are divided by ``max(1, S)``, ``S`` an exponential moving average (decay 0.99) of the range
        between the 5th and 95th percentiles of each batch's lambda-returns (:class:`ReturnScale`, saved with the
        model). False: DreamerV2, True: DreamerV3
    :param mixed_precision: run the forward passes of the gradient steps under bfloat16 autocast: matmuls and
        convolutions in bfloat16, while the GRU state, the distributions, losses, gradients and optimizer states stay
        float32 (DreamerV2 trains in mixed precision on GPUs too). Faster where the hardware multiplies bfloat16
        natively (CUDA GPUs from Ampere on, CPUs with AVX512-BF16 or AMX), slower elsewhere; acting stays float32.
        ``"auto"``: bfloat16 where it is faster (:func:`~sb3_dreamer.common.precision.prefers_bfloat16`: GPUs from
        Ampere on, CPUs whose bfloat16 matmul measures faster than float32), decided again when a saved model is
        loaded; True or False forces it on or off. ``train/mixed_precision`` logs the decision (1 or 0)
    :param target_update_interval: update the target critic every this many env steps or gradient steps (see
        ``target_update_unit``)
    :param target_update_unit: what ``target_update_interval`` counts: ``"env_steps"`` (the reference's, as SB3's DQN)
        or ``"gradient_steps"`` (the official DreamerV2's ``slow_target_update``: after the first gradient step, then
        after every ``target_update_interval``-th)
    :param tau: target critic update coefficient (1 = hard copy)
    :param max_grad_norm: global gradient norm clip of each optimizer
    :param weight_decay: the official DreamerV2's weight decay: every parameter is multiplied by
        ``1 - weight_decay`` before each step of its optimizer (decoupled from the gradient, not scaled by the learning
        rate); 0 (the reference's) disables it, the official value is 1e-6
    :param exploration_initial_eps: initial probability of a random action while training (``Discrete`` actions)
    :param exploration_final_eps: final probability of a random action while training (``Discrete`` actions)
    :param exploration_decay_steps: env steps over which that probability decays linearly, counted from the end of
        the ``learning_starts`` random steps
    :param exploration_noise: standard deviation of the Gaussian noise added to the actor's actions in [-1, 1] while
        training, then clipped to [-1, 1] (``Box`` actions); 0 as in DreamerV2, where the actor's own samples explore
    :param diagnostics_interval: every this many gradient steps, log world-model diagnostics under ``diagnostics/``:
        open-loop predictions of replayed sequences (a "dream" video for image observations), their error and
        their reward error; 0 disables them
    :param recovery_dir: where to save a recovery checkpoint (see :meth:`save_checkpoint`, without the env state)
        when a NaN or infinity stops training: in the data from the env, or in a loss or gradient norm, in which case
        it holds the weights and optimizer states of before the ``train()`` call that produced it; the default
        ``"dreamerv2_recovery"`` gets a subfolder per checkpoint, ``<date-time>_<pid>``, so that runs do not share it
        (under the RL Zoo, the default is the run's log folder); None saves none
    :param replay_buffer_class: replay buffer class (a :class:`SequenceReplayBuffer` subclass)
    :param replay_buffer_kwargs: keyword arguments of the replay buffer
    :param stats_window_size: window size of the rollout logging (episodes)
    :param tensorboard_log: the log location for tensorboard (if None, no logging)
    :param policy_kwargs: additional arguments of the policy on creation
    :param verbose: 0 no output, 1 info messages (such as device or wrappers used), 2 debug messages
    :param seed: seed of the pseudo random generators
    :param device: device (cpu, cuda, ...) on which the code should be run ("auto" picks the GPU if any)
    :param _init_setup_model: whether or not to build the network at the creation of the instance
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {
        "CnnPolicy": CnnPolicy,
        "MlpPolicy": MlpPolicy,
    }
    policy: DreamerV2Policy
    replay_buffer: SequenceReplayBuffer
    #: the EMA of the lambda-returns' percentile range, used (and saved) with ``normalize_returns`` only
    return_scale: ReturnScale

    def __init__(
        self,
        policy: str | type[DreamerV2Policy],
        env: GymEnv | str,
        learning_rate: float | Schedule = 2e-4,
        actor_learning_rate: float | Schedule = 4e-5,
        critic_learning_rate: float | Schedule = 1e-4,
        buffer_size: int = 1_000_000,
        learning_starts: int = 4000,
        batch_size: int = 50,
        sequence_length: int = 50,
        train_freq: int | tuple[int, str] = 50,
        gradient_steps: int = 5,
        gamma: float = 0.99,
        return_lambda: float = 0.95,
        imagination_horizon: int = 10,
        kl_scale: float = 0.1,
        kl_balance: float = 0.8,
        free_nats: float = 0.0,
        free_bits: float = 0.0,
        reward_transform: str = "identity",
        reward_scale: float = 1.0,
        discount_scale: float = 5.0,
        round_discount: bool = True,
        image_likelihood: str = "normal",
        actor_grad: str | None = None,
        actor_grad_mix: float = 0.1,
        actor_entropy_scale: float | Schedule = 1e-3,
        normalize_returns: bool = False,
        mixed_precision: str | bool = "auto",
        target_update_interval: int = 100,
        target_update_unit: str = "env_steps",
        tau: float = 1.0,
        max_grad_norm: float = 100.0,
        weight_decay: float = 0.0,
        exploration_initial_eps: float = 0.4,
        exploration_final_eps: float = 0.05,
        exploration_decay_steps: int = 2450,
        exploration_noise: float = 0.0,
        diagnostics_interval: int = 2000,
        recovery_dir: str | None = DEFAULT_RECOVERY_DIR,
        replay_buffer_class: type[SequenceReplayBuffer] | None = None,
        replay_buffer_kwargs: dict[str, Any] | None = None,
        stats_window_size: int = 100,
        tensorboard_log: str | None = None,
        policy_kwargs: dict[str, Any] | None = None,
        verbose: int = 0,
        seed: int | None = None,
        device: th.device | str = "auto",
        _init_setup_model: bool = True,
    ) -> None:
        super().__init__(
            policy,
            env,
            learning_rate,
            buffer_size,
            learning_starts,
            batch_size,
            tau,
            gamma,
            train_freq,
            gradient_steps,
            action_noise=None,
            replay_buffer_class=replay_buffer_class or SequenceReplayBuffer,
            replay_buffer_kwargs=replay_buffer_kwargs,
            policy_kwargs=policy_kwargs,
            stats_window_size=stats_window_size,
            tensorboard_log=tensorboard_log,
            verbose=verbose,
            device=device,
            seed=seed,
            sde_support=False,
            supported_action_spaces=(spaces.Discrete, spaces.Box),
            support_multi_env=True,
        )
        self.actor_learning_rate = actor_learning_rate
        self.critic_learning_rate = critic_learning_rate
        self.sequence_length = sequence_length
        self.return_lambda = return_lambda
        self.imagination_horizon = imagination_horizon
        self.kl_scale = kl_scale
        self.kl_balance = kl_balance
        self.free_nats = free_nats
        self.free_bits = free_bits
        self.reward_transform = reward_transform
        self.reward_scale = reward_scale
        self.discount_scale = discount_scale
        self.round_discount = round_discount
        self.image_likelihood = image_likelihood
        self.actor_grad = actor_grad
        self.actor_grad_mix = actor_grad_mix
        self.actor_entropy_scale = actor_entropy_scale
        self.normalize_returns = normalize_returns
        self.mixed_precision = mixed_precision
        self.target_update_interval = target_update_interval
        self.target_update_unit = target_update_unit
        self.max_grad_norm = max_grad_norm
        self.weight_decay = weight_decay
        self.exploration_initial_eps = exploration_initial_eps
        self.exploration_final_eps = exploration_final_eps
        self.exploration_decay_steps = exploration_decay_steps
        self.exploration_noise = exploration_noise
        self.exploration_rate = exploration_initial_eps
        self.diagnostics_interval = diagnostics_interval
        self.recovery_dir = recovery_dir
        # Env steps since the model was built, for the target critic update schedule (as DQN's).
        self._n_calls = 0
        self._acting_state: ActingState | None = None
        #: 1.0 where the last observation starts an episode, (n_envs,), or None where none does
        self._episode_starts: th.Tensor | None = None

        if _init_setup_model:
            self._setup_model()

    @staticmethod
    def _wrap_env(env: GymEnv, verbose: int = 0, monitor_wrapper: bool = True) -> VecEnv:
        """Check the spaces (before SB3 asserts on them), then wrap the env as SB3 does."""
        check_spaces(env.observation_space, env.action_space)
        return OffPolicyAlgorithm._wrap_env(env, verbose, monitor_wrapper)

    def _check_hyperparameters(self) -> None:
        if self.actor_grad not in ACTOR_GRADIENTS:
            raise ValueError(f"Unknown actor_grad={self.actor_grad!r}: use one of {ACTOR_GRADIENTS}")
        if self.image_likelihood not in IMAGE_LIKELIHOODS:
            raise ValueError(f"Unknown image_likelihood={self.image_likelihood!r}: use one of {IMAGE_LIKELIHOODS}")
        if self.target_update_unit not in TARGET_UPDATE_UNITS:
            raise ValueError(f"Unknown target_update_unit={self.target_update_unit!r}: use one of {TARGET_UPDATE_UNITS}")
        if self.reward_transform not in tuple(REWARD_TRANSFORMS):
            raise ValueError(f"Unknown reward_transform={self.reward_transform!r}: use one of {tuple(REWARD_TRANSFORMS)}")
        if self.image_likelihood == "bernoulli" and self.policy_kwargs.get("center_images"):
            raise ValueError(
                "image_likelihood='bernoulli' predicts pixels in {0, 1}, but center_images=True in policy_kwargs centres "
                "the images: use image_likelihood='normal' (the official DreamerV2's unit-variance Gaussian)"
            )
        if self.image_likelihood == "bernoulli" and self.policy_kwargs.get("symlog_observations"):
            raise ValueError(
                "image_likelihood='bernoulli' needs binary targets, but symlog_observations=True in policy_kwargs makes "
                "the decoder's targets symlog(obs): use image_likelihood='normal' (DreamerV3's squared error in symlog space)"
            )
        check_positive_integers(
            batch_size=self.batch_size,
            sequence_length=self.sequence_length,
            imagination_horizon=self.imagination_horizon,
            buffer_size=self.buffer_size,
            target_update_interval=self.target_update_interval,
            stats_window_size=self._stats_window_size,
        )
        check_non_negative_integers(
            learning_starts=self.learning_starts,
            exploration_decay_steps=self.exploration_decay_steps,
            diagnostics_interval=self.diagnostics_interval,
        )
        if self.seed is not None:
            check_non_negative_integers(seed=self.seed)
        check_booleans(normalize_returns=self.normalize_returns, round_discount=self.round_discount)
        check_optional_paths(recovery_dir=self.recovery_dir)
        if self.learning_starts < self.sequence_length * self.n_envs:
            raise ValueError(
                f"learning_starts={self.learning_starts} is smaller than sequence_length * n_envs = "
                f"{self.sequence_length} * {self.n_envs}: the first update needs a full sequence in each env's replay ring"
            )
        if self.sequence_length > self.buffer_size // self.n_envs:
            raise ValueError(
                f"sequence_length={self.sequence_length} does not fit in a replay ring of "
                f"buffer_size // n_envs = {self.buffer_size // self.n_envs} rows"
            )
        n_windows = self.n_envs * (self.buffer_size // self.n_envs - self.sequence_length + 1)
        if self.batch_size > n_windows:
            raise ValueError(
                f"batch_size={self.batch_size} is larger than the number of distinct sequences the replay buffer can "
                f"hold, n_envs * (buffer_size // n_envs - sequence_length + 1) = {n_windows}"
            )
        check_train_freq(self.train_freq, self.n_envs)
        if not isinstance(self.gradient_steps, Integral) or isinstance(self.gradient_steps, bool) or self.gradient_steps < -1:
            raise ValueError(
                f"gradient_steps must be an integer >= 0, or -1 for as many as env steps collected, "
                f"got {describe(self.gradient_steps)}"
            )
        check_probabilities(
            gamma=self.gamma,
            return_lambda=self.return_lambda,
            kl_balance=self.kl_balance,
            actor_grad_mix=self.actor_grad_mix,
            tau=self.tau,
            exploration_initial_eps=self.exploration_initial_eps,
            exploration_final_eps=self.exploration_final_eps,
        )
        check_non_negative(
            kl_scale=self.kl_scale,
            free_nats=self.free_nats,
            free_bits=self.free_bits,
            reward_scale=self.reward_scale,
            discount_scale=self.discount_scale,
            exploration_noise=self.exploration_noise,
        )
        check_probabilities(weight_decay=self.weight_decay)
        check_positive(max_grad_norm=self.max_grad_norm)
        check_non_negative_schedules(
            learning_rate=self.learning_rate,
            actor_learning_rate=self.actor_learning_rate,
            critic_learning_rate=self.critic_learning_rate,
            actor_entropy_scale=self.actor_entropy_scale,
        )

    def _setup_model(self) -> None:
        if self.actor_grad is None:
            self.actor_grad = "dynamics" if isinstance(self.action_space, spaces.Box) else "reinforce"
        self._check_hyperparameters()
        #: whether the gradient steps run under bfloat16 autocast: ``mixed_precision`` resolved for this device
        self.bfloat16_autocast = resolve_mixed_precision(self.mixed_precision, self.device)
        if self.verbose >= 1:
            precision = "bfloat16 autocast" if self.bfloat16_autocast else "float32"
            print(f"Gradient steps in {precision} (mixed_precision={self.mixed_precision!r} on {self.device})")
        self.replay_buffer_kwargs = {**self.replay_buffer_kwargs, "sequence_length": self.sequence_length}
        super()._setup_model()
        self.return_scale = ReturnScale().to(self.device)
        # The return scale's EMA is restored with the weights when a train() call is undone
        modules = nn.ModuleList([self.policy, self.return_scale]) if self.normalize_returns else self.policy
        self._update_snapshot = UpdateSnapshot(
            modules, (self.policy.world_model_optimizer, self.policy.actor_optimizer, self.policy.critic_optimizer)
        )
        self.actor_lr_schedule = FloatSchedule(self.actor_learning_rate)
        self.critic_lr_schedule = FloatSchedule(self.critic_learning_rate)
        self.actor_entropy_schedule = FloatSchedule(self.actor_entropy_scale)

    def _excluded_save_params(self) -> list[str]:
        return [
            *super()._excluded_save_params(),
            "_acting_state",
            "_episode_starts",
            "_update_snapshot",
            "return_scale",
            "bfloat16_autocast",
        ]

    def _get_torch_save_params(self) -> tuple[list[str], list[str]]:
        state_dicts = ["policy", *OPTIMIZERS]
        if self.normalize_returns:
            state_dicts.append("return_scale")
        return state_dicts, []

    def set_parameters(
        self,
        load_path_or_dict: str | pathlib.Path | io.BufferedIOBase | dict[str, Any],
        exact_match: bool = True,
        device: th.device | str = "auto",
    ) -> None:
        """
        Load the weights and optimizer states of a saved model (see SB3's ``set_parameters``). The return scale's state
        follows ``normalize_returns``: a model saved without it (or before it existed) starts from ``S = 0`` when it
        is on now, and a saved state is ignored when it is off now. Adam's step counters stay on the CPU
        (:func:`keep_steps_on_cpu`).
        """
        if isinstance(load_path_or_dict, dict):
            params = dict(load_path_or_dict)
        else:
            _, params, _ = load_from_zip_file(load_path_or_dict, device=device, load_data=False)
        if self.normalize_returns:
            params.setdefault("return_scale", self.return_scale.state_dict())
        else:
            params.pop("return_scale", None)
        super().set_parameters(params, exact_match, device)
        for optimizer in (self.policy.world_model_optimizer, self.policy.actor_optimizer, self.policy.critic_optimizer):
            keep_steps_on_cpu(optimizer)

    def save(
        self,
        path: str | pathlib.Path | io.BufferedIOBase,
        exclude: Iterable[str] | None = None,
        include: Iterable[str] | None = None,
    ) -> None:
        """
        Save the model, its optimizers and counters in a zip file (see SB3's ``save``). A path is written atomically:
        to a temporary file in the same folder, flushed to disk, then renamed onto the path, so that an interrupted
        save leaves the previous file intact.
        """
        if isinstance(path, io.IOBase):
            super().save(path, exclude, include)
            return
        with atomic_open(path, "zip") as file:
            super().save(file, exclude, include)

    @classmethod
    def load(
        cls: type[SelfDreamerV2],
        path: str | pathlib.Path | io.BufferedIOBase,
        env: GymEnv | None = None,
        device: th.device | str = "auto",
        custom_objects: dict[str, Any] | None = None,
        print_system_info: bool = False,
        force_reset: bool = True,
        **kwargs,
    ) -> SelfDreamerV2:
        """
        Load a model saved by :meth:`save` (see SB3's ``load``) once its zip file is checked to be complete.
        Only load files you trust: the model's attributes are unpickled, which can run code.

        :raises ValueError: naming the file, when it is truncated or corrupted, or not a DreamerV2 model
        """
        check_model_file(path, "DreamerV2 model", ("policy", *OPTIMIZERS))
        try:
            return super().load(path, env, device, custom_objects, print_system_info, force_reset, **kwargs)
        except CORRUPTED_FILE_ERRORS as exc:
            raise corrupted_file_error("DreamerV2 model", path, exc) from exc

    def save_replay_buffer(self, path: str | pathlib.Path | io.BufferedIOBase) -> None:
        """Save the replay buffer in a pickle file, atomically for a path (as :meth:`save`)."""
        if isinstance(path, io.IOBase):
            super().save_replay_buffer(path)
            return
        with atomic_open(path, "pkl") as file:
            super().save_replay_buffer(file)

    def load_replay_buffer(self, path: str | pathlib.Path | io.BufferedIOBase, truncate_last_traj: bool = True) -> None:
        """
        Load a replay buffer saved by :meth:`save_replay_buffer`. Only load files you trust: it is unpickled.

        :param path: the pickle file
        :param truncate_last_traj: unused (``HerReplayBuffer`` only)
        :raises ValueError: naming the file, when it is truncated or corrupted or holds a buffer this model cannot use
        """
        buffer = load_pickle(path, "pkl", "replay buffer")
        if not isinstance(buffer, SequenceReplayBuffer):
            raise ValueError(
                f"Cannot load a replay buffer from {path}: it holds a {type(buffer).__name__}, not a SequenceReplayBuffer"
            )
        found = (buffer.observation_space.shape, buffer.n_envs, buffer.sequence_length)
        expected = (self.observation_space.shape, self.n_envs, self.sequence_length)
        if found != expected:
            raise ValueError(
                f"Cannot load the replay buffer in {path}: its (observation shape, n_envs, sequence_length) = {found} "
                f"differ from the model's {expected}"
            )
        if action_layout(buffer.action_space) != action_layout(self.action_space):
            raise ValueError(
                f"Cannot load the replay buffer in {path}: its action space {buffer.action_space} differs from the "
                f"model's {self.action_space}"
            )
        if buffer.observation_encoding != self.replay_buffer.observation_encoding:
            raise ValueError(
                f"Cannot load the replay buffer in {path}: it stores observations as {buffer.observation_encoding} "
                f"(observation space {buffer.observation_space}), the model as {self.replay_buffer.observation_encoding} "
                f"(observation space {self.observation_space})"
            )
        buffer.device = self.device
        # How to sample is the model's setting; the rows are the buffer's
        buffer.sampling = self.replay_buffer.sampling
        buffer.prioritize_ends = self.replay_buffer.prioritize_ends
        self.replay_buffer = buffer

    def save_checkpoint(self, path: str | os.PathLike, save_env: bool = True) -> None:
        """
        Save all that training needs to continue exactly as if uninterrupted into the directory ``path``:
        ``model.zip`` (weights, optimizers, counters, last observations), ``replay_buffer.pkl`` and ``checkpoint.pkl``
        (random generator states, the acting model state, the envs and the SHA-256 of the two other files).

        The files are written into a new directory beside ``path``, flushed to disk, and ``path``, a symbolic link,
        is then switched to it in one rename (see :func:`~sb3_dreamer.common.save_util.atomic_directory`): a save
        killed at any point leaves ``path`` naming the previous complete checkpoint. Once switched, the previous
        directory and what interrupted saves left behind are removed.

        :param path: the checkpoint (a link to a directory), whose parent directory is created if needed
        :param save_env: save the gym envs, when the env is a ``DummyVecEnv`` (possibly in a ``VecTransposeImage``)
            whose envs can be pickled
        """
        with atomic_directory(path, (CHECKPOINT_MODEL, CHECKPOINT_BUFFER, CHECKPOINT_STATE)) as directory:
            self.save(directory / CHECKPOINT_MODEL)
            self.save_replay_buffer(directory / CHECKPOINT_BUFFER)
            state = {
                "digests": {name: file_digest(directory / name) for name in (CHECKPOINT_MODEL, CHECKPOINT_BUFFER)},
                "rng_states": get_rng_states(self.action_space, self.device),
                "acting_state": None if self._acting_state is None else tuple(x.cpu() for x in self._acting_state),
                "episode_starts": None if self._episode_starts is None else self._episode_starts.cpu(),
                "envs": vec_env_state(self.env) if save_env else None,
            }
            with atomic_open(directory / CHECKPOINT_STATE, "pkl") as file:
                pickle.dump(state, file, protocol=pickle.HIGHEST_PROTOCOL)

    @classmethod
    def load_checkpoint(
        cls: type[SelfDreamerV2],
        path: str | os.PathLike,
        env: GymEnv | None = None,
        device: th.device | str = "auto",
        **kwargs,
    ) -> SelfDreamerV2:
        """
        Load a checkpoint saved by :meth:`save_checkpoint`. Only load checkpoints you trust: they are unpickled.

        With ``env=None`` and envs in the checkpoint, training continues in those envs, mid-episode, with every random
        generator as it was: ``learn(n, reset_num_timesteps=False)`` then gives the weights of an uninterrupted run
        (same device and PyTorch build). Given an ``env``, or with no envs in the checkpoint, the envs are reset at
        the next ``learn``: the weights, optimizers, replay buffer and generators are restored, the episodes restart.

        :param path: the checkpoint directory (or the link to it that :meth:`save_checkpoint` writes)
        :param env: the env to continue in, None for the envs of the checkpoint
        :param device: the device of the model
        :param kwargs: passed to :meth:`load`
        :raises ValueError: naming the file, when a file of the checkpoint is truncated, corrupted, not what it should
            be, or from another save
        """
        # Followed once: a save that switches the link meanwhile does not mix two checkpoints
        directory = pathlib.Path(os.path.realpath(path))
        state = load_pickle(directory / CHECKPOINT_STATE, "pkl", "checkpoint state")
        if not isinstance(state, dict):
            raise ValueError(
                f"Cannot load the checkpoint in {directory}: its {CHECKPOINT_STATE} holds a {type(state).__name__}, not "
                "the dict that save_checkpoint writes"
            )
        missing = [key for key in CHECKPOINT_STATE_KEYS if key not in state]
        if missing:
            raise ValueError(f"Cannot load the checkpoint in {directory}: its {CHECKPOINT_STATE} lacks the keys {missing}")
        for name, digest in state["digests"].items():
            if file_digest(directory / name) != digest:
                raise ValueError(
                    f"Cannot load the checkpoint in {directory}: {name} is not the file its {CHECKPOINT_STATE} was saved "
                    "with (a save was interrupted while overwriting the checkpoint, or the file is corrupted)"
                )
        saved_env = make_vec_env_from_state(state["envs"]) if env is None and state["envs"] is not None else None
        if saved_env is not None:
            env = saved_env
        model = cls.load(directory / CHECKPOINT_MODEL, env=env, device=device, force_reset=saved_env is None, **kwargs)
        model.load_replay_buffer(directory / CHECKPOINT_BUFFER)
        if saved_env is not None and state["acting_state"] is not None:
            saved_env._reset_seeds()  # load() seeded the envs for a reset that does not come: they continue their episodes
            model._acting_state = ActingState(*(x.to(model.device) for x in state["acting_state"]))
            starts = state["episode_starts"]
            model._episode_starts = None if starts is None else starts.to(model.device)
        set_rng_states(state["rng_states"], model.action_space, model.device)
        return model

    def _setup_learn(
        self,
        total_timesteps: int,
        callback: MaybeCallback = None,
        reset_num_timesteps: bool = True,
        tb_log_name: str = "run",
        progress_bar: bool = False,
    ):
        env_is_reset = reset_num_timesteps or self._last_obs is None
        total_timesteps, callback = super()._setup_learn(
            total_timesteps, callback, reset_num_timesteps, tb_log_name, progress_bar
        )
        if env_is_reset:
            # Episodes cut by the reset must not continue into the new ones in the replay buffer
            self.replay_buffer.start_new_episodes()
        if env_is_reset or self._acting_state is None:
            self._acting_state = self.policy.initial_state(self.n_envs)
            self._episode_starts = th.ones(self.n_envs, device=self.device)
        return total_timesteps, callback

    def learn(
        self: SelfDreamerV2,
        total_timesteps: int,
        callback: MaybeCallback = None,
        log_interval: int = LOG_INTERVAL,
        tb_log_name: str = "DreamerV2",
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> SelfDreamerV2:
        """
        Collect ``total_timesteps`` env steps, training every ``train_freq`` steps, as DQN's ``learn``.

        :param total_timesteps: env steps to collect (over all envs)
        :param callback: called at every step, with ``self.locals`` as for DQN
        :param log_interval: episodes between two dumps of the logger (the console table, TensorBoard's ``rollout/``
            and ``train/`` points): 50 by default (SB3's off-policy algorithms use 4), as MinAtar's short episodes
            (tens of steps at first) would otherwise print a table every few dozen steps; the RL Zoo passes its
            ``--log-interval`` only when given one
        :param tb_log_name: name of the TensorBoard run
        :param reset_num_timesteps: start the timestep count (and the TensorBoard run) anew, or continue them
        :param progress_bar: show SB3's progress bar
        :return: the trained model
        """
        return super().learn(
            total_timesteps=total_timesteps,
            callback=callback,
            log_interval=log_interval,
            tb_log_name=tb_log_name,
            reset_num_timesteps=reset_num_timesteps,
            progress_bar=progress_bar,
        )

    def dream(
        self, observations: np.ndarray, actions: np.ndarray, context: int = 5, episode_starts: np.ndarray | None = None
    ) -> np.ndarray:
        """
        Watch the world model dream: it observes the first ``context`` observations, then predicts the rest open loop
        from the actions alone (the mode of its latents), as the TensorBoard diagnostics ``diagnostics/dream`` do; the
        latents of the observed steps are sampled from the posterior, as in training.

        :param observations: (T, N, *obs_shape) image observations as the env returns them, N sequences of T steps
        :param actions: (T, N) or (T, N, *action_shape), ``actions[t]`` taken at ``observations[t]`` as the env takes
            them (the last one is unused)
        :param context: observed steps before the open-loop prediction, 1 <= context <= T
        :param episode_starts: (T, N) True where an episode starts (the model state is reset there); default: at t = 0
        :return: frames (T, N, 3, H', 3 * W') uint8: the truth, the model's decoded state and their absolute error side
            by side, scaled up so that each panel's shorter side is at least 64 pixels
        """
        if len(self.observation_space.shape) != 3:
            raise ValueError(f"dream() needs image observations, not of shape {self.observation_space.shape}")
        observations = np.asarray(observations)
        n_steps = observations.shape[0]
        if not 1 <= context <= n_steps:
            raise ValueError(f"context must be between 1 and the number of steps {n_steps}, got {context}")
        actions = np.asarray(actions)
        if isinstance(self.action_space, spaces.Box):
            actions = self.policy.scale_action(actions)
        # Replay rows hold the action that led to each observation: a_{t-1}, 0 at t = 0
        previous_actions = np.concatenate([np.zeros_like(actions[:1]), actions[:-1]])
        is_first = np.zeros(observations.shape[:2]) if episode_starts is None else np.array(episode_starts, dtype=float)
        is_first[0] = 1.0
        samples = SequenceSamples(
            observations=th.as_tensor(observations, device=self.device),
            actions=th.as_tensor(previous_actions, device=self.device),
            rewards=th.zeros(observations.shape[:2], device=self.device),
            terminated=th.zeros(observations.shape[:2], device=self.device),
            is_first=th.as_tensor(is_first, dtype=th.float32, device=self.device),
        )
        self.policy.set_training_mode(False)
        prediction = open_loop_prediction(
            self.policy, samples, observations.shape[1], context, self.image_likelihood == "bernoulli"
        )
        return dream_frames(prediction).cpu().numpy()

    def _sample_action(
        self, learning_starts: int, action_noise: None = None, n_envs: int = 1
    ) -> tuple[np.ndarray, np.ndarray]:
        """
        Uniformly random actions during warm-up, then the actor's with exploration (epsilon-greedy for ``Discrete``
        actions, Gaussian noise for ``Box`` ones); updates the model state.

        :return: the actions for the env, and for the replay buffer: the same for ``Discrete`` actions, the actions
            in [-1, 1] before their rescaling to the bounds for ``Box`` ones
        """
        if self.num_timesteps < learning_starts:
            env_actions = np.array([self.action_space.sample() for _ in range(n_envs)])
            if isinstance(self.action_space, spaces.Box):
                return env_actions, self.policy.scale_action(env_actions)
            return env_actions, env_actions
        assert self._acting_state is not None
        action_dist = self.policy.action_dist
        exploration = self.exploration_noise if isinstance(self.action_space, spaces.Box) else self.exploration_rate
        with th.inference_mode():
            observations = obs_as_tensor(self._last_obs, self.device)  # type: ignore[arg-type]
            actions, state = self.policy.act(observations, self._acting_state, self._episode_starts)
            actions = action_dist.explore(actions, exploration)
            self._acting_state = state._replace(action=action_dist.to_vector(actions))
        buffer_actions = actions.cpu().numpy()
        return self.policy.to_env(buffer_actions), buffer_actions

    def _store_transition(
        self,
        replay_buffer: ReplayBuffer,
        buffer_action: np.ndarray,
        new_obs: np.ndarray | dict[str, np.ndarray],
        reward: np.ndarray,
        dones: np.ndarray,
        infos: list[dict[str, Any]],
    ) -> None:
        self._check_env_data(new_obs, reward, dones, infos)  # type: ignore[arg-type]
        super()._store_transition(replay_buffer, buffer_action, new_obs, reward, dones, infos)
        # None on the usual step where no episode ends: acting then skips the reset of the model state
        self._episode_starts = self.policy.episode_starts(dones)

    def _check_env_data(self, new_obs: np.ndarray, reward: np.ndarray, dones: np.ndarray, infos: list[dict[str, Any]]) -> None:
        """Stop training on a NaN or infinity in the rewards, or in float observations, before they are stored."""
        quantity, finite = "reward", np.isfinite(reward)
        if finite.all() and np.issubdtype(self.observation_space.dtype, np.floating):
            quantity, finite = "observation", np.isfinite(new_obs).reshape(self.n_envs, -1).all(axis=1)
            for i in np.flatnonzero(dones):
                if infos[i].get("terminal_observation") is not None:
                    finite[i] &= bool(np.isfinite(infos[i]["terminal_observation"]).all())
        if not finite.all():
            bad_envs = np.flatnonzero(~finite).tolist()
            self._raise_non_finite(f"Non-finite {quantity} from env(s) {bad_envs}", [quantity], "before storing it")

    def _check_update(self, metrics: list[dict[str, th.Tensor]], means: dict[str, float]) -> None:
        """
        After the gradient steps of a ``train()`` call: if a loss or gradient norm was not finite, restore the weights
        and optimizer states of before the call and stop training.

        :param metrics: the metrics of each gradient step, on the device
        :param means: their means over the gradient steps, on the host
        """
        quantities = [name for name, value in means.items() if name.endswith(GUARDED_METRICS) and not math.isfinite(value)]
        if not quantities:
            return
        # On the way out only (syncs do not matter here): the first gradient step with a non-finite value, and its values
        step = next((i for i, values in enumerate(metrics) if not all(values[name].isfinite() for name in quantities)), 0)
        quantities = [name for name in quantities if not metrics[step][name].isfinite()] or quantities
        self._update_snapshot.restore()
        self._raise_non_finite(
            f"Non-finite {', '.join(quantities)} in gradient step {self._n_updates + step + 1} "
            f"(step {step + 1} of {len(metrics)} of a train() call)",
            quantities,
            f"with the weights and optimizer states restored to before that train() call (n_updates={self._n_updates})",
        )

    def _raise_non_finite(self, what: str, quantities: list[str], stopped: str) -> NoReturn:
        """
        Save a recovery checkpoint (without the env state) to ``recovery_dir`` and raise :class:`NonFiniteError`.

        :param what: what was not finite, and where
        :param quantities: the names of the non-finite quantities
        :param stopped: where training stopped, for the message
        """
        checkpoint = None
        if self.recovery_dir is None:
            saved = "no recovery checkpoint was saved (recovery_dir=None)"
        else:
            directory = self.recovery_dir
            if os.fspath(directory) == DEFAULT_RECOVERY_DIR:
                directory = os.path.join(directory, f"{time.strftime('%Y%m%d-%H%M%S')}_{os.getpid()}")
            try:
                self.save_checkpoint(directory, save_env=False)
            except Exception as exc:  # the error to report is the non-finite value
                saved = f"saving a recovery checkpoint to {directory} failed ({exc!r})"
            else:
                checkpoint = str(directory)
                saved = f"a recovery checkpoint was saved to {checkpoint} (DreamerV2.load_checkpoint({checkpoint!r}, env))"
        raise NonFiniteError(
            f"{what} at num_timesteps={self.num_timesteps}: training stopped {stopped}; {saved}",
            quantities,
            self.num_timesteps,
            self._n_updates,
            checkpoint,
        )

    def _on_step(self) -> None:
        """After each env step: decay epsilon, update the target critic every ``target_update_interval`` steps."""
        self._n_calls += 1
        self.exploration_rate = self.exploration_schedule(self.num_timesteps)
        if self.target_update_unit == "env_steps" and self._n_calls % max(self.target_update_interval // self.n_envs, 1) == 0:
            self._update_target_critic()
        if isinstance(self.action_space, spaces.Discrete):
            self.logger.record("rollout/exploration_rate", self.exploration_rate)

    def _update_target_critic(self) -> None:
        polyak_update(self.policy.critic.parameters(), self.policy.critic_target.parameters(), self.tau)

    def exploration_schedule(self, num_timesteps: int) -> float:
        """
        Epsilon of the actor's next action after ``num_timesteps`` env steps: ``exploration_initial_eps`` at its first
        step after the ``learning_starts`` random steps, then linear to ``exploration_final_eps`` over
        ``exploration_decay_steps`` env steps (the reference's ``max(0.05, 0.4 - k / 7000)``, k the actor's steps).
        """
        actor_steps = max(num_timesteps - self.learning_starts, 0)
        progress = min(actor_steps / max(self.exploration_decay_steps, 1), 1.0)
        return self.exploration_initial_eps + progress * (self.exploration_final_eps - self.exploration_initial_eps)

    def _update_schedules(self) -> None:
        """Set the learning rates of this training phase from their schedules; log them and the entropy scale."""
        schedules = (
            (self.policy.world_model_optimizer, self.lr_schedule, "world_model"),
            (self.policy.actor_optimizer, self.actor_lr_schedule, "actor"),
            (self.policy.critic_optimizer, self.critic_lr_schedule, "critic"),
        )
        for optimizer, schedule, name in schedules:
            learning_rate = schedule(self._current_progress_remaining)
            update_learning_rate(optimizer, learning_rate)
            self.logger.record(f"train/{name}_learning_rate", learning_rate)
        self.logger.record("train/actor_entropy_scale", self.actor_entropy_schedule(self._current_progress_remaining))

    def train(self, gradient_steps: int, batch_size: int = 50) -> None:
        if not self.replay_buffer.can_sample():
            # Episode replay (replay_buffer_kwargs sampling="episodes") waits for a finished episode of a full window
            self.logger.record("train/waiting_for_episodes", 1)
            return
        self.policy.set_training_mode(True)
        self._update_schedules()
        # Undoes this call's updates if a loss or gradient norm is not finite (checked with the metrics, no extra sync)
        # and if Ctrl-C interrupts it: a model saved then holds weights, optimizer states and n_updates of one update
        self._update_snapshot.take()
        metrics: list[dict[str, th.Tensor]] = []
        try:
            for step in range(gradient_steps):
                samples = self._sample(batch_size)
                world_model_metrics, posterior = self._train_world_model(samples)
                metrics.append({**world_model_metrics, **self._train_actor_critic(posterior, samples.terminated)})
                if self.target_update_unit == "gradient_steps" and (self._n_updates + step) % self.target_update_interval == 0:
                    self._update_target_critic()

            # One device-to-host transfer for all metrics of all gradient steps.
            names = list(metrics[0])
            means = th.stack([th.stack([step[name] for name in names]) for step in metrics]).mean(0).tolist()
            self._check_update(metrics, dict(zip(names, means, strict=True)))
            self._n_updates += gradient_steps
        except KeyboardInterrupt:
            self._update_snapshot.restore()
            raise
        if self.diagnostics_interval > 0 and self._n_updates % self.diagnostics_interval < gradient_steps:
            self._log_diagnostics(samples)
        for name, value in zip(names, means, strict=True):
            self.logger.record(f"train/{name}", value)
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        self.logger.record("train/mixed_precision", int(self.bfloat16_autocast))

    def _sample(self, batch_size: int) -> SequenceSamples:
        """A batch of replayed windows, with the rewards that the world model learns (see ``reward_transform``)."""
        samples = self.replay_buffer.sample(batch_size, env=self._vec_normalize_env)
        transform = REWARD_TRANSFORMS[self.reward_transform]
        return samples if transform is None else samples._replace(rewards=transform(samples.rewards))

    def _log_diagnostics(self, samples: SequenceSamples, n_sequences: int = 4, context: int = 5) -> None:
        """Open-loop predictions of ``n_sequences`` replayed windows after ``context`` observed steps."""
        context = min(context, samples.rewards.shape[0] - 1)
        prediction = open_loop_prediction(
            self.policy, samples, min(n_sequences, samples.rewards.shape[1]), context, self.image_likelihood == "bernoulli"
        )
        squared_error = (prediction.predictions - prediction.observations)[context:].pow(2)
        reward_error = (prediction.predicted_rewards - prediction.rewards)[context:].abs()
        self.logger.record("diagnostics/open_loop_observation_mse", squared_error.flatten(2).sum(-1).mean().item())
        self.logger.record("diagnostics/open_loop_reward_error", reward_error.mean().item())
        self.logger.record("diagnostics/open_loop_reward_sum", prediction.predicted_rewards[context:].sum(0).mean().item())
        self.logger.record("diagnostics/replayed_reward_sum", prediction.rewards[context:].sum(0).mean().item())
        if len(self.observation_space.shape) == 3:
            frames = dream_video(prediction).cpu().numpy()
            write_gif_summary(self.logger, DREAM_TAG, frames, fps=4, step=self.num_timesteps)

    def _autocast(self) -> contextlib.AbstractContextManager:
        """
        The bfloat16 autocast of the gradient steps' forward passes where ``mixed_precision`` chose it, else a no-op
        (not an autocast disabled, which some device types refuse to construct).
        """
        if not self.bfloat16_autocast:
            return contextlib.nullcontext()
        return th.autocast(self.device.type, dtype=th.bfloat16)

    def _train_world_model(self, samples: SequenceSamples) -> tuple[dict[str, th.Tensor], LatentState]:
        """One gradient step of the world model on a batch of sequences; returns metrics and posterior states (N, ...)."""
        with self._autocast():
            loss, metrics, posterior = self._world_model_loss(samples)
        metrics["world_model_grad_norm"] = self._optimizer_step(loss, self.policy.world_model_optimizer)
        return metrics, posterior

    def _world_model_loss(self, samples: SequenceSamples) -> tuple[th.Tensor, dict[str, th.Tensor], LatentState]:
        """
        World-model loss of a batch of sequences.

        :return: the loss, detached metrics, and the detached posterior states flattened to (N, ...) with N = T * B
        """
        world_model, rssm = self.policy.world_model, self.policy.rssm
        _n_steps, n_sequences = samples.rewards.shape
        observations = self.policy.preprocess(samples.observations)  # (T, B, *obs_shape)
        actions = self.policy.action_dist.to_vector(samples.actions)  # (T, B, action_dim)
        embeds = self.policy.embed(observations)  # (T, B, E)
        sequence = rssm.observe(embeds, actions, samples.is_first, rssm.initial_state(n_sequences, self.device))
        posterior = LatentState(sequence.posterior.deter.flatten(0, 1), sequence.posterior.stoch.flatten(0, 1))  # (T * B, ...)

        reconstruction = world_model.decoder(posterior.features())  # (T * B, *obs_shape)
        targets = observations.flatten(0, 1)
        if self.image_likelihood == "normal":
            pixel_losses = 0.5 * (reconstruction - targets).pow(2)
        else:
            pixel_losses = F.binary_cross_entropy_with_logits(reconstruction, targets, reduction="none")
        reconstruction_loss = pixel_losses.flatten(1).sum(-1).mean()
        reward_loss = world_model.reward_dist.loss(world_model.reward_head(posterior), samples.rewards.flatten()).mean()
        discount_loss = F.binary_cross_entropy_with_logits(
            world_model.discount_head(posterior).squeeze(-1), 1.0 - samples.terminated.flatten()
        )
        kl_loss, kl = balanced_kl_loss(
            rssm.latent, sequence.posterior_stats, sequence.prior_stats, self.kl_balance, self.free_nats, self.free_bits
        )
        loss = (
            reconstruction_loss
            + self.reward_scale * reward_loss
            + self.discount_scale * discount_loss
            + self.kl_scale * kl_loss
        )
        with th.no_grad():
            metrics = {
                "world_model_loss": loss.detach(),
                "reconstruction_loss": reconstruction_loss.detach(),
                "reward_loss": reward_loss.detach(),
                "discount_loss": discount_loss.detach(),
                "kl": kl,
                "prior_entropy": rssm.latent.entropy(sequence.prior_stats).mean(),
                "posterior_entropy": rssm.latent.entropy(sequence.posterior_stats).mean(),
            }
        return loss, metrics, LatentState(posterior.deter.detach(), posterior.stoch.detach())

    def imagined_discounts(self, continue_logits: th.Tensor) -> th.Tensor:
        """Discount of each imagined step from the continuation logits (see ``round_discount``), same shape."""
        if self.round_discount:
            return self.gamma * (continue_logits > 0).float()  # logit > 0 <=> probability > 0.5
        return self.gamma * th.sigmoid(continue_logits)

    def _train_actor_critic(self, start: LatentState, start_terminated: th.Tensor) -> dict[str, th.Tensor]:
        """
        One gradient step of actor and critic on trajectories imagined from every posterior state.

        :param start: posterior states, (N, ...) with N = T * B
        :param start_terminated: 1.0 where the start state is terminal, (T, B)
        """
        with self._autocast():
            actor_loss, critic_loss, metrics = self._actor_critic_losses(start, start_terminated)
        metrics["actor_grad_norm"] = self._optimizer_step(actor_loss, self.policy.actor_optimizer)
        metrics["critic_grad_norm"] = self._optimizer_step(critic_loss, self.policy.critic_optimizer)
        return metrics

    def _actor_critic_losses(
        self, start: LatentState, start_terminated: th.Tensor
    ) -> tuple[th.Tensor, th.Tensor, dict[str, th.Tensor]]:
        """Actor and critic losses on trajectories imagined from ``start`` (see :meth:`_train_actor_critic`), metrics."""
        dynamics_gradients = self.actor_grad != "reinforce"
        trajectory = self.policy.imagine(start, self.imagination_horizon, dynamics_gradients)
        rewards, target_values = trajectory.rewards, trajectory.target_values  # (H, N), (H + 1, N)
        discounts = self.imagined_discounts(trajectory.continue_logits)  # (H, N)
        returns = lambda_return(rewards, target_values[1:], discounts, self.return_lambda)  # (H, N)
        with th.no_grad():
            # Weight of each imagined step: the probability that the trajectory is still running, times gamma^t.
            start_continue = 1.0 - start_terminated.flatten()
            weights = th.cumprod(th.cat([start_continue.unsqueeze(0), discounts[:-1]]), dim=0)  # (H, N)

        action_dist, action_params = self.policy.action_dist, trajectory.action_params  # (H, N, param_dim)
        entropy = action_dist.entropy(action_params, trajectory.actions)  # (H, N)
        if self.actor_grad == "dynamics":
            objective = returns
        else:
            action_log_probs = action_dist.log_prob(action_params, trajectory.actions.detach())  # (H, N)
            objective = action_log_probs * (returns - target_values[:-1]).detach()
            if self.actor_grad == "both":
                objective = self.actor_grad_mix * returns + (1.0 - self.actor_grad_mix) * objective
        metrics: dict[str, th.Tensor] = {
            "actor_entropy": entropy.detach().mean(),
            "imagined_reward_mean": rewards.detach().mean(),
            "lambda_return_mean": returns.detach().mean(),
            "lambda_return_std": returns.detach().std(),
        }
        if self.normalize_returns:
            # Both gradients are linear in the returns: dividing the objective divides the advantages and the returns
            scale = self.return_scale.update(returns.detach())  # ()
            objective = objective / scale
            metrics["return_scale"] = scale
        entropy_scale = self.actor_entropy_schedule(self._current_progress_remaining)
        actor_loss = -(weights * (objective + entropy_scale * entropy)).mean()
        value_dist, value_outputs = self.policy.value_dist, trajectory.value_outputs  # (H, N, value_dim)
        critic_loss = (weights * value_dist.loss(value_outputs, returns.detach())).mean()
        metrics["actor_loss"] = actor_loss.detach()
        metrics["critic_loss"] = critic_loss.detach()
        metrics["value_mean"] = value_dist.predict(value_outputs.detach()).mean()
        return actor_loss, critic_loss, metrics

    def _optimizer_step(self, loss: th.Tensor, optimizer: th.optim.Optimizer) -> th.Tensor:
        """Gradients of ``loss`` for the optimizer's parameters only, clipped to ``max_grad_norm``; returns the norm."""
        parameters = [p for group in optimizer.param_groups for p in group["params"]]
        optimizer.zero_grad(set_to_none=True)
        loss.backward(inputs=parameters)
        grad_norm = th.nn.utils.clip_grad_norm_(parameters, self.max_grad_norm)
        if self.weight_decay > 0:
            with th.no_grad():
                th._foreach_mul_(parameters, 1.0 - self.weight_decay)
        optimizer.step()
        return grad_norm

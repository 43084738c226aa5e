"""What the Dreamer policies share: acting with the world model's state, stateful ``predict``, and imagination."""

import inspect
from typing import Any, ClassVar

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import PyTorchObs

from sb3_dreamer.common.checks import check_image_space, check_spaces
from sb3_dreamer.world_model.distributions import ActionDistribution, ScalarDistribution
from sb3_dreamer.world_model.model import ActingState, WorldModel
from sb3_dreamer.world_model.rssm import LatentState, ModelState, SequenceModel, detached, stack_states

#: Arguments of a Dreamer policy's constructor that ``BasePolicy`` or ``_get_constructor_parameters`` handle apart
BASE_POLICY_ARGUMENTS = (
    "self",
    "observation_space",
    "action_space",
    "lr_schedule",
    "normalize_images",
    "optimizer_class",
    "optimizer_kwargs",
)


class DreamerPolicy(BasePolicy):
    """
    A world model and an actor acting on its state ``cat(deter, stoch)``, carried between steps like a recurrent
    policy's. A subclass builds ``world_model``, ``action_dist`` and ``actor`` and stores its options
    (:meth:`option_names`) as attributes of the same names.
    """

    #: the algorithm the policy belongs to, for error messages (``"DreamerV3"``)
    algorithm_name: ClassVar[str]
    observation_space: spaces.Box
    action_space: spaces.Discrete | spaces.Box
    world_model: WorldModel
    action_dist: ActionDistribution
    actor: th.nn.Module
    #: model states (N, ...) -> the critic's outputs (N, value_dist.param_dim)
    critic: th.nn.Module
    #: how the critic's outputs predict the value
    value_dist: ScalarDistribution

    def __init__(
        self,
        observation_space: spaces.Box,
        action_space: spaces.Discrete | spaces.Box,
        encoder_type: str,
        normalize_images: bool,
        optimizer_class: type[th.optim.Optimizer],
        optimizer_kwargs: dict[str, Any] | None,
    ) -> None:
        """
        ``BasePolicy``'s set-up (``Box`` actions squashed to [-1, 1]) and the checks every Dreamer policy makes: the
        spaces, the encoder type (``"cnn"`` or ``"mlp"``) and, for the CNN, the image space.
        """
        super().__init__(
            observation_space,
            action_space,
            normalize_images=normalize_images,
            optimizer_class=optimizer_class,
            optimizer_kwargs=optimizer_kwargs,
            squash_output=isinstance(action_space, spaces.Box),
        )
        check_spaces(self.algorithm_name, observation_space, action_space)
        if encoder_type not in ("cnn", "mlp"):
            raise ValueError(f"Unknown encoder_type {encoder_type!r}: use 'cnn' or 'mlp'")
        if encoder_type == "cnn":
            check_image_space(observation_space)

    @classmethod
    def option_names(cls) -> tuple[str, ...]:
        """The policy's options: the arguments of its family's constructor that it stores and saves itself."""
        # The first constructor up the MRO that names its arguments (CnnPolicy's passes *args, **kwargs on)
        for klass in cls.__mro__:
            parameters = inspect.signature(klass.__init__).parameters  # type: ignore[misc]
            if "lr_schedule" in parameters:
                return tuple(name for name in parameters if name not in BASE_POLICY_ARGUMENTS)
        raise TypeError(f"{cls.__name__} has no constructor that takes lr_schedule")

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update({name: getattr(self, name) for name in self.option_names()})
        data.update(
            lr_schedule=self._dummy_schedule, optimizer_class=self.optimizer_class, optimizer_kwargs=self.optimizer_kwargs
        )
        return data

    def set_training_mode(self, mode: bool) -> None:
        """
        ``BasePolicy``'s, skipped when the policy is in ``mode`` already: ``predict`` calls it at every step, and the
        walk over every submodule took a fifth of a ``predict`` step (no module here behaves differently in either mode).
        """
        if self.training != mode:
            super().set_training_mode(mode)

    @property
    def rssm(self) -> SequenceModel:
        return self.world_model.rssm

    def action_params(self, state: ModelState) -> th.Tensor:
        """Parameters of the actor's distribution at states (N, ...) -> (N, param_dim)."""
        return self.action_dist.params_from_output(self.actor(state))

    def initial_state(self, n_envs: int) -> ActingState:
        """The state of ``n_envs`` agents before their first step."""
        device = self.device
        latent = self.rssm.initial_state(n_envs, device)
        return ActingState(latent.deter, latent.stoch, th.zeros(n_envs, self.action_dist.action_dim, device=device))

    def episode_starts(self, flags: np.ndarray) -> th.Tensor | None:
        """Host flags (N,), True where an episode starts -> :meth:`act`'s ``episode_starts``: 1.0 there, or None."""
        return th.as_tensor(flags, dtype=th.float32, device=self.device) if np.any(flags) else None

    def act(
        self,
        observations: th.Tensor,
        state: ActingState,
        episode_starts: th.Tensor | None,
        deterministic: bool = False,
    ) -> tuple[th.Tensor, ActingState]:
        """
        Update the model state with new observations and pick actions.

        :param observations: raw observations, (N, *obs_shape)
        :param state: state after the previous step, (N, ...)
        :param episode_starts: 1.0 where the observation starts an episode, (N,), or None where none does (the usual
            step, which then skips the reset)
        :param deterministic: use the mode of the latent and of the action distribution
        :return: the policy's actions, (N,) int64 indices for Discrete action spaces or (N, *action_shape) in [-1, 1]
            for Box ones (see :meth:`to_env`), and the new state, whose ``action`` is their action vector
        """
        embeds = self.world_model.embed(self.world_model.preprocess(observations))
        latent = self.rssm.observe_step(state.latent, state.action, embeds, episode_starts, deterministic)
        params = self.action_params(latent)
        vectors = self.action_dist.mode(params) if deterministic else self.action_dist.sample(params)
        return self.action_dist.from_vector(vectors), ActingState(latent.deter, latent.stoch, vectors)

    def to_env(self, actions: np.ndarray) -> np.ndarray:
        """The policy's actions -> the env's: those of a Box space rescaled from [-1, 1] to its bounds, (N, ...)."""
        if isinstance(self.action_space, spaces.Box):
            return np.clip(self.unscale_action(actions), self.action_space.low, self.action_space.high)
        return actions

    def _predict(self, observation: PyTorchObs, deterministic: bool = False) -> th.Tensor:
        """Action of an agent that sees ``observation`` as the first of an episode."""
        n_envs = observation.shape[0]  # type: ignore[union-attr]
        actions, _ = self.act(observation, self.initial_state(n_envs), None, deterministic)  # type: ignore[arg-type]
        return actions

    def predict(
        self,
        observation: np.ndarray | dict[str, np.ndarray],
        state: tuple[np.ndarray, ...] | None = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...] | None]:
        """
        Actions for observations, carrying the model state like a recurrent policy.

        :param observation: one observation (*obs_shape) or a batch of them (n_envs, *obs_shape)
        :param state: ``(deter, stoch, action)`` arrays returned by the previous call, or None to start afresh
        :param episode_start: (n_envs,) True where the observation starts an episode (the state is reset there)
        :param deterministic: use the mode of the latent state and of the action distribution
        :return: actions (within the bounds of a Box action space) and the new state
        """
        self.set_training_mode(False)
        obs_tensor, vectorized_env = self.obs_to_tensor(observation)
        n_envs = obs_tensor.shape[0]  # type: ignore[union-attr]
        with th.inference_mode():
            acting_state = self.initial_state(n_envs) if state is None else self.checked_state(state, n_envs)
            starts = None
            if episode_start is not None:
                flags = np.asarray(episode_start)
                if flags.size != n_envs:
                    raise ValueError(
                        f"predict's episode_start must hold one flag per observation, {n_envs}, got shape {flags.shape}"
                    )
                starts = self.episode_starts(flags.reshape(n_envs))
            actions, acting_state = self.act(obs_tensor, acting_state, starts, deterministic)  # type: ignore[arg-type]
        actions_np = self.to_env(actions.cpu().numpy())
        new_state = tuple(x.cpu().numpy() for x in acting_state)
        if not vectorized_env:
            actions_np = actions_np.squeeze(axis=0)
        return actions_np, new_state

    def checked_state(self, state: tuple[np.ndarray, ...], n_envs: int) -> ActingState:
        """``state`` given to :meth:`predict` for ``n_envs`` observations as tensors, checked; ValueError if not right."""
        expected = ((n_envs, self.rssm.deter_size), (n_envs, self.rssm.stoch_dim), (n_envs, self.action_dist.action_dim))
        shapes = tuple(np.shape(x) for x in state) if isinstance(state, (tuple, list)) else None
        if shapes != expected:
            raise ValueError(
                f"predict's state must be the (deter, stoch, action) arrays of shapes {expected} for these "
                f"{expected[0][0]} observation(s), got {shapes if shapes is not None else type(state).__name__}: "
                "pass the state returned by the previous call on observations of the same batch size, or state=None"
            )
        # Checked on the host arrays: NumPy's check of these small arrays is a third of torch's per-call cost
        for name, array in zip(ActingState._fields, state, strict=True):
            if not np.isfinite(array).all():
                raise ValueError(
                    f"predict's state holds non-finite values in its {name} array: pass a state returned by predict, "
                    "or state=None to start afresh"
                )
        device = self.device  # a walk to the first parameter: once, not per array
        return ActingState(*(th.as_tensor(np.asarray(x), dtype=th.float32, device=device) for x in state))

    def rollout(
        self, start: LatentState, horizon: int, dynamics_gradients: bool
    ) -> tuple[LatentState, ModelState, list[th.Tensor], list[th.Tensor]]:
        """
        Roll the prior forward from ``start`` for ``horizon`` steps with actions sampled from the actor.

        :param start: start states s_0, (N, ...); treated as constants
        :param horizon: number of imagined steps H
        :param dynamics_gradients: keep the graph through the dynamics (the actions' gradients reach the actor through
            them); otherwise the states are constants, categorical ones carried as indices (cheaper heads)
        :return: s_0 (detached), s_1 .. s_H stacked step-major ((H * N, ...)), and the actor's parameters and sampled
            action vectors at s_0 .. s_{H-1}, H x (N, param_dim) and H x (N, action_dim), with gradients to the actor
        """
        model_grad = dynamics_gradients and th.is_grad_enabled()
        index_states = not dynamics_gradients and self.rssm.has_index_samples
        first = detached(start)
        state: ModelState = first
        states: list[ModelState] = []  # s_1 .. s_H
        params, actions = [], []
        for _ in range(horizon):
            # The actor reads the state as a constant (the official stop_gradient(feat)): with dynamics gradients,
            # its gradient reaches it through its sampled actions only.
            params.append(self.action_params(detached(state)))
            actions.append(self.action_dist.sample(params[-1]))
            with th.set_grad_enabled(model_grad):
                action = actions[-1] if dynamics_gradients else actions[-1].detach()
                state = self.rssm.imagine_index_step(state, action) if index_states else self.rssm.imagine_step(state, action)
            states.append(state)
        return first, stack_states(states), params, actions

"""
Checkpoints of a Dreamer algorithm: all that training needs to continue exactly as if uninterrupted, in one folder
that a save killed at any point leaves usable; and the checks of a replay buffer loaded into a model.
"""

import os
import pathlib
import pickle
from typing import TYPE_CHECKING, Any, TypeVar, cast

import torch as th
from stable_baselines3.common.type_aliases import GymEnv
from stable_baselines3.common.vec_env import VecEnv

from sb3_dreamer.common.buffers import SequenceReplayBuffer, action_layout
from sb3_dreamer.common.env_state import capture_env_state, restore_env_state
from sb3_dreamer.common.save_util import (
    atomic_directory,
    atomic_open,
    file_digest,
    get_rng_states,
    load_pickle,
    make_vec_env_from_state,
    set_rng_states,
    vec_env_state,
)
from sb3_dreamer.world_model.model import ActingState

if TYPE_CHECKING:
    from sb3_dreamer.common.base_class import DreamerAlgorithm

SelfModel = TypeVar("SelfModel", bound="DreamerAlgorithm")

#: Files of a checkpoint directory (see :func:`save_checkpoint`)
CHECKPOINT_MODEL, CHECKPOINT_BUFFER, CHECKPOINT_STATE = "model.zip", "replay_buffer.pkl", "checkpoint.pkl"
#: What ``checkpoint.pkl`` holds (and ``env_states``, in checkpoints saved since it exists)
CHECKPOINT_STATE_KEYS = ("digests", "rng_states", "acting_state", "episode_starts", "envs")


def save_checkpoint(
    model: "DreamerAlgorithm", path: str | os.PathLike, save_env: bool = True, evaluation_env: VecEnv | None = None
) -> None:
    """
    Save ``model.zip`` (weights, optimizers, counters, last observations), ``replay_buffer.pkl`` and
    ``checkpoint.pkl`` (random generator states, the acting model state, the envs, the state of the training and
    evaluation envs and the SHA-256 of the two other files) into the checkpoint ``path``.

    The files are written into a new directory beside ``path``, flushed to disk, and ``path``, a symbolic link,
    is then switched to it in one rename (see :func:`~sb3_dreamer.common.save_util.atomic_directory`): a save
    killed at any point leaves ``path`` naming the previous complete checkpoint. Once switched, the previous
    directory and what interrupted saves left behind are removed.

    :param model: the model to save
    :param path: the checkpoint (a link to a directory), whose parent directory is created if needed
    :param save_env: save the gym envs, when the env is a ``DummyVecEnv`` (possibly in a ``VecTransposeImage``)
        whose envs can be pickled
    :param evaluation_env: an evaluation env whose state (:func:`~sb3_dreamer.common.env_state.capture_env_state`)
        the checkpoint keeps besides the training env's
    """
    with atomic_directory(path, (CHECKPOINT_MODEL, CHECKPOINT_BUFFER, CHECKPOINT_STATE)) as directory:
        model.save(directory / CHECKPOINT_MODEL)
        model.save_replay_buffer(directory / CHECKPOINT_BUFFER)
        acting_state, episode_starts = model._acting_state, model._episode_starts
        state = {
            "digests": {name: file_digest(directory / name) for name in (CHECKPOINT_MODEL, CHECKPOINT_BUFFER)},
            "rng_states": get_rng_states(model.action_space, model.device),
            "acting_state": None if acting_state is None else tuple(x.cpu() for x in acting_state),
            "episode_starts": None if episode_starts is None else episode_starts.cpu(),
            "envs": vec_env_state(model.env) if save_env else None,
            "env_states": {"training": capture_env_state(model.env), "evaluation": capture_env_state(evaluation_env)},
        }
        with atomic_open(directory / CHECKPOINT_STATE, "pkl") as file:
            pickle.dump(state, file, protocol=pickle.HIGHEST_PROTOCOL)


def read_checkpoint_state(directory: pathlib.Path) -> dict[str, Any]:
    """
    :return: the ``checkpoint.pkl`` of a checkpoint directory, once checked to hold every key and the digests of the
        files saved with it
    :raises ValueError: naming the file, when it is truncated, corrupted, not what it should be, or from another save
    """
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
    return state


def load_checkpoint(
    cls: type[SelfModel],
    path: str | os.PathLike,
    env: GymEnv | None,
    device: th.device | str,
    evaluation_env: VecEnv | None = None,
    restore_env_states: bool = False,
    **kwargs,
) -> SelfModel:
    """
    Load a checkpoint saved by :func:`save_checkpoint` as a model of class ``cls`` (see ``DreamerV2.load_checkpoint``).

    :param cls: the algorithm
    :param path: the checkpoint directory (or the link to it that :func:`save_checkpoint` writes)
    :param env: the env to continue in, None for the envs of the checkpoint
    :param device: the device of the model
    :param evaluation_env: with ``restore_env_states``, an evaluation env that takes the state of the one saved with
        the checkpoint, if it has one
    :param restore_env_states: give ``env`` (and ``evaluation_env``) the saved envs' state, so that they continue the
        saved episodes (:func:`~sb3_dreamer.common.env_state.restore_env_state`; envs of another kind start anew)
    :param kwargs: passed to ``cls.load``
    """
    # Followed once: a save that switches the link meanwhile does not mix two checkpoints
    directory = pathlib.Path(os.path.realpath(path))
    state = read_checkpoint_state(directory)
    env_states = state.get("env_states") or {}
    saved_env = make_vec_env_from_state(state["envs"]) if env is None and state["envs"] is not None else None
    if saved_env is not None:
        env = saved_env
    into_given_env = restore_env_states and saved_env is None and env is not None and env_states.get("training") is not None
    model = cls.load(
        directory / CHECKPOINT_MODEL, env=env, device=device, force_reset=saved_env is None and not into_given_env, **kwargs
    )
    model.load_replay_buffer(directory / CHECKPOINT_BUFFER)
    # load() was given the env (into_given_env), which model.env wraps
    if into_given_env and not restore_env_state(cast(VecEnv, model.env), env_states["training"]):
        model._last_obs = None  # as load(force_reset=True): the envs start new episodes
        into_given_env = False
    if restore_env_states and evaluation_env is not None and env_states.get("evaluation") is not None:
        restore_env_state(evaluation_env, env_states["evaluation"])
    if (saved_env is not None or into_given_env) and state["acting_state"] is not None:
        if saved_env is not None:
            saved_env._reset_seeds()  # load() seeded the envs for a reset that does not come: they continue their episodes
        model._acting_state = ActingState(*(x.to(model.device) for x in state["acting_state"]))
        starts = state["episode_starts"]
        model._episode_starts = None if starts is None else starts.to(model.device)
    set_rng_states(state["rng_states"], model.action_space, model.device)
    return model


def check_replay_buffer(buffer: Any, model: "DreamerAlgorithm", path: Any) -> SequenceReplayBuffer:
    """
    :param buffer: what the replay buffer file ``path`` held
    :param model: the model that is to use it
    :return: ``buffer``, once checked to be a sequence replay buffer of the model's spaces, envs and windows
    :raises ValueError: naming the file and what differs
    """
    if not isinstance(buffer, SequenceReplayBuffer):
        raise ValueError(
            f"Cannot load a replay buffer from {path}: it holds a {type(buffer).__name__}, not a SequenceReplayBuffer"
        )
    found: tuple[Any, ...] = (buffer.observation_space.shape, buffer.n_envs, buffer.sequence_length)
    expected: tuple[Any, ...] = (model.observation_space.shape, model.n_envs, model.sequence_length)
    if found != expected:
        raise ValueError(
            f"Cannot load the replay buffer in {path}: its (observation shape, n_envs, sequence_length) = {found} "
            f"differ from the model's {expected}"
        )
    found = (buffer.replay_context, buffer.latent_sizes)
    expected = (model.replay_buffer.replay_context, model.replay_buffer.latent_sizes)
    if found != expected:
        raise ValueError(
            f"Cannot load the replay buffer in {path}: its replay context and stored model state sizes "
            f"(replay_context, (deter_size, stoch_dim)) = {found} differ from the model's {expected}"
        )
    if action_layout(buffer.action_space) != action_layout(model.action_space):
        raise ValueError(
            f"Cannot load the replay buffer in {path}: its action space {buffer.action_space} differs from the "
            f"model's {model.action_space}"
        )
    if buffer.observation_encoding != model.replay_buffer.observation_encoding:
        raise ValueError(
            f"Cannot load the replay buffer in {path}: it stores observations as {buffer.observation_encoding} "
            f"(observation space {buffer.observation_space}), the model as {model.replay_buffer.observation_encoding} "
            f"(observation space {model.observation_space})"
        )
    return buffer

"""
The state of a ``DummyVecEnv``'s envs, captured and restored in place: for envs that cannot be pickled whole (the RL
Zoo's ``Monitor`` writes a file), so that a run resumed into new envs of the same kind continues their episodes and
random generators exactly.
"""

import warnings
from typing import Any

import cloudpickle
import gymnasium as gym
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv, VecTransposeImage

#: Attributes that stay those of the env restored into: the file a ``Monitor`` writes to and its start time
KEPT_ATTRIBUTES: dict[type[gym.Env], tuple[str, ...]] = {Monitor: ("results_writer", "t_start")}
#: The ``DummyVecEnv`` attributes that change as its envs step
VEC_ENV_ATTRIBUTES = ("buf_obs", "buf_dones", "buf_rews", "buf_infos", "reset_infos", "_seeds", "_options")


def env_layers(env: gym.Env) -> list[gym.Env]:
    """The wrappers of ``env``, outermost first, then the unwrapped env."""
    layers = [env]
    while isinstance(layers[-1], gym.Wrapper):
        layers.append(layers[-1].env)
    return layers


def _layer_attributes(layer: gym.Env) -> dict[str, Any]:
    """The attributes of one layer that make its state: all but the link to the wrapped env and ``KEPT_ATTRIBUTES``."""
    kept = KEPT_ATTRIBUTES.get(type(layer), ())
    return {name: value for name, value in vars(layer).items() if not isinstance(value, gym.Env) and name not in kept}


def dummy_vec_env(env: VecEnv) -> DummyVecEnv | None:
    """The ``DummyVecEnv`` of ``env``, possibly in a ``VecTransposeImage`` (other wrappers have state of their own)."""
    inner = env.venv if isinstance(env, VecTransposeImage) else env
    return inner if isinstance(inner, DummyVecEnv) else None


def capture_env_state(env: VecEnv | None) -> bytes | None:
    """
    :return: the state of ``env``'s envs (each layer's attributes, the class names of the layers) and of its step
        buffers, pickled, when ``env`` is a ``DummyVecEnv`` (possibly in a ``VecTransposeImage``) whose state can be
        pickled; else None, with a warning where pickling failed
    """
    vec_env = dummy_vec_env(env) if env is not None else None
    if vec_env is None:
        return None
    state = {
        "layers": [[(type(layer).__qualname__, _layer_attributes(layer)) for layer in env_layers(e)] for e in vec_env.envs],
        "vec_env": {name: getattr(vec_env, name) for name in VEC_ENV_ATTRIBUTES},
    }
    try:
        return cloudpickle.dumps(state)
    except Exception as exc:  # what fails to pickle raises PicklingError, TypeError, AttributeError...
        warnings.warn(f"The envs' state cannot be pickled ({exc!r}): the checkpoint does not hold it")
        return None


def restore_env_state(env: VecEnv, state: bytes) -> bool:
    """
    Put the state captured by :func:`capture_env_state` into ``env``, new envs of the same kind (the same wrappers
    around the same env class, as many): each layer takes the captured attributes, the ``DummyVecEnv`` its buffers.

    :return: whether it did; where ``env`` is of another kind it warns, and leaves ``env`` as it was
    """
    vec_env = dummy_vec_env(env)
    captured = cloudpickle.loads(state)
    found = [[type(layer).__qualname__ for layer in env_layers(e)] for e in vec_env.envs] if vec_env is not None else []
    expected = [[name for name, _ in layers] for layers in captured["layers"]]
    if vec_env is None or found != expected:
        kind = found if vec_env is not None else type(env).__name__
        warnings.warn(f"The envs ({kind}) are not of the kind whose state was saved ({expected}): they start anew")
        return False
    for e, layers in zip(vec_env.envs, captured["layers"], strict=True):
        for layer, (_, attributes) in zip(env_layers(e), layers, strict=True):
            vars(layer).update(attributes)
    for name, value in captured["vec_env"].items():
        setattr(vec_env, name, value)
    return True

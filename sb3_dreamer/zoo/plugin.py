"""
RL Zoo plug-in: make ``dreamerv2`` and ``dreamerv3`` ``rl_zoo3`` algorithms like the built-in ones.

:func:`apply` registers DreamerV2 and DreamerV3 in ``rl_zoo3.utils.ALGOS``, their Optuna samplers and converters in
``rl_zoo3.hyperparams_opt``, the MinAtar env ids in Gymnasium and :class:`MinAtarCNN` for ``policy_kwargs``
strings, and patches ``rl_zoo3.exp_manager.ExperimentManager`` so that, for these two only, it reads the
packaged ``hyperparams/<algo>.yml`` by default, rejects misspelt hyperparameters with a clear error and resumes
from a checkpoint (``-i CHECKPOINT/model.zip``, see :class:`sb3_dreamer.ResumeCheckpointCallback`: the envs continue
their episodes and the evaluations fall on the timesteps of an uninterrupted run). Given no ``-conf``,
the baselines (``ppo``, ``dqn``, ``qrdqn``) read the packaged ``hyperparams/<algo>.yml`` for the MinAtar ids, see
:func:`default_config`.
It is applied by the start-up hook ``sb3_dreamer_zoo_hook`` when ``rl_zoo3`` is imported, or by
``python -m sb3_dreamer.zoo``. ``rl_zoo3`` is imported by :func:`apply` only, not by this module.
"""

import difflib
import functools
import inspect
import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stable_baselines3.common.callbacks import EvalCallback
from stable_baselines3.common.policies import BasePolicy

from sb3_dreamer import DreamerV2, DreamerV3
from sb3_dreamer.common.base_class import DreamerAlgorithm
from sb3_dreamer.common.callbacks import ResumeCheckpointCallback
from sb3_dreamer.common.checkpoint import CHECKPOINT_MODEL, CHECKPOINT_STATE
from sb3_dreamer.envs import register_minatar_envs
from sb3_dreamer.envs.registration import GAME_IDS
from sb3_dreamer.zoo.hyperparams_opt import (
    convert_dreamerv2_params,
    convert_dreamerv3_params,
    policy_kwargs_base,
    sample_dreamerv2_params,
    sample_dreamerv3_params,
)
from sb3_dreamer.zoo.torch_layers import MinAtarCNN

if TYPE_CHECKING:
    from rl_zoo3.exp_manager import ExperimentManager

#: The algorithms of this package, by their RL Zoo name
ALGORITHMS: dict[str, type[DreamerAlgorithm]] = {"dreamerv2": DreamerV2, "dreamerv3": DreamerV3}
#: Their Optuna samplers and converters of sampled values
SAMPLERS = {"dreamerv2": sample_dreamerv2_params, "dreamerv3": sample_dreamerv3_params}
CONVERTERS = {"dreamerv2": convert_dreamerv2_params, "dreamerv3": convert_dreamerv3_params}
#: The packaged RL Zoo YAML files, one per algorithm
HYPERPARAMS_DIR = Path(__file__).parent / "hyperparams"
#: The env ids for which the packaged file of another algorithm, if any, replaces the zoo's own
MINATAR_IDS = frozenset(f"{name}{variant}-MinAtar" for name in GAME_IDS.values() for variant in ("", "POMDP"))
#: Constructor arguments that are not hyperparameters (the zoo sets env, tensorboard_log, seed, verbose and device)
NOT_HYPERPARAMETERS = frozenset({"self", "env", "tensorboard_log", "seed", "verbose", "device", "_init_setup_model"})
#: Policy constructor arguments that the algorithm sets itself
POLICY_ARGUMENTS = frozenset({"self", "observation_space", "action_space", "lr_schedule"})
#: Hyperparameters that the zoo evaluates as Python expressions when they are strings
EVALUATED_KEYS = ("policy_kwargs", "replay_buffer_class", "replay_buffer_kwargs")
#: Schedules that a ``lin_<initial value>`` string gives, as the zoo reads ``learning_rate`` (linear to zero at the end)
SCHEDULE_KEYS = ("actor_learning_rate", "critic_learning_rate", "actor_entropy_scale")


def apply() -> None:
    """Register DreamerV2 and DreamerV3 with the RL Zoo (importing ``rl_zoo3``); calling it again does nothing more."""
    from rl_zoo3 import exp_manager, hyperparams_opt, utils

    register_minatar_envs()
    utils.ALGOS.update(ALGORITHMS)
    hyperparams_opt.HYPERPARAMS_SAMPLER.update(SAMPLERS)
    hyperparams_opt.HYPERPARAMS_CONVERTER.update(CONVERTERS)
    # The zoo evaluates policy_kwargs strings in the globals of rl_zoo3.exp_manager
    exp_manager.MinAtarCNN = MinAtarCNN  # type: ignore[attr-defined]
    _patch_experiment_manager(exp_manager.ExperimentManager)


def _patch_experiment_manager(manager_class: "type[ExperimentManager]") -> None:
    """
    Wrap ``__init__``, ``_preprocess_hyperparams``, ``objective``, ``_load_pretrained_agent`` and ``learn``; the
    wrappers change nothing for other algos.
    """
    if getattr(manager_class, "_sb3_dreamer_patched", False):
        return
    init, preprocess, objective = manager_class.__init__, manager_class._preprocess_hyperparams, manager_class.objective
    load_pretrained, learn = manager_class._load_pretrained_agent, manager_class.learn
    init_signature = inspect.signature(init)

    @functools.wraps(init)
    def init_with_default_config(self, *args, **kwargs) -> None:
        arguments = init_signature.bind(self, *args, **kwargs)
        config = default_config(arguments.arguments["algo"], arguments.arguments["env_id"])
        if arguments.arguments.get("config") is None and config is not None:
            arguments.arguments["config"] = str(config)
        init(*arguments.args, **arguments.kwargs)

    @functools.wraps(preprocess)
    def preprocess_with_checks(self, hyperparams: dict[str, Any]) -> tuple:
        if self.algo not in ALGORITHMS:
            return preprocess(self, hyperparams)
        _evaluate_strings(self, hyperparams)
        _parse_schedules(self, hyperparams)
        _default_recovery_dir(self, hyperparams)
        processed = preprocess(self, hyperparams)
        _check_hyperparameters(self, processed[0])
        return processed

    @functools.wraps(objective)
    def objective_with_base(self, trial: Any) -> float:
        if self.algo not in ALGORITHMS:
            return objective(self, trial)
        with policy_kwargs_base(self._hyperparams.get("policy_kwargs") or {}):
            return objective(self, trial)

    @functools.wraps(load_pretrained)
    def load_pretrained_or_checkpoint(self, hyperparams: dict[str, Any], env: Any) -> Any:
        checkpoint = checkpoint_directory(self.trained_agent) if self.algo in ALGORITHMS else None
        if checkpoint is None:
            return load_pretrained(self, hyperparams, env)
        hyperparams = {key: value for key, value in hyperparams.items() if key not in ("policy", "policy_kwargs")}
        model = ALGORITHMS[self.algo].load_checkpoint(
            checkpoint,
            env,
            self.device,
            evaluation_env=_evaluation_env(self.callbacks),
            restore_env_states=True,
            tensorboard_log=self.tensorboard_log,
            verbose=self.verbose,
            **hyperparams,
        )
        print(f"Resuming from the checkpoint in {checkpoint} at {model.num_timesteps} timesteps, to {self.n_timesteps}")
        self._resumed_checkpoint = checkpoint
        return model

    @functools.wraps(learn)
    def learn_resuming(self, model: Any) -> None:
        if self.algo in ALGORITHMS:
            # Checkpoints keep the evaluation env's state too, for a resumed run to evaluate as an uninterrupted one
            for callback in self.callbacks:
                if isinstance(callback, ResumeCheckpointCallback) and callback.evaluation_env is None:
                    callback.evaluation_env = _evaluation_env(self.callbacks)
        if getattr(self, "_resumed_checkpoint", None) is None:
            return learn(self, model)
        self.n_timesteps = max(self.n_timesteps - model.num_timesteps, 0)
        # Callbacks count the run's env steps from its start, so that evaluations (and the zoo's --save-freq
        # checkpoints) fall on the same timesteps as in an uninterrupted run, wherever the checkpoint was taken
        for callback in self.callbacks:
            callback.n_calls = model.num_timesteps // model.n_envs
        # The model behind a proxy, which the zoo's learn takes for the model
        return learn(self, ContinuedLearning(model))  # type: ignore[arg-type]

    # Monkeypatching, which mypy refuses
    manager_class.__init__ = init_with_default_config  # type: ignore[method-assign]
    manager_class._preprocess_hyperparams = preprocess_with_checks  # type: ignore[method-assign]
    manager_class.objective = objective_with_base  # type: ignore[method-assign]
    manager_class._load_pretrained_agent = load_pretrained_or_checkpoint  # type: ignore[method-assign]
    manager_class.learn = learn_resuming  # type: ignore[method-assign]
    manager_class._sb3_dreamer_patched = True  # type: ignore[attr-defined]


def default_config(algo: str, env_id: str) -> Path | None:
    """
    The packaged YAML file that ``rl_zoo3.train --algo <algo> --env <env_id>`` reads when given no ``-conf``: always
    ``<algo>.yml`` for ``dreamerv2`` and ``dreamerv3``; ``<algo>.yml`` for the MinAtar ids if we package one; else
    None, the zoo's own.
    """
    if algo in ALGORITHMS:
        return HYPERPARAMS_DIR / f"{algo}.yml"
    path = HYPERPARAMS_DIR / f"{algo}.yml"
    return path if env_id in MINATAR_IDS and path.is_file() else None


class ContinuedLearning:
    """
    A model as the zoo's ``learn`` sees it: its ``learn(n, ...)`` continues the timestep count, the schedules and the
    TensorBoard run (``reset_num_timesteps=False``), which the zoo does not ask for; everything else is the model's.
    """

    def __init__(self, model: DreamerAlgorithm) -> None:
        self.model = model

    def learn(self, total_timesteps: int, **kwargs) -> DreamerAlgorithm:
        return self.model.learn(total_timesteps, reset_num_timesteps=False, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)


def _evaluation_env(callbacks: list[Any]) -> Any:
    """The env of the zoo's ``EvalCallback`` among ``callbacks``, None without one."""
    return next((callback.eval_env for callback in callbacks if isinstance(callback, EvalCallback)), None)


def checkpoint_directory(trained_agent: str) -> Path | None:
    """The checkpoint directory of ``-i``, when it names the ``model.zip`` of a checkpoint, else None."""
    path = Path(trained_agent)
    if path.name == CHECKPOINT_MODEL and (path.parent / CHECKPOINT_STATE).is_file():
        return path.parent
    return None


def _origin(manager: Any, key: str) -> str:
    """Where the experiment's value of ``key`` comes from, for error messages."""
    source = "--hyperparams" if key in (manager.custom_hyperparams or {}) else manager.config
    return f"{manager.env_name.gym_id} in {source}"


def zoo_eval(expression: str) -> Any:
    """
    A hyperparameter string (e.g. ``policy_kwargs``) evaluated as the zoo evaluates it: in ``rl_zoo3.exp_manager``'s
    globals, where :func:`apply` adds this package's names (e.g. ``MinAtarCNN``).
    """
    from rl_zoo3 import exp_manager

    return eval(expression, vars(exp_manager))


def _evaluate_strings(manager: Any, hyperparams: dict[str, Any]) -> None:
    """Evaluate the ``EVALUATED_KEYS`` strings as the zoo would, with an error that names the culprit."""
    for key in EVALUATED_KEYS:
        if isinstance(hyperparams.get(key), str):
            try:
                hyperparams[key] = zoo_eval(hyperparams[key])
            except Exception as error:
                origin = _origin(manager, key)
                raise ValueError(
                    f"{manager.algo}: invalid {key} {hyperparams[key]!r} for {origin}: {type(error).__name__}: {error}"
                ) from error


def _parse_schedules(manager: Any, hyperparams: dict[str, Any]) -> None:
    """Turn the ``SCHEDULE_KEYS`` strings ``lin_<initial value>`` into the zoo's linear schedules."""
    from rl_zoo3.utils import SimpleLinearSchedule

    for key in SCHEDULE_KEYS:
        value = hyperparams.get(key)
        if not isinstance(value, str):
            continue
        kind, _, initial_value = value.partition("_")
        try:
            schedule = SimpleLinearSchedule(initial_value)
        except ValueError:
            schedule = None
        if kind != "lin" or schedule is None:
            raise ValueError(
                f"{manager.algo}: invalid {key} {value!r} for {_origin(manager, key)}: use a number or 'lin_<initial value>' "
                "(a linear schedule to zero)"
            )
        hyperparams[key] = schedule


def _default_recovery_dir(manager: Any, hyperparams: dict[str, Any]) -> None:
    """Recovery checkpoints in the run's own log folder, ``<save_path>/recovery``, unless the hyperparameters name one."""
    hyperparams.setdefault("recovery_dir", os.path.join(manager.save_path, "recovery"))


def _check_hyperparameters(manager: Any, hyperparams: dict[str, Any]) -> None:
    """Raise a ``ValueError`` naming each hyperparameter (and policy argument) that the algorithm does not accept."""
    algorithm = ALGORITHMS[manager.algo]
    _check_names(hyperparams, _init_arguments(algorithm) - NOT_HYPERPARAMETERS, "hyperparameter {!r}", manager)
    policy_kwargs = hyperparams.get("policy_kwargs")
    if policy_kwargs is None:
        return
    if not isinstance(policy_kwargs, dict):
        origin = _origin(manager, "policy_kwargs")
        raise ValueError(f"{manager.algo}: policy_kwargs must be a dict, got {policy_kwargs!r} for {origin}")
    policy = hyperparams.get("policy")
    policy_class = algorithm.policy_aliases.get(policy, policy) if isinstance(policy, str) else policy
    if isinstance(policy_class, type) and issubclass(policy_class, BasePolicy):
        allowed = _init_arguments(policy_class) - POLICY_ARGUMENTS
        kind = f"{policy_class.__name__} argument {{!r}} in policy_kwargs"
        _check_names(policy_kwargs, allowed, kind, manager, "policy_kwargs")


def _check_names(names: Iterable[str], allowed: frozenset[str], kind: str, manager: Any, key: str | None = None) -> None:
    """
    Raise a ``ValueError`` naming each of ``names`` that is not ``allowed``, with the close matches.

    :param kind: what a name is, a format string such as ``"hyperparameter {!r}"``
    :param key: the hyperparameter that holds the names, if not the names themselves
    """
    problems = []
    for name in sorted(set(names) - allowed):
        matches = difflib.get_close_matches(name, allowed, n=3)
        hint = f" (did you mean {' or '.join(map(repr, matches))}?)" if matches else ""
        problems.append(f"unknown {kind.format(name)}{hint} for {_origin(manager, key or name)}")
    if problems:
        raise ValueError(f"{manager.algo}: {'; '.join(problems)}. Valid names: {', '.join(sorted(allowed))}")


def _init_arguments(cls: type) -> frozenset[str]:
    """Keyword arguments of ``cls(...)``, following ``**kwargs`` up the MRO (e.g. ``CnnPolicy`` -> ``DreamerV2Policy``)."""
    names: set[str] = set()
    for klass in cls.__mro__:
        if "__init__" not in vars(klass):
            continue
        parameters = inspect.signature(klass.__init__).parameters.values()  # type: ignore[misc]
        names.update(p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))
        if not any(p.kind is p.VAR_KEYWORD for p in parameters):
            break
    return frozenset(names)

"""Optuna search spaces of DreamerV2 and DreamerV3 for ``python -m rl_zoo3.train --algo dreamerv2|dreamerv3 -optimize``."""

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import optuna

#: Sampled hyperparameters that are arguments of the policy
POLICY_PARAMS = ("deter_size", "stoch_size", "class_size")
#: Most updates per env step of a trial (``gradient_steps / train_freq``): the packaged MinAtar settings' 5 every 25
MAX_UPDATES_PER_STEP = 5 / 25

_base = threading.local()


@contextmanager
def policy_kwargs_base(policy_kwargs: dict[str, Any]) -> Iterator[None]:
    """
    Within this block and in this thread, :func:`sample_dreamerv2_params` returns ``policy_kwargs`` updated with
    the sampled latent sizes, instead of the sampled sizes alone (which would drop the other policy arguments).

    :param policy_kwargs: policy arguments of the experiment (from the YAML file and ``--hyperparams``)
    """
    _base.policy_kwargs = policy_kwargs
    try:
        yield
    finally:
        del _base.policy_kwargs


def convert_dreamerv2_params(sampled_params: dict[str, Any]) -> dict[str, Any]:
    """
    Sampled values (such as a trial's ``params``) -> DreamerV2 hyperparameters: the latent sizes go to ``policy_kwargs``.

    :param sampled_params: values sampled by :func:`sample_dreamerv2_params`
    :return: keyword arguments of :class:`sb3_dreamer.DreamerV2`
    """
    hyperparams = {name: value for name, value in sampled_params.items() if name not in POLICY_PARAMS}
    hyperparams["policy_kwargs"] = {name: sampled_params[name] for name in POLICY_PARAMS if name in sampled_params}
    return hyperparams


def sample_dreamerv2_params(trial: optuna.Trial, n_actions: int, n_envs: int, additional_args: dict) -> dict[str, Any]:
    """
    Sampler for DreamerV2 hyperparameters: the three learning rates, the train ratio (``train_freq`` env steps
    per ``gradient_steps`` updates), the imagination horizon, the KL and entropy scales and the latent sizes.
    The ranges are centred on the packaged MinAtar values (``hyperparams/dreamerv2.yml``: 2e-4 / 4e-5 / 1e-4, 5 updates
    every 25 env steps, horizon 10, KL scale 0.1, entropy scale 3e-2, 20 x 20 categorical latents, GRU of 200), and a
    trial costs at most what they cost per env step: at most ``MAX_UPDATES_PER_STEP`` updates per env step, latents of
    at most 20 x 20 and a GRU of at most 200 (the batch size is the experiment's: 16 in the packaged file).

    :param trial: the Optuna trial
    :param n_actions: unused (number of continuous actions, for the action noise of other algorithms)
    :param n_envs: unused
    :param additional_args: unused
    :return: keyword arguments of :class:`sb3_dreamer.DreamerV2`
    """
    sampled = {
        "learning_rate": trial.suggest_float("learning_rate", 5e-5, 1e-3, log=True),
        "actor_learning_rate": trial.suggest_float("actor_learning_rate", 1e-5, 3e-4, log=True),
        "critic_learning_rate": trial.suggest_float("critic_learning_rate", 3e-5, 1e-3, log=True),
        "train_freq": trial.suggest_categorical("train_freq", [25, 50]),
        "gradient_steps": trial.suggest_categorical("gradient_steps", [1, 2, 5]),
        "imagination_horizon": trial.suggest_int("imagination_horizon", 5, 15),
        "kl_scale": trial.suggest_float("kl_scale", 0.01, 1.0, log=True),
        # 1e-3 and 3e-3 let the actor's entropy collapse on MinAtar (benchmarks/minatar-100k.md)
        "actor_entropy_scale": trial.suggest_float("actor_entropy_scale", 3e-3, 1e-1, log=True),
        "stoch_size": trial.suggest_categorical("stoch_size", [16, 20]),
        "class_size": trial.suggest_categorical("class_size", [16, 20]),
        "deter_size": trial.suggest_categorical("deter_size", [100, 200]),
    }
    hyperparams = convert_dreamerv2_params(sampled)
    hyperparams["policy_kwargs"] = {**getattr(_base, "policy_kwargs", {}), **hyperparams["policy_kwargs"]}
    return hyperparams


def convert_dreamerv3_params(sampled_params: dict[str, Any]) -> dict[str, Any]:
    """
    Sampled values (such as a trial's ``params``) -> DreamerV3 hyperparameters: all are arguments of the algorithm.

    :param sampled_params: values sampled by :func:`sample_dreamerv3_params`
    :return: keyword arguments of :class:`sb3_dreamer.DreamerV3`
    """
    return dict(sampled_params)


def sample_dreamerv3_params(trial: optuna.Trial, n_actions: int, n_envs: int, additional_args: dict) -> dict[str, Any]:
    """
    Sampler for DreamerV3 hyperparameters around its one configuration (``hyperparams/dreamerv3.yml``): the learning
    rate, the train ratio (one update every 4, 8 or 16 env steps), the imagination horizon, lambda, the entropy scale
    and the KL's free bits. The model size and batch stay the experiment's (``size1m``, 8 x 32 in the packaged file),
    so a trial costs at most what the packaged setting does per env step.

    :param trial: the Optuna trial
    :param n_actions: unused
    :param n_envs: unused
    :param additional_args: unused
    :return: keyword arguments of :class:`sb3_dreamer.DreamerV3`
    """
    sampled = {
        "learning_rate": trial.suggest_float("learning_rate", 1e-5, 3e-4, log=True),
        "train_freq": trial.suggest_categorical("train_freq", [4, 8, 16]),
        "imagination_horizon": trial.suggest_int("imagination_horizon", 10, 20),
        "return_lambda": trial.suggest_categorical("return_lambda", [0.9, 0.95, 0.98]),
        "actor_entropy_scale": trial.suggest_float("actor_entropy_scale", 1e-4, 3e-3, log=True),
        "free_bits": trial.suggest_categorical("free_bits", [0.5, 1.0]),
    }
    return convert_dreamerv3_params(sampled)

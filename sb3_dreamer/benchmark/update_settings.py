"""
What an update of the packaged MinAtar setting is, for the scripts that time updates (``scripts/compiled_losses.py``,
``scripts/inductor_kernels.py``, ``scripts/optimizer_steps.py``), and the whole setting for the scripts that train it
(``scripts/latent_probe.py``): read from the packaged RL Zoo file, so that the measurements follow it.
"""

from typing import Any

import yaml

from sb3_dreamer.zoo import HYPERPARAMS_DIR, apply
from sb3_dreamer.zoo.plugin import zoo_eval

#: the constructor arguments that decide what an update costs: its batch, the networks' sizes, the updates per call
UPDATE_KEYS = ("batch_size", "sequence_length", "gradient_steps", "policy_kwargs")


#: the keys of a zoo entry that are not constructor arguments of the algorithm
ZOO_KEYS = ("n_timesteps", "policy", "n_envs")


def zoo_policy_kwargs(expression: str) -> dict[str, Any]:
    """
    A ``policy_kwargs`` string of an RL Zoo file or command line (a ``dict(...)`` expression), evaluated as the zoo
    evaluates it (:func:`~sb3_dreamer.zoo.plugin.zoo_eval`, after :func:`~sb3_dreamer.zoo.apply` has added this
    package's names).
    """
    apply()
    policy_kwargs = zoo_eval(expression)
    if not isinstance(policy_kwargs, dict):
        raise ValueError(f"policy_kwargs must be a dict(...) expression, got {expression!r}")
    return policy_kwargs


def minatar_settings(algo: str, env_id: str = "Breakout-MinAtar", policy_kwargs: str | None = None) -> dict[str, Any]:
    """
    The constructor arguments of the packaged ``hyperparams/<algo>.yml`` entry for ``env_id`` (one setting for all ten
    MinAtar ids; the entry without :data:`ZOO_KEYS`), ``policy_kwargs`` evaluated as the RL Zoo evaluates it.

    :param algo: ``"dreamerv2"`` or ``"dreamerv3"``
    :param env_id: the entry to read
    :param policy_kwargs: a ``dict(...)`` expression whose entries replace or add to the packaged ``policy_kwargs``
        (a variant's networks, e.g. ``"dict(deter_size=1024, units=128)"``)
    """
    with open(HYPERPARAMS_DIR / f"{algo}.yml") as file:
        settings = {key: value for key, value in yaml.safe_load(file)[env_id].items() if key not in ZOO_KEYS}
    settings["policy_kwargs"] = zoo_policy_kwargs(settings["policy_kwargs"])
    if policy_kwargs is not None:
        settings["policy_kwargs"].update(zoo_policy_kwargs(policy_kwargs))
    return settings


def minatar_update_settings(algo: str, env_id: str = "Breakout-MinAtar", policy_kwargs: str | None = None) -> dict[str, Any]:
    """The :data:`UPDATE_KEYS` of :func:`minatar_settings`."""
    settings = minatar_settings(algo, env_id, policy_kwargs)
    return {key: settings[key] for key in UPDATE_KEYS}

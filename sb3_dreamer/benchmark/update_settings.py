"""
What an update of the packaged MinAtar setting is, for the scripts that time updates (``scripts/compiled_losses.py``,
``scripts/inductor_kernels.py``, ``scripts/optimizer_steps.py``): read from the packaged RL Zoo file, so that the
measurements follow it.
"""

from typing import Any

import yaml

from sb3_dreamer.zoo import HYPERPARAMS_DIR, apply

#: the constructor arguments that decide what an update costs: its batch, the networks' sizes, the updates per call
UPDATE_KEYS = ("batch_size", "sequence_length", "gradient_steps", "policy_kwargs")


def minatar_update_settings(algo: str, env_id: str = "Breakout-MinAtar") -> dict[str, Any]:
    """
    The packaged ``hyperparams/<algo>.yml`` entry's :data:`UPDATE_KEYS` for ``env_id`` (one setting for all ten
    MinAtar ids), ``policy_kwargs`` evaluated as the RL Zoo evaluates it (a ``dict(...)`` expression).

    :param algo: ``"dreamerv2"`` or ``"dreamerv3"``
    :param env_id: the entry to read
    """
    from rl_zoo3 import exp_manager

    apply()  # the names that the zoo's policy_kwargs strings may use (e.g. MinAtarCNN)
    with open(HYPERPARAMS_DIR / f"{algo}.yml") as file:
        entry = yaml.safe_load(file)[env_id]
    settings = {key: entry[key] for key in UPDATE_KEYS}
    # In the namespace where the zoo evaluates them (rl_zoo3.exp_manager's globals)
    settings["policy_kwargs"] = eval(settings["policy_kwargs"], vars(exp_manager))
    return settings

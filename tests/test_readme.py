"""
Every Python and shell block of the README runs, with tiny budgets, so that a pasted snippet works.

Python blocks run in order in one namespace (later blocks use what earlier ones made), with ``learn`` capped at a few
hundred steps and MinAtar episodes at 200 steps (an untrained agent may otherwise play up to the 10,000-step limit).
Shell blocks run command by command in one folder, with the budgets, trial counts, seeds and output folders of
:data:`SHELL_BUDGETS`; installation, test and ``export`` lines are not run.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import pytest

from sb3_dreamer import DreamerV2
from sb3_dreamer.envs.registration import GAME_IDS

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
#: env steps a README ``learn`` call or zoo run gets here
TINY_BUDGET = 300
#: lines of shell blocks that are not run here: installing, testing, environment settings
NOT_RUN = ("pip ", "pytest", "export ", "#")
#: (pattern, replacement) applied in order to each shell command: tiny budgets, one seed and env, output under the
#: test's folder
SHELL_BUDGETS = (
    (r" -n \d+", ""),
    (r"(python -m (?:rl_zoo3|sb3_dreamer\.zoo)\.? ?train .*)", rf"\1 -n {TINY_BUDGET}"),
    (r"(python -m (?:rl_zoo3|sb3_dreamer\.zoo)\.? ?(?:enjoy|record_video) .*)", r"\1 -n 50"),
    (r"--n-trials \d+", "--n-trials 2 --env-kwargs max_episode_steps:200"),
    (r"save_freq=\d+", "save_freq=100"),
    (r"python scripts/", f"{sys.executable} {REPO}/scripts/"),
    (r"^python ", f"{sys.executable} "),
    (r"--seeds( \d+)+", "--seeds 0"),
    (r"--envs (\S+)( [A-Z]\S+)*", r"--envs \1"),
    (r" --(?:frames|eval-freq|eval-episodes) \d+", ""),
    (r"--processes \d+", "--processes 1"),
    (r"--root \S+", "--root bench --quick"),
)


def readme_blocks(language: str) -> list[str]:
    """The README's fenced blocks of ``language``, in order."""
    return re.findall(rf"^```{language}\n(.*?)^```", README.read_text(), flags=re.S | re.M)


def shell_commands() -> list[str]:
    """The README's shell commands (continuation lines joined), in order, without the ones not run."""
    commands: list[str] = []
    for block in readme_blocks("bash"):
        for command in block.replace("\\\n", " ").splitlines():
            command = " ".join(command.split())
            if command and not command.startswith(NOT_RUN):
                commands.append(command)
    return commands


def with_tiny_budget(command: str) -> str:
    for pattern, replacement in SHELL_BUDGETS:
        command = re.sub(pattern, replacement, command)
    return command


def tiny_shell_commands() -> list[str]:
    """:func:`shell_commands` with tiny budgets, each once."""
    return list(dict.fromkeys(map(with_tiny_budget, shell_commands())))


def test_readme_has_blocks_of_both_kinds():
    assert len(readme_blocks("python")) >= 4 and len(shell_commands()) >= 8


def test_python_blocks(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    learn = DreamerV2.learn
    monkeypatch.setattr(
        DreamerV2,
        "learn",
        lambda self, total_timesteps, *args, **kwargs: learn(self, min(total_timesteps, TINY_BUDGET), *args, **kwargs),
    )
    for name in GAME_IDS.values():
        for env_id in (f"{name}-MinAtar", f"{name}POMDP-MinAtar"):
            monkeypatch.setattr(gym.spec(env_id), "max_episode_steps", 200)
    namespace: dict = {}
    for block in readme_blocks("python"):
        exec(compile(block, str(README), "exec"), namespace)
    assert isinstance(namespace["model"], DreamerV2)


@pytest.mark.timeout(900)
def test_shell_blocks(tmp_path):
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    for command in tiny_shell_commands():
        result = subprocess.run(command, shell=True, cwd=tmp_path, env=environment, capture_output=True, text=True)
        assert result.returncode == 0, f"{command}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"

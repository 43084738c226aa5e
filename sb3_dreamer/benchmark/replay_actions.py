"""
What the world model of a run has seen done: the actions in the run's replay buffer, by the frames they were collected
at. A world model learns what an action does only from replayed steps that took it, so an actor that commits to one
action (Freeway's "up") leaves its world model no new data of the others, and its imagination no way to tell them apart.

The replay buffer is the one of the run's latest checkpoint (``checkpoint/replay_buffer.pkl``: of a finished run, its
last; checkpoints are not committed, so only on the machine that trained it). Each env step of the buffer (first rows,
which hold an episode's reset observation and no action, left out) counts at the frame it was collected at, counted
back from the checkpoint's; the actions are those the agent chose (an env's sticky actions may have executed another).

Per run and bin of frames, a row of a markdown table: the share of each action of the action space (Discrete only; by
the env's names of its actions where it has them, as ALE's and MinAtar's envs do) and the entropy of these shares in
nats (ln(n) for uniform actions, 0 for one action).

Usage:
  python scripts/replay_actions.py --root benchmarks/minatar-100k --algos dreamerv3@width2x --envs Freeway-MinAtar
"""

import argparse
import json
import sys
import zipfile
from pathlib import Path

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from sb3_dreamer.benchmark.layout import CHECKPOINT_DIR, RUNS_DIR, Run, add_run_selection, selected_runs
from sb3_dreamer.common.buffers import SequenceReplayBuffer
from sb3_dreamer.common.checkpoint import CHECKPOINT_BUFFER, CHECKPOINT_MODEL
from sb3_dreamer.common.save_util import load_pickle


def collection_frames(buffer: SequenceReplayBuffer, frames: int) -> tuple[np.ndarray, np.ndarray]:
    """
    The env steps of ``buffer`` with the frame each was collected at.

    :param frames: the env frames (``num_timesteps``, over all envs) when the buffer was saved
    :return: the actions, (steps,), and the frame of each, (steps,): the number of frames collected before it (env
        ``e``'s newest step at ``frames - n_envs + e``); env by env, oldest first
    """
    if not isinstance(buffer.action_space, spaces.Discrete):
        raise ValueError(f"the action shares need a Discrete action space, got {buffer.action_space}")
    actions, collected = [np.zeros(0, dtype=np.int64)], [np.zeros(0, dtype=np.int64)]
    if buffer.actions is None or buffer.is_first is None:  # nothing added yet
        return actions[0], collected[0]
    for env_index in range(buffer.n_envs):
        slots = buffer.write_indices(env_index) % buffer.buffer_size
        steps = slots[~buffer.is_first[env_index, slots]]
        # Env steps of all envs advance together: the k-th newest of each env came k * n_envs frames before the end
        newest_first = np.arange(len(steps))[::-1]
        actions.append(buffer.actions[env_index, steps].astype(np.int64) - int(buffer.action_space.start))
        collected.append(frames - buffer.n_envs * (newest_first + 1) + env_index)
    return np.concatenate(actions), np.concatenate(collected)


def action_shares(actions: np.ndarray, frames: np.ndarray, n_actions: int, bin_frames: int) -> list[tuple[int, np.ndarray]]:
    """
    :param actions: action indices, (steps,)
    :param frames: the frame of each, (steps,)
    :return: for each bin of ``bin_frames`` frames that holds steps, in order, its first frame and the share of each
        action among its steps, (n_actions,)
    """
    bins = frames // bin_frames
    return [
        (int(index) * bin_frames, np.bincount(actions[bins == index], minlength=n_actions) / np.sum(bins == index))
        for index in np.unique(bins)
    ]


def entropy(shares: np.ndarray) -> float:
    """The entropy of a distribution in nats, 0 log 0 = 0."""
    positive = shares[shares > 0]
    return float(-np.sum(positive * np.log(positive)))


def checkpoint_frames(model_path: Path) -> int:
    """The ``num_timesteps`` that an SB3 ``model.zip`` was saved at, read from its JSON data alone."""
    with zipfile.ZipFile(model_path) as archive:
        return int(json.loads(archive.read("data"))["num_timesteps"])


def action_names(env_id: str, n_actions: int) -> list[str]:
    """The names that ``env_id``'s env gives its actions (``get_action_meanings``), else ``action 0``, ``action 1``, ..."""
    env = gym.make(env_id)
    get_action_meanings = getattr(env.unwrapped, "get_action_meanings", None)
    env.close()
    return get_action_meanings() if get_action_meanings is not None else [f"action {index}" for index in range(n_actions)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_selection(parser)
    parser.add_argument("--bin", type=int, default=10_000, dest="bin_frames", help="frames a row")
    args = parser.parse_args(argv)
    if args.bin_frames <= 0:
        parser.error(f"--bin must be a positive number of frames, got {args.bin_frames}")
    runs = selected_runs(args.root, args.algos, args.envs, args.seeds)

    def checkpoint(run: Run) -> Path:
        return run.directory(args.root) / CHECKPOINT_DIR

    with_buffer = [run for run in runs if (checkpoint(run) / CHECKPOINT_BUFFER).is_file()]
    if not with_buffer:
        raise SystemExit(f"no run under {args.root / RUNS_DIR} that matches the selection has its replay buffer here")
    for run in with_buffer:
        buffer = load_pickle(checkpoint(run) / CHECKPOINT_BUFFER, "pkl", "replay buffer")
        frames = checkpoint_frames(checkpoint(run) / CHECKPOINT_MODEL)
        actions, collected = collection_frames(buffer, frames)
        n_actions = int(buffer.action_space.n)
        print(f"\n{run} (checkpoint at {frames} frames)\n")
        print(f"| frames | {' | '.join(action_names(run.env, n_actions))} | entropy (nats) |")
        print(f"|---|{'---:|' * (n_actions + 1)}")
        for start, shares in action_shares(actions, collected, n_actions, args.bin_frames):
            cells = " | ".join(f"{share:.3f}" for share in shares)
            print(f"| {start}-{start + args.bin_frames} | {cells} | {entropy(shares):.3f} |", flush=True)
    for run in runs:
        if run not in with_buffer:
            print(f"{run}: no replay buffer here (trained elsewhere: checkpoints are not committed)", file=sys.stderr)

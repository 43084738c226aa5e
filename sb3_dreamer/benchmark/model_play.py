"""
Benchmark runs' final models playing episodes with their world models' states at every step: what the diagnostics
of what imagination sees (``scripts/reward_prediction.py``, ``scripts/freeway_hits.py``) read, and their shared
command line, a markdown table with a row a run.
"""

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar, cast

import numpy as np
import torch as th
from rl_zoo3 import ALGOS
from stable_baselines3.common.utils import set_random_seed
from stable_baselines3.common.vec_env import VecEnv

from sb3_dreamer.benchmark.final_eval import zoo_test_env
from sb3_dreamer.benchmark.grid import FINAL_EVAL_SEED_OFFSET
from sb3_dreamer.benchmark.layout import CHECKPOINT_DIR, RUNS_DIR, Run, add_run_selection, selected_runs
from sb3_dreamer.common.base_class import DreamerAlgorithm
from sb3_dreamer.world_model.rssm import LatentState
from sb3_dreamer.zoo import apply

#: a diagnostic's measurement: (final model, its one-env test env, episodes, deterministic) -> its row's cells
Measure = Callable[[DreamerAlgorithm, VecEnv, int, bool], Sequence[str]]
#: what a diagnostic's episodes record
Predictions = TypeVar("Predictions")


def table_measure(
    play: Callable[[DreamerAlgorithm, VecEnv, int, bool], Predictions],
    summary: Callable[[Predictions], dict[str, float]],
    cells: Callable[[dict[str, float]], list[str]],
) -> Measure:
    """A diagnostic's measurement: the model plays its episodes (``play``), summed up into its row's cells."""

    def measure(model: DreamerAlgorithm, env: VecEnv, episodes: int, deterministic: bool) -> list[str]:
        return cells(summary(play(model, env, episodes, deterministic)))

    return measure


@dataclass(frozen=True)
class ModelStep:
    """One env step of the episodes a model plays, with the model's states around it (a batch of one each)."""

    #: the frame that the model acted on, (*obs_shape)
    observation: np.ndarray
    #: the action taken, as the env reads it, (1,)
    action: np.ndarray
    reward: float
    #: whether the episode ended with this step
    done: bool
    #: the frame that arrived with the reward (the episode's last one where it ended), (*obs_shape)
    arrived: np.ndarray
    #: the state that acted: the posterior of ``observation``
    acting: LatentState
    #: one sequence-model step from ``acting`` and the action, the prior's most likely latent: what imagination sees
    prior: LatentState
    #: after observing ``arrived``, the most likely latent: what the model recognises
    posterior: LatentState


def play_steps(
    model: DreamerAlgorithm, env: VecEnv, episodes: int, record: Callable[[ModelStep], None], deterministic: bool = False
) -> np.ndarray:
    """
    Play ``episodes`` episodes of ``model`` (its sampled policy, as in training; ``deterministic``: the modes) on the
    one-env ``env``, calling ``record`` after every env step, in inference mode (so it can apply the model's networks
    to the step's states) and before the env's next step (so it can read the env's state).

    :return: the return of each episode, (episodes,)
    """
    if env.num_envs != 1:
        raise ValueError(f"play reads one env, got a VecEnv of {env.num_envs}")
    policy = model.policy
    policy.set_training_mode(False)
    world_model, rssm = policy.world_model, policy.rssm
    episode_returns: list[float] = []

    def as_tensor(observation: np.ndarray) -> th.Tensor:
        """One observation or a VecEnv's batch of one -> (1, *obs_shape)."""
        return cast(th.Tensor, policy.obs_to_tensor(observation)[0])

    observation = cast(np.ndarray, env.reset())  # images or vectors: no dict spaces
    state, starts, episode_return = policy.initial_state(1), policy.episode_starts(np.ones(1, dtype=bool)), 0.0
    with th.inference_mode():
        while len(episode_returns) < episodes:
            actions, state = policy.act(as_tensor(observation), state, starts, deterministic)
            env_actions = policy.to_env(actions.cpu().numpy())
            next_observations, reward, done, infos = env.step(env_actions)
            next_observation = cast(np.ndarray, next_observations)
            # The observation that arrived with the reward: the episode's last one where the VecEnv has reset
            arrived = infos[0]["terminal_observation"] if done[0] else next_observation[0]
            embed = world_model.embed(world_model.preprocess(as_tensor(arrived)))
            after = rssm.observe_step(state.latent, state.action, embed, None, deterministic=True)
            # The prior of the same recurrent state: what imagine_step would give, without its second recurrent step
            before = LatentState(after.deter, rssm.latent.sample(rssm.prior(after.deter), deterministic=True))
            step_reward = float(reward[0])
            record(ModelStep(observation[0], env_actions, step_reward, bool(done[0]), arrived, state.latent, before, after))
            episode_return += step_reward
            observation, starts = next_observation, policy.episode_starts(done)
            if done[0]:
                episode_returns.append(episode_return)
                episode_return = 0.0
    return np.array(episode_returns)


def rank_auc(positives: np.ndarray, negatives: np.ndarray) -> float:
    """P(a value of ``positives`` > one of ``negatives``), ties counted half; NaN where either is empty."""
    if not (positives.size and negatives.size):
        return float("nan")
    ordered = np.sort(negatives)
    below = np.searchsorted(ordered, positives, side="left")
    not_above = np.searchsorted(ordered, positives, side="right")
    return float(np.mean(below + not_above) / (2 * negatives.size))


def share_above_zero(values: np.ndarray) -> float:
    """The share of ``values`` above 0, ties (0) counted half; NaN where there are none."""
    return float(((values > 0) + 0.5 * (values == 0)).mean()) if values.size else float("nan")


def model_file(root: Path, run: Run, checkpoint: bool = False) -> Path | None:
    """
    ``run``'s final model, or with ``checkpoint`` its latest checkpoint's (of a run still training, or stopped), where
    this machine has it (models and checkpoints are not committed), else None.
    """
    if not run.parts(root):
        return None
    path = run.directory(root) / CHECKPOINT_DIR / "model.zip" if checkpoint else run.final_model(root)
    return path if path.is_file() else None


def load_model(root: Path, run: Run, what: str, checkpoint: bool = False) -> tuple[DreamerAlgorithm, VecEnv]:
    """
    ``run``'s final model (or its latest checkpoint's, :func:`model_file`) and the zoo's test env of its saved
    settings, seeded as its final score (torch and NumPy too).

    :param what: what the model is to predict, for the error where it has no world model
    """
    model_path = model_file(root, run, checkpoint)
    if model_path is None:
        raise FileNotFoundError(f"{run}: no {'checkpoint' if checkpoint else 'final model'} on this machine")
    model = ALGOS[run.zoo_algo].load(model_path, device="cpu")
    if not isinstance(model, DreamerAlgorithm):
        raise SystemExit(f"{run}: {run.zoo_algo} has no world model to predict {what} with")
    return model, final_score_env(root, run)


def final_score_env(root: Path, run: Run) -> VecEnv:
    """The zoo's test env of ``run``'s saved settings, seeded as its final score (torch and NumPy too)."""
    seed = run.seed + FINAL_EVAL_SEED_OFFSET
    # The zoo's settings of the run's last part, beside the final model that part saves
    env = zoo_test_env(run.final_model(root), run.env, seed)
    set_random_seed(seed)
    return env


def final_model_table(argv: list[str] | None, description: str, what: str, columns: Sequence[str], measure: Measure) -> None:
    """
    The command line of a diagnostic of final models: select runs (``--root``, ``--algos``, ``--envs``, ``--seeds``),
    play ``--episodes`` episodes with each final model on this machine (``--checkpoint``: each latest checkpoint's)
    and print a markdown table, a row a run (with the model's env frames, ``frames``).

    :param what: what the models predict, for the error where a run has no world model
    :param columns: the table's columns after the run's
    """
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_selection(parser)
    parser.add_argument("--episodes", type=int, default=20, help="episodes each final model plays")
    parser.add_argument("--deterministic", action="store_true", help="play the modes (the final score's episodes)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--checkpoint", action="store_true", help="play each run's latest checkpoint, not its final model")
    args = parser.parse_args(argv)
    if args.episodes <= 0:
        parser.error(f"--episodes must be a positive number, got {args.episodes}")
    apply()  # dreamerv2 and dreamerv3 in the zoo's ALGOS, and the MinAtar ids
    th.set_num_threads(args.threads)
    runs = selected_runs(args.root, args.algos, args.envs, args.seeds)
    model = "checkpoint" if args.checkpoint else "final model"
    with_model = [run for run in runs if model_file(args.root, run, args.checkpoint) is not None]
    if not with_model:
        raise SystemExit(f"no run under {args.root / RUNS_DIR} that matches the selection has its {model} here")
    print(f"| algo | env | seed | frames | {' | '.join(columns)} |")
    print(f"|---|---|---:|---:|{'---:|' * len(columns)}")
    for run in with_model:
        played, env = load_model(args.root, run, what, args.checkpoint)
        cells = measure(played, env, args.episodes, args.deterministic)
        print(f"| {run.algo} | {run.env} | {run.seed} | {played.num_timesteps} | {' | '.join(cells)} |", flush=True)
    for run in runs:
        if run not in with_model:
            print(f"{run}: no {model} here (trained elsewhere: models and checkpoints are not committed)", file=sys.stderr)

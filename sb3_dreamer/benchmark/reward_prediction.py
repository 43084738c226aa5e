"""
How well a benchmark run's final world model predicts the rewards of its own episodes: where imagination can see the
rewards that its actor learns from, and where the world model knows only how often they come.

The run's final model plays ``--episodes`` episodes (its sampled policy, as in training; ``--deterministic``: the
modes, which replays the episodes of its final score) on the zoo's test env of the run's saved settings, seeded as
the final score's. At each env step it records the reward that arrived with the new observation and the reward head's
prediction of it from two states:

- the prior: one step of the sequence model from the previous state and the action taken, with the prior's most
  likely latent: what an imagined trajectory sees, before the observation;
- the posterior: the state after observing the new frame (the most likely latent): what the model recognises.

It also records the critic's value of the state that acted (the posterior of the frame before the reward arrived),
which DreamerV3's critic also learns from the replayed rewards themselves (``replay_critic_scale``).

Per run, a row of a markdown table: the mean return of the episodes played, the share of steps with a reward, the
prior's mean prediction at those steps (alone, and summed with the two steps either side, for a reward predicted a
step early or late) and at the others, the predicted reward over the real one, summed over all steps, and the AUC of
each state's prediction (the probability that a rewarded step's prediction exceeds an unrewarded one's, ties counted
half: 0.5 for a prediction that does not tell them apart, 1 for one that always does), and the AUC of the critic's
value of the acting state by the same rule. For sparse non-negative rewards, as MinAtar's 0 or 1 a step.

Usage:
  python scripts/reward_prediction.py --root benchmarks/minatar-100k --algos dreamerv3 --envs Asterix-MinAtar \\
      Breakout-MinAtar --seeds 2 --episodes 30
"""

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch as th
from rl_zoo3 import ALGOS
from stable_baselines3.common.utils import set_random_seed
from stable_baselines3.common.vec_env import VecEnv

from sb3_dreamer.benchmark.final_eval import zoo_test_env
from sb3_dreamer.benchmark.grid import FINAL_EVAL_SEED_OFFSET
from sb3_dreamer.benchmark.layout import RUNS_DIR, Run, add_run_selection, selected_runs
from sb3_dreamer.common.base_class import DreamerAlgorithm
from sb3_dreamer.world_model.rssm import LatentState
from sb3_dreamer.zoo import apply

#: steps either side of a rewarded step whose predictions the windowed column adds
WINDOW_STEPS = 2
COLUMNS = (
    "episodes",
    "mean return",
    "rewarded steps",
    "prior at rewarded steps",
    f"prior, +-{WINDOW_STEPS} steps summed",
    "prior elsewhere",
    "predicted / real reward",
    "prior AUC",
    "posterior AUC",
    "value AUC",
)


@dataclass(frozen=True)
class RewardPredictions:
    """The played episodes' steps (steps,): the rewards that arrived, and the reward head's predictions of them."""

    rewards: np.ndarray
    #: from the prior state (before the observation)
    prior: np.ndarray
    #: from the posterior state (after it)
    posterior: np.ndarray
    #: the critic's value of the state that took the action the reward followed
    values: np.ndarray
    #: return of each episode, (episodes,)
    episode_returns: np.ndarray


def play(model: DreamerAlgorithm, env: VecEnv, episodes: int, deterministic: bool = False) -> RewardPredictions:
    """``episodes`` episodes of ``model`` on the one-env ``env``, with the reward head's predictions of every reward."""
    if env.num_envs != 1:
        raise ValueError(f"play reads one env, got a VecEnv of {env.num_envs}")
    policy = model.policy
    policy.set_training_mode(False)
    world_model, rssm = policy.world_model, policy.rssm
    rewards: list[float] = []
    prior: list[float] = []
    posterior: list[float] = []
    values: list[float] = []
    episode_returns: list[float] = []

    def as_tensor(observation: Any) -> th.Tensor:
        """One observation or a VecEnv's batch of one (images, vectors: no dict spaces) -> (1, *obs_shape)."""
        return cast(th.Tensor, policy.obs_to_tensor(observation)[0])

    observation = env.reset()
    state, starts, episode_return = policy.initial_state(1), policy.episode_starts(np.ones(1, dtype=bool)), 0.0
    with th.inference_mode():
        while len(episode_returns) < episodes:
            actions, state = policy.act(as_tensor(observation), state, starts, deterministic)
            values.append(policy.value_dist.predict(policy.critic(state.latent)).item())
            observation, reward, done, infos = env.step(policy.to_env(actions.cpu().numpy()))
            # The observation that arrived with the reward: the episode's last one where the VecEnv has reset
            arrived = infos[0]["terminal_observation"] if done[0] else observation
            embed = world_model.embed(world_model.preprocess(as_tensor(arrived)))
            after = rssm.observe_step(state.latent, state.action, embed, None, deterministic=True)
            # The prior of the same recurrent state: what imagine_step would give, without its second recurrent step
            before = LatentState(after.deter, rssm.latent.sample(rssm.prior(after.deter), deterministic=True))
            rewards.append(float(reward[0]))
            prior.append(world_model.reward(before).item())
            posterior.append(world_model.reward(after).item())
            episode_return += float(reward[0])
            starts = policy.episode_starts(done)
            if done[0]:
                episode_returns.append(episode_return)
                episode_return = 0.0
    return RewardPredictions(*(np.array(column) for column in (rewards, prior, posterior, values, episode_returns)))


def rank_auc(positives: np.ndarray, negatives: np.ndarray) -> float:
    """P(a value of ``positives`` > one of ``negatives``), ties counted half; NaN where either is empty."""
    if not (positives.size and negatives.size):
        return float("nan")
    ordered = np.sort(negatives)
    below = np.searchsorted(ordered, positives, side="left")
    not_above = np.searchsorted(ordered, positives, side="right")
    return float(np.mean(below + not_above) / (2 * negatives.size))


def summary(predictions: RewardPredictions) -> dict[str, float]:
    """The table's columns (:data:`COLUMNS`) for one run's predictions."""
    rewards, prior, posterior = predictions.rewards, predictions.prior, predictions.posterior
    if (rewards < 0).any():
        raise ValueError(f"the reward-prediction table reads non-negative rewards, got {rewards.min():g}")
    rewarded = rewards > 0
    windowed = np.convolve(prior, np.ones(2 * WINDOW_STEPS + 1), mode="same")
    at_rewards = (prior[rewarded].mean(), windowed[rewarded].mean()) if rewarded.any() else (np.nan, np.nan)
    values = (
        len(predictions.episode_returns),
        predictions.episode_returns.mean(),
        rewarded.mean(),
        *at_rewards,
        prior[~rewarded].mean() if (~rewarded).any() else np.nan,
        prior.sum() / rewards.sum() if rewards.sum() > 0 else np.nan,
        rank_auc(prior[rewarded], prior[~rewarded]),
        rank_auc(posterior[rewarded], posterior[~rewarded]),
        rank_auc(predictions.values[rewarded], predictions.values[~rewarded]),
    )
    return {column: float(value) for column, value in zip(COLUMNS, values, strict=True)}


def has_final_model(root: Path, run: Run) -> bool:
    """Whether ``run`` has finished on this machine and kept its final model (models are not committed)."""
    return bool(run.parts(root)) and run.final_model(root).is_file()


def run_predictions(root: Path, run: Run, episodes: int, deterministic: bool) -> RewardPredictions:
    """:func:`play` of ``run``'s final model on the zoo's test env, seeded as its final score."""
    model_path = run.final_model(root)
    seed = run.seed + FINAL_EVAL_SEED_OFFSET
    env = zoo_test_env(model_path, run.env, seed)
    model = ALGOS[run.zoo_algo].load(model_path, device="cpu")
    if not isinstance(model, DreamerAlgorithm):
        raise SystemExit(f"{run}: {run.zoo_algo} has no world model to predict rewards with")
    set_random_seed(seed)
    return play(model, env, episodes, deterministic)


def markdown_row(run: Run, values: dict[str, float]) -> str:
    """A table row: the run, then the columns, shares and AUCs to 3 decimals, predictions to 3 significant digits."""
    cells = [f"{values['episodes']:.0f}", f"{values['mean return']:.2f}"]
    cells += [f"{values[column]:.3g}" for column in COLUMNS[2:-3]] + [f"{values[column]:.3f}" for column in COLUMNS[-3:]]
    return f"| {run.algo} | {run.env} | {run.seed} | {' | '.join(cells)} |"


def main(argv: list[str] | None = None) -> None:
    """Command line of ``scripts/reward_prediction.py``: print the table of the selected runs."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_selection(parser)
    parser.add_argument("--episodes", type=int, default=20, help="episodes each final model plays")
    parser.add_argument("--deterministic", action="store_true", help="play the modes (the final score's episodes)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args(argv)
    if args.episodes <= 0:
        parser.error(f"--episodes must be a positive number, got {args.episodes}")
    apply()  # dreamerv2 and dreamerv3 in the zoo's ALGOS, and the MinAtar ids
    th.set_num_threads(args.threads)
    runs = selected_runs(args.root, args.algos, args.envs, args.seeds)
    with_model = [run for run in runs if has_final_model(args.root, run)]
    if not with_model:
        raise SystemExit(f"no run under {args.root / RUNS_DIR} that matches the selection has its final model here")
    print(f"| algo | env | seed | {' | '.join(COLUMNS)} |")
    print(f"|---|---|---:|{'---:|' * len(COLUMNS)}")
    for run in with_model:
        print(markdown_row(run, summary(run_predictions(args.root, run, args.episodes, args.deterministic))), flush=True)
    for run in runs:
        if run not in with_model:
            print(f"{run}: no final model here (unfinished, or trained elsewhere: models are not committed)", file=sys.stderr)

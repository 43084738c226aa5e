"""
More updates on the same frames: whether what a run's world model has not learnt is for want of updates, not of data
or of capacity. From a run's latest checkpoint (for a finished run: its model, optimizer and replay buffer at the end
of training, on the machine that trained it), the gradient steps go on without new frames, in blocks of
``--block-updates`` (each on a batch of the run's ``batch_size`` windows, as in training), and before the first block
and after each the model plays the episodes of a diagnostic of final models (``--diagnostic``: ``freeway_cars``,
``freeway_hits`` or ``reward_prediction``, their columns and episodes, on the zoo's test env seeded as the final
score's). Actor and critic go on learning too: these are the updates a higher replay ratio would have made, on the
frames the run ended with. ``--sequence-length`` replays windows of another length, in batches of as many replayed
steps as the run's (e.g. 4 x 64 for 8 x 32). ``--fresh KEY:VALUE ...`` trains a fresh model instead, of the run's
settings with these policy options changed (e.g. ``cnn_min_resolution:10``), on the run's replay buffer (its stored
model states dropped): whether other networks learn more of the same frames, in the time of a few blocks, before any
run. Nothing is saved: the checkpoint stays as it was.

Per run and block, a row of a markdown table: the run's updates so far, those after its own, their batches (windows x
steps), the means of the world model's KL and loss over the block's updates (``train/kl``,
``train/world_model_loss``), and the diagnostic's columns.

Usage:
  python scripts/more_updates.py --root benchmarks/minatar-100k --algos dreamerv3@ent3e-3 --envs Freeway-MinAtar \\
      --seeds 0 --diagnostic freeway_cars --blocks 4 --block-updates 5000 --episodes 2
  python scripts/more_updates.py --root benchmarks/minatar-100k --algos dreamerv3@ent3e-3 --envs Freeway-MinAtar \\
      --seeds 0 --diagnostic reconstruction --blocks 3 --block-updates 2500 --episodes 2 --fresh cnn_min_resolution:10
"""

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch as th
from rl_zoo3 import ALGOS
from rl_zoo3.utils import StoreDict
from stable_baselines3.common.logger import configure

from sb3_dreamer.benchmark import freeway_cars, freeway_hits, reconstruction, reward_prediction
from sb3_dreamer.benchmark.layout import CHECKPOINT_DIR, Run, add_run_selection, selected_runs
from sb3_dreamer.benchmark.model_play import Measure, final_score_env
from sb3_dreamer.common.base_class import DreamerAlgorithm
from sb3_dreamer.zoo import apply

#: the diagnostics of final models that a block's model can play: name -> (columns, measure)
DIAGNOSTICS: dict[str, tuple[Sequence[str], Measure]] = {
    "freeway_cars": (freeway_cars.COLUMNS, freeway_cars.measure),
    "freeway_hits": (freeway_hits.COLUMNS, freeway_hits.measure),
    "reconstruction": (reconstruction.COLUMNS, reconstruction.measure),
    "reward_prediction": (reward_prediction.COLUMNS, reward_prediction.measure),
}
#: the world model's training metrics of each row, averaged over the block's updates
METRICS = ("train/kl", "train/world_model_loss")
#: updates a ``train()`` call (their metrics are checked, and undone if one is not finite, call by call)
UPDATES_A_CALL = 100


def load_run_checkpoint(root: Path, run: Run) -> DreamerAlgorithm:
    """``run``'s latest checkpoint (model, optimizer, replay buffer), on the CPU, with a logger that keeps no files."""
    path = run.directory(root) / CHECKPOINT_DIR
    if not (path / "replay_buffer.pkl").is_file():
        raise FileNotFoundError(f"{run}: no checkpoint with its replay buffer here ({path})")
    algorithm = ALGOS[run.zoo_algo]
    if not issubclass(algorithm, DreamerAlgorithm):
        raise SystemExit(f"{run}: {run.zoo_algo} has no world model")
    model = algorithm.load_checkpoint(path, device="cpu")
    if not model.replay_buffer.can_sample():
        raise SystemExit(f"{run}: its replay buffer holds no window of {model.sequence_length} steps to update on")
    model.set_logger(configure(None, []))
    return model


def fresh_model(model: DreamerAlgorithm, policy_options: dict[str, Any]) -> None:
    """
    Replace ``model``'s networks, optimizer and schedules by fresh ones of its settings with ``policy_options`` changed
    (its policy keyword arguments), keeping its replay buffer: the rows stay, their stored model states (replay
    context) become zero states of the new model's sizes. The update count starts again at 0.
    """
    replay_buffer = model.replay_buffer
    model.policy_kwargs = {**model.policy_kwargs, **policy_options}
    model.replay_buffer = None  # type: ignore[assignment]  # a new, empty one, laid out for the new model
    model._setup_model()
    if replay_buffer.replay_context:
        rssm = model.policy.world_model.rssm
        replay_buffer.clear_latents(rssm.deter_size, rssm.stoch_dim)
    model.replay_buffer = replay_buffer
    model._n_updates = 0


def replay_windows_of(model: DreamerAlgorithm, sequence_length: int) -> None:
    """Replay windows of ``sequence_length`` steps from now on, in batches of as many replayed steps as before."""
    replayed = model.batch_size * model.sequence_length
    if replayed % sequence_length:
        raise SystemExit(
            f"--sequence-length {sequence_length} does not divide the {model.batch_size} x {model.sequence_length} "
            "replayed steps of an update"
        )
    model.batch_size = replayed // sequence_length
    model.sequence_length = model.replay_buffer.sequence_length = sequence_length


def update_block(model: DreamerAlgorithm, updates: int) -> dict[str, float]:
    """``updates`` gradient steps on the replay buffer, no new frames; the means of :data:`METRICS` over them."""
    sums = dict.fromkeys(METRICS, 0.0)
    done = 0
    while done < updates:
        steps = min(UPDATES_A_CALL, updates - done)
        model.train(steps, model.batch_size)
        for name in METRICS:
            sums[name] += model.logger.name_to_value[name] * steps
        model.logger.dump(model.num_timesteps)
        done += steps
    return {name: total / updates for name, total in sums.items()}


def main(argv: list[str] | None = None) -> None:
    """Command line of ``scripts/more_updates.py``: print the table of the selected runs' blocks."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_selection(parser)
    parser.add_argument("--diagnostic", choices=sorted(DIAGNOSTICS), default="freeway_cars")
    parser.add_argument("--blocks", type=int, default=4, help="blocks of updates, each followed by the diagnostic")
    parser.add_argument("--block-updates", type=int, default=5000, help="gradient steps a block")
    parser.add_argument("--episodes", type=int, default=2, help="episodes the model plays after each block")
    parser.add_argument("--sequence-length", type=int, help="steps of a replayed window (default: the run's)")
    parser.add_argument(
        "--fresh",
        nargs="+",
        action=StoreDict,
        metavar="KEY:VALUE",
        help="train a fresh model of the run's settings with these policy options changed, on its replay buffer",
    )
    parser.add_argument("--deterministic", action="store_true", help="play the modes (the final score's episodes)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args(argv)
    if args.blocks < 0:
        parser.error(f"--blocks must be 0 (the checkpoint's model only) or more, got {args.blocks}")
    for name in ("block_updates", "episodes", "sequence_length"):
        if getattr(args, name) is not None and getattr(args, name) <= 0:
            parser.error(f"--{name.replace('_', '-')} must be a positive number, got {getattr(args, name)}")
    apply()  # dreamerv2 and dreamerv3 in the zoo's ALGOS, and the MinAtar ids
    th.set_num_threads(args.threads)
    columns, measure = DIAGNOSTICS[args.diagnostic]
    runs = selected_runs(args.root, args.algos, args.envs, args.seeds)
    if not runs:
        raise SystemExit(f"no run under {args.root} matches the selection")
    print(f"| algo | env | seed | updates | more updates | batches | {' | '.join(METRICS)} | {' | '.join(columns)} |")
    print(f"|---|---|---:|---:|---:|---:|{'---:|' * (len(METRICS) + len(columns))}")
    for run in runs:
        model = load_run_checkpoint(args.root, run)
        if args.fresh is not None:
            fresh_model(model, args.fresh)
        if args.sequence_length is not None:
            replay_windows_of(model, args.sequence_length)
        metrics = dict.fromkeys(METRICS, np.nan)
        for block in range(args.blocks + 1):
            if block:
                metrics = update_block(model, args.block_updates)
            cells = measure(model, final_score_env(args.root, run), args.episodes, args.deterministic)
            values = [f"{metrics[name]:.3f}" for name in METRICS]
            batches = f"{model.batch_size} x {model.sequence_length}"
            row = [run.algo, run.env, str(run.seed), str(model._n_updates), str(block * args.block_updates), batches]
            print(f"| {' | '.join([*row, *values, *cells])} |", flush=True)

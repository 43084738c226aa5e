"""
Memory soak test of DreamerV2: a long training run at small sizes that records the resident memory (RSS).

Every ``--every`` env steps a callback records ``steps, seconds, rss_mb, buffer_full`` with SB3's logger in
``OUT/rss_N/progress.csv`` (written row by row), N the part of the run of this process: 1, then 2 for the first
resumed part, and so on. The replay buffer (``--buffer-size`` rows) fills early; after that RSS should stay flat.
At the end the script prints one JSON line with the least-squares slope of RSS over the samples taken after the buffer
was full, in MB per 100k env steps, and its standard error, by this process only (RSS of different processes does not
compare). RSS is read with psutil, of the ``benchmark`` extra.

The run is resumable: every ``--checkpoint-every`` steps it saves ``model.save_checkpoint(OUT/checkpoint)`` at the
start of a rollout, and at the end; started again with the same ``--out``, it continues from there.

Usage: python scripts/soak.py [--env Breakout-MinAtar] [--steps 200000] [--buffer-size 20000] [--out soak]
"""

import argparse
import csv
import json
import pathlib
import time

import numpy as np
import torch as th
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import Logger, configure

from sb3_dreamer import DreamerV2
from sb3_dreamer.benchmark.extras import benchmark_extra

with benchmark_extra():
    import psutil

SMALL_POLICY = dict(
    embedding_dim=64,
    deter_size=64,
    stoch_size=8,
    class_size=8,
    rssm_hidden_size=64,
    cnn_depth=8,
    head_units=64,
    head_layers=2,
)
CHECKPOINT = "checkpoint"
#: Folder of the RSS samples of part N of the run (N = 1, 2, ... for each process), in OUT
RSS_DIR = "rss_{part}"


def rss_mb() -> float:
    """Resident memory of this process in MB (MiB)."""
    return psutil.Process().memory_info().rss / 2**20


class SoakCallback(BaseCallback):
    """
    Records an RSS sample with ``rss_logger`` every ``every`` env steps and saves a checkpoint every
    ``checkpoint_every`` env steps, at the start of a rollout (where a resumed run continues exactly as the
    uninterrupted one), and at the end.
    """

    def __init__(self, rss_logger: Logger, checkpoint_path: pathlib.Path, every: int, checkpoint_every: int) -> None:
        super().__init__()
        self.rss_logger = rss_logger
        self.checkpoint_path = checkpoint_path
        self.every = every
        self.checkpoint_every = checkpoint_every
        self.start = time.perf_counter()

    def _on_training_start(self) -> None:
        self.next_sample = self.num_timesteps
        self.next_checkpoint = self.num_timesteps + self.checkpoint_every

    def _on_rollout_start(self) -> None:
        if self.num_timesteps >= self.next_checkpoint:
            self.model.save_checkpoint(self.checkpoint_path)
            self.next_checkpoint += self.checkpoint_every

    def _on_step(self) -> bool:
        if self.num_timesteps >= self.next_sample:
            self.rss_logger.record("steps", self.num_timesteps)
            self.rss_logger.record("seconds", round(time.perf_counter() - self.start, 1))
            self.rss_logger.record("rss_mb", round(rss_mb(), 1))
            self.rss_logger.record("buffer_full", int(self.model.replay_buffer.full))
            self.rss_logger.dump(self.num_timesteps)
            self.next_sample += self.every
        return True

    def _on_training_end(self) -> None:
        self.rss_logger.close()
        self.model.save_checkpoint(self.checkpoint_path)


def rss_slope(csv_path: pathlib.Path) -> dict[str, float | int | None]:
    """
    Least-squares slope of RSS in MB per 100k steps, and its standard error, over the samples of ``csv_path`` (one
    process's) taken with the buffer full.
    """
    with csv_path.open() as file:
        rows = [row for row in csv.DictReader(file) if row["buffer_full"] == "1"]
    steps = np.array([float(row["steps"]) for row in rows])
    rss = np.array([float(row["rss_mb"]) for row in rows])
    slope = stderr = None
    if len(rows) >= 4:
        coefficients, covariance = np.polyfit(steps, rss, 1, cov=True)
        slope, stderr = float(coefficients[0] * 100_000), float(np.sqrt(covariance[0, 0]) * 100_000)
    return {
        "n_samples_buffer_full": len(rows),
        "first_step_buffer_full": int(steps[0]) if len(rows) else None,
        "rss_mb_buffer_full_first": float(rss[0]) if len(rows) else None,
        "rss_mb_last": float(rss[-1]) if len(rows) else None,
        "rss_slope_mb_per_100k_steps": slope,
        "rss_slope_stderr": stderr,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="Breakout-MinAtar")
    parser.add_argument("--steps", type=int, default=200_000, help="total env steps of the run")
    parser.add_argument("--buffer-size", type=int, default=20_000)
    parser.add_argument("--every", type=int, default=1_000, help="env steps between RSS samples")
    parser.add_argument("--checkpoint-every", type=int, default=50_000, help="env steps between checkpoints")
    parser.add_argument("--out", default="soak", help="folder of rss.csv and the checkpoint")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    th.set_num_threads(args.threads)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    checkpoint = out / CHECKPOINT
    if (checkpoint / "checkpoint.pkl").exists():
        model = DreamerV2.load_checkpoint(checkpoint, device=args.device)
    else:
        model = DreamerV2(
            "CnnPolicy",
            args.env,
            buffer_size=args.buffer_size,
            learning_starts=1_000,
            batch_size=16,
            sequence_length=16,
            imagination_horizon=5,
            train_freq=50,
            gradient_steps=1,
            policy_kwargs=SMALL_POLICY,
            recovery_dir=str(out / "recovery"),
            seed=args.seed,
            device=args.device,
        )
    rss_dir = out / RSS_DIR.format(part=len(list(out.glob(RSS_DIR.format(part="*")))) + 1)
    callback = SoakCallback(configure(str(rss_dir), ["csv"]), checkpoint, args.every, args.checkpoint_every)
    model.learn(max(args.steps - model.num_timesteps, 0), callback=callback, reset_num_timesteps=False)
    summary = {"env": args.env, "steps": model.num_timesteps, "buffer_size": args.buffer_size}
    print(json.dumps({**summary, **rss_slope(rss_dir / "progress.csv")}))


if __name__ == "__main__":
    main()

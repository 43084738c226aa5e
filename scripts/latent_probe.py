"""
How DreamerV2's categorical latents fare over the first updates of the packaged MinAtar setting (``dreamerv2.yml``):
the KL between posterior and prior, their entropies (nats, summed over the latents) and the reconstruction loss at
about ten ``train()`` calls, read from SB3's logger. A collapse shows as a posterior entropy near 0 with a KL near 0:
every latent one class for certain, the same class in prior and posterior, so that no observation passes through them.

Usage:
  python scripts/latent_probe.py --env BreakoutPOMDP-MinAtar --frames 6000 \\
      --policy-kwargs "dict(image_likelihood='bernoulli')" [--decoder-bias -4] [--warmup-frames 1000]
"""

import argparse
import tempfile
from typing import Any

import pandas as pd
import torch as th
from stable_baselines3.common.logger import configure

from sb3_dreamer import DreamerV2
from sb3_dreamer.benchmark.update_settings import minatar_settings, zoo_policy_kwargs

COLUMNS = ["train/kl", "train/posterior_entropy", "train/prior_entropy", "train/reconstruction_loss"]


def probe(
    env: str,
    frames: int,
    seed: int = 0,
    policy_kwargs: dict[str, Any] | None = None,
    decoder_bias: float | None = None,
    warmup_frames: int = 0,
) -> pd.DataFrame:
    """
    Train the packaged DreamerV2 setting of ``env`` for ``frames`` env frames and return the logger's rows (written
    at the ends of episodes and at the end): env frames and :data:`COLUMNS`, the last ``train()`` call's values.

    :param policy_kwargs: added to the packaged ``policy_kwargs``
    :param decoder_bias: the decoder's output bias (pixel means or logits) at the start; None: as initialised
    :param warmup_frames: the world model's learning rate rises linearly from 0 over this many frames of training
    """
    th.set_num_threads(1)
    settings = minatar_settings("dreamerv2", env)
    settings["policy_kwargs"] |= policy_kwargs or {}
    if warmup_frames:
        rate, starts = settings["learning_rate"], settings["learning_starts"]

        def warmup(progress_remaining: float) -> float:
            """The learning rate at a point of the run: 0 at learning_starts, the packaged rate warmup_frames later."""
            trained = (1 - progress_remaining) * frames - starts
            return rate * min(1.0, max(0.0, trained / warmup_frames))

        settings["learning_rate"] = warmup
    model = DreamerV2("CnnPolicy", env, seed=seed, **settings)
    if decoder_bias is not None:
        with th.no_grad():
            model.policy.world_model.decoder.deconvs[-1].bias.fill_(decoder_bias)
    with tempfile.TemporaryDirectory() as folder:
        model.set_logger(configure(folder, ["csv"]))
        model.learn(frames, log_interval=1)
        # What the last train() calls logged after the last episode's end
        model.logger.record("time/total_timesteps", model.num_timesteps)
        model.logger.dump(model.num_timesteps)
        return pd.read_csv(f"{folder}/progress.csv")[["time/total_timesteps", *COLUMNS]].dropna()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="BreakoutPOMDP-MinAtar")
    parser.add_argument("--frames", type=int, default=6000, help="env frames in all, the random ones included")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--policy-kwargs", default="dict()", help="added to the packaged policy_kwargs")
    parser.add_argument("--decoder-bias", type=float, help="the decoder's output bias at the start (pixel logits)")
    parser.add_argument(
        "--warmup-frames", type=int, default=0, help="the world model's learning rate rises linearly over these frames"
    )
    args = parser.parse_args()
    policy_kwargs = zoo_policy_kwargs(args.policy_kwargs)
    log = probe(args.env, args.frames, args.seed, policy_kwargs, args.decoder_bias, args.warmup_frames)
    rows = log.iloc[:: max(1, len(log) // 9)]
    print("| env frames | " + " | ".join(name.removeprefix("train/") for name in COLUMNS) + " |")
    print("|---:|" + "---:|" * len(COLUMNS))
    for _, row in rows.iterrows():
        print(f"| {row['time/total_timesteps']:.0f} | " + " | ".join(f"{row[name]:.4g}" for name in COLUMNS) + " |")


if __name__ == "__main__":
    main()

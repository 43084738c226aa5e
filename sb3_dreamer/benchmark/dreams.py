"""
Save a DreamerV2 dream video as a GIF file (truth, model and error side by side; observed frames, then the prior's
imagination):

- of a run: the ``diagnostics/dream`` image of its TensorBoard logs, the last one logged at or before ``--at`` env
  frames (default: the last one); ``scripts/benchmark.py`` writes the last one of the packaged DreamerV2's first
  finished run of each env in this way;
- of a saved model (a ``.zip`` file): the model plays ``--steps`` steps of ``--env`` (stochastic policy, seeded with
  ``--seed``) and dreams them with :meth:`DreamerV2.dream`, observing the first ``--context``.

Usage (a run trained with ``--tensorboard``: its event files stay where it trained, they are not committed):
  python scripts/dream_gif.py benchmarks/minatar-100k/runs/dreamerv2/Breakout-MinAtar/seed_0 dream.gif --at 84000
  python scripts/dream_gif.py logs/dreamerv2/Breakout-MinAtar_1/Breakout-MinAtar.zip dream.gif --env Breakout-MinAtar
"""

import argparse
import io
from pathlib import Path

import gymnasium as gym
import numpy as np
from PIL import Image

from sb3_dreamer import DreamerV2
from sb3_dreamer.benchmark.scalars import event_files
from sb3_dreamer.world_model.diagnostics import DREAM_TAG

#: Seconds a frame of the GIF shows
FRAME_DURATION = 0.25


def read_dreams(log_dir: Path) -> dict[int, bytes]:
    """GIF files by step (env frames) of the dream videos under ``log_dir``; a later event file's replace an earlier's."""
    dreams: dict[int, bytes] = {}
    for events in event_files(log_dir, {"images": 0}):
        if DREAM_TAG in events.Tags()["images"]:
            dreams.update((event.step, event.encoded_image_string) for event in events.Images(DREAM_TAG))
    return dreams


def last_dream(log_dir: Path, at: int | None = None) -> tuple[int, bytes]:
    """
    Step (env frames) and GIF file of the last dream video under ``log_dir`` logged at or before ``at`` env frames
    (``None``: the last one); a ValueError says why there is none.
    """
    dreams = read_dreams(log_dir)
    if not dreams:
        raise ValueError(f"no {DREAM_TAG} image in the TensorBoard logs under {log_dir}")
    steps = [step for step in dreams if at is None or step <= at]
    if not steps:
        raise ValueError(f"no {DREAM_TAG} image under {log_dir} at or before {at} frames: the first is at {min(dreams)}")
    return max(steps), dreams[max(steps)]


def model_dream(model_path: Path, env_id: str, n_steps: int, context: int, seed: int) -> bytes:
    """A GIF file of the saved model's dream of ``n_steps`` steps it plays in ``env_id``, ``context`` of them observed."""
    model = DreamerV2.load(model_path)
    env = gym.make(env_id)
    observations, actions, starts = [], [], []
    observation, _ = env.reset(seed=seed)
    state, episode_start = None, np.ones((1,), dtype=bool)
    for _ in range(n_steps):
        action, state = model.predict(observation, state=state, episode_start=episode_start)
        observations.append(observation)
        actions.append(action)
        starts.append(episode_start)
        observation, _, terminated, truncated, _ = env.step(action)
        episode_start = np.array([terminated or truncated])
        if episode_start[0]:
            observation, _ = env.reset()
    frames = model.dream(
        np.stack(observations)[:, None], np.stack(actions)[:, None], context=context, episode_starts=np.stack(starts)
    )  # (T, 1, 3, H, W)
    images = [Image.fromarray(frame.transpose(1, 2, 0)) for frame in frames[:, 0]]
    gif = io.BytesIO()
    images[0].save(gif, format="GIF", save_all=True, append_images=images[1:], duration=int(FRAME_DURATION * 1000), loop=0)
    return gif.getvalue()


def main(argv: list[str] | None = None) -> None:
    """Command line of ``scripts/dream_gif.py``: write the GIF of a run's logged dream or of a saved model's dream."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "run", type=Path, help="a run's folder, or any folder above its TensorBoard event files, or a saved model (.zip)"
    )
    parser.add_argument("output", type=Path, help="GIF file to write")
    parser.add_argument("--at", type=int, help="env frames: the last dream logged at or before them (default: the last)")
    parser.add_argument("--env", help="a saved model's env id")
    parser.add_argument("--steps", type=int, default=30, help="steps a saved model plays and dreams")
    parser.add_argument("--context", type=int, default=5, help="of them, steps the model observes before dreaming")
    parser.add_argument("--seed", type=int, default=0, help="seed of the env a saved model plays")
    args = parser.parse_args(argv)
    if args.run.suffix == ".zip":
        if args.env is None:
            parser.error("a saved model needs --env, the env id it plays")
        args.output.write_bytes(model_dream(args.run, args.env, args.steps, args.context, args.seed))
        print(f"wrote {args.output}: the dream of {args.steps} steps, {args.context} observed")
        return
    try:
        step, gif = last_dream(args.run, args.at)
    except ValueError as error:
        raise SystemExit(str(error)) from None
    args.output.write_bytes(gif)
    print(f"wrote {args.output}: the dream video at {step} frames")

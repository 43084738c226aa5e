"""
Save a DreamerV2 run's dream video as a GIF file: the ``diagnostics/dream`` image of its TensorBoard logs (truth,
model and error side by side; observed frames, then the prior's imagination), the last one logged at or before
``--at`` env frames (default: the last one). ``scripts/benchmark.py`` writes the last one of the first finished run of
each algo x env in this way, as ``ROOT/dream_ALGO_ENV.gif``.

Usage:
  python scripts/dream_gif.py benchmarks/minatar-100k/runs/dreamerv2@ratio2bf16/Breakout-MinAtar/seed_0 dream.gif \\
      --at 84000
"""

import argparse
from pathlib import Path

from tb_scalars import event_files

from sb3_dreamer.common.diagnostics import DREAM_TAG


def read_dreams(log_dir: Path) -> dict[int, bytes]:
    """GIF files by step (env frames) of the dream videos under ``log_dir``; a later event file's replace an earlier's."""
    dreams = {}
    for events in event_files(log_dir, {"images": 0}):
        if DREAM_TAG in events.Tags()["images"]:
            dreams.update((event.step, event.encoded_image_string) for event in events.Images(DREAM_TAG))
    return dreams


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="a run's folder, or any folder above its TensorBoard event files")
    parser.add_argument("output", type=Path, help="GIF file to write")
    parser.add_argument("--at", type=int, help="env frames: the last dream logged at or before them (default: the last)")
    args = parser.parse_args(argv)
    dreams = read_dreams(args.run)
    if not dreams:
        raise SystemExit(f"no {DREAM_TAG} image in the TensorBoard logs under {args.run}")
    steps = [step for step in dreams if args.at is None or step <= args.at]
    if not steps:
        raise SystemExit(f"no {DREAM_TAG} image under {args.run} at or before {args.at} frames: the first is at {min(dreams)}")
    step = max(steps)
    args.output.write_bytes(dreams[step])
    print(f"wrote {args.output}: the dream video at {step} frames")


if __name__ == "__main__":
    main()

"""
``python -m sb3_dreamer.zoo train|enjoy|record_video [arguments]``: ``python -m rl_zoo3.<script> [arguments]``
with the RL Zoo plug-in applied explicitly, for installs without the start-up hook (or with it disabled).
"""

import runpy
import sys

from sb3_dreamer.zoo.plugin import apply

SCRIPTS = ("train", "enjoy", "record_video")


def main(argv: list[str] | None = None) -> None:
    """Apply the plug-in (raising any error), then run the zoo script named by the first argument with the remaining ones."""
    argv = sys.argv[1:] if argv is None else argv
    apply()
    if not argv or argv[0] not in SCRIPTS:
        raise SystemExit(f"usage: python -m sb3_dreamer.zoo {{{','.join(SCRIPTS)}}} [rl_zoo3 arguments, see --help]")
    sys.argv = [f"rl_zoo3.{argv[0]}", *argv[1:]]
    runpy.run_module(f"rl_zoo3.{argv[0]}", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()

"""``python -m sb3_dreamer.benchmark [options]``: the benchmark grid and its report, as ``scripts/benchmark.py``."""

from sb3_dreamer.benchmark.cli import main

main()

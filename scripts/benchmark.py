"""The benchmark grid and its report: see ``python scripts/benchmark.py --help`` (:mod:`sb3_dreamer.benchmark.cli`)."""

from sb3_dreamer.benchmark.cli import main

if __name__ == "__main__":
    main()

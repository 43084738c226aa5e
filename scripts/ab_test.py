"""A/B of two algorithms or variants of a benchmark root over envs: see ``--help`` (:mod:`sb3_dreamer.benchmark.ab_test`)."""

from sb3_dreamer.benchmark.ab_test import main

if __name__ == "__main__":
    main()

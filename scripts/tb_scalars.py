"""TensorBoard scalars of benchmark runs at chosen env frames: see ``--help`` (:mod:`sb3_dreamer.benchmark.scalar_tables`)."""

from sb3_dreamer.benchmark.scalar_tables import main

if __name__ == "__main__":
    main()

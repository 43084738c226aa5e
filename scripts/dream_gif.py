"""A DreamerV2 dream video as a GIF file: see ``--help`` (:mod:`sb3_dreamer.benchmark.dreams`)."""

from sb3_dreamer.benchmark.dreams import main

if __name__ == "__main__":
    main()

"""What runs' final world models make of their frames: see ``--help`` (:mod:`sb3_dreamer.benchmark.reconstruction`)."""

from sb3_dreamer.benchmark.reconstruction import main

if __name__ == "__main__":
    main()

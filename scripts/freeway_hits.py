"""Hit predictions of Freeway runs' final models: see ``--help`` (:mod:`sb3_dreamer.benchmark.freeway_hits`)."""

from sb3_dreamer.benchmark.freeway_hits import main

if __name__ == "__main__":
    main()

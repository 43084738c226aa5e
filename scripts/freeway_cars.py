"""Car-move predictions of Freeway runs' final models: see ``--help`` (:mod:`sb3_dreamer.benchmark.freeway_cars`)."""

from sb3_dreamer.benchmark.freeway_cars import main

if __name__ == "__main__":
    main()

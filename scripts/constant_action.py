"""Final scores that one action at every step gives: see ``--help`` (:mod:`sb3_dreamer.benchmark.constant_action`)."""

from sb3_dreamer.benchmark.constant_action import main

if __name__ == "__main__":
    main()

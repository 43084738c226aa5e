"""More updates on a run's replay buffer, then a diagnostic: see ``--help`` (:mod:`sb3_dreamer.benchmark.more_updates`)."""

from sb3_dreamer.benchmark.more_updates import main

if __name__ == "__main__":
    main()

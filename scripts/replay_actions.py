"""The actions in benchmark runs' replay buffers by frames: see ``--help`` (:mod:`sb3_dreamer.benchmark.replay_actions`)."""

from sb3_dreamer.benchmark.replay_actions import main

if __name__ == "__main__":
    main()

"""Reward predictions of benchmark runs' final models: see ``--help`` (:mod:`sb3_dreamer.benchmark.reward_prediction`)."""

from sb3_dreamer.benchmark.reward_prediction import main

if __name__ == "__main__":
    main()

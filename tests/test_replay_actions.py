"""The replay buffer's actions by the frames they were collected at (``scripts/replay_actions.py``)."""

import gymnasium as gym
import numpy as np
import pytest
from conftest import tiny_model
from stable_baselines3.common.env_util import make_vec_env

from sb3_dreamer.benchmark.layout import CHECKPOINT_DIR, Run
from sb3_dreamer.benchmark.replay_actions import action_names, action_shares, collection_frames, entropy, main
from sb3_dreamer.common.buffers import SequenceReplayBuffer


class ActionLog(gym.Wrapper):
    """Keeps the actions its env was stepped with, in order."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self.actions: list[int] = []

    def step(self, action):
        self.actions.append(int(action))
        return super().step(action)


def test_the_checkpoints_buffer_gives_each_env_step_its_action_and_frame(tmp_path, capsys):
    # Two envs whose episodes end every 12 steps, so that the buffer holds first rows between the steps
    env = make_vec_env("Freeway-MinAtar", n_envs=2, seed=3, wrapper_class=ActionLog, env_kwargs=dict(max_episode_steps=12))
    run = Run("dreamerv2", "Freeway-MinAtar", 0)
    model = tiny_model(env, learning_starts=1_000)  # no update: the actions are the uniform warm-up's
    model.learn(64)
    model.save_checkpoint(run.directory(tmp_path) / CHECKPOINT_DIR)
    assert model.num_timesteps == 64

    actions, frames = collection_frames(model.replay_buffer, model.num_timesteps)
    logged = [env.envs[index].actions for index in range(2)]
    assert [len(steps) for steps in logged] == [32, 32]
    np.testing.assert_array_equal(actions, np.concatenate(logged))
    # Env 0's steps at frames 0, 2, ..., 62, env 1's at 1, 3, ..., 63
    np.testing.assert_array_equal(frames, np.concatenate([np.arange(0, 64, 2), np.arange(1, 64, 2)]))

    main(["--root", str(tmp_path), "--bin", "40"])
    table = capsys.readouterr().out
    first_bin = np.bincount(np.concatenate([steps[:20] for steps in logged]), minlength=3) / 40
    assert f"| 0-40 | {' | '.join(f'{share:.3f}' for share in first_bin)} | {entropy(first_bin):.3f} |" in table
    assert "| frames | NOOP | UP | DOWN | entropy (nats) |" in table
    assert "| 40-80 |" in table and "checkpoint at 64 frames" in table


def test_shares_and_entropy_of_the_bins():
    actions, frames = np.array([0, 1, 1, 1, 2, 2]), np.array([0, 5, 9, 10, 31, 39])
    bins = action_shares(actions, frames, 4, bin_frames=10)
    assert [start for start, _ in bins] == [0, 10, 30]  # no steps at 20-29: no row
    np.testing.assert_allclose(bins[0][1], [1 / 3, 2 / 3, 0, 0])
    np.testing.assert_allclose(bins[1][1], [0, 1, 0, 0])
    assert entropy(bins[1][1]) == 0.0
    assert entropy(np.full(3, 1 / 3)) == pytest.approx(np.log(3))
    assert action_names("CartPole-v1", 2) == ["action 0", "action 1"]  # no names of its own


def test_refuses_box_actions_and_missing_buffers(tmp_path):
    buffer = SequenceReplayBuffer(100, gym.spaces.Box(0, 1, (3,)), gym.spaces.Box(-1, 1, (2,)), sequence_length=4)
    with pytest.raises(ValueError, match="need a Discrete action space"):
        collection_frames(buffer, 0)
    empty = SequenceReplayBuffer(100, gym.spaces.Box(0, 1, (3,)), gym.spaces.Discrete(3), sequence_length=4)
    assert [len(array) for array in collection_frames(empty, 0)] == [0, 0]
    (Run("dreamerv2", "Freeway-MinAtar", 0).directory(tmp_path) / CHECKPOINT_DIR).mkdir(parents=True)
    with pytest.raises(SystemExit, match="has its replay buffer here"):
        main(["--root", str(tmp_path)])

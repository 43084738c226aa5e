"""More updates on a run's replay buffer, with a diagnostic after each block (``scripts/more_updates.py``)."""

import hashlib

import numpy as np
import pytest
from conftest import assert_same_weights, tiny_model
from test_dreamerv3 import TINY_V3_POLICY, tiny_v3

from sb3_dreamer.benchmark import reconstruction
from sb3_dreamer.benchmark.layout import CHECKPOINT_DIR, Run
from sb3_dreamer.benchmark.more_updates import METRICS, fresh_model, main
from sb3_dreamer.benchmark.reward_prediction import COLUMNS


def test_blocks_of_updates_on_the_checkpoint_leave_it_as_it_was(tmp_path, capsys):
    run = Run("dreamerv2", "Breakout-MinAtar", 0)
    model = tiny_model(learning_starts=40, train_freq=20)
    model.learn(60)
    checkpoint = run.directory(tmp_path) / CHECKPOINT_DIR
    model.save_checkpoint(checkpoint)
    # The zoo's folder of the run's part, whose settings the test env reads (none here: the id's defaults)
    (run.directory(tmp_path) / "dreamerv2" / "Breakout-MinAtar_1").mkdir(parents=True)
    digests = {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in checkpoint.resolve().iterdir()}

    selection = ["--root", str(tmp_path), "--diagnostic", "reward_prediction", "--episodes", "1"]
    main([*selection, "--blocks", "2", "--block-updates", "3"])
    lines = capsys.readouterr().out.splitlines()
    header = f"| algo | env | seed | updates | more updates | batches | {' | '.join(METRICS)} | {' | '.join(COLUMNS)} |"
    assert lines[0] == header
    rows = [line.strip("|").split(" | ") for line in lines[2:]]
    assert [row[3:6] for row in rows] == [[str(model._n_updates + 3 * block), str(3 * block), "4 x 8"] for block in range(3)]
    assert rows[0][6:8] == ["nan", "nan"]
    for row in rows[1:]:
        assert all(float(value) > 0 for value in row[6:8])  # KL and the world model's loss of the block
    assert all(len(row) == 6 + len(METRICS) + len(COLUMNS) for row in rows)
    assert digests == {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in checkpoint.resolve().iterdir()}

    # Windows of 16 steps, in batches of as many replayed steps: 2 x 16
    main([*selection, "--blocks", "1", "--block-updates", "2", "--sequence-length", "16"])
    rows = [line.strip("|").split(" | ") for line in capsys.readouterr().out.splitlines()[2:]]
    assert [row[4:6] for row in rows] == [["0", "2 x 16"], ["2", "2 x 16"]]
    with pytest.raises(SystemExit, match="--sequence-length 5 does not divide the 4 x 8 replayed steps"):
        main([*selection, "--sequence-length", "5"])


def test_refuses_runs_without_a_checkpoint_and_bad_blocks(tmp_path):
    run = Run("dreamerv2", "Breakout-MinAtar", 0)
    (run.directory(tmp_path) / CHECKPOINT_DIR).mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="no checkpoint with its replay buffer here"):
        main(["--root", str(tmp_path)])
    # A checkpoint saved before its buffer holds a window (its first rollout: 16 steps)
    model = tiny_model(learning_starts=100, sequence_length=32)
    model.learn(4)
    model.save_checkpoint(run.directory(tmp_path) / CHECKPOINT_DIR)
    with pytest.raises(SystemExit, match="holds no window of 32 steps to update on"):
        main(["--root", str(tmp_path)])
    with pytest.raises(SystemExit, match="no run under"):
        main(["--root", str(tmp_path), "--envs", "Freeway-MinAtar"])
    with pytest.raises(SystemExit):
        main(["--root", str(tmp_path), "--blocks", "-1"])
    with pytest.raises(SystemExit):
        main(["--root", str(tmp_path), "--block-updates", "0"])


def test_a_fresh_model_of_other_options_learns_on_the_runs_replay_buffer(tmp_path, capsys):
    """``--fresh``: new networks of the run's settings with the options changed, on its rows, counting from 0 updates."""
    run = Run("dreamerv3", "Breakout-MinAtar", 0)
    model = tiny_v3(learning_starts=40, train_freq=20)
    model.learn(60)
    model.save_checkpoint(run.directory(tmp_path) / CHECKPOINT_DIR)
    (run.directory(tmp_path) / "dreamerv3" / "Breakout-MinAtar_1").mkdir(parents=True)
    selection = ["--root", str(tmp_path), "--diagnostic", "reconstruction", "--episodes", "1"]
    main([*selection, "--blocks", "2", "--block-updates", "2", "--fresh", "cnn_min_resolution:10", "class_size:2"])
    rows = [line.strip("|").split(" | ") for line in capsys.readouterr().out.splitlines()[2:]]
    assert [row[3:5] for row in rows] == [["0", "0"], ["2", "2"], ["4", "4"]]
    assert all(len(row) == 6 + len(METRICS) + len(reconstruction.COLUMNS) for row in rows)

    rows_before = model.replay_buffer.observations.copy()
    fresh_model(model, {"cnn_min_resolution": 10, "class_size": 2})
    # The networks of a model built with these options, untrained
    assert_same_weights(model, tiny_v3(policy_kwargs=dict(TINY_V3_POLICY, cnn_min_resolution=10, class_size=2)))
    policy = model.policy
    assert policy.cnn_min_resolution == 10 and policy.class_size == 2 and model._n_updates == 0
    assert policy.world_model.encoder.sizes[-1] == (10, 10)
    np.testing.assert_array_equal(model.replay_buffer.observations, rows_before)
    assert model.replay_buffer.latent_sizes == (policy.rssm.deter_size, policy.rssm.stoch_dim)
    assert not model.replay_buffer.latent_deter.any()
    model.train(2, model.batch_size)
    assert model._n_updates == 2 and model.replay_buffer.latent_deter.any()

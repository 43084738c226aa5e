"""The random policy's scores, the floor of the benchmark report's normalisation (``--random-policy``)."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from gymnasium import spaces

from sb3_dreamer.benchmark import random_policy
from sb3_dreamer.benchmark.constant_action import constant_action_rows, constant_action_table
from sb3_dreamer.benchmark.grid import FINAL_EVAL_SEED_OFFSET
from sb3_dreamer.benchmark.random_policy import (
    RANDOM_POLICY_CSV,
    ConstantPolicy,
    UniformPolicy,
    policy_returns,
    random_policy_score,
    random_policy_section,
    update_random_scores,
)


def test_uniform_policy_draws_every_action_from_its_seed():
    observation = np.zeros((4, 3), dtype=np.float32)  # 4 envs
    state = (np.ones(2),)
    actions, passed = UniformPolicy(spaces.Discrete(3), seed=1).predict(observation, state=state)
    assert actions.shape == (4,) and set(actions) <= {0, 1, 2} and passed is state
    draws = np.concatenate([UniformPolicy(spaces.Discrete(3), seed=1).predict(observation)[0] for _ in range(2)])
    assert np.array_equal(draws[:4], draws[4:]) and np.array_equal(draws[:4], actions)
    many, _ = UniformPolicy(spaces.Discrete(3), seed=2).predict(np.zeros((3000, 1)))
    assert np.bincount(many, minlength=3) == pytest.approx([1000, 1000, 1000], rel=0.1)
    boxes, _ = UniformPolicy(spaces.Box(-2.0, 2.0, (2,)), seed=0).predict({"a": np.zeros((5, 1))})
    assert boxes.shape == (5, 2) and np.all(np.abs(boxes) <= 2.0)


def test_random_policy_score_is_seeded():
    first = random_policy_score("CartPole-v1", episodes=5, seed=3)
    assert first == random_policy_score("CartPole-v1", episodes=5, seed=3)
    assert {key: first[key] for key in ("env", "episodes", "seed")} == {"env": "CartPole-v1", "episodes": 5, "seed": 3}
    # A random policy keeps CartPole's pole up for about 20 steps
    assert 8 <= first["mean_return"] <= 60 and first["std_return"] >= 0
    assert random_policy_score("CartPole-v1", episodes=5, seed=4) != first


def test_random_scores_are_measured_once_per_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    calls = []

    def fake_score(env_id: str, episodes: int, seed: int) -> dict:
        calls.append(env_id)
        return {"env": env_id, "episodes": episodes, "seed": seed, "mean_return": len(env_id) / 10, "std_return": 0.5}

    monkeypatch.setattr(random_policy, "random_policy_score", fake_score)
    tmp_path = tmp_path / "a new grid's root"  # made as the first file is written into it
    table = update_random_scores(tmp_path, ["B-v0", "Aa-v0", "B-v0"], episodes=100, seed=7)
    assert calls == ["B-v0", "Aa-v0"] and table["env"].tolist() == ["Aa-v0", "B-v0"]
    written = pd.read_csv(tmp_path / RANDOM_POLICY_CSV)
    assert written.to_dict("records") == table.to_dict("records")
    # Known envs are not played again, and the file is not rewritten
    mtime = (tmp_path / RANDOM_POLICY_CSV).stat().st_mtime_ns
    assert update_random_scores(tmp_path, ["Aa-v0"], episodes=100, seed=7).equals(written)
    assert calls == ["B-v0", "Aa-v0"] and (tmp_path / RANDOM_POLICY_CSV).stat().st_mtime_ns == mtime
    # Other episodes or another seed score the env again and replace its row
    table = update_random_scores(tmp_path, ["Aa-v0", "C-v0"], episodes=10, seed=7)
    assert calls[2:] == ["Aa-v0", "C-v0"]
    assert table[["env", "episodes"]].to_numpy().tolist() == [["Aa-v0", 10], ["B-v0", 100], ["C-v0", 10]]

    section = random_policy_section(table)
    assert section.startswith("\n## Random policy\n") and "| B-v0 | 100 | 7 | 0.40 | 0.50 |" in section
    assert random_policy_section(pd.DataFrame(columns=table.columns)) == ""


def test_constant_policy_plays_one_action_and_refuses_one_outside_the_space():
    state = (np.ones(2),)
    actions, passed = ConstantPolicy(spaces.Discrete(3), 2).predict({"image": np.zeros((4, 1))}, state=state)
    assert actions.tolist() == [2, 2, 2, 2] and passed is state
    for space, action in ((spaces.Discrete(3), 3), (spaces.Discrete(3), -1), (spaces.Box(-1.0, 1.0, (1,)), 0)):
        with pytest.raises(ValueError, match="constant action needs a Discrete action space that holds it"):
            ConstantPolicy(space, action)


def test_constant_action_table_sorts_each_seeds_runs_by_its_score(tmp_path: Path):
    """The runs of a seed at, above and below the constant action's score in the env of their final score."""
    episodes, seeds = 3, (0, 1)
    scores = [
        np.mean(policy_returns("Breakout-MinAtar", episodes, FINAL_EVAL_SEED_OFFSET + seed, lambda s: ConstantPolicy(s, 1)))
        for seed in seeds
    ]
    runs = [("same", scores[0]), ("better", scores[0] + 1.0), ("worse", scores[0] - 0.01), ("other seed", scores[1])]
    finals = pd.DataFrame(
        [(algo, "Breakout-MinAtar", 0 if algo != "other seed" else 1, episodes, score) for algo, score in runs]
        + [("not scored", "Breakout-MinAtar", 0, episodes, np.nan), ("other env", "Asterix-MinAtar", 0, episodes, 1.0)],
        columns=["algo", "env", "seed", "final_episodes", "final_mean_return"],
    )
    finals.to_csv(tmp_path / "final.csv", index=False)
    rows = constant_action_rows(pd.read_csv(tmp_path / "final.csv"), ["Breakout-MinAtar"], action=1)
    assert rows[["seed", "score"]].values.tolist() == [[0, scores[0]], [1, scores[1]]]
    assert rows.iloc[0][["at", "above", "below"]].tolist() == [
        f"same ({scores[0]:.2f})",
        f"better ({scores[0] + 1:.2f})",
        f"worse ({scores[0] - 0.01:.2f})",
    ]
    assert rows.iloc[1][["at", "above", "below"]].tolist() == [f"other seed ({scores[1]:.2f})", "", ""]
    assert f"| Breakout-MinAtar | 0 | {scores[0]:.2f} | same" in constant_action_table(rows, action=1)
    with pytest.raises(ValueError, match="no final scores of Seaquest-MinAtar"):
        constant_action_rows(finals, ["Seaquest-MinAtar"], action=1)

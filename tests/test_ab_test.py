"""The A/B of two algorithms over envs (``scripts/ab_test.py``): its statistic, its permutation test, its report."""

import re
from pathlib import Path

import numpy as np
import pytest

from sb3_dreamer.benchmark.ab_test import main, mean_difference, normalised_scores, permutation_p_value

ROOT = Path(__file__).resolve().parents[1] / "benchmarks" / "minatar-100k"


def test_mean_difference_averages_envs_not_runs():
    pairs = [(np.array([1.0, 0.8, 0.6]), np.array([0.5])), (np.array([0.2]), np.array([0.4, 0.6]))]
    assert mean_difference(pairs) == pytest.approx(((0.8 - 0.5) + (0.2 - 0.5)) / 2)


def test_permutation_p_value_of_separated_and_of_equal_runs():
    """Three runs above two on each of four envs: only the observed labelling of the 10^4 is as extreme."""
    above = [(np.array([0.9, 0.8, 1.0]), np.array([0.1, 0.2])) for _ in range(4)]
    assert permutation_p_value(above, permutations=2000) < 0.005
    below = [(b, a) for a, b in above]
    assert permutation_p_value(below, permutations=2000) > 0.995
    equal = [(np.array([0.5, 0.5]), np.array([0.5, 0.5])) for _ in range(3)]
    assert permutation_p_value(equal, permutations=200) == 1.0
    # Seeded: the same runs give the same p-value
    mixed = [(np.array([0.3, 0.7, 0.5]), np.array([0.4, 0.45])), (np.array([0.6]), np.array([0.2, 0.9]))]
    assert permutation_p_value(mixed, permutations=500) == permutation_p_value(mixed, permutations=500)


def env_rows(out: str) -> dict[str, list[str]]:
    """The script's table: each env's cells (runs of A and B, their normalised means, the difference) by env."""
    cells = (line.strip("| ").split(" | ") for line in out.splitlines() if line.startswith("| "))
    return {row[0]: row[1:] for row in cells if row[0].endswith("-MinAtar")}


def test_ab_of_the_campaign(capsys: pytest.CaptureFixture):
    """The script on the committed campaign: a row per env where both have runs, then the mean and the p-value."""
    main(
        [
            "--root",
            str(ROOT),
            "--a",
            "dreamerv2",
            "--b",
            "dreamerv3",
            "--exclude-envs",
            "Freeway-MinAtar",
            "--permutations",
            "50",
        ]
    )
    out = capsys.readouterr().out
    rows = env_rows(out)
    assert len(rows) == 9 and "Freeway-MinAtar" not in rows
    assert "Over the 9 envs: mean normalised score dreamerv2 0." in out and "(50 relabellings within each env)" in out
    with pytest.raises(SystemExit, match=r"no env under .* has runs of both dreamerv2 and nothing"):
        main(["--root", str(ROOT), "--a", "dreamerv2", "--b", "nothing"])


def test_seeds_keep_their_runs_and_the_normalisation(capsys: pytest.CaptureFixture):
    """``--seeds`` compares the runs of those seeds only; each run keeps the score that the whole root normalises."""
    common = ["--root", str(ROOT), "--a", "dreamerv2", "--b", "dqn", "--permutations", "20"]
    main([*common, "--seeds", "0", "1"])
    rows = env_rows(capsys.readouterr().out)
    assert len(rows) == 10 and all(row[:2] == ["2", "2"] for row in rows.values())
    main([*common, "--seeds", "0"])
    single = env_rows(capsys.readouterr().out)
    scores = normalised_scores(ROOT)
    assert len(single) == 10
    for env, row in single.items():
        run = scores[(scores["env"] == env) & (scores["algo"] == "dreamerv2") & (scores["seed"] == 0)]
        assert row[:2] == ["1", "1"] and row[2] == f"{run['normalised'].item():.3f}"


def test_report_quotes_the_initialisation_ab(capsys: pytest.CaptureFixture):
    """The campaign report's verdict on the initialisation quotes what the script gives on the committed runs."""
    report = (ROOT.parent / "minatar-100k.md").read_text()
    paragraph = " ".join(next(p for p in report.split("\n\n") if p.startswith("**The verdict: the packaged")).split())
    command = re.search(r"`python scripts/ab_test.py ([^`]+)`", paragraph)[1].split()
    quoted = re.search(
        r"a mean normalised score of (\S+) against (\S+), a difference of (\S+), one-sided permutation p-value (\S+) ",
        paragraph,
    )
    main([*command[:1], str(ROOT), *command[2:]])
    out = capsys.readouterr().out
    measured = re.search(
        r"mean normalised score \S+ (\S+), \S+ (\S+), difference (\S+); one-sided permutation p-value (\S+) ", out
    )
    assert quoted.groups() == measured.groups()

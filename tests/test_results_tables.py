"""
The MinAtar campaign's figures that the README and the documentation quote are those of the generated report
(``benchmarks/minatar-100k/results.md``, written by ``python -m sb3_dreamer.benchmark --report-only``): a finished
run that changes the report fails here until the pages quote it (``python scripts/quote_report.py`` rewrites them).
The rewriting itself is checked on small pages.
"""

from pathlib import Path

import pytest

from sb3_dreamer.benchmark import quotes

REPO = Path(__file__).resolve().parents[1]
ROOT = REPO / "benchmarks" / "minatar-100k"
REPORT = (ROOT / "results.md").read_text()

#: a report's sections as ``results.md`` writes them, cut to what the quotes read
SMALL_REPORT = """# Benchmark results

## Scores with 95% bootstrap intervals

| algo | env | frames | seeds | score: mean [95% interval] | scores |
|---|---|---|---|---|---|
| dreamerv3 | Breakout-MinAtar | 100,000 | 3 | 6.00 [5.24, 6.50] | 6.50, 5.24, 6.26 |
| qrdqn | Breakout-MinAtar | 100,000 | 5 | 6.10 [5.45, 6.52] | 6.52, 5.45, 6.10, 6.20, 6.23 |
| qrdqn | Breakout-MinAtar | 20,000 | 1 | 9.99 [9.99, 9.99] | 9.99 |

## Aggregate over envs

| algo | runs | IQM | mean | optimality gap |
|---|---|---|---|---|
| dreamerv3 | 3 | 0.56 [0.53, 0.60] | 0.5 | 0.5 |
| qrdqn | 5 | 0.69 [0.64, 0.75] | 0.7 | 0.3 |

| P(row > column) | dreamerv3 | qrdqn |
|---|---|---|
| dreamerv3 | | 0.41 [0.37, 0.45] |
| qrdqn | 0.59 [0.55, 0.63] | |

## Variants

| algo | env | frames | seeds | score: mean [95% interval] | scores |
|---|---|---|---|---|---|
| dreamerv3@mse | Breakout-MinAtar | 100,000 | 1 | 12.00 [12.00, 12.00] | 12.00 |
"""
SMALL_COLUMNS = {"DreamerV3": "dreamerv3", "DreamerV3, squared error": "dreamerv3@mse", "QR-DQN": "qrdqn"}
SMALL_HEADER = "| env | DreamerV3 |"


@pytest.mark.parametrize("name", quotes.TABLE_PAGES)
def test_campaign_table_quotes_the_report(name: str) -> None:
    page = (REPO / name).read_text()
    assert len(quotes.table_rows(page, quotes.TABLE_HEADER)) == 1 + 10  # the header and the ten ids
    scores, random_scores = quotes.report_scores(REPORT), quotes.random_policy_scores(ROOT)
    stale = quotes.changed_lines(page, quotes.quote_table(page, scores, random_scores))
    assert not stale, f"{name}'s campaign table differs from results.md (python scripts/quote_report.py):\n" + "\n".join(stale)


@pytest.mark.parametrize("name", quotes.AGGREGATE_PAGES)
def test_aggregate_paragraph_quotes_the_report(name: str) -> None:
    page = (REPO / name).read_text()
    paragraph = next(p for p in page.split("\n\n") if quotes.is_aggregate_paragraph(p))
    # the IQM of the four algorithms of the campaign issue is there
    quoted = {quote.what for quote in quotes.aggregate_quotes(paragraph)}
    assert {f"IQM {algo}" for algo in ("dreamerv2", "qrdqn", "dqn", "ppo")} <= quoted
    stale = quotes.changed_lines(page, quotes.quote_aggregate(page, quotes.report_aggregate(REPORT)))
    assert not stale, f"{name}'s aggregate paragraph differs from results.md (python scripts/quote_report.py):\n" + (
        "\n".join(stale)
    )


def test_report_scores_read_the_budget_and_the_variants() -> None:
    scores = quotes.report_scores(SMALL_REPORT)
    # several seeds: the interval; one seed: its score alone; another budget: left out
    assert scores == {
        ("dreamerv3", "Breakout-MinAtar"): "6.00 [5.24, 6.50]",
        ("qrdqn", "Breakout-MinAtar"): "6.10 [5.45, 6.52]",
        ("dreamerv3@mse", "Breakout-MinAtar"): "12.00",
    }
    assert quotes.report_aggregate(SMALL_REPORT) == {
        "IQM dreamerv3": "0.56 [0.53, 0.60]",
        "IQM qrdqn": "0.69 [0.64, 0.75]",
        "P(dreamerv3 > qrdqn)": "0.41 [0.37, 0.45]",
        "P(qrdqn > dreamerv3)": "0.59 [0.55, 0.63]",
    }


def test_quote_table_rewrites_stale_cells_and_moves_the_bold() -> None:
    page = (
        "Intro.\n\n"
        "| env | DreamerV3 | DreamerV3, squared error | QR-DQN | random policy | reference (plot) |\n"
        "|---|---|---|---|---|---|\n"
        "| Breakout-MinAtar | 5.90 [5.00, 6.40] | 3.00 | **6.10** [5.45, 6.52] | 0.30 | ~2-3 |\n"
        "\nOutro."
    )
    quoted = quotes.quote_table(
        page, quotes.report_scores(SMALL_REPORT), {"Breakout-MinAtar": 0.3799}, SMALL_COLUMNS, SMALL_HEADER
    )
    # the variant's single seed is now the row's best: bold moves to it; the other columns stay
    assert quoted.splitlines()[4] == ("| Breakout-MinAtar | 6.00 [5.24, 6.50] | **12.00** | 6.10 [5.45, 6.52] | 0.38 | ~2-3 |")
    assert quoted.splitlines()[:4] == page.splitlines()[:4] and quoted.endswith("\nOutro.")
    assert quotes.quote_table(
        quoted, quotes.report_scores(SMALL_REPORT), {"Breakout-MinAtar": 0.38}, SMALL_COLUMNS, SMALL_HEADER
    ) == (quoted)
    with pytest.raises(ValueError, match="random policy"):
        quotes.quote_table(page, quotes.report_scores(SMALL_REPORT), {}, SMALL_COLUMNS, SMALL_HEADER)


def test_quote_aggregate_keeps_line_breaks_and_attributes_continued_lists() -> None:
    estimates = quotes.report_aggregate(SMALL_REPORT)
    paragraph = (
        "On the ten ids the IQMs are DreamerV3 0.50 [0.40,\n"
        "0.60] against QR-DQN 0.70 [0.60, 0.80]; P(DreamerV3 >\n"
        "QR-DQN) 0.40 [0.30, 0.50], and P(QR-DQN > DreamerV3) 0.60 [0.50, 0.70]."
    )
    page = f"Title.\n\n{paragraph}\n\nMore on the ten ids, no figures."
    quoted = quotes.quote_aggregate(page, estimates, SMALL_COLUMNS)
    assert quoted.split("\n\n")[1] == (
        "On the ten ids the IQMs are DreamerV3 0.56 [0.53,\n"
        "0.60] against QR-DQN 0.69 [0.64, 0.75]; P(DreamerV3 >\n"
        "QR-DQN) 0.41 [0.37, 0.45], and P(QR-DQN > DreamerV3) 0.59 [0.55, 0.63]."
    )
    assert [quote.what for quote in quotes.aggregate_quotes(paragraph, SMALL_COLUMNS)] == [
        "IQM dreamerv3",
        "IQM qrdqn",
        "P(dreamerv3 > qrdqn)",
        "P(qrdqn > dreamerv3)",
    ]
    # "> Y" continues the last "P(X > ...)"
    continued = "On the ten ids: P(QR-DQN > DreamerV3) 0.59 [0.55, 0.63], > DreamerV3, squared error 0.90 [0.80, 0.95]."
    assert [quote.what for quote in quotes.aggregate_quotes(continued, SMALL_COLUMNS)] == [
        "P(qrdqn > dreamerv3)",
        "P(qrdqn > dreamerv3@mse)",
    ]


def test_quote_aggregate_wraps_a_paragraph_whose_length_changed() -> None:
    estimates = {"IQM dreamerv3": "10.56 [9.53, 11.60]"}
    words = " ".join(["word"] * 30)
    page = f"{words} on the ten ids: the IQM of DreamerV3 0.56 [0.53, 0.60], {words}."
    quoted = quotes.quote_aggregate(page, estimates, SMALL_COLUMNS)
    assert "DreamerV3 10.56 [9.53, 11.60]," in quoted.replace("\n", " ")
    assert max(map(len, quoted.splitlines())) <= quotes.LINE_WIDTH < len(page)


def test_quote_aggregate_names_what_it_cannot_quote() -> None:
    estimates = quotes.report_aggregate(SMALL_REPORT)
    with pytest.raises(ValueError, match="no aggregate paragraph"):
        quotes.quote_aggregate("No figures here.", estimates, SMALL_COLUMNS)
    with pytest.raises(ValueError, match="not right after what they estimate"):
        quotes.quote_aggregate("The IQM on the ten ids is 0.56 [0.53, 0.60].", estimates, SMALL_COLUMNS)
    with pytest.raises(ValueError, match="without its algorithm"):
        quotes.quote_aggregate("On the ten ids the IQM: P(> QR-DQN) 0.41 [0.37, 0.45].", estimates, SMALL_COLUMNS)
    with pytest.raises(ValueError, match="IQM dreamerv3@mse"):
        quotes.quote_aggregate("On the ten ids the IQM: DreamerV3, squared error 0.40 [0.37, 0.43].", estimates, SMALL_COLUMNS)


def test_quote_pages_check_changes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "benchmarks" / "minatar-100k"
    root.mkdir(parents=True)
    (root / "results.md").write_text(REPORT)
    (root / "random_policy.csv").write_text((ROOT / "random_policy.csv").read_text())
    for name in quotes.AGGREGATE_PAGES:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text((REPO / name).read_text())
    readme = tmp_path / "README.md"
    row = next(line for line in readme.read_text().splitlines() if line.startswith("| Breakout-MinAtar |"))
    stale_row = "| Breakout-MinAtar | 1.00 |" + row.split("|", 3)[3]  # DreamerV2's cell stale
    stale = readme.read_text().replace(row, stale_row)
    readme.write_text(stale)
    assert quotes.quote_pages(root, tmp_path, check=True)
    assert readme.read_text() == stale and "- | Breakout-MinAtar | 1.00 |" in capsys.readouterr().out
    assert quotes.quote_pages(root, tmp_path)
    assert readme.read_text() == (REPO / "README.md").read_text()
    assert not quotes.quote_pages(root, tmp_path, check=True)

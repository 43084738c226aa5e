"""
The MinAtar campaign's figures that the README and the documentation quote are those of the generated report
(``benchmarks/minatar-100k/results.md``, written by ``python -m sb3_dreamer.benchmark --report-only``): a finished
run that changes the report fails here until the pages quote it.
"""

import csv
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
REPORT = REPO / "benchmarks" / "minatar-100k" / "results.md"
RANDOM_POLICY = REPO / "benchmarks" / "minatar-100k" / "random_policy.csv"
#: the pages with a campaign table (one row per MinAtar id, one column per algorithm)
TABLE_PAGES = (REPO / "README.md", REPO / "docs" / "results.md")
#: the pages whose paragraph on the ten ids quotes the aggregate (IQM, probabilities of improvement)
AGGREGATE_PAGES = (*TABLE_PAGES, REPO / "benchmarks" / "minatar-100k.md")
#: the campaign tables' column names and the report's algorithm names
COLUMN_ALGOS = {
    "DreamerV2": "dreamerv2",
    "DreamerV2, reference init": "dreamerv2@concatinit",
    "DreamerV3": "dreamerv3",
    "DreamerV3, squared error": "dreamerv3@mse",
    "QR-DQN": "qrdqn",
    "DQN": "dqn",
    "PPO": "ppo",
}
#: a mean with its 95% interval as the report writes it, e.g. ``6.87 [5.98, 7.62]``
INTERVAL = re.compile(r"-?\d+\.\d\d \[-?\d+\.\d\d, -?\d+\.\d\d\]")
FRAMES = "100,000"


def table_rows(text: str, header_start: str) -> list[list[str]]:
    """The cells of each row of the first Markdown table whose header line starts with ``header_start``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header_start))
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return [rows[0], *rows[2:]]  # without the |---| line


def random_policy_scores() -> dict[str, float]:
    """env -> the random policy's mean return, from ``random_policy.csv``."""
    with RANDOM_POLICY.open(newline="") as file:
        return {row["env"]: float(row["mean_return"]) for row in csv.DictReader(file)}


def report_section(heading: str) -> str:
    """The text of the report's section ``## heading``, up to the next one."""
    return REPORT.read_text().split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]


def report_scores() -> dict[tuple[str, str], str]:
    """
    (algo, env) -> the score as a campaign table shows it: ``mean [low, high]`` over several seeds, the mean alone for
    one seed (whose interval is its score twice); of the packaged algorithms and of the variants ``ALGO@NAME``.
    """
    scores = {}
    for section in ("Scores with 95% bootstrap intervals", "Variants"):
        header, *rows = table_rows(report_section(section), "| algo | env | frames | seeds | score")
        for cells in rows:
            row = dict(zip(header, cells, strict=True))
            if row["frames"] == FRAMES:
                score = row["score: mean [95% interval]"]
                scores[(row["algo"], row["env"])] = score.split(" ")[0] if row["seeds"] == "1" else score
    return scores


@pytest.mark.parametrize("page", TABLE_PAGES, ids=lambda page: page.name)
def test_campaign_table_quotes_the_report(page: Path) -> None:
    scores = report_scores()
    random_scores = random_policy_scores()
    header, *rows = table_rows(page.read_text(), "| env | DreamerV2 |")
    assert len(rows) == 10
    for cells in rows:
        env = cells[0]
        quoted = {COLUMN_ALGOS[name]: cell for name, cell in zip(header, cells, strict=True) if name in COLUMN_ALGOS}
        expected = {algo: scores.get((algo, env), "") for algo in quoted}
        best = max(float(score.split(" ")[0]) for score in expected.values() if score)
        for algo, score in expected.items():
            if score and float(score.split(" ")[0]) == best:
                head, _, tail = score.partition(" ")
                expected[algo] = f"**{head}** {tail}".strip()
        assert quoted == expected, f"{page.name}, {env}: the table's cells differ from {REPORT.name}'s scores"
        random_cell = dict(zip(header, cells, strict=True))["random policy"]
        assert random_cell == f"{random_scores[env]:.2f}", f"{page.name}, {env}: not {RANDOM_POLICY.name}'s score"


def report_aggregate() -> dict[str, str]:
    """
    The report's aggregate estimates by what they estimate: ``"IQM dreamerv2"`` and ``"P(dreamerv2 > ppo)"`` ->
    ``mean [low, high]``.
    """
    section = report_section("Aggregate over envs")
    estimates = {}
    header, *rows = table_rows(section, "| algo | runs | IQM |")
    for cells in rows:
        estimates[f"IQM {cells[0]}"] = dict(zip(header, cells, strict=True))["IQM"]
    header, *rows = table_rows(section, "| P(row > column) |")
    for cells in rows:
        for column, cell in zip(header[1:], cells[1:], strict=True):
            if cell:
                estimates[f"P({cells[0]} > {column})"] = cell
    return estimates


def quoted_aggregate(paragraph: str) -> dict[str, str]:
    """
    The estimates a page's aggregate paragraph quotes, by what they estimate (as ``report_aggregate``): an interval
    right after an algorithm's name is its IQM (``QR-DQN 0.84 [0.80, 0.88]``), one after ``P(X > Y)`` a probability of
    improvement, where ``P(> Y)`` and ``> Y`` continue the list of the last ``P(X > ...)``.
    """
    names = "|".join(sorted(map(re.escape, COLUMN_ALGOS), key=len, reverse=True))
    what = rf"(?P<iqm>{names})|P\((?P<x>{names})? ?> (?P<y>{names})\)|> (?P<more>{names})"
    estimate = re.compile(rf"(?:{what}) (?P<value>{INTERVAL.pattern})")
    quoted, x = {}, None
    for match in estimate.finditer(paragraph):
        if match["iqm"]:
            quoted[f"IQM {COLUMN_ALGOS[match['iqm']]}"] = match["value"]
            continue
        x = match["x"] or x
        assert x, f"{match[0]!r}: a probability of improvement without its algorithm"
        quoted[f"P({COLUMN_ALGOS[x]} > {COLUMN_ALGOS[match['y'] or match['more']]})"] = match["value"]
    return quoted


@pytest.mark.parametrize("page", AGGREGATE_PAGES, ids=lambda page: page.name)
def test_aggregate_paragraph_quotes_the_report(page: Path) -> None:
    paragraph = next(p for p in page.read_text().split("\n\n") if "the ten ids" in p and "IQM" in p)
    paragraph = paragraph.replace("\n", " ")
    quoted = quoted_aggregate(paragraph)
    # every interval of the paragraph is attributed, and the IQM of the four algorithms of the issue is there
    assert len(quoted) == len(INTERVAL.findall(paragraph)), f"{page.name}: an interval not next to what it estimates"
    assert {f"IQM {algo}" for algo in ("dreamerv2", "qrdqn", "dqn", "ppo")} <= set(quoted)
    reported = report_aggregate()
    wrong = {what: value for what, value in quoted.items() if reported.get(what) != value}
    assert not wrong, f"{page.name} quotes {wrong}; {REPORT.name} has { ({what: reported.get(what) for what in wrong}) }"

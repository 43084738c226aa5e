"""
The pages' quotes of a benchmark report: the campaign table (one row per env, one column per algorithm: each cell the
report's score, the best of the row in bold, and the random policy's score) and the aggregate paragraph (each IQM and
probability of improvement, an interval right after what it estimates) of Markdown pages, checked against the report
(``results.md``, ``random_policy.csv``) and rewritten from it once a finished run has changed it.

Only the figures change: a paragraph's prose (who leads, by how much) is the writer's, so ``main`` prints each changed
figure for a reader to check the sentences around it.

Usage:
  python scripts/quote_report.py --root benchmarks/minatar-100k [--check]
"""

import argparse
import difflib
import re
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

from sb3_dreamer.benchmark.random_policy import RANDOM_POLICY_CSV, read_random_scores
from sb3_dreamer.benchmark.report import RESULTS_MD

#: the campaign table's column names and the report's algorithm names
CAMPAIGN_COLUMNS = {
    "DreamerV2": "dreamerv2",
    "DreamerV2, reference init": "dreamerv2@concatinit",
    "DreamerV3": "dreamerv3",
    "DreamerV3, squared error": "dreamerv3@mse",
    "QR-DQN": "qrdqn",
    "DQN": "dqn",
    "PPO": "ppo",
}
#: how the campaign table's header line starts
TABLE_HEADER = "| env | DreamerV2 |"
#: the column of the random policy's score
RANDOM_COLUMN = "random policy"
#: the pages with a campaign table, and those with an aggregate paragraph, relative to the repository
TABLE_PAGES = ("README.md", "docs/results.md")
AGGREGATE_PAGES = (*TABLE_PAGES, "benchmarks/minatar-100k.md")
#: a mean with its 95% interval as the report writes it, e.g. ``6.87 [5.98, 7.62]``
INTERVAL = re.compile(r"-?\d+\.\d\d \[-?\d+\.\d\d, -?\d+\.\d\d\]")
#: a number of an interval
NUMBER = re.compile(r"-?\d+\.\d\d")
#: the frame budget whose scores the campaign quotes, as the report writes it
FRAMES = "100,000"
#: the width the pages' paragraphs are wrapped at
LINE_WIDTH = 120


def table_start(lines: list[str], header_start: str) -> int:
    """The index of the first line of ``lines`` that starts with ``header_start``: a table's header."""
    start = next((i for i, line in enumerate(lines) if line.startswith(header_start)), None)
    if start is None:
        raise ValueError(f"no table whose header starts with {header_start!r}")
    return start


def table_rows(text: str, header_start: str) -> list[list[str]]:
    """The cells of each row of the first Markdown table whose header line starts with ``header_start``."""
    lines = text.splitlines()
    rows = []
    for line in lines[table_start(lines, header_start) :]:
        if not line.startswith("|"):
            break
        rows.append(split_row(line))
    return [rows[0], *rows[2:]]  # without the |---| line


def split_row(line: str) -> list[str]:
    """The stripped cells of a Markdown table row."""
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def report_section(report: str, heading: str) -> str:
    """The text of the report's section ``## heading``, up to the next one."""
    if f"## {heading}\n" not in report:
        raise ValueError(f"the report has no section {heading!r}")
    return report.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]


def report_scores(report: str, frames: str = FRAMES) -> dict[tuple[str, str], str]:
    """
    (algo, env) -> the score as a campaign table shows it: ``mean [low, high]`` over several seeds, the mean alone for
    one seed (whose interval is its score twice); of the packaged algorithms and of the variants ``ALGO@NAME``.
    """
    scores = {}
    for section in ("Scores with 95% bootstrap intervals", "Variants"):
        header, *rows = table_rows(report_section(report, section), "| algo | env | frames | seeds | score")
        for cells in rows:
            row = dict(zip(header, cells, strict=True))
            if row["frames"] == frames:
                score = row["score: mean [95% interval]"]
                scores[(row["algo"], row["env"])] = score.split(" ")[0] if row["seeds"] == "1" else score
    return scores


def report_aggregate(report: str) -> dict[str, str]:
    """
    The report's aggregate estimates by what they estimate: ``"IQM dreamerv2"`` and ``"P(dreamerv2 > ppo)"`` ->
    ``mean [low, high]``.
    """
    section = report_section(report, "Aggregate over envs")
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


def random_policy_scores(root: Path) -> dict[str, float]:
    """env -> the random policy's score, from ``root/random_policy.csv`` (:func:`read_random_scores`)."""
    rows = read_random_scores(root)
    return dict(zip(rows["env"], rows["mean_return"].astype(float), strict=True))


def table_cells(
    header: list[str],
    cells: list[str],
    scores: dict[tuple[str, str], str],
    random_scores: dict[str, float],
    columns: dict[str, str],
) -> list[str]:
    """
    A campaign table row's cells as the report has them: each algorithm's column its score (empty where it has none),
    the best mean of the row in bold, the random policy's score; the other columns as they are.
    """
    env = cells[0]
    quoted = {name: scores.get((columns[name], env), "") for name in header if name in columns}
    best = max((float(score.split(" ")[0]) for score in quoted.values() if score), default=None)
    for name, score in quoted.items():
        if score and float(score.split(" ")[0]) == best:
            head, _, tail = score.partition(" ")
            quoted[name] = f"**{head}** {tail}".strip()
    if RANDOM_COLUMN in header:
        if env not in random_scores:
            raise ValueError(f"{env}: no random policy's score in {RANDOM_POLICY_CSV}")
        quoted[RANDOM_COLUMN] = f"{random_scores[env]:.2f}"
    return [quoted.get(name, cell) for name, cell in zip(header, cells, strict=True)]


def quote_table(
    page: str,
    scores: dict[tuple[str, str], str],
    random_scores: dict[str, float],
    columns: dict[str, str] = CAMPAIGN_COLUMNS,
    header_start: str = TABLE_HEADER,
) -> str:
    """``page`` with its campaign table's rows (:func:`table_cells`) rewritten from the report."""
    lines = page.split("\n")
    start = table_start(lines, header_start)
    header = split_row(lines[start])
    row = start + 2
    while row < len(lines) and lines[row].startswith("|"):
        cells = split_row(lines[row])
        lines[row] = "| " + " | ".join(table_cells(header, cells, scores, random_scores, columns)) + " |"
        row += 1
    return "\n".join(lines)


@dataclass(frozen=True)
class Quote:
    """An estimate that a paragraph quotes: what it estimates (as :func:`report_aggregate` names it) and where."""

    what: str
    start: int
    end: int


def aggregate_quotes(paragraph: str, columns: dict[str, str] = CAMPAIGN_COLUMNS) -> list[Quote]:
    """
    The estimates an aggregate paragraph quotes, by what they estimate: an interval right after an algorithm's name is
    its IQM (``QR-DQN 0.84 [0.80, 0.88]``), one after ``P(X > Y)`` a probability of improvement, where ``P(> Y)`` and
    ``> Y`` continue the list of the last ``P(X > ...)``. Line breaks count as spaces; each quote's span is that of its
    interval.
    """
    flat = paragraph.replace("\n", " ")  # the same length: the spans hold in the paragraph
    names = "|".join(sorted(map(re.escape, columns), key=len, reverse=True))
    what = rf"(?P<iqm>{names})|P\((?P<x>{names})? ?> (?P<y>{names})\)|> (?P<more>{names})"
    estimate = re.compile(rf"(?:{what}) (?P<value>{INTERVAL.pattern})")
    quotes, x = [], None
    for match in estimate.finditer(flat):
        if match["iqm"]:
            quotes.append(Quote(f"IQM {columns[match['iqm']]}", *match.span("value")))
            continue
        x = match["x"] or x
        if x is None:
            raise ValueError(f"{match[0]!r}: a probability of improvement without its algorithm")
        y = match["y"] or match["more"]
        quotes.append(Quote(f"P({columns[x]} > {columns[y]})", *match.span("value")))
    unattributed = len(INTERVAL.findall(flat)) - len(quotes)
    if unattributed:
        raise ValueError(f"{unattributed} interval(s) of the aggregate paragraph not right after what they estimate")
    return quotes


def is_aggregate_paragraph(paragraph: str) -> bool:
    """Whether a page's paragraph is its aggregate paragraph: the first on the ten ids that quotes IQMs."""
    return "the ten ids" in paragraph and "IQM" in paragraph


def replace_numbers(interval: str, value: str) -> str:
    """``interval`` (``mean [low, high]``, perhaps broken over lines) with the numbers of ``value``, the rest kept."""
    numbers = iter(NUMBER.findall(value))
    return NUMBER.sub(lambda _: next(numbers), interval)


def quote_aggregate(page: str, estimates: dict[str, str], columns: dict[str, str] = CAMPAIGN_COLUMNS) -> str:
    """
    ``page`` with each estimate of its aggregate paragraph (:func:`aggregate_quotes`) replaced by the report's, number
    by number so that the line breaks stay; a paragraph whose length changed is wrapped again at ``LINE_WIDTH``.

    :raises ValueError: for a page without an aggregate paragraph, or one that quotes an estimate the report lacks
    """
    paragraphs = page.split("\n\n")
    index = next((i for i, paragraph in enumerate(paragraphs) if is_aggregate_paragraph(paragraph)), None)
    if index is None:
        raise ValueError("no aggregate paragraph (one on 'the ten ids' that quotes an 'IQM')")
    paragraph = paragraphs[index]
    pieces, last = [], 0
    for quote in aggregate_quotes(paragraph, columns):
        if quote.what not in estimates:
            raise ValueError(f"the paragraph quotes {quote.what}, which the report does not estimate")
        pieces += [paragraph[last : quote.start], replace_numbers(paragraph[quote.start : quote.end], estimates[quote.what])]
        last = quote.end
    quoted = "".join([*pieces, paragraph[last:]])
    if len(quoted) != len(paragraph):
        quoted = textwrap.fill(quoted.replace("\n", " "), LINE_WIDTH, break_long_words=False, break_on_hyphens=False)
    paragraphs[index] = quoted
    return "\n\n".join(paragraphs)


def changed_lines(before: str, after: str) -> list[str]:
    """The lines that ``after`` removes from ``before`` (``- line``) and adds to it (``+ line``), in the pages' order."""
    diff = difflib.unified_diff(before.split("\n"), after.split("\n"), lineterm="", n=0)
    return [f"{line[0]} {line[1:]}" for line in diff if line[:1] in ("-", "+") and not line.startswith(("---", "+++"))]


def quote_pages(root: Path, repo: Path, check: bool = False) -> bool:
    """
    Rewrite the campaign tables of ``TABLE_PAGES`` and the aggregate paragraphs of ``AGGREGATE_PAGES`` (under
    ``repo``) from the report under ``root``, printing each changed line; with ``check``, only print them.

    :return: whether any page differed from the report
    """
    report = (root / RESULTS_MD).read_text()
    scores, estimates, random_scores = report_scores(report), report_aggregate(report), random_policy_scores(root)
    differed = False
    for name in dict.fromkeys((*TABLE_PAGES, *AGGREGATE_PAGES)):
        path = repo / name
        before = path.read_text()
        after = quote_table(before, scores, random_scores) if name in TABLE_PAGES else before
        after = quote_aggregate(after, estimates) if name in AGGREGATE_PAGES else after
        if after != before:
            differed = True
            print(f"{name}:", *changed_lines(before, after), sep="\n")
            if not check:
                path.write_text(after)
    return differed


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=Path("benchmarks/minatar-100k"), help="the benchmark root")
    parser.add_argument("--repo", type=Path, default=Path("."), help="the repository whose pages quote the report")
    parser.add_argument("--check", action="store_true", help="print what differs, change nothing, exit 1 if anything")
    args = parser.parse_args(argv)
    differed = quote_pages(args.root, args.repo, check=args.check)
    if args.check and differed:
        sys.exit(1)

"""
Every Python and shell block of the README and of the documentation's pages (``docs/*.md``) runs, with tiny budgets, so
that a pasted snippet works; the documentation builds with warnings as errors.

Each page's Python blocks run in order in one namespace of their own (later blocks use what earlier ones made), with
``learn`` capped at a few hundred steps and MinAtar episodes at 200 steps (an untrained agent may otherwise play up to
the 10,000-step limit). Each page's shell commands run in order in a folder of their own (later commands use what
earlier ones wrote), with the budgets, trial counts, seeds and output folders of :data:`SHELL_BUDGETS`; installation,
test, documentation-build and ``export`` lines are not run, nor a page whose commands all recur on later pages.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import pytest
from conftest import constructor_defaults

from sb3_dreamer import DreamerV2, DreamerV3
from sb3_dreamer.dreamerv2.policies import DreamerV2Policy
from sb3_dreamer.dreamerv3.policies import DreamerV3Policy
from sb3_dreamer.envs.registration import GAME_IDS

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DOCS = REPO / "docs"
#: env steps a ``learn`` call or zoo run of a page gets here
TINY_BUDGET = 300
#: lines of shell blocks that are not run here: installing, testing, building the documentation (see
#: :func:`test_docs_build`), environment settings
NOT_RUN = ("pip ", "pytest", "sphinx-build ", "export ", "#")
#: (pattern, replacement) applied in order to each shell command: tiny budgets, one seed and env, output under the
#: test's folder
SHELL_BUDGETS = (
    (r" -n \d+", ""),
    (r"(python -m (?:rl_zoo3|sb3_dreamer\.zoo)\.? ?train .*)", rf"\1 -n {TINY_BUDGET}"),
    (r"(python -m (?:rl_zoo3|sb3_dreamer\.zoo)\.? ?(?:enjoy|record_video) .*)", r"\1 -n 50"),
    (r"--n-trials \d+", "--n-trials 2 --env-kwargs max_episode_steps:200"),
    (r"save_freq=\d+", "save_freq=100"),
    (r"python scripts/", f"{sys.executable} {REPO}/scripts/"),
    (r"^python ", f"{sys.executable} "),
    (r"--seeds( \d+)+", "--seeds 0"),
    (r"--envs (\S+)( [A-Z]\S+)*", r"--envs \1"),
    (r" --(?:frames|eval-freq|eval-episodes) \d+", ""),
    (r"--processes \d+", "--processes 1"),
    (r"--root \S+", "--root bench --quick"),
)


def reading_order() -> tuple[Path, ...]:
    """
    The README, then the documentation's Markdown pages in the order of its table of contents (the benchmark reports it
    includes are not among them), then any other page: later shell commands may use what earlier ones wrote.
    """
    listed = [DOCS / f"{name}.md" for name in re.findall(r"^ +(\w+)$", (DOCS / "index.rst").read_text(), flags=re.M)]
    listed = [page for page in listed if page.exists()]
    return (README, *listed, *sorted(set(DOCS.glob("*.md")) - set(listed)))


#: the pages whose blocks run here
PAGES = reading_order()


def page_name(page: Path) -> str:
    return page.relative_to(REPO).as_posix()


def page_blocks(page: Path, language: str) -> list[str]:
    """The page's fenced blocks of ``language``, in order."""
    return re.findall(rf"^```{language}\n(.*?)^```", page.read_text(), flags=re.S | re.M)


def shell_commands(page: Path) -> list[str]:
    """The page's shell commands (continuation lines joined), in order, without the ones not run."""
    commands: list[str] = []
    for block in page_blocks(page, "bash"):
        for command in block.replace("\\\n", " ").splitlines():
            # A trailing comment would swallow the budget options appended below
            command = " ".join(re.sub(r"\s#.*$", "", command).split())
            if command and not command.startswith(NOT_RUN):
                commands.append(command)
    return commands


def with_tiny_budget(command: str) -> str:
    for pattern, replacement in SHELL_BUDGETS:
        command = re.sub(pattern, replacement, command)
    return command


def tiny_shell_commands() -> dict[str, list[str]]:
    """
    The shell commands with tiny budgets by page name, each once per page, in order, for the pages with a command that
    no later page repeats (so every command runs: a command's last page is kept; the README's are all repeated).
    """
    pages = [(page, list(dict.fromkeys(with_tiny_budget(command) for command in shell_commands(page)))) for page in PAGES]
    kept = {}
    for index, (page, commands) in enumerate(pages):
        later = {command for _, other_commands in pages[index + 1 :] for command in other_commands}
        if not set(commands) <= later:
            kept[page_name(page)] = commands
    return kept


#: :func:`tiny_shell_commands`, by page name
SHELL_COMMANDS = tiny_shell_commands()


def test_pages_have_blocks_of_both_kinds():
    assert len(page_blocks(README, "python")) >= 2 and shell_commands(README)
    assert sum(len(page_blocks(page, "python")) for page in PAGES) >= 6 and sum(map(len, SHELL_COMMANDS.values())) >= 8


@pytest.mark.parametrize(
    ("page", "algorithm", "policy_class"),
    [
        (README, DreamerV2, DreamerV2Policy),
        (DOCS / "quickstart.md", DreamerV2, DreamerV2Policy),
        (DOCS / "dreamerv3.md", DreamerV3, DreamerV3Policy),
    ],
    ids=lambda param: page_name(param) if isinstance(param, Path) else param.__name__,
)
def test_python_sample_trains_the_zoo_minatar_setting(page: Path, algorithm: type, policy_class: type):
    """
    The Python sample that says it trains "the zoo's MinAtar settings" passes exactly the packaged Breakout-MinAtar
    entries that differ from the constructor's and the policy class's defaults (``policy_class``, whose ``CnnPolicy``
    picks only the encoder).
    """
    import ast

    import yaml

    block = next(block for block in page_blocks(page, "python") if "The zoo's MinAtar settings" in block)
    call = next(
        node
        for node in ast.walk(ast.parse(block))
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == algorithm.__name__
    )

    def value(node: ast.expr) -> object:
        """A literal, or a ``dict(...)`` call of literals."""
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "dict":
            return {keyword.arg: value(keyword.value) for keyword in node.keywords}
        return ast.literal_eval(node)

    passed = {keyword.arg: value(keyword.value) for keyword in call.keywords if keyword.arg != "tensorboard_log"}
    passed_policy_kwargs = passed.pop("policy_kwargs", {})
    with open(REPO / "hyperparams" / f"{algorithm.__name__.lower()}.yml") as file:
        entry = yaml.safe_load(file)["Breakout-MinAtar"]
    policy_kwargs = eval(entry.pop("policy_kwargs"))
    assert [ast.literal_eval(arg) for arg in call.args] == [entry.pop("policy"), "Breakout-MinAtar"]
    for cls, values, sample in ((algorithm, entry, passed), (policy_class, policy_kwargs, passed_policy_kwargs)):
        defaults = constructor_defaults(cls)
        differing = {name: value for name, value in values.items() if name in defaults and defaults[name] != value}
        assert differing and sample == differing, cls.__name__


#: the Markdown pages of the repository: the README, the changelog, the documentation and the benchmark reports
MARKDOWN_PAGES = [
    README,
    REPO / "CHANGELOG.md",
    *sorted(DOCS.rglob("*.md")),
    *sorted((REPO / "benchmarks").rglob("*.md")),
]


def test_markdown_links_exist():
    """The pages' relative links (to other pages, dream GIFs, plots) name files of the repository."""
    missing, count = [], 0
    for page in MARKDOWN_PAGES:
        links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text())
        relative = [link for link in links if "://" not in link]
        count += len(relative)
        missing += [f"{page.relative_to(REPO)}: {link}" for link in relative if not (page.parent / link).exists()]
    assert count >= 50 and missing == []


def capped_learn(learn):
    """``learn`` with its budget capped at :data:`TINY_BUDGET` env steps."""
    return lambda self, total_timesteps, *args, **kwargs: learn(self, min(total_timesteps, TINY_BUDGET), *args, **kwargs)


@pytest.mark.parametrize("page", [page for page in PAGES if page_blocks(page, "python")], ids=page_name)
def test_python_blocks(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for algorithm in (DreamerV2, DreamerV3):
        monkeypatch.setattr(algorithm, "learn", capped_learn(algorithm.learn))
    for name in GAME_IDS.values():
        for env_id in (f"{name}-MinAtar", f"{name}POMDP-MinAtar"):
            monkeypatch.setattr(gym.spec(env_id), "max_episode_steps", 200)
    namespace: dict = {}
    for block in page_blocks(page, "python"):
        exec(compile(block, str(page), "exec"), namespace)
    assert isinstance(namespace["model"], (DreamerV2, DreamerV3))


@pytest.mark.timeout(900)
@pytest.mark.parametrize("commands", SHELL_COMMANDS.values(), ids=SHELL_COMMANDS.keys())
def test_shell_blocks(commands, tmp_path):
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    for command in commands:
        result = subprocess.run(command, shell=True, cwd=tmp_path, env=environment, capture_output=True, text=True)
        assert result.returncode == 0, f"{command}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::PendingDeprecationWarning")
def test_docs_build(tmp_path):
    """``sphinx-build -W --keep-going -b html docs OUT``, as CI runs it (with the ``docs`` extra installed)."""
    for module in ("sphinx", "myst_parser", "sphinx_rtd_theme"):
        pytest.importorskip(module, reason='the documentation needs pip install -e ".[docs]"')
    from sphinx.cmd.build import build_main

    arguments = ["-W", "--keep-going", "-q", "-b", "html", "-d", str(tmp_path / "doctrees"), str(DOCS), str(tmp_path / "html")]
    assert build_main(arguments) == 0
    assert (tmp_path / "html" / "api.html").exists()

"""
Packaging: the RL Zoo start-up hook is installed with the package and built into its wheel, with the package data.

``setup.py`` writes ``sb3_dreamer_zoo.pth`` into regular and editable wheels; at interpreter start-up it calls
``sb3_dreamer_zoo_hook.install()``. Nothing else fails when a change of the packaging drops one of them: the package
imports and trains as before, only ``python -m rl_zoo3.train --algo dreamerv2`` stops knowing the algorithm.
``tests/test_zoo.py::test_startup_hook`` checks what the hook does; these tests check that it is there.
"""

import ast
import importlib.metadata
import os
import shutil
import site
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
from packaging.version import Version

REPO = Path(__file__).resolve().parents[1]
DISTRIBUTION = "sb3-dreamer"
HOOK_MODULE = "sb3_dreamer_zoo_hook"
#: what a wheel is built from: setup.py and pyproject.toml read nothing else
SOURCES = ("pyproject.toml", "setup.py", "README.md", "LICENSE", f"{HOOK_MODULE}.py", "sb3_dreamer")
#: the setuptools that reads the metadata of pyproject.toml (``license`` as an SPDX expression, ``license-files``)
SETUPTOOLS = Version("77")


def setup_constant(name: str) -> str:
    """The string constant ``name`` of ``setup.py`` (which cannot be imported: it runs ``setup()``)."""
    for node in ast.parse((REPO / "setup.py").read_text()).body:
        if isinstance(node, ast.Assign) and [target.id for target in node.targets if isinstance(target, ast.Name)] == [name]:
            return ast.literal_eval(node.value)
    raise AssertionError(f"setup.py defines no {name}")


PTH_FILE = setup_constant("PTH_FILE")
PTH_LINE = setup_constant("PTH_LINE")


def test_pth_file_calls_the_hook() -> None:
    assert PTH_FILE == "sb3_dreamer_zoo.pth" and PTH_LINE.startswith("import ")  # site runs only lines that start so
    assert f'__import__("{HOOK_MODULE}").install()' in PTH_LINE and PTH_LINE.count("\n") == 1


def site_dirs() -> list[str]:
    """The folders whose ``.pth`` files run at start-up, in ``sys.path`` order."""
    dirs = [sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"], *site.getsitepackages()]
    if site.ENABLE_USER_SITE:
        dirs.append(site.getusersitepackages())
    return [path for path in dict.fromkeys(dirs) if Path(path).is_dir()]


def test_installed_distribution_has_the_pth_file_in_site_packages() -> None:
    """The installed ``sb3-dreamer``, regular or editable, lists the ``.pth`` file and has put it in a site directory."""
    # In the site folders only: the working tree may hold a stale sb3_dreamer.egg-info of an old build
    distribution = next(iter(importlib.metadata.distributions(name=DISTRIBUTION, path=site_dirs())), None)
    assert distribution is not None, f"{DISTRIBUTION} is not installed: pip install -e ."
    files = {file.as_posix(): file for file in distribution.files or ()}
    assert PTH_FILE in files, f"{DISTRIBUTION} was installed without {PTH_FILE}: pip install -e . again ({sorted(files)})"
    pth = Path(distribution.locate_file(files[PTH_FILE]))
    assert pth.parent.resolve() in {Path(path).resolve() for path in site_dirs()}, pth
    assert pth.read_text() == PTH_LINE, f"{pth} is not the one setup.py writes: pip install -e . again"


def test_installed_hook_works_outside_the_repository(tmp_path: Path) -> None:
    """
    In isolated mode (no ``PYTHONPATH``, no current folder on the path), from another folder, the zoo knows
    ``dreamerv2`` as soon as ``rl_zoo3.utils`` is imported: the installed ``.pth`` file and hook module do it alone.
    """
    code = (
        "import sys; assert 'sb3_dreamer' not in sys.modules; "
        "from rl_zoo3.utils import ALGOS; from sb3_dreamer import DreamerV2; "
        f"assert ALGOS.get('dreamerv2') is DreamerV2, sorted(ALGOS); print(sys.modules['{HOOK_MODULE}'].__file__)"
    )
    env = {name: value for name, value in os.environ.items() if name != "SB3_DREAMER_NO_ZOO_HOOK"}
    result = subprocess.run(
        [sys.executable, "-I", "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert Path(result.stdout.strip()).name == f"{HOOK_MODULE}.py"


@pytest.mark.timeout(600)
def test_wheel_holds_the_hook_and_the_package_data(tmp_path: Path) -> None:
    """A regular wheel, built from the working tree without network, holds the hook, every package and the data."""
    setuptools = Version(importlib.metadata.version("setuptools"))
    assert setuptools >= SETUPTOOLS, f"building the wheel needs setuptools>={SETUPTOOLS}: pip install -e '.[tests]'"
    source = tmp_path / "source"
    source.mkdir()
    for name in SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(REPO / name, source / name)
    command = [sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation", "-q"]
    result = subprocess.run([*command, "-w", str(tmp_path)], capture_output=True, text=True, timeout=540)
    assert result.returncode == 0, f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    (wheel,) = tmp_path.glob("sb3_dreamer-*.whl")

    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        assert PTH_FILE in names, sorted(names)
        assert archive.read(PTH_FILE).decode() == PTH_LINE
    assert f"{HOOK_MODULE}.py" in names
    assert "sb3_dreamer/py.typed" in names
    packages = sorted(path.parent.relative_to(REPO).as_posix() for path in (REPO / "sb3_dreamer").rglob("__init__.py"))
    assert [package for package in packages if f"{package}/__init__.py" not in names] == []
    hyperparams = sorted(path.relative_to(REPO).as_posix() for path in (REPO / "sb3_dreamer/zoo/hyperparams").glob("*.yml"))
    assert "sb3_dreamer/zoo/hyperparams/dreamerv2.yml" in hyperparams
    assert [path for path in hyperparams if path not in names] == []
    assert any(name.endswith(".dist-info/licenses/LICENSE") for name in names)

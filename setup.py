"""
Build commands of sb3-dreamer; the metadata (dependencies, extras, packages, package data) lives in pyproject.toml.

They add ``sb3_dreamer_zoo.pth`` at the root of the wheel and of the editable wheel, so that ``pip install .``
and ``pip install -e .`` both put it in site-packages. At interpreter start-up it installs the lazy RL Zoo hook
of ``sb3_dreamer_zoo_hook`` (a module of the wheel), unless ``SB3_DREAMER_NO_ZOO_HOOK`` is set.
"""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.editable_wheel import editable_wheel

PTH_FILE = "sb3_dreamer_zoo.pth"
PTH_LINE = 'import os; os.environ.get("SB3_DREAMER_NO_ZOO_HOOK") or __import__("sb3_dreamer_zoo_hook").install()\n'


class build_py_with_pth(build_py):
    """``build_py`` that also writes the ``.pth`` file at the root of ``build_lib``, which becomes site-packages."""

    def run(self) -> None:
        super().run()
        if not self.editable_mode:
            Path(self.build_lib, PTH_FILE).write_text(PTH_LINE)


class editable_wheel_with_pth(editable_wheel):
    """``editable_wheel`` that also writes the ``.pth`` file at the root of the editable wheel (it ignores ``build_lib``)."""

    def _run_build_commands(self, dist_name, unpacked_wheel, build_lib, tmp_dir):
        outputs = super()._run_build_commands(dist_name, unpacked_wheel, build_lib, tmp_dir)
        Path(unpacked_wheel, PTH_FILE).write_text(PTH_LINE)
        return outputs


setup(cmdclass={"build_py": build_py_with_pth, "editable_wheel": editable_wheel_with_pth})

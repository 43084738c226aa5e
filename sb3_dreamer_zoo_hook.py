"""
Interpreter-startup hook of sb3-dreamer: apply the RL Zoo plug-in as soon as ``rl_zoo3`` is imported, and not before.

``sb3_dreamer_zoo.pth``, which ``pip install .`` and ``pip install -e .`` put in site-packages, calls :func:`install`
at interpreter start-up unless ``SB3_DREAMER_NO_ZOO_HOOK`` is set to a non-empty value. :func:`install` only puts a finder
on ``sys.meta_path``: nothing heavy (torch, numpy, gymnasium, ``sb3_dreamer``) is imported until a program
imports ``rl_zoo3``. Right after ``rl_zoo3`` has been executed, :func:`sb3_dreamer.zoo.plugin.apply` registers
``dreamerv2``; if that fails, the failure is reported with a warning and ``rl_zoo3`` works as without the plug-in.

This module lives outside the ``sb3_dreamer`` package because importing that package imports torch.
"""

from __future__ import annotations

import sys

# Annotations only: importing typing (or importlib.abc) would slow down the start-up of every program.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from importlib.abc import Loader
    from importlib.machinery import ModuleSpec
    from types import ModuleType

ZOO_PACKAGE = "rl_zoo3"


def _apply_plugin() -> None:
    try:
        from sb3_dreamer.zoo.plugin import apply

        apply()
    except Exception as error:
        import warnings

        warnings.warn(
            f"sb3-dreamer could not register DreamerV2 with the RL Zoo ({type(error).__name__}: {error}); "
            "use `python -m sb3_dreamer.zoo` to see the full error, or set SB3_DREAMER_NO_ZOO_HOOK=1 to disable this hook"
        )


class _PluginLoader:
    """Loader of ``rl_zoo3`` that runs the real loader, then applies the plug-in."""

    def __init__(self, loader: Loader, finder: ZooFinder) -> None:
        self.loader = loader
        self.finder = finder

    def __getattr__(self, name: str) -> object:
        return getattr(self.loader, name)

    def create_module(self, spec: ModuleSpec) -> ModuleType | None:
        return self.loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        # Show the real loader from now on (reload, importlib.resources)
        module.__loader__ = self.loader
        if module.__spec__ is not None:
            module.__spec__.loader = self.loader
        self.loader.exec_module(module)
        if self.finder in sys.meta_path:
            sys.meta_path.remove(self.finder)
        _apply_plugin()


class ZooFinder:
    """Meta path finder that finds ``rl_zoo3`` with the other finders and wraps its loader in a :class:`_PluginLoader`."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None = None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if fullname != ZOO_PACKAGE:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if hasattr(spec.loader, "exec_module"):
                    spec.loader = _PluginLoader(spec.loader, self)
                return spec
        return None


def install() -> None:
    """Apply the RL Zoo plug-in when ``rl_zoo3`` is imported; called by ``sb3_dreamer_zoo.pth`` at start-up."""
    if not any(isinstance(finder, ZooFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, ZooFinder())

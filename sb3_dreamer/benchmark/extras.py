"""
The packages of the ``benchmark`` extra (pandas for the report's tables and the TensorBoard scalars, rliable for the
report's aggregates, psutil for ``scripts/soak.py``): only the modules that need them import them, so that the package
and a grid's training do without them.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType

INSTALL = 'pip install "sb3-dreamer[benchmark]"'


@contextmanager
def benchmark_extra() -> Iterator[None]:
    """Imports of the benchmark extra's packages in its block: an ImportError there names the extra."""
    try:
        yield
    except ImportError as error:
        raise ImportError(f"{error}: it is part of the benchmark extra, {INSTALL}") from error


def import_rliable() -> tuple[ModuleType, ModuleType, ModuleType]:
    """rliable's ``library``, ``metrics`` and ``plot_utils``."""
    with benchmark_extra():
        from rliable import library, metrics, plot_utils
    return library, metrics, plot_utils

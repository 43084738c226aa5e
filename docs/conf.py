"""Sphinx configuration of the sb3-dreamer documentation: ``sphinx-build -W --keep-going -b html docs docs/_build/html``."""

import inspect
import os
import re
import sys

from sphinx import addnodes

REPOSITORY = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
# Build from the working tree, whether or not the package is installed.
sys.path.insert(0, REPOSITORY)

from sb3_dreamer.version import __version__  # noqa: E402

project = "sb3-dreamer"
author = "sb3-dreamer contributors"
copyright = "sb3-dreamer contributors"
version = release = __version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.viewcode",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "design"]

# The guide pages are Markdown that reads the same on GitHub; "page.md#section" links need heading anchors.
myst_heading_anchors = 3

# The docstrings use ":param name:" reST fields (no napoleon); the type hints of the signatures go into the parameter
# descriptions. No intersphinx: it downloads the other projects' inventories at build time, and the build is offline.
autodoc_typehints = "description"
autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "show-inheritance": True}

html_theme = "sphinx_rtd_theme"
html_title = f"sb3-dreamer {release}"
html_theme_options = {"navigation_depth": 3}

#: a ``*`` that starts a name closed by ``)`` or ``,``: the star of a shape such as ``(N, *obs_shape)``
SHAPE_STAR = re.compile(r"(?<![\w\\])\*(?=\w+[),])")
#: ``|x|``, an absolute value, which reST reads as a substitution
ABSOLUTE_VALUE = re.compile(r"(?<![\w\\])\|(\w+)\|(?!\w)")
#: double-backquoted literals, left as they are
LITERAL = re.compile(r"(``.+?``)")


def escape_plain_text(app, what, name, obj, options, lines: list[str]) -> None:
    """
    Escape, outside literals, what the docstrings write as plain text but reST reads as markup: the stars of shapes
    (``(N, *obs_shape)``, not emphasis) and absolute values (``|x|``, not a substitution). The text shown is the
    docstring's.
    """
    for index, line in enumerate(lines):
        parts = LITERAL.split(line)
        for i in range(0, len(parts), 2):  # even parts are outside literals
            parts[i] = ABSOLUTE_VALUE.sub(r"\\|\1\\|", SHAPE_STAR.sub(r"\\*", parts[i]))
        lines[index] = "".join(parts)


def skip_foreign_docstrings(app, what, name, obj, skip: bool, options) -> bool | None:
    """
    Leave out a method that a class of the package overrides without a docstring of its own where the docstring it
    would inherit is PyTorch's or Gymnasium's (``forward``, ``step``, ``reset``...): those say nothing about this
    package and use markup (Google-style sections, labels of the PyTorch docs) that this build does not read.
    Docstrings inherited from Stable-Baselines3 (``learn``, ``train``...) are kept: they are reST like this package's.
    """
    function = getattr(obj, "__func__", obj)
    if what != "class" or skip or not inspect.isfunction(function) or function.__doc__:
        return None
    module = sys.modules.get(function.__module__)
    owner_name = function.__qualname__.rpartition(".")[0]
    owner = getattr(module, owner_name, None) if module is not None and owner_name else None
    if not isinstance(owner, type) or not owner.__module__.startswith("sb3_dreamer"):
        return None
    for base in owner.__mro__[1:]:
        inherited = vars(base).get(name)
        if getattr(getattr(inherited, "__func__", inherited), "__doc__", None):
            return True if not base.__module__.startswith(("stable_baselines3", "sb3_dreamer")) else None
    return None


def link_included_reports(app, doctree) -> None:
    """
    Point a Markdown link to a file of the repository that the documentation includes at the same path (the benchmark
    reports: ``../benchmarks/minatar-100k.md`` on GitHub) to that page of the documentation.
    """
    for node in doctree.findall(addnodes.pending_xref):
        if node.get("reftype") == "myst" and node.get("refdomain") == "doc" and node["reftarget"] not in app.env.found_docs:
            path = os.path.normpath(os.path.join(app.srcdir, node["reftarget"]))  # MyST gives an absolute path
            page = os.path.relpath(path, REPOSITORY).replace(os.sep, "/")
            if page in app.env.found_docs:
                node["reftarget"] = page


def setup(app) -> None:
    app.connect("doctree-read", link_included_reports)
    app.connect("autodoc-process-docstring", escape_plain_text)
    app.connect("autodoc-skip-member", skip_foreign_docstrings)

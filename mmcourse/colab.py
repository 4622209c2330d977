"""The Colab install cell, the second cell of every notebook.

On Google Colab it installs the course package with ``--no-deps`` (Colab's own torch,
torchvision and torchaudio stay as they are), then only those of the chapter's libraries that
Colab lacks. Anywhere else it does nothing. ``scripts/sync_notebooks.py`` writes it into each
notebook from :func:`install_cell`; the libraries come from :func:`needs`.
"""

from __future__ import annotations

import ast
import re
import sys
from collections.abc import Iterable, Mapping

from mmcourse import course

MARKER = "# NBVAL_SKIP"
TORCH = frozenset({"torch", "torchvision", "torchaudio"})  # Colab's own: never installed here


def install_cell(needs: Mapping[str, str], repository: str = course.REPOSITORY) -> str:
    """Source of the install cell; ``needs`` maps an import name to its pip requirement."""
    touching = sorted(set(needs) & TORCH) + sorted(
        req for req in needs.values() if _requirement_name(req) in TORCH
    )
    if touching:
        raise ValueError(f"the Colab cell must not install Colab's own torch stack: {touching}")
    lines = [
        MARKER,
        "# Runs only on Google Colab: installs the course package beside Colab's own PyTorch",
        "# (never replacing it), then whichever of this chapter's libraries Colab lacks.",
        "import importlib",
        "import importlib.util",
        "import subprocess",
        "import sys",
        "",
        'if "google.colab" in sys.modules and importlib.util.find_spec("mmcourse") is None:',
        '    pip = [sys.executable, "-m", "pip", "install", "-q"]',
        f'    subprocess.run([*pip, "--no-deps", "{course.install_source(repository)}"], check=True)',
        "    needs = {  # import name: requirement",
        *(f'        "{module}": "{req}",' for module, req in sorted(needs.items())),
        "    }",
        "    missing = [req for module, req in needs.items() if importlib.util.find_spec(module) is None]",
        "    if missing:",
        "        subprocess.run([*pip, *missing], check=True)",
        "    importlib.invalidate_caches()",
    ]
    return "\n".join(lines)


def is_install_cell(source: str) -> bool:
    """Whether a code cell is the Colab install cell (any version of it)."""
    return source.startswith(MARKER) and "google.colab" in source


def _requirement_name(requirement: str) -> str:
    return re.split(r"[\s<>=!~;\[]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _module_of(distribution: str, distribution_of: Mapping[str, str]) -> str:
    """The import name of a distribution: its own name if it provides it, else its shortest
    public module (``scikit-learn`` -> ``sklearn``)."""
    own = distribution.replace("-", "_")
    modules = [m for m, d in distribution_of.items()
               if _requirement_name(d) == distribution and not m.startswith("_")]
    if own in modules or not modules:
        return own
    return min(modules, key=lambda m: (len(m), m))


def imported_modules(sources: Iterable[str]) -> set[str]:
    """Top-level names of the modules imported by some code cells (magics and shell lines
    skipped)."""
    found: set[str] = set()
    for source in sources:
        code = "\n".join(
            "" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines()
        )
        try:
            tree = ast.parse(code)
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return found


def needs(
    notebook_sources: Iterable[str],
    package_requirements: Iterable[str],
    distribution_of: Mapping[str, str],
    requirement_of: Mapping[str, str],
) -> dict[str, str]:
    """Import name -> requirement of what a notebook needs beyond the standard library:
    the package's own requirements and the notebook's third-party imports, torch excluded.

    ``distribution_of`` maps an import name to its distribution (``sklearn`` ->
    ``scikit-learn``); ``requirement_of`` maps a distribution to the requirement pyproject
    gives it (with its version range).
    """
    result: dict[str, str] = {}
    for req in package_requirements:
        name = _requirement_name(req)
        if name not in TORCH:
            result[_module_of(name, distribution_of)] = req
    for module in imported_modules(notebook_sources):
        if module in TORCH or module == "mmcourse" or module in sys.stdlib_module_names:
            continue
        if module in result:
            continue
        dist = distribution_of.get(module, module)
        result[module] = requirement_of.get(dist.lower(), dist)
    return result

"""Promises the repository's files make about each other: the CI cache key, the README's
account of environment.yml."""

from __future__ import annotations

import platform
import re
import subprocess
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]


def test_ci_venv_key_names_the_python_version():
    """A virtual environment is made for one Python: a new Python must get a new one."""
    line = next(ln for ln in (ROOT / ".ci" / "run").read_text().splitlines()
                if ln.startswith("lock_hash="))
    script = f'PYTHON="{sys.executable}"\n{line}\necho "$lock_hash"\n'
    key = subprocess.run(["bash", "-c", script], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout.strip()
    assert key.startswith(f"py{platform.python_version()}-"), key
    assert re.fullmatch(r"py[\d.]+-[0-9a-f]{16}", key), key


def test_readme_says_exactly_what_environment_yml_pins():
    readme = " ".join((ROOT / "README.md").read_text().split())
    claim = re.search(r"The environment pins Python ([\d.]+) \(from conda-forge\) and, through "
                      r"pip, the packages that `pyproject.toml` lists as dependencies and in its "
                      r"((?:`\w+`(?:, | and )?)+) extras? \(all but ((?:`[\w-]+`(?:, )?)+)\) at the "
                      r"versions of "
                      r"`requirements.lock`", readme)
    assert claim, "README's sentence on environment.yml changed: keep it exact"
    env = (ROOT / "environment.yml").read_text()
    pins = {canonicalize_name(m[1])
            for m in re.finditer(r"^\s*-\s*([A-Za-z0-9_.\-]+)==", env, re.M)}
    python = re.search(r"^\s*-\s*python=([\d.]+)", env, re.M)
    assert python and python[1] == claim[1]
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = re.findall(r"`(\w+)`", claim[2])
    assert set(extras) == set(project["optional-dependencies"]), "name every extra, or say why not"
    named = {canonicalize_name(Requirement(r).name)
             for r in project["dependencies"]
             + [r for extra in extras for r in project["optional-dependencies"][extra]]}
    left_out = {canonicalize_name(n) for n in re.findall(r"`([\w-]+)`", claim[3])}
    assert pins == named - left_out
    assert left_out <= named

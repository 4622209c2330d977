"""The lock, environment.yml and pyproject.toml must agree, and the torch trio must match."""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
TRIO = {"torch": "2.11.0", "torchvision": "0.26.0", "torchaudio": "2.11.0"}


def _lock() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        line = line.split(";")[0].strip()
        if not line or line.startswith("#"):
            continue
        name, sep, version = line.partition("==")
        assert sep, f"requirements.lock: {line!r} is not pinned with =="
        pins[canonicalize_name(name)] = version
    return pins


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _environment_pins() -> dict[str, str]:
    text = (ROOT / "environment.yml").read_text()
    pins = {}
    for match in re.finditer(r"^\s*-\s*([A-Za-z0-9_.\-]+)==([^\s#]+)", text, re.M):
        pins[canonicalize_name(match[1])] = match[2]
    return pins


def test_lock_pins_the_tested_trio():
    lock = _lock()
    for name, version in TRIO.items():
        assert lock.get(name) == version, f"requirements.lock must pin {name}=={version}"


def test_every_dependency_is_locked_within_its_range():
    project = _pyproject()["project"]
    lock = _lock()
    extras = project["optional-dependencies"]
    assert {"dev", "book"} <= set(extras), "pyproject needs the dev and book extras"
    requirements = list(project["dependencies"]) + [r for extra in extras.values() for r in extra]
    for text in requirements:
        req = Requirement(text)
        name = canonicalize_name(req.name)
        assert name in lock, f"{req.name} is a dependency in pyproject.toml but not in requirements.lock"
        assert req.specifier.contains(lock[name], prereleases=True), (
            f"requirements.lock has {req.name}=={lock[name]}, outside pyproject's range {req.specifier}"
        )


def test_environment_yml_agrees_with_lock():
    lock, env = _lock(), _environment_pins()
    assert set(TRIO) <= set(env), "environment.yml must pin the torch trio"
    for name, version in env.items():
        assert lock.get(name) == version, (
            f"environment.yml pins {name}=={version}, requirements.lock has {lock.get(name)}"
        )
    python = re.search(r"^\s*-\s*python=([\d.]+)", (ROOT / "environment.yml").read_text(), re.M)
    assert python, "environment.yml must name a Python version"
    requires = SpecifierSet(_pyproject()["project"]["requires-python"])
    assert requires.contains(python[1] + ".0"), f"python={python[1]} outside {requires}"


def test_pyproject_ranges_exclude_a_broken_trio():
    deps = {canonicalize_name(Requirement(d).name): Requirement(d) for d in _pyproject()["project"]["dependencies"]}
    # torchaudio's last release is 2.11: a newer torch would break its import.
    assert not deps["torch"].specifier.contains("2.12.0")
    assert not deps["torchaudio"].specifier.contains("2.12.0")
    assert not deps["torchvision"].specifier.contains("0.27.0")
    for name, version in TRIO.items():
        assert deps[name].specifier.contains(version)


@pytest.mark.skipif(sys.prefix == sys.base_prefix, reason="only meaningful inside the test venv")
def test_running_environment_matches_the_lock():
    from importlib.metadata import version

    lock = _lock()
    for name in TRIO:
        assert version(name).split("+")[0] == lock[name], f"installed {name} differs from the lock"

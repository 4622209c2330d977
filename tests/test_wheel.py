"""The built wheel, installed apart from the repository, works on its own: what Colab and a
workshop laptop see. The package must find its embedded data inside itself, not in the repo.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow

# Runs in a fresh interpreter, cwd outside the repository, PYTHONPATH = the install folder.
PROBE = r"""
import json, sys
from pathlib import Path

import mmcourse

site = Path(sys.argv[1]).resolve()
where = Path(mmcourse.__file__).resolve()
assert site in where.parents, f"mmcourse imported from {where}, not from {site}"

from mmcourse.data import load_split, verify
from mmcourse.data.avmnist import FSDD_MANIFEST, fsdd_manifest

problems = verify()
ds = load_split("train")
item = ds[0]
elsewhere = sorted(  # every mmcourse module must come from the install folder
    m.__file__ for name, m in sys.modules.items()
    if name.split(".")[0] == "mmcourse" and getattr(m, "__file__", None)
    and site not in Path(m.__file__).resolve().parents
)
print(json.dumps({
    "modules_elsewhere": elsewhere,
    "file": str(where),
    "problems": [str(p) for p in problems],
    "n_train": len(ds),
    "item_keys": sorted(item),
    "image_shape": list(item["image"].shape),
    "label": int(item["label"]),
    "manifest": str(FSDD_MANIFEST.resolve()),
    "manifest_entries": len(fsdd_manifest()),
}))
"""


def _copy_source(dest: Path) -> Path:
    """What the build needs, copied out so that building leaves the checkout untouched."""
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(REPO / name, dest / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", ".*")
    shutil.copytree(REPO / "mmcourse", dest / "mmcourse", ignore=ignore)
    return dest


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    src = _copy_source(tmp_path_factory.mktemp("src"))
    dist = tmp_path_factory.mktemp("dist")
    cmd = [sys.executable, "-m", "build", "--wheel", "--outdir", str(dist), str(src)]
    if importlib.util.find_spec("setuptools") is not None:
        cmd.insert(4, "--no-isolation")  # the backend is here: no download needed
    done = subprocess.run(cmd, cwd=src, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"wheel build failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    (whl,) = dist.glob("mmcourse-*.whl")
    return whl


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    site = tmp_path_factory.mktemp("site")
    if importlib.util.find_spec("pip") is not None:
        cmd = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index",
               "--disable-pip-version-check", "--target", str(site), str(wheel)]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"pip install failed:\n{done.stderr[-3000:]}"
    else:  # a pure-Python wheel installs by unpacking (e.g. in a venv made without pip)
        with zipfile.ZipFile(wheel) as z:
            z.extractall(site)
    return site


def test_wheel_ships_every_module_and_data_file(wheel):
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
    expected = {
        p.relative_to(REPO).as_posix()
        for p in (REPO / "mmcourse").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and not p.name.startswith(".")
        and (p.suffix == ".py" or "files" in p.relative_to(REPO / "mmcourse").parts)
    }
    assert "mmcourse/data/files/fsdd_sha256.txt.gz" in expected
    missing = sorted(expected - names)
    assert not missing, f"the wheel lacks {missing}"
    assert not any(n.startswith(("tests/", "notebooks/", "data/")) for n in names)
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    with zipfile.ZipFile(wheel) as z:
        assert "mmcourse = mmcourse.cli:main" in z.read(entry_points).decode()


def test_installed_wheel_loads_embedded_data_outside_repo(installed, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(PYTHONPATH=str(installed), MMCOURSE_CACHE=str(tmp_path / "cache"),
               MMCOURSE_QUIET="1", PYTHONDONTWRITEBYTECODE="1")
    done = subprocess.run([sys.executable, "-c", PROBE, str(installed)], cwd=elsewhere, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"probe failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    report = json.loads(done.stdout.strip().splitlines()[-1])
    site = installed.resolve()
    assert site in Path(report["file"]).parents and REPO not in Path(report["file"]).parents
    assert report["problems"] == [] and report["modules_elsewhere"] == []
    assert report["image_shape"] == [1, 8, 8]
    assert report["n_train"] > 0 and {"image", "audio", "label"} <= set(report["item_keys"])
    assert 0 <= report["label"] <= 9
    assert site in Path(report["manifest"]).parents and report["manifest_entries"] == 3000

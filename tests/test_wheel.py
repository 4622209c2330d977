"""The built wheel, installed apart from the repository, works on its own: what Colab and a
workshop laptop see. The package must find its embedded data and the course notebooks inside
itself, not in the repo; its learner copies fail at each exercise with the checker's message
and pass once the solutions are written; the Colab install cell installs it beside an existing
torch without touching that torch.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import nbformat
import pytest

from mmcourse import colab, course
from mmcourse.exercises import find_exercises

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
    for name in ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "LICENSE"):
        shutil.copy2(REPO / name, dest / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", ".*")
    shutil.copytree(REPO / "mmcourse", dest / "mmcourse", ignore=ignore)
    shutil.copytree(REPO / "notebooks", dest / "notebooks", ignore=ignore)
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
        # by name from a folder of wheels, as a workshop installs from its wheelhouse
        cmd = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index",
               "--find-links", str(wheel.parent), "--disable-pip-version-check",
               "--target", str(site), "mmcourse"]
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
    expected |= {f"mmcourse/notebooks/{p.name}" for p in (REPO / "notebooks").glob("*.ipynb")}
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


def _outside_env(installed: Path, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(PYTHONPATH=str(installed), MMCOURSE_CACHE=str(tmp_path / "cache"),
               MMCOURSE_QUIET="1", PYTHONDONTWRITEBYTECODE="1", OMP_NUM_THREADS="1",
               MPLBACKEND="Agg")
    return env


# The learner-copy runs use one small chapter: three exercises, seconds to run.
SMALL = "02_attention.ipynb"


def _nbval(notebook: Path, env: dict[str, str]) -> dict[str, str]:
    """Run ``notebook`` under nbval (lax, as the suite does) in its own folder, outside the
    repository; return the failed cells, e.g. {"Cell 34": "...message..."}."""
    folder = notebook.parent
    (folder / "pytest.ini").write_text("[pytest]\naddopts = -p no:cacheprovider\n")
    report = folder / "report.xml"
    cmd = [sys.executable, "-m", "pytest", "-p", "no:xdist", "--nbval-lax", "--nbval-current-env",
           "--nbval-cell-timeout=300", f"--junitxml={report}", "-q", notebook.name]
    done = subprocess.run(cmd, cwd=folder, env=env, capture_output=True, text=True, timeout=600)
    assert report.exists(), f"nbval did not run:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    failed = {}
    for case in ET.parse(report).iter("testcase"):
        for problem in [*case.iter("failure"), *case.iter("error")]:
            failed[case.get("name")] = (problem.get("message") or "") + (problem.text or "")
    return failed


def _check_cells(nb: nbformat.NotebookNode, names: list[str]) -> dict[str, str]:
    """nbval's name ("Cell k", k counting code cells) of the cell that calls each checker."""
    code = [c for c in nb.cells if c.cell_type == "code"]
    found = {}
    for name in names:
        k = next(k for k, c in enumerate(code) if f"check.{name}(" in c.source
                 and not c.source.startswith("# EXERCISE"))
        found[f"Cell {k}"] = name
    return found


def _using_cells(nb: nbformat.NotebookNode, names: list[str]) -> dict[str, str]:
    """nbval's names of the other cells that call a learner's function (e.g. to plot what it
    computes): in a learner copy they fail too, with the stub's NotImplementedError."""
    code = [c for c in nb.cells if c.cell_type == "code"]
    found = {}
    for k, c in enumerate(code):
        if c.source.startswith("# EXERCISE"):
            continue
        for name in names:
            if re.search(rf"(?<![.\w]){name}\(", c.source):
                found[f"Cell {k}"] = name
    return found


def _probe_cell(installed: Path) -> nbformat.NotebookNode:
    """A first cell that fails unless the kernel imports mmcourse from the installed wheel."""
    return nbformat.v4.new_code_cell(
        "import pathlib\nimport mmcourse\n"
        f"site = pathlib.Path({str(installed.resolve())!r})\n"
        "assert site in pathlib.Path(mmcourse.__file__).resolve().parents, mmcourse.__file__"
    )


def test_learner_copies_from_the_wheel_fail_at_each_exercise_then_pass(installed, tmp_path):
    env = _outside_env(installed, tmp_path)
    out = tmp_path / "learner"
    done = subprocess.run([sys.executable, "-m", "mmcourse", "exercises", str(out)], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    shipped = sorted(p.name for p in (installed / "mmcourse" / "notebooks").glob("*.ipynb"))
    assert sorted(p.name for p in out.glob("*.ipynb")) == shipped
    assert shipped == sorted(p.name for p in (REPO / "notebooks").glob("*.ipynb"))
    for path in out.glob("*.ipynb"):  # no stored output anywhere in a learner copy
        nb = nbformat.read(path, as_version=4)
        assert all(not c.get("outputs") and c.get("execution_count") is None
                   for c in nb.cells if c.cell_type == "code"), path.name

    exercises = find_exercises(installed / "mmcourse" / "notebooks" / SMALL)
    learner = nbformat.read(out / SMALL, as_version=4)
    learner.cells.insert(0, _probe_cell(installed))
    expected = _check_cells(learner, [ex.name for ex in exercises])
    assert len(expected) == len(exercises) >= 2

    stubbed = tmp_path / "stubbed" / SMALL
    stubbed.parent.mkdir()
    nbformat.write(learner, stubbed)
    failed = _nbval(stubbed, env)
    using = _using_cells(learner, [ex.name for ex in exercises])
    assert set(failed) == set(expected) | set(using), (
        f"expected failures at the checkers {expected} and at the cells using the learner's "
        f"functions {using}, got {sorted(failed)}")
    for cell in using:
        assert "NotImplementedError" in failed[cell], failed[cell]
    for cell, name in expected.items():
        assert f"CheckFailure: {name} is not written yet" in failed[cell], failed[cell]
        assert "mmcourse/check" not in failed[cell], "the checker's own frames are shown"

    solved = tmp_path / "solved" / SMALL  # the same copy with the solutions written back
    solved.parent.mkdir()
    by_name = {ex.name: ex.solution for ex in exercises}
    for cell in learner.cells:
        first = cell.source.splitlines()[0] if cell.source else ""
        if cell.cell_type == "code" and first.startswith("# EXERCISE:"):
            cell.source = by_name[first.split(":", 1)[1].strip()]
    nbformat.write(learner, solved)
    assert _nbval(solved, env) == {}


SITE = Path(sysconfig.get_paths()["purelib"])


def _colab_python(tmp_path: Path, hide: set[str]) -> Path:
    """A Python like Colab's: this environment's packages (torch included) but no mmcourse,
    and without the distributions in ``hide``; google.colab is importable."""
    colab_site = tmp_path / "colab-site"
    colab_site.mkdir()
    for entry in SITE.iterdir():
        name = entry.name.lower()
        top = name.split("-")[0].split(".")[0]
        if (top in hide or "mmcourse" in name or name.endswith(".pth")
                or name.startswith("__editable__")):
            continue
        (colab_site / entry.name).symlink_to(entry)
    google = tmp_path / "fake" / "google"
    (google / "colab").mkdir(parents=True)
    (google / "__init__.py").write_text("")
    (google / "colab" / "__init__.py").write_text('"""Stands in for Colab\'s own module."""\n')
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=120)
    python = venv / "bin" / "python"
    venv_site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip()
    (Path(venv_site) / "colab.pth").write_text(f"{tmp_path / 'fake'}\n{colab_site}\n")
    return python


# Runs the notebook's install cell the way Colab's kernel would, then reports what it did.
COLAB_RUN = r"""
import importlib.metadata, json, sys
import google.colab  # what Colab's kernel has imported before any cell runs
torch_before = importlib.metadata.version("torch")
exec(compile(open(sys.argv[1]).read(), "<install cell>", "exec"))
import mmcourse
from mmcourse.data import load_split
print(json.dumps({"mmcourse": mmcourse.__file__, "torch_before": torch_before,
                  "torch_after": importlib.metadata.version("torch"),
                  "n_train": len(load_split("train"))}))
"""


def _install_cell(wheel: Path) -> str:
    nb = nbformat.read(REPO / "notebooks" / SMALL, as_version=4)
    cell = next(c.source for c in nb.cells if c.cell_type == "code" and colab.is_install_cell(c.source))
    source = course.install_source()
    assert cell.count(source) == 1, "the install cell must install the package from REPOSITORY"
    return cell.replace(source, str(wheel))  # a local wheel stands in for the repository


def test_colab_install_cell_installs_the_wheel_and_leaves_torch_alone(wheel, tmp_path):
    python = _colab_python(tmp_path, hide=set())
    cell = tmp_path / "cell.py"
    cell.write_text(_install_cell(wheel))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1", MMCOURSE_QUIET="1")
    done = subprocess.run([str(python), "-c", COLAB_RUN, str(cell)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert str(tmp_path / "venv") in report["mmcourse"]  # installed by the cell, into Colab's Python
    assert report["torch_before"] == report["torch_after"]
    assert report["n_train"] > 0
    installed = {p.name.split("-")[0] for p in (tmp_path / "venv").rglob("*.dist-info")}
    assert installed == {"mmcourse"}, f"the cell installed more than the package: {installed}"


def test_colab_install_cell_installs_only_what_is_missing(wheel, tmp_path):
    """Colab without soundfile: the cell asks pip for soundfile alone (from a local stand-in)."""
    python = _colab_python(tmp_path, hide={"soundfile", "_soundfile", "_soundfile_data"})
    stand_in = tmp_path / "stand-in"
    (stand_in / "soundfile").mkdir(parents=True)
    (stand_in / "soundfile" / "__init__.py").write_text('"""A stand-in: only its install is tested."""\n')
    (stand_in / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n'
        '[project]\nname = "soundfile"\nversion = "0.13.1"\n'
        '[tool.setuptools]\npackages = ["soundfile"]\n')
    links = tmp_path / "links"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "--no-index", "-q", "-w", str(links), str(stand_in)], check=True, timeout=300,
                   capture_output=True)
    cell = tmp_path / "cell.py"
    cell.write_text(_install_cell(wheel))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(PIP_NO_INDEX="1", PIP_FIND_LINKS=str(links), PIP_DISABLE_PIP_VERSION_CHECK="1")
    run = "import google.colab, sys; exec(compile(open(sys.argv[1]).read(), 'cell', 'exec'))"
    done = subprocess.run([str(python), "-c", run, str(cell)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    installed = {p.name.split("-")[0] for p in (tmp_path / "venv").rglob("*.dist-info")}
    assert installed == {"mmcourse", "soundfile"}, installed


def test_install_cell_does_nothing_off_colab(wheel, tmp_path):
    python = _colab_python(tmp_path, hide=set())
    cell = tmp_path / "cell.py"
    cell.write_text(_install_cell(wheel))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([str(python), str(cell)], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert not list((tmp_path / "venv").rglob("mmcourse*.dist-info"))

"""The Colab install cell: what it installs is what the notebook needs, never torch.
(Its run on a simulated Colab, from a local wheel, is in test_wheel.py.)"""

from __future__ import annotations

import pytest

from mmcourse import colab

DISTS = {"sklearn": "scikit-learn", "soundfile": "soundfile", "_soundfile": "soundfile",
         "matplotlib": "matplotlib", "mpl_toolkits": "matplotlib", "pylab": "matplotlib",
         "IPython": "ipython", "torch": "torch"}
REQUIREMENTS = {"scikit-learn": "scikit-learn>=1.4", "soundfile": "soundfile>=0.12",
                "hypothesis": "hypothesis>=6.100", "matplotlib": "matplotlib>=3.8"}
RUNTIME = ["torch>=2.5,<2.12", "torchaudio>=2.5", "scikit-learn>=1.4", "soundfile>=0.12",
           "matplotlib>=3.8"]


def test_needs_are_the_package_requirements_and_the_notebooks_imports():
    cells = ["import math\nimport torch\nfrom IPython.display import Audio\n%matplotlib inline",
             "import mmcourse\nfrom mmcourse.data import load_split\nimport sklearn.metrics"]
    needs = colab.needs(cells, RUNTIME, DISTS, REQUIREMENTS)
    assert needs == {"sklearn": "scikit-learn>=1.4", "soundfile": "soundfile>=0.12",
                     "matplotlib": "matplotlib>=3.8", "IPython": "ipython"}


def test_a_notebook_that_imports_hypothesis_needs_it_and_one_that_does_not_does_not():
    assert "hypothesis" not in colab.needs(["import numpy"], RUNTIME, DISTS, REQUIREMENTS)
    assert colab.needs(["from hypothesis import given"], [], DISTS, REQUIREMENTS) == {
        "hypothesis": "hypothesis>=6.100"}


def test_install_cell_refuses_torch():
    with pytest.raises(ValueError, match="must not install Colab's own torch"):
        colab.install_cell({"torch": "torch>=2.5"})
    with pytest.raises(ValueError, match="torchaudio"):
        colab.install_cell({"ta": "torchaudio"})


def test_install_cell_is_valid_python_that_only_acts_on_colab():
    source = colab.install_cell({"soundfile": "soundfile>=0.12"})
    compile(source, "cell", "exec")
    assert source.startswith("# NBVAL_SKIP\n") and colab.is_install_cell(source)
    assert 'if "google.colab" in sys.modules' in source and '"--no-deps"' in source
    namespace: dict = {}
    exec(source, namespace)  # not on Colab: nothing happens
    assert "missing" not in namespace


def test_imported_modules_skips_magics_and_broken_cells():
    cells = ["!pip install x\nimport a.b\nfrom c import d", "def (", "from . import e"]
    assert colab.imported_modules(cells) == {"a", "c"}

"""The build step pyproject.toml cannot express: the course notebooks (``notebooks/``, kept at
the top of the repository) are copied into the wheel as ``mmcourse/notebooks/``, so that
``mmcourse exercises`` works after ``pip install`` with no checkout. An editable install reads
them from the checkout instead (``mmcourse.course.notebooks_dir``)."""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

NOTEBOOKS = Path(__file__).resolve().parent / "notebooks"


class build_py_with_notebooks(build_py):
    def run(self) -> None:
        super().run()
        if self.editable_mode:
            return
        target = Path(self.build_lib) / "mmcourse" / "notebooks"
        target.mkdir(parents=True, exist_ok=True)
        for path in sorted(NOTEBOOKS.glob("*.ipynb")):
            shutil.copy2(path, target / path.name)

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        outputs = super().get_outputs(include_bytecode)
        if self.editable_mode:
            return outputs
        target = Path(self.build_lib) / "mmcourse" / "notebooks"
        return outputs + [str(target / p.name) for p in sorted(NOTEBOOKS.glob("*.ipynb"))]


setup(cmdclass={"build_py": build_py_with_notebooks})

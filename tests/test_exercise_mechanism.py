"""The exercise mechanism: markers, stubs, learner copies and the checker base."""

from __future__ import annotations

import nbformat
import pytest
import torch
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from mmcourse import check, course
from mmcourse.cli import main
from mmcourse.exercises import find_exercises, learner_copy, strip_solution, write_learner_copies

SOLUTION = '''# EXERCISE: double
def double(x):
    """Twice x."""
    ### BEGIN SOLUTION
    y = x * 2
    return y
    ### END SOLUTION
'''


def _notebook(tmp_path):
    nb = new_notebook(
        cells=[
            new_markdown_cell("# A tiny chapter\n\n" + course.colab_badge("notebooks/99_tiny.ipynb")),
            new_code_cell("x = 1", outputs=[new_output("stream", name="stdout", text="1")],
                          execution_count=1),
            new_code_cell(SOLUTION, outputs=[new_output("stream", name="stdout", text="x")]),
            new_code_cell("check.double(double)", execution_count=3, outputs=[
                new_output("execute_result", data={"text/plain": "✓ double: 25 random cases"},
                           execution_count=3)]),
            new_markdown_cell("## Open questions\n\n1. Why twice?"),
            new_markdown_cell("<!-- instructor -->\nBecause two is the answer."),
            new_markdown_cell("Tagged only.", metadata={"tags": ["instructor"]}),
        ]
    )
    path = tmp_path / "src" / "99_tiny.ipynb"
    path.parent.mkdir()
    nbformat.write(nb, path)
    return path


def test_strip_solution_keeps_signature_and_indentation():
    stub = strip_solution(SOLUTION)
    assert "def double(x):" in stub and '"""Twice x."""' in stub
    assert "x * 2" not in stub and "BEGIN SOLUTION" not in stub
    assert '    raise NotImplementedError("write your solution here")' in stub.splitlines()
    namespace: dict = {}
    exec(stub, namespace)
    with pytest.raises(NotImplementedError):
        namespace["double"](3)


@pytest.mark.parametrize(
    "bad, message",
    [
        ("### BEGIN SOLUTION\nx = 1\n", "never closed"),
        ("x = 1\n### END SOLUTION\n", "without a BEGIN"),
        ("### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION\n", "inside another"),
    ],
)
def test_strip_solution_rejects_broken_markers(bad, message):
    with pytest.raises(ValueError, match=message):
        strip_solution(bad, "nb, cell 3")


def test_find_exercises_and_learner_copy(tmp_path):
    path = _notebook(tmp_path)
    (ex,) = find_exercises(path)
    assert (ex.name, ex.cell, ex.notebook) == ("double", 2, "99_tiny.ipynb")
    copy = learner_copy(nbformat.read(path, as_version=4), path.name)
    cell = copy.cells[2]
    assert "x * 2" not in cell.source and cell.outputs == [] and "exercise" in cell.metadata.tags
    assert copy.cells[3].source == "check.double(double)"
    original = nbformat.read(path, as_version=4)
    assert "x * 2" in original.cells[2].source  # the source notebook is untouched


def test_learner_copy_keeps_no_output_and_no_instructor_cell(tmp_path):
    """A stored "✓" under a checker would make an unwritten exercise look passed."""
    path = _notebook(tmp_path)
    copy = learner_copy(nbformat.read(path, as_version=4), path.name)
    code = [c for c in copy.cells if c.cell_type == "code"]
    assert all(c.outputs == [] and c.execution_count is None for c in code)
    sources = "\n".join(c.source for c in copy.cells)
    assert "Because two" not in sources and "Tagged only" not in sources
    assert "## Open questions" in sources  # the questions stay, their answers go
    assert course.colab_url("exercises/99_tiny.ipynb") in copy.cells[0].source
    assert course.colab_url("notebooks/99_tiny.ipynb") not in copy.cells[0].source


def test_cli_writes_learner_copies(tmp_path, capsys):
    path = _notebook(tmp_path)
    out = tmp_path / "learner"
    assert main(["exercises", str(out), "--notebooks", str(path.parent)]) == 0
    written = nbformat.read(out / path.name, as_version=4)
    assert "NotImplementedError" in written.cells[2].source
    assert "wrote 1 learner notebooks" in capsys.readouterr().out
    assert main(["exercises", str(out), "--notebooks", str(tmp_path / "missing")]) == 2


def test_cli_defaults_to_the_course_notebooks_and_picks_chapters(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no notebooks folder here: the package knows where they are
    assert main(["exercises", "out", "02", "05_audio_features"]) == 0
    assert sorted(p.name for p in (tmp_path / "out").glob("*.ipynb")) == [
        "02_attention.ipynb", "05_audio_features.ipynb"]
    assert main(["exercises", "out", "99"]) == 2
    assert "no chapter '99'; the chapters are: 00_setup_and_data" in capsys.readouterr().err


def test_learner_copies_refuse_to_overwrite_the_sources(tmp_path):
    path = _notebook(tmp_path)
    with pytest.raises(ValueError, match="must differ"):
        write_learner_copies(path.parent, path.parent)


def _double_reference(x: torch.Tensor) -> torch.Tensor:
    return x * 2


def _cases(n=5):
    return check.random_cases(lambda g: (torch.randn(3, 4, generator=g, dtype=torch.float64, requires_grad=True),), n)


def test_compare_passes_and_reports_count():
    result = check.compare(lambda x: x + x, _double_reference, _cases(), grad=True, name="double")
    assert result == "✓ double: 5 random cases match the reference (values and gradients)"


@pytest.mark.parametrize(
    "fn, message",
    [
        (lambda x: (x * 2).T, r"shape \(4, 3\), expected \(3, 4\)"),
        (lambda x: (x * 2).float(), "dtype torch.float32, expected torch.float64"),
        (lambda x: x * 2 + (x > 1.5), r"entries differ; first at index \["),
        (lambda x: (x * 2).detach(), "not connected to its inputs' gradients"),
        (lambda x: torch.where(x > 0, x * 2, (x * 2).detach() * 1.0), "gradient with respect to argument 0"),
        (lambda x: 1 / 0, "raised ZeroDivisionError"),
        (lambda x: 5, "expected a tensor"),
    ],
)
def test_compare_names_the_first_problem(fn, message):
    with pytest.raises(check.CheckFailure, match=message):
        check.compare(fn, _double_reference, _cases(), grad=True)


def test_stub_is_reported_as_not_written():
    def stub(x):
        raise NotImplementedError

    with pytest.raises(check.CheckFailure, match="not written yet"):
        check.minmax_scale(stub)


def test_unknown_exercise_lists_known_ones():
    with pytest.raises(AttributeError, match="known exercises: .*minmax_scale"):
        check.no_such_exercise  # noqa: B018


def test_compare_needs_cases():
    with pytest.raises(ValueError, match="at least one case"):
        check.compare(lambda x: x, lambda x: x, [])


def test_every_checker_is_a_plain_attribute():
    """Tab completion and dir() list the checkers: no lazy registry behind them."""
    listed = set(dir(check))
    for name in check.EXERCISES:
        assert name in listed and callable(getattr(check, name)), name


def _learner_bug(x):
    return helper_of_the_learner(x)


def helper_of_the_learner(x):
    return x + undefined_name  # noqa: F821


def test_failure_shows_the_message_without_the_checkers_frames():
    with pytest.raises(check.CheckFailure) as info:
        check.compare(lambda x: x * 3, _double_reference, _cases())
    shown = "\n".join(info.value._render_traceback_())  # what IPython and Jupyter print
    assert shown.startswith("CheckFailure: case 1 (") and "entries differ" in shown
    assert "comparison.py" not in shown and "Traceback" not in shown


def test_failure_in_the_learners_code_shows_their_frames_only():
    with pytest.raises(check.CheckFailure) as info:
        check.compare(_learner_bug, _double_reference, _cases())
    shown = "\n".join(info.value._render_traceback_())
    assert "helper_of_the_learner" in shown and "_learner_bug" in shown  # the learner's frames
    assert "comparison.py" not in shown  # not the checker's
    assert shown.splitlines()[-1].startswith("CheckFailure: case 1: _learner_bug(")
    assert "raised NameError" in shown


def test_check_failure_reads_short():
    err = check.CheckFailure("shape (2,), expected (3,)")
    assert repr(err) == "CheckFailure('shape (2,), expected (3,)')"
    assert f"{type(err).__module__}.{type(err).__qualname__}" == "mmcourse.check.CheckFailure"

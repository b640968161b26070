"""scripts/run_chapters.py: parameter overrides on a tiny synthetic notebook (no chapter is executed)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def rc():
    spec = importlib.util.spec_from_file_location("run_chapters", REPO / "scripts" / "run_chapters.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


PARAMS = ('DATASET = "ml-100k"  # or "ml-1m-u2999"\n'
          "THREADS = 2\n"
          "SIZES = (256,\n"
          "         1024)   # two lines\n"
          "QUICK = dict(k=16)")


def _notebook(tmp_path: Path, params: str = PARAMS, tagged: bool = True) -> Path:
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell(params)
    if tagged:
        cell.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell("# 01 tiny"), cell,
                nbformat.v4.new_code_cell("print(DATASET, THREADS, SIZES)")]
    folder = tmp_path / "chapters"
    folder.mkdir(exist_ok=True)
    path = folder / "01_tiny.ipynb"
    nbformat.write(nb, path)
    return path


def test_overrides_replace_values_say_the_old_one_and_keep_other_lines(rc):
    new = rc.replace_parameters(PARAMS, {"DATASET": '"ml-1m-u2999"', "THREADS": "1", "SIZES": "(64,)"})
    assert new == ('DATASET = "ml-1m-u2999"  # set by run_chapters.py (was: "ml-100k")\n'
                   "THREADS = 1  # set by run_chapters.py (was: 2)\n"
                   "SIZES = (64,)  # set by run_chapters.py (was: (256, 1024))\n"
                   "QUICK = dict(k=16)")
    namespace: dict = {}
    exec(new, namespace)
    assert (namespace["DATASET"], namespace["THREADS"], namespace["SIZES"]) == ("ml-1m-u2999", 1, (64,))


def test_no_overrides_leave_the_cell_unchanged(rc):
    assert rc.replace_parameters(PARAMS, {}) == PARAMS


def test_unknown_parameter_is_an_error_naming_what_the_cell_assigns(rc):
    with pytest.raises(rc.ParameterError, match=r"assigns no NOPE .*DATASET, THREADS, SIZES, QUICK"):
        rc.replace_parameters(PARAMS, {"NOPE": "1"})


def test_parameter_assigned_twice_is_an_error(rc):
    with pytest.raises(rc.ParameterError, match="more than once"):
        rc.replace_parameters("A = 1\nA = 2\n", {"A": "3"})


@pytest.mark.parametrize("pair, message", [
    ("DATASET=ml-1m-u2999", "not a Python expression"),   # unquoted string with a dash
    ("DATASET", "NAME=VALUE"),
    ("1X=2", "NAME=VALUE"),
])
def test_bad_set_arguments_are_errors(rc, pair, message):
    with pytest.raises(rc.ParameterError, match=message):
        rc.parse_overrides([pair])


def test_parse_overrides_keeps_expressions_as_text(rc):
    assert rc.parse_overrides(['DATASET="ml-1m-u2999"', "THREADS=1", "SIZES=(1, 2)"]) == {
        "DATASET": '"ml-1m-u2999"', "THREADS": "1", "SIZES": "(1, 2)"}


def test_apply_overrides_edits_only_the_tagged_cell_of_a_copy(rc, tmp_path):
    path = _notebook(tmp_path)
    before = path.read_text()
    nb = nbformat.read(path, as_version=4)
    rc.apply_overrides(nb, {"DATASET": '"ml-1m-u2999"'})
    assert nb.cells[1].source.startswith('DATASET = "ml-1m-u2999"  # set by run_chapters.py')
    assert nb.cells[2].source == "print(DATASET, THREADS, SIZES)"
    assert path.read_text() == before


def test_a_notebook_without_a_parameters_cell_is_an_error(rc, tmp_path):
    nb = nbformat.read(_notebook(tmp_path, tagged=False), as_version=4)
    with pytest.raises(rc.ParameterError, match="found 0"):
        rc.apply_overrides(nb, {"DATASET": '"x"'})


def test_find_chapters_by_number_and_name(rc, tmp_path):
    folder = _notebook(tmp_path).parent
    (folder / "02_other.ipynb").write_text((folder / "01_tiny.ipynb").read_text())
    assert [p.name for p in rc.find_chapters(None, folder)] == ["01_tiny.ipynb", "02_other.ipynb"]
    assert [p.name for p in rc.find_chapters(["2", "01_tiny"], folder)] == ["02_other.ipynb", "01_tiny.ipynb"]
    with pytest.raises(SystemExit, match="no chapter '07'"):
        rc.find_chapters(["07"], folder)


def test_a_failing_override_is_recorded_and_the_other_rows_are_kept(rc, tmp_path):
    """run_chapter records a parameter error as the chapter's status (no kernel starts), writes the copy
    elsewhere, and merge_rows keeps the earlier rows of other chapters with the same overrides."""
    path = _notebook(tmp_path)
    before = path.read_text()
    out = tmp_path / "out"
    row = rc.run_chapter(path, {"NOPE": "1"}, out, timeout=10)
    assert row["status"] == "error" and row["error"] == "ParameterError" and "NOPE" in row["message"]
    assert (out / path.name).is_file() and path.read_text() == before
    earlier = {"overrides": {"NOPE": "1"}, "chapters": [{**row, "chapter": "00_old", "status": "ok"}]}
    (out / "results.json").write_text(json.dumps(earlier))
    rows = rc.merge_rows(out / "results.json", [row], {"NOPE": "1"})
    assert [r["chapter"] for r in rows] == ["00_old", "01_tiny"]
    assert rc.merge_rows(out / "results.json", [row], {"OTHER": "1"}) == [row]
    assert rc.merge_rows(out / "results.json", [row], {"NOPE": "1"}, keep=False) == [row]
    table = rc.format_table(rows)
    assert "01_tiny" in table and "ParameterError" in table and table.splitlines()[-1].startswith("total")


@pytest.mark.slow
def test_tiny_notebooks_execute_with_overrides_and_an_error_is_reported(rc, tmp_path):
    """Two tiny notebooks through a real kernel (a few seconds): the override reaches the code, the cwd is the
    notebook's folder, and a raising cell is reported by exception name, message and cell index."""
    path = _notebook(tmp_path)
    (path.parent / "marker.txt").write_text("here")
    nb = nbformat.read(path, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell("print(open('marker.txt').read())\n"
                                              "if DATASET != 'ml-100k':\n    raise ValueError(f'no {DATASET}')"))
    nbformat.write(nb, path)
    out = tmp_path / "out"
    ok = rc.run_chapter(path, {}, out, timeout=60)
    assert ok["status"] == "ok", ok
    executed = nbformat.read(out / path.name, as_version=4)
    assert executed.cells[2].outputs[0]["text"] == "ml-100k 2 (256, 1024)\n"
    bad = rc.run_chapter(path, {"DATASET": '"ml-1m-u2999"', "THREADS": "1"}, out, timeout=60)
    assert (bad["status"], bad["error"], bad["message"], bad["cell"]) == ("error", "ValueError", "no ml-1m-u2999", 3)
    executed = nbformat.read(out / path.name, as_version=4)
    assert executed.cells[2].outputs[0]["text"] == "ml-1m-u2999 1 (256, 1024)\n"
    assert nbformat.read(path, as_version=4).cells[1].source == PARAMS

"""Key figures: recording, checking with tolerances, and the link between the chapters and their references."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import seqsae_lib as sl
from seqsae_lib.utils import reporting

REPO = Path(__file__).resolve().parents[2]
REFERENCE = REPO / "chapters" / "key_figures.json"


@pytest.fixture
def reference(tmp_path, monkeypatch):
    path = tmp_path / "key_figures.json"
    path.write_text(json.dumps({"ndcg": {"value": 0.1111, "abs_tol": 0.002}, "count": {"value": 23, "abs_tol": 1}}))
    monkeypatch.setenv(reporting.CHECK_ENV_VAR, str(path))
    monkeypatch.delenv(reporting.LOG_ENV_VAR, raising=False)
    return path


def test_values_inside_their_tolerance_pass(reference):
    sl.key_figures(ndcg=0.1125, count=np.int64(24))
    sl.key_figures(ndcg=torch.tensor(0.1100))


def test_a_figure_off_by_ten_percent_fails(reference):
    with pytest.raises(sl.utils.KeyFigureMismatchError, match=r"ndcg = 0\.1222\d?, expected 0\.1111 \+- 0\.002"):
        sl.key_figures(ndcg=0.1111 * 1.1)


def test_an_unknown_name_fails_and_names_the_fix(reference):
    with pytest.raises(sl.utils.KeyFigureMismatchError, match="new_figure.*not in key_figures.json.*chapter_spread"):
        sl.key_figures(new_figure=1.0)


def test_without_a_reference_nothing_is_checked(monkeypatch):
    monkeypatch.delenv(reporting.CHECK_ENV_VAR, raising=False)
    monkeypatch.delenv(reporting.LOG_ENV_VAR, raising=False)
    sl.key_figures(anything=123.0)


@pytest.mark.parametrize("bad, error", [(float("nan"), ValueError), (float("inf"), ValueError), ("0.1", TypeError),
                                        (True, TypeError), ([1.0], TypeError)])
def test_bad_values_are_refused(bad, error, monkeypatch):
    monkeypatch.delenv(reporting.CHECK_ENV_VAR, raising=False)
    with pytest.raises(error, match="key figure 'x'"):
        sl.key_figures(x=bad)


def test_the_log_collects_every_value(tmp_path, monkeypatch):
    log = tmp_path / "figures.jsonl"
    monkeypatch.delenv(reporting.CHECK_ENV_VAR, raising=False)
    monkeypatch.setenv(reporting.LOG_ENV_VAR, str(log))
    sl.key_figures(a=1.5, b=2)
    sl.key_figures(c=-3.0)
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    assert rows == [{"name": "a", "value": 1.5}, {"name": "b", "value": 2.0}, {"name": "c", "value": -3.0}]


def _recorded_names(notebook: Path) -> list[str]:
    names = []
    for cell in json.loads(notebook.read_text())["cells"]:
        if cell["cell_type"] != "code":
            continue
        source = "".join(cell["source"])
        if "key_figures(" not in source:
            continue
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "key_figures":
                names += [kw.arg for kw in node.keywords]
    return names


def test_every_recorded_figure_has_a_reference_and_every_reference_a_chapter():
    reference = json.loads(REFERENCE.read_text())
    recorded: dict[str, str] = {}
    for notebook in sorted((REPO / "chapters").glob("[0-9][0-9]_*.ipynb")):
        for name in _recorded_names(notebook):
            assert name not in recorded, f"key figure {name!r} recorded by {recorded[name]} and {notebook.stem}"
            recorded[name] = notebook.stem
    assert recorded, "no chapter records a key figure"
    assert set(recorded) == set(reference), (
        f"recorded but without reference: {sorted(set(recorded) - set(reference))}; "
        f"reference without chapter: {sorted(set(reference) - set(recorded))}")
    for name, entry in reference.items():
        assert entry["chapter"] == recorded[name]
        # a tolerance is measured, never wider than the figure itself (a sign that something is wrong)
        assert 0 < entry["abs_tol"] <= max(abs(entry["value"]), 1e-9), name


def test_wrap_text_keeps_every_word_and_the_width():
    from seqsae_lib.utils.reporting import wrap_text

    sentences = ["Against 16 PCA directions, the latents surface films " * 6, "a short one"]
    out = wrap_text(sentences, width=60, indent="  ")
    assert all(len(line) <= 60 and line.startswith("  ") for line in out.splitlines() if line)
    assert out.split() == " ".join(sentences).split()  # no word lost or broken
    assert out.count("\n\n") == 1  # one blank line between sentences
    assert wrap_text("x y", width=20) == "x y"
    with pytest.raises(ValueError, match="width"):
        wrap_text("x", width=5)
    with pytest.raises(TypeError, match="strings"):
        wrap_text([1, 2])

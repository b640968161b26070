"""The package's layout is its architecture: layers import only downwards, modules stay small."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "seqsae_lib"
LAYERS = ["utils", "data", "model", "sae", "interpret", "steering", "viz", "experiments"]


def test_layers_import_only_downwards():
    """import-linter checks the layers contract in pyproject.toml (TYPE_CHECKING imports included)."""
    exe = Path(sys.executable).with_name("lint-imports")
    if not exe.exists():
        exe = shutil.which("lint-imports")
        if exe is None:
            pytest.skip("import-linter is not installed (pip install -e '.[test]')")
    result = subprocess.run([str(exe), "--config", str(REPO / "pyproject.toml")], cwd=REPO,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


def test_every_module_lives_in_a_layer():
    top = sorted(p.name for p in PACKAGE.iterdir() if p.suffix == ".py" or (p / "__init__.py").is_file())
    assert set(top) == {"__init__.py", *LAYERS}, top


def test_the_library_never_imports_the_chapters_or_widgets_eagerly():
    code = ("import sys, seqsae_lib; "
            "assert 'ipywidgets' not in sys.modules and 'seqsae_lib.viz.widgets' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert "from chapters" not in text and "import chapters" not in text, path


def test_public_names_say_which_chapter_introduces_them_and_only_the_toc_knows_files():
    """d2l's convention: each public docstring names its chapter by number; book/_toc.yml maps numbers to files."""
    import importlib
    import inspect
    import re

    chapters = re.findall(r"^\s*- file: chapters/(\d\d)_\S+\s*$", (REPO / "book" / "_toc.yml").read_text(), re.M)
    valid = {int(n) for n in chapters}
    missing = []
    for layer in LAYERS:
        module = importlib.import_module(f"seqsae_lib.{layer}")
        for name in module.__all__:
            obj = getattr(module, name)
            if not (inspect.isfunction(obj) or inspect.isclass(obj)):
                continue
            doc = inspect.getdoc(obj) or ""
            found = [int(n) for n in re.findall(r"Introduced in chapter (\d+)", doc)]
            if not found or not set(found) <= valid:
                missing.append(f"{layer}.{name}")
    assert not missing, f"public names without a valid 'Introduced in chapter N': {missing}"
    for path in PACKAGE.rglob("*.py"):
        assert not re.search(r"chapters/\d\d_\w+\.ipynb", path.read_text(encoding="utf-8")), path


def test_the_top_level_is_exactly_what_the_chapters_use():
    """``import seqsae_lib as sl`` is the curriculum: every ``sl.<name>`` a chapter calls is exported, and every
    exported name is met in some chapter (its code or its text)."""
    import json
    import re

    import seqsae_lib as sl

    code, text = set(), set()
    for path in sorted((REPO / "chapters").glob("*.ipynb")):
        for cell in json.loads(path.read_text(encoding="utf-8"))["cells"]:
            found = set(re.findall(r"\bsl\.(\w+)", "".join(cell["source"])))
            (code if cell["cell_type"] == "code" else text).update(found)
    exported = set(sl.__all__)
    assert not code - exported, f"chapters call names the top level does not export: {sorted(code - exported)}"
    assert not exported - code - text, f"exported but met in no chapter: {sorted(exported - code - text)}"

"""Write (or check) each chapter's Colab install cell from the repository URL in ``_config.yml``.

    python scripts/colab_cell.py                    # every chapter of book/_toc.yml: insert or update the cell
    python scripts/colab_cell.py --check            # exit 1 naming each chapter whose cell is missing or stale
    python scripts/colab_cell.py chapters/01_data.ipynb

The repository URL lives in one place, ``repository.url`` in ``_config.yml`` (the launch buttons use it
too). Each chapter's first code cell installs the library from that URL when, and only when, the notebook
runs in Google Colab; anywhere else it does nothing (no output, so nbval compares nothing). The cell is
tagged ``remove-cell`` (the rendered book does not show it) and ``colab-install`` (how this script and
``tests/test_book.py`` find it). It goes right after the chapter's opening markdown cell.
"""

from __future__ import annotations

import argparse
import re
import sys
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TAG = "colab-install"


def repository_url(config: Path = REPO / "_config.yml") -> str:
    """``repository.url`` of the book's ``_config.yml`` (read without a YAML parser: the key is unique)."""
    text = config.read_text(encoding="utf-8")
    block = re.search(r"^repository:\s*\n((?:[ \t]+.*\n?)+)", text, re.M)
    match = block and re.search(r"^\s+url:\s*(\S+)\s*$", block.group(1), re.M)
    if not match:
        raise ValueError(f"{config} has no repository.url")
    return match.group(1).strip("\"'")


def cell_source(url: str) -> str:
    """The install cell's source for the repository at ``url`` (the package is ``seqsae``; pip reads its extras)."""
    return ("# In Google Colab only: install this book's library from its repository (does nothing elsewhere).\n"
            "import sys\n"
            "\n"
            "if \"google.colab\" in sys.modules:\n"
            f"    %pip install --quiet \"seqsae @ git+{url}\"")


def chapters() -> list[Path]:
    toc = (REPO / "book" / "_toc.yml").read_text(encoding="utf-8")
    return [REPO / f"{name}.ipynb" for name in re.findall(r"^\s*- file: (chapters/\S+)\s*$", toc, re.M)]


def install_cells(nb) -> list:
    return [c for c in nb.cells if TAG in c.get("metadata", {}).get("tags", [])]


def problems(nb, url: str) -> list[str]:
    """What is wrong with a notebook's install cell (an empty list when it is right)."""
    cells = install_cells(nb)
    if len(cells) != 1:
        return [f"{len(cells)} cells tagged {TAG!r} (expected 1)"]
    cell = cells[0]
    found = []
    first_code = next(c for c in nb.cells if c.cell_type == "code")
    if cell is not first_code:
        found.append("the install cell is not the first code cell")
    if cell.source != cell_source(url):
        found.append(f"the install cell differs from the one for {url}")
    if "remove-cell" not in cell.metadata.get("tags", []):
        found.append("the install cell is not tagged remove-cell")
    if cell.get("outputs"):
        found.append("the install cell has outputs")
    return found


def write(nb, url: str) -> None:
    import nbformat

    for cell in install_cells(nb):
        nb.cells.remove(cell)
    cell = nbformat.v4.new_code_cell(cell_source(url), metadata={"tags": ["remove-cell", TAG]})
    cell.id = uuid.uuid4().hex[:8]
    at = 1 if nb.cells and nb.cells[0].cell_type == "markdown" else 0
    nb.cells.insert(at, cell)


def main(argv: list[str] | None = None) -> int:
    import nbformat

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: every chapter of book/_toc.yml")
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a cell is missing or stale")
    args = parser.parse_args(argv)
    url = repository_url()
    failed = 0
    for path in args.notebooks or chapters():
        nb = nbformat.read(path, as_version=4)
        found = problems(nb, url)
        if args.check:
            for problem in found:
                print(f"{path}: {problem}")
            failed += bool(found)
        elif found:
            write(nb, url)
            nbformat.write(nb, path)
            print(f"{path}: install cell written")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

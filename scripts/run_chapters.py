"""Execute chapters with other parameters and report each one's status and wall time.

    python scripts/run_chapters.py --chapters 01 04 --set DATASET='"ml-1m-u2999"' THREADS=1
    python scripts/run_chapters.py --set DATASET='"ml-1m-u2999"' THREADS=1     # every chapter, one at a time

Each chapter is copied, the assignments named by ``--set`` are replaced in the copy's cell tagged
``parameters`` (values are Python expressions, so strings need their quotes), and the copy is executed
with nbclient in the chapters folder (relative paths work as in the book) by a kernel that imports this
tree's ``seqsae_lib``. The executed copies go to ``--out`` (default ``_build/run_chapters/<dataset>/``);
``chapters/`` is never written. A failing chapter is recorded (exception name and message, failing cell)
and the next one runs. The table is printed and written as ``results.json`` and ``results.csv``.

The chapters' recorded key figures are ML-100k references: when ``DATASET`` is set to another data set the
kernels run without ``SEQSAE_KEY_FIGURES_CHECK`` (the figures are still computed and printed).
"""

from __future__ import annotations

import argparse
import ast
import csv
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CHAPTERS = REPO / "chapters"
KEY_FIGURES_CHECK = "SEQSAE_KEY_FIGURES_CHECK"


class ParameterError(ValueError):
    """A ``--set`` override that cannot be applied to a notebook's parameters cell."""


def parse_overrides(pairs: list[str]) -> dict[str, str]:
    """``["NAME=expr", ...]`` -> ``{NAME: expr}``; each name an identifier, each value a Python expression."""
    overrides: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        name, value = name.strip(), value.strip()
        if not sep or not name.isidentifier():
            raise ParameterError(f"--set expects NAME=VALUE, got {pair!r}")
        try:
            ast.parse(value, mode="eval")
        except SyntaxError as exc:
            raise ParameterError(f"--set {name}: {value!r} is not a Python expression "
                                 f"(strings need quotes: {name}='\"text\"')") from exc
        if name in overrides:
            raise ParameterError(f"--set names {name} twice")
        overrides[name] = value
    return overrides


def replace_parameters(source: str, overrides: dict[str, str]) -> str:
    """The parameters cell's ``source`` with each named top-level assignment's value replaced.

    The whole statement (a value may span lines) becomes ``NAME = value  # set by run_chapters.py (was: old)``,
    replacing a comment after it on its last line (the cell's other lines are kept as they are). Raises
    :class:`ParameterError` for a name the cell does not assign exactly once.
    """
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        raise ParameterError(f"the parameters cell does not parse: {exc}") from exc
    spans: dict[str, list[ast.stmt]] = {}
    for stmt in tree.body:
        targets = (stmt.targets if isinstance(stmt, ast.Assign)
                   else [stmt.target] if isinstance(stmt, ast.AnnAssign) else [])
        for target in targets:
            if isinstance(target, ast.Name):
                spans.setdefault(target.id, []).append(stmt)
    missing = [name for name in overrides if name not in spans]
    if missing:
        raise ParameterError(f"the parameters cell assigns no {', '.join(missing)} "
                             f"(it assigns {', '.join(spans) or 'nothing'})")
    twice = [name for name in overrides if len(spans[name]) > 1]
    if twice:
        raise ParameterError(f"the parameters cell assigns {', '.join(twice)} more than once")
    lines = source.splitlines(keepends=True)
    # Replace from the last statement up, so earlier line numbers stay valid.
    for name in sorted(overrides, key=lambda n: spans[n][0].lineno, reverse=True):
        stmt = spans[name][0]
        if len(getattr(stmt, "targets", [None])) > 1:
            raise ParameterError(f"{name} is assigned in a chained assignment; cannot replace it alone")
        first, last = stmt.lineno - 1, stmt.end_lineno - 1
        head = lines[first][:stmt.col_offset]
        old = " ".join(ast.get_source_segment(source, stmt.value).split())
        newline = "\n" if lines[last].endswith("\n") else ""
        lines[first:last + 1] = [f"{head}{name} = {overrides[name]}  # set by run_chapters.py (was: {old}){newline}"]
    new = "".join(lines)
    ast.parse(new)  # a sanity check: the replacement is still valid Python
    return new


def apply_overrides(nb, overrides: dict[str, str]):
    """Replace the overrides in ``nb``'s cell tagged ``parameters`` (in place); returns ``nb``."""
    cells = [c for c in nb.cells if c.cell_type == "code" and "parameters" in c.get("metadata", {}).get("tags", [])]
    if not overrides:
        return nb
    if len(cells) != 1:
        raise ParameterError(f"expected one code cell tagged 'parameters', found {len(cells)}")
    cells[0].source = replace_parameters(cells[0].source, overrides)
    return nb


def find_chapters(selected: list[str] | None, folder: Path = CHAPTERS) -> list[Path]:
    """The chapter notebooks ``NN_*.ipynb`` in order; ``selected`` filters by number (``01``, ``4``) or name."""
    every = sorted(folder.glob("[0-9][0-9]_*.ipynb"))
    if not selected:
        return every
    chosen = []
    for key in selected:
        key = key.removesuffix(".ipynb")
        match = [p for p in every if p.stem == key or (key.isdigit() and p.stem.startswith(f"{int(key):02d}_"))]
        if not match:
            raise SystemExit(f"no chapter {key!r} in {folder} (have: {', '.join(p.stem for p in every)})")
        chosen.extend(p for p in match if p not in chosen)
    return chosen


def run_chapter(path: Path, overrides: dict[str, str], out_dir: Path, timeout: int | None) -> dict:
    """Execute a copy of one chapter; write it to ``out_dir``; return its status row."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError

    row = {"chapter": path.stem, "status": "ok", "error": "", "message": "", "cell": "", "seconds": 0.0,
           "finished": ""}
    nb = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    try:
        apply_overrides(nb, overrides)
        client = NotebookClient(nb, timeout=timeout, kernel_name="python3", allow_errors=False,
                                resources={"metadata": {"path": str(path.parent)}})
        client.execute()
    except CellExecutionError as exc:
        row.update(status="error", error=exc.ename, message=_first_line(exc.evalue))
        row["cell"] = _failed_cell(nb)
    except CellTimeoutError as exc:
        row.update(status="error", error="CellTimeoutError", message=_first_line(str(exc)))
        row["cell"] = _failed_cell(nb)
    except Exception as exc:  # noqa: BLE001 - a kernel or parameter failure must not stop the other chapters
        row.update(status="error", error=type(exc).__name__, message=_first_line(str(exc)))
    row["seconds"] = round(time.perf_counter() - start, 1)
    row["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    out_dir.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, out_dir / path.name)
    return row


def _first_line(text: str, limit: int = 300) -> str:
    text = (text or "").strip().splitlines()[0] if (text or "").strip() else ""
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _failed_cell(nb) -> int | str:
    """Index of the first code cell with an error output (what nbclient stopped on)."""
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and any(o.get("output_type") == "error" for o in cell.get("outputs", [])):
            return i
    return ""


def merge_rows(previous: Path, rows: list[dict], overrides: dict[str, str], keep: bool = True) -> list[dict]:
    """``rows`` plus the rows of other chapters from an earlier run with the same overrides, in chapter order."""
    if keep and previous.is_file():
        try:
            old = json.loads(previous.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            old = {}
        if old.get("overrides") == overrides:
            done = {r["chapter"] for r in rows}
            rows = rows + [r for r in old.get("chapters", []) if r.get("chapter") not in done]
    return sorted(rows, key=lambda r: r["chapter"])


def format_table(rows: list[dict]) -> str:
    head = f"{'chapter':<14} {'status':<6} {'seconds':>8}  {'finished':<19}  error"
    lines = [head, "-" * len(head)]
    for r in rows:
        err = "" if r["status"] == "ok" else f"cell {r['cell']}: {r['error']}: {r['message']}"
        lines.append(f"{r['chapter']:<14} {r['status']:<6} {r['seconds']:>8.1f}  {r.get('finished', ''):<19}  {err}".rstrip())
    lines.append(f"{'total':<14} {'':<6} {sum(r['seconds'] for r in rows):>8.1f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chapters", nargs="*", help="chapter numbers or names (default: all)")
    parser.add_argument("--set", nargs="*", default=[], metavar="NAME=VALUE", dest="overrides",
                        help="parameters-cell assignments to replace; VALUE is a Python expression")
    parser.add_argument("--out", type=Path, help="folder for the executed copies and results "
                                                  "(default _build/run_chapters/<dataset>/)")
    parser.add_argument("--timeout", type=int, default=3600, help="seconds per cell (default 3600; 0: none)")
    parser.add_argument("--fresh", action="store_true",
                        help="forget the rows of earlier runs in --out (default: keep those of other chapters)")
    args = parser.parse_args(argv)

    try:
        overrides = parse_overrides(args.overrides)
    except ParameterError as exc:
        parser.error(str(exc))
    dataset = ast.literal_eval(overrides["DATASET"]) if "DATASET" in overrides else "default"
    out_dir = args.out or REPO / "_build" / "run_chapters" / str(dataset)
    if out_dir.resolve() == CHAPTERS.resolve():
        parser.error("--out must not be the chapters folder")
    # The kernels import this tree's library and, off ML-100k, skip the ML-100k key-figure check.
    os.environ["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])
    if dataset not in ("default", "ml-100k") and os.environ.pop(KEY_FIGURES_CHECK, None):
        print(f"note: {KEY_FIGURES_CHECK} unset for DATASET={dataset!r} (its references are ML-100k figures)")

    rows = []
    for path in find_chapters(args.chapters):
        print(f"running {path.stem} ...", flush=True)
        row = run_chapter(path, overrides, out_dir, args.timeout or None)
        print(f"  {row['status']} in {row['seconds']:.1f} s"
              + ("" if row["status"] == "ok" else f" (cell {row['cell']}: {row['error']}: {row['message']})"),
              flush=True)
        rows.append(row)

    rows = merge_rows(out_dir / "results.json", rows, overrides, keep=not args.fresh)
    table = format_table(rows)
    print(f"\nDATASET={dataset}  overrides: {' '.join(f'{k}={v}' for k, v in overrides.items()) or 'none'}")
    print(table)
    (out_dir / "results.json").write_text(json.dumps(
        {"overrides": overrides, "threads_env": os.environ.get("SEQSAE_THREADS"), "chapters": rows}, indent=2) + "\n")
    with open(out_dir / "results.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["chapter"])
        writer.writeheader()
        writer.writerows(rows)
    print(f"executed copies and results.json/results.csv in {out_dir}")
    return 0 if all(r["status"] == "ok" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())

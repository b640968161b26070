"""Measure how much the chapters' printed numbers and key figures move between machines.

Floating-point results of torch kernels differ between CPUs (vector width, reduction order) and with the
thread count. torch honours ``ATEN_CPU_CAPABILITY`` (``default``, ``avx2``, ``avx512``), so forcing another
kernel set on one machine reproduces this class of difference. This script executes every chapter under
several environments, then reports

* the cells whose text output still differs after the nbval sanitizer (``tests/nbval_sanitize.cfg``):
  these would fail ``make test`` on another machine;
* for every key figure a chapter records with ``sl.key_figures``, its value in each environment and the
  largest deviation from the reference (native) run.

With ``--write`` it updates ``chapters/key_figures.json``: the native value of every key figure measured
and a tolerance of ``max(3 x largest deviation, floor)``; a figure whose new value lies within its recorded
tolerance keeps the larger of the two tolerances (and the environments measured before), so a run over fewer
environments never narrows what earlier runs measured. The floor is a share of the value: 2% for a
figure that moved, 0.5% for one that did not, or the entry's own ``min_rel_tol`` where one is set by hand
(with its ``reason``, e.g. a larger difference observed on another machine); and at least 1e-12.

Usage::

    python scripts/chapter_spread.py --envs native default threads1 --out _build/spread [--write]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

REPO = Path(__file__).resolve().parents[1]
CHAPTERS = REPO / "chapters"
REFERENCE = CHAPTERS / "key_figures.json"

ENVS: dict[str, dict[str, str]] = {
    "native": {},
    "avx2": {"ATEN_CPU_CAPABILITY": "avx2"},
    "default": {"ATEN_CPU_CAPABILITY": "default"},
    "threads1": {"SEQSAE_THREADS": "1"},
    # MKL's conditional-numerical-reproducibility mode takes another BLAS code path: with torch's plain
    # kernels on top, the largest difference from the native run that one machine can show.
    "compat": {"ATEN_CPU_CAPABILITY": "default", "MKL_CBWR": "COMPATIBLE"},
}


def sanitizers() -> list[tuple[re.Pattern[str], str]]:
    """The nbval sanitizer patterns, in file order."""
    text = (REPO / "tests" / "nbval_sanitize.cfg").read_text()
    pairs = re.findall(r"^regex:\s*(.*)\nreplace:\s*(.*)$", text, re.M)
    return [(re.compile(rx), rep) for rx, rep in pairs]


def cell_texts(nb: nbformat.NotebookNode) -> dict[int, str]:
    """Every code cell's compared output text (streams, text/plain, text/html), keyed by cell index."""
    out: dict[int, str] = {}
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code" or "nbval-ignore-output" in cell.metadata.get("tags", []):
            continue
        streams, data = "", []
        for o in cell.get("outputs", []):
            if o.output_type == "stream":
                streams += o.text  # nbval joins consecutive stream chunks the same way
            elif "data" in o:
                for key in ("text/plain", "text/html"):
                    if key in o.data:
                        data.append(o.data[key])
        out[i] = "\n".join([streams, *data])
    return out


def sanitize(text: str, patterns: list[tuple[re.Pattern[str], str]]) -> str:
    for rx, rep in patterns:
        text = rx.sub(rep, text)
    return text


def execute(chapter: Path, env_name: str, out_dir: Path) -> tuple[Path, Path, float]:
    """Execute one chapter under one environment; return the executed notebook, its figures log, seconds."""
    target = out_dir / env_name
    target.mkdir(parents=True, exist_ok=True)
    log = target / f"{chapter.stem}.figures.jsonl"
    log.unlink(missing_ok=True)
    saved = dict(os.environ)
    os.environ.update(ENVS[env_name])
    os.environ["SEQSAE_KEY_FIGURES_LOG"] = str(log)
    os.environ.pop("SEQSAE_KEY_FIGURES_CHECK", None)
    try:
        nb = nbformat.read(chapter, as_version=4)
        start = time.perf_counter()
        NotebookClient(nb, timeout=3600, kernel_name="python3",
                       resources={"metadata": {"path": str(CHAPTERS)}}).execute()
        seconds = time.perf_counter() - start
    finally:
        os.environ.clear()
        os.environ.update(saved)
    path = target / chapter.name
    nbformat.write(nb, path)
    return path, log, seconds


def read_log(log: Path) -> dict[str, float]:
    values: dict[str, float] = {}
    if log.is_file():
        for line in log.read_text().splitlines():
            row = json.loads(line)
            values[row["name"]] = row["value"]
    return values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envs", nargs="+", default=["native", "avx2", "default", "threads1", "compat"], choices=sorted(ENVS))
    parser.add_argument("--chapters", nargs="*", default=None, help="chapter prefixes, e.g. 03 04 (default: all)")
    parser.add_argument("--out", type=Path, default=REPO / "_build" / "spread")
    parser.add_argument("--reuse", action="store_true", help="reuse executed notebooks already in --out")
    parser.add_argument("--write", action="store_true", help="rewrite chapters/key_figures.json (needs 'native')")
    args = parser.parse_args()
    args.out = args.out.resolve()  # the kernels run in chapters/
    chapters = sorted(CHAPTERS.glob("[0-9][0-9]_*.ipynb"))
    if args.chapters:
        chapters = [c for c in chapters if c.name[:2] in args.chapters]
    patterns = sanitizers()
    figures: dict[str, dict[str, float]] = {}  # name -> env -> value
    owner: dict[str, str] = {}
    for chapter in chapters:
        stored = cell_texts(nbformat.read(chapter, as_version=4))
        for env_name in args.envs:
            path = args.out / env_name / chapter.name
            log = args.out / env_name / f"{chapter.stem}.figures.jsonl"
            if not (args.reuse and path.is_file()):
                path, log, seconds = execute(chapter, env_name, args.out)
                print(f"{chapter.stem} [{env_name}] executed in {seconds:.0f} s", flush=True)
            fresh = cell_texts(nbformat.read(path, as_version=4))
            for i, text in stored.items():
                got = fresh.get(i, "")
                if text != got:
                    same = sanitize(text, patterns) == sanitize(got, patterns)
                    print(f"  cell {i}: raw output differs; after sanitizing: {'same' if same else 'DIFFERS'}")
                    if not same:
                        a = sanitize(text, patterns).splitlines()
                        b = sanitize(got, patterns).splitlines()
                        for x, y in zip(a, b):
                            if x != y:
                                print(f"    stored: {x[:160]}\n    fresh:  {y[:160]}")
                                break
            for name, value in read_log(log).items():
                figures.setdefault(name, {})[env_name] = value
                owner[name] = chapter.stem
    if not figures:
        return
    print(f"\n{'key figure':40s} {'native':>12s} {'max |dev|':>10s} {'rel':>8s}  tolerance")
    reference: dict[str, dict] = json.loads(REFERENCE.read_text()) if REFERENCE.is_file() else {}
    measured_chapters = {c.stem for c in chapters}
    for name in [n for n, e in reference.items() if e["chapter"] in measured_chapters and n not in figures]:
        del reference[name]  # no longer recorded by its chapter
    for name, by_env in figures.items():
        base = by_env.get("native")
        if base is None:
            continue
        dev = max(abs(v - base) for v in by_env.values())
        old = reference.get(name, {})
        rel_floor = old.get("min_rel_tol", 0.02 if dev > 0 else 0.005)
        tol = max(3 * dev, rel_floor * abs(base), 1e-12)
        envs = set(by_env)
        if old and abs(base - old["value"]) <= old["abs_tol"]:  # same figure: keep what other runs measured
            tol, dev, envs = max(tol, old["abs_tol"]), max(dev, old.get("spread", 0.0)), envs | set(old.get("envs", ()))
        rel = dev / abs(base) if base else float("nan")
        print(f"{name:40s} {base:12.6g} {dev:10.3g} {rel:8.2%}  {tol:.3g}")
        entry = {"chapter": owner[name], "value": base, "abs_tol": tol, "spread": dev, "envs": sorted(envs)}
        entry.update({k: old[k] for k in ("min_rel_tol", "reason") if k in old})
        reference[name] = entry
    if args.write:
        REFERENCE.write_text(json.dumps(dict(sorted(reference.items())), indent=1) + "\n")
        print(f"wrote {REFERENCE.relative_to(REPO)} ({len(reference)} figures)")


if __name__ == "__main__":
    sys.exit(main())

"""Key figures: the numbers a chapter quotes, recorded so that tests can check them with tolerances.

Introduced in chapter 1.

Floating-point results of torch kernels differ between CPUs (vector width, reduction order) and with the
number of threads, and a few training steps amplify the differences: the same chapter run on a student's
laptop prints numbers that differ from the book's in the last digits. So the tests do not compare printed
digits (the nbval sanitizer masks decimal numbers); instead each chapter passes the figures its text and
conclusions rest on to :func:`key_figures`, and the tests compare them with the reference values in
``chapters/key_figures.json`` within tolerances measured from their real spread across CPU kernel sets and
thread counts (``scripts/chapter_spread.py`` measures the spread and writes the file).

In an ordinary run :func:`key_figures` only checks that the values are finite numbers. Two environment
variables switch on its test roles:

* ``SEQSAE_KEY_FIGURES_CHECK``: path of the reference file; each value is compared with its reference and a
  value outside its tolerance (or a name the file does not know) raises :class:`KeyFigureMismatchError`.
  ``make test`` sets it for the chapters.
* ``SEQSAE_KEY_FIGURES_LOG``: path of a JSON-lines file to which every value is appended (how the spread
  script collects them).

:func:`wrap_text` wraps the long sentences the library writes (verdicts) for printing.
"""

from __future__ import annotations

import json
import math
import numbers
import os
import textwrap
from collections.abc import Iterable
from pathlib import Path

__all__ = ["CHECK_ENV_VAR", "LOG_ENV_VAR", "KeyFigureMismatchError", "check_key_figures", "key_figures", "wrap_text"]

CHECK_ENV_VAR = "SEQSAE_KEY_FIGURES_CHECK"
"""Environment variable naming the reference file that :func:`key_figures` checks values against."""

LOG_ENV_VAR = "SEQSAE_KEY_FIGURES_LOG"
"""Environment variable naming a JSON-lines file that :func:`key_figures` appends values to."""


class KeyFigureMismatchError(AssertionError):
    """A key figure differs from its recorded reference by more than its measured tolerance.

    Introduced in chapter 1.
    """


def _as_number(name: str, value: object) -> float:
    if hasattr(value, "item") and callable(value.item):  # numpy / torch scalars
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"key figure {name!r} must be a real number, got {type(value).__name__} ({value!r})")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"key figure {name!r} is not finite ({number})")
    return number


def check_key_figures(values: dict[str, float], reference: dict[str, dict], source: str = "reference") -> None:
    """Compare key figures with reference entries ``{"value": v, "abs_tol": t}``.

    Introduced in chapter 1.

    Raises
    ------
    KeyFigureMismatchError
        Naming every figure outside ``value +- abs_tol`` and every name the reference does not hold.
    """
    problems = []
    for name, value in values.items():
        entry = reference.get(name)
        if entry is None:
            problems.append(f"{name} = {value:.6g} is not in {source} (run scripts/chapter_spread.py --write)")
            continue
        expected, tol = float(entry["value"]), float(entry["abs_tol"])
        if abs(value - expected) > tol:
            problems.append(f"{name} = {value:.6g}, expected {expected:.6g} +- {tol:.3g} "
                            f"(off by {abs(value - expected):.3g})")
    if problems:
        raise KeyFigureMismatchError("key figures differ from " + source + ":\n  " + "\n  ".join(problems))


def key_figures(**values: object) -> None:
    """Record the figures a chapter quotes, by name (tests check them against their references).

    Introduced in chapter 1.

    Parameters
    ----------
    **values : real number
        Each figure by a name unique in the book, e.g. ``key_figures(test_ndcg10=0.1111)``. Python, NumPy
        and 0-dimensional torch numbers are accepted.

    Raises
    ------
    TypeError, ValueError
        If a value is not a real number or not finite.
    KeyFigureMismatchError
        Only when ``SEQSAE_KEY_FIGURES_CHECK`` names a reference file: a value outside its tolerance.
    """
    numbers_ = {name: _as_number(name, value) for name, value in values.items()}
    log = os.environ.get(LOG_ENV_VAR)
    if log:
        with open(log, "a", encoding="utf-8") as f:
            for name, value in numbers_.items():
                f.write(json.dumps({"name": name, "value": value}) + "\n")
    check = os.environ.get(CHECK_ENV_VAR)
    if check:
        path = Path(check)
        try:
            reference = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise KeyFigureMismatchError(f"cannot read the key-figure reference {path}: {exc}") from exc
        check_key_figures(numbers_, reference, source=path.name)


def wrap_text(sentences: str | Iterable[str], width: int = 100, indent: str = "") -> str:
    """One or more sentences wrapped to ``width`` characters for printing, separated by blank lines.

    Introduced in chapter 5 (its verdict sentences are one long line each). Words are never broken;
    continuation lines are indented by ``indent`` too.

    Raises
    ------
    TypeError
        ``sentences`` neither a string nor an iterable of strings.
    ValueError
        ``width`` not larger than the indent plus 10.
    """
    if isinstance(sentences, str):
        sentences = [sentences]
    items = list(sentences)
    if not all(isinstance(x, str) for x in items):
        raise TypeError("sentences must be a string or an iterable of strings")
    if not isinstance(width, int) or isinstance(width, bool) or width <= len(indent) + 10:
        raise ValueError(f"width must be an integer larger than {len(indent) + 10}, got {width!r}")
    return "\n\n".join(textwrap.fill(x, width=width, initial_indent=indent, subsequent_indent=indent,
                                      break_long_words=False, break_on_hyphens=False) for x in items)

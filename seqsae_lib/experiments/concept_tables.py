"""The recorded all-concepts steering tables of ``scripts/concept_table.py``, read back.

Introduced in chapter 6. Chapter 5 computes the table for the data set it runs on; chapter 6 puts the
recorded tables of both real data sets side by side with :func:`load_concept_table`.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from seqsae_lib.experiments.conditions import RECORDED_DIR
from seqsae_lib.experiments.pretrained import sasrec_recipe

__all__ = ["concept_table_path", "load_concept_table"]


def concept_table_path(dataset: str, folder: str | Path | None = None) -> Path:
    """Where ``scripts/concept_table.py --dataset <dataset>`` records its table.

    Introduced in chapter 6. ``concept_table_<name>.csv`` with the shipped SASRec's name without its
    ``sasrec_`` prefix (``ml100k``, ``ml1m_u2999``), in ``folder`` (default :data:`RECORDED_DIR`).

    Raises
    ------
    KeyError
        ``dataset`` has no SASRec recipe (the message lists those that have one).
    """
    name = sasrec_recipe(dataset).name.removeprefix("sasrec_")
    return (Path(folder) if folder is not None else RECORDED_DIR) / f"concept_table_{name}.csv"


def load_concept_table(dataset: str, folder: str | Path | None = None) -> pd.DataFrame:
    """The recorded concept-steering table of ``dataset``, as :func:`~seqsae_lib.steering.concept_steering_table`
    returned it (indexed by ``concept``; ``doubles`` as bool).

    Introduced in chapter 6. :func:`~seqsae_lib.steering.wins_ties_losses` counts its verdicts.

    Raises
    ------
    FileNotFoundError
        No table recorded for ``dataset``; the message gives the command that records it.
    KeyError
        ``dataset`` has no SASRec recipe.
    """
    path = concept_table_path(dataset, folder)
    if not path.is_file():
        raise FileNotFoundError(f"{path} missing: record it with `python scripts/concept_table.py --dataset {dataset}`")
    table = pd.read_csv(path, index_col="concept", keep_default_na=False, na_values=[""])
    table["doubles"] = table["doubles"].astype(str).map({"True": True, "False": False})
    if table["doubles"].isna().any():
        raise ValueError(f"{path}: column 'doubles' must hold True/False")
    table["why"] = table["why"].fillna("")
    return table

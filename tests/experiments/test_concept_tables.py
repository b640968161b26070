"""The recorded all-concepts steering tables (chapter 6 reads them): consistent with their own definitions and
with the concepts the library would choose for each data set today."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import seqsae_lib as sl
from seqsae_lib.experiments import concept_table_path, load_concept_table
from seqsae_lib.steering import BASELINES, table_concepts, wins_ties_losses


@pytest.mark.parametrize("dataset", ["ml-100k", "ml-1m-u2999"])
def test_recorded_table_is_consistent(dataset):
    table = load_concept_table(dataset)
    budgets = sorted({float(c.rsplit(" @", 1)[1]) for c in table.columns if c.startswith("vs ")})
    top = f"@{budgets[-1]:g}"
    ref = table["unsteered share@10"]
    best = table[f"best SAE {top}"]
    # "doubles" is the definition applied to the recorded shares, and every miss has a reason
    assert (table["doubles"] == ((best >= 2 * ref - 1e-6) & (best > ref))).all()
    assert (table.loc[table["doubles"], "why"] == "").all() and (table.loc[~table["doubles"], "why"] != "").all()
    # every share lies in [unsteered, 1], and the best SAE is the best SAE method at the largest budget
    shares = table[[c for c in table.columns if c.endswith(tuple(f"@{b:g}" for b in budgets))
                    and not c.startswith(("vs ", "best"))]]
    assert ((shares.to_numpy() >= ref.to_numpy()[:, None] - 1e-6) & (shares.to_numpy() <= 1)).all()
    sae_cols = [c for c in table.columns if c.startswith("SAE ") and c.endswith(top)]
    np.testing.assert_allclose(best, table[sae_cols].max(axis=1), atol=1e-6)
    counts = wins_ties_losses(table)
    assert list(counts.index) == [(b, c) for b in BASELINES for c in budgets]
    assert (counts.sum(axis=1) == len(table)).all()


def test_recorded_ml100k_table_covers_todays_concepts(ml100k_seq):
    assert list(load_concept_table("ml-100k").index) == table_concepts(ml100k_seq)


def test_missing_table_names_the_command(tmp_path):
    with pytest.raises(FileNotFoundError, match="scripts/concept_table.py --dataset ml-100k"):
        load_concept_table("ml-100k", folder=tmp_path)
    assert concept_table_path("ml-1m-u2999", tmp_path).name == "concept_table_ml1m_u2999.csv"
    with pytest.raises(KeyError):
        load_concept_table("no-such-data")


def test_wins_ties_losses_reads_the_columns_of_a_table_read_back():
    table = pd.DataFrame({"vs re-ranking @0.01": ["loss", "tie"], "vs random latent @0.01": ["win", "win"]})
    counts = wins_ties_losses(table)
    assert counts.loc[("re-ranking", 0.01)].tolist() == [0, 1, 1]
    assert counts.loc[("random latent", 0.01)].tolist() == [2, 0, 0]
    assert sl.wins_ties_losses is wins_ties_losses

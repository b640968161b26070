"""The conditions study: one condition end to end on planted data, verdicts consistent with their CIs."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from seqsae_lib.experiments import CONDITIONS, CONTROLS, Condition, load_conditions, planted_model, run_condition
from seqsae_lib.experiments.pretrained import training_activations


@pytest.fixture(scope="module")
def planted():
    data, split, model, metrics = planted_model(synthetic={"num_users": 300, "num_items": 200, "num_topics": 6},
                                                train={"max_epochs": 3}, seed=0, num_threads=1, progress=False)
    return data, split, model


def test_one_condition_compares_the_sae_with_every_control_on_both_sides(planted):
    data, split, model = planted
    store = training_activations(model, split, "final")
    summary, verdicts = run_condition(Condition("tiny", dataset="planted", d_sae=64, k=4), store, data,
                                      num_epochs=8, num_threads=1, top_n=20, min_fires=20, n_boot=200)
    assert set(verdicts["other"]) == set(CONTROLS) and set(verdicts["side"]) == {"input", "next"}
    assert len(verdicts) == 2 * len(CONTROLS)
    # each verdict is read off its own interval, nothing else
    for row in verdicts.itertuples():
        expected = ("higher" if row.ci_low > 0 else "lower" if row.ci_high < 0 else "no clear difference")
        assert row.verdict == expected
        assert row.ci_low <= row.diff <= row.ci_high
    # 8 epochs (104 steps): the decoder initialised from data needs ~100 steps before its FVU drops below 1
    assert 0 <= summary["dead"] <= 0.02 and 0 <= summary["fvu"] < 1
    assert summary["l0"] == pytest.approx(4, abs=1e-6)
    assert summary["genres"] == 6  # the planted topics play the genres
    for name in ("SAE", *CONTROLS):
        assert 0 <= summary[f"covered: {name}"] <= 6
    wins, n = map(int, summary["best-AUC wins vs hidden dims"].split("/"))
    assert n == 6 and 0 <= wins <= n


def test_a_store_from_another_capture_point_is_refused(planted):
    data, split, model = planted
    store = training_activations(model, split, "block_0")
    with pytest.raises(ValueError, match="reads 'final' but the store holds 'block_0'"):
        run_condition(Condition("tiny"), store, data)


def test_a_store_from_another_data_set_is_refused(planted):
    data, split, model = planted
    store = training_activations(model, split, "final")
    assert store.model_fingerprint["dataset"] == data.name == "synthetic"
    with pytest.raises(ValueError, match="is on 'ml-1m-u2999' .* trained on 'synthetic'"):
        run_condition(Condition("tiny", dataset="ml-1m-u2999"), store, data)
    with pytest.raises(ValueError, match="is on 'ml-100k' .* trained on 'synthetic'"):
        run_condition(Condition("tiny"), store, data)
    unlabelled = dataclasses.replace(store, model_fingerprint={})   # a store without provenance: seq_data decides
    with pytest.raises(ValueError, match="seq_data is 'synthetic'"):
        run_condition(Condition("tiny"), unlabelled, data)


def test_the_grid_varies_one_factor_at_a_time_and_names_are_unique():
    base = CONDITIONS[0]
    assert len({c.name for c in CONDITIONS}) == len(CONDITIONS)
    fields = ("dataset", "capture_point", "d_sae", "k", "kind")
    for c in CONDITIONS[1:]:
        changed = [f for f in fields if getattr(c, f) != getattr(base, f)]
        assert 1 <= len(changed) <= 3 and (len(changed) == 1 or c.dataset == "planted"), (c, changed)


def test_recorded_tables_round_trip_and_missing_files_say_how_to_record(tmp_path):
    with pytest.raises(FileNotFoundError, match="scripts/conditions_study.py"):
        load_conditions(tmp_path)
    pd.DataFrame({"name": ["a"], "dead": [0.01]}).to_csv(tmp_path / "conditions.csv", index=False)
    pd.DataFrame({"condition": ["a"], "verdict": ["lower"]}).to_csv(tmp_path / "condition_verdicts.csv", index=False)
    (tmp_path / "conditions.json").write_text('{"seconds": 1.0}')
    summary, verdicts, meta = load_conditions(tmp_path)
    assert summary["dead"].tolist() == [0.01] and verdicts["verdict"].tolist() == ["lower"] and meta["seconds"] == 1.0

"""Steering along latents chosen without labels (seqsae_lib.steering.unlabelled): known answers on planted data."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch

import seqsae_lib as sl
from seqsae_lib.interpret import pca_directions
from seqsae_lib.steering.unlabelled import ITEM_COLUMNS, UNLABELLED_COLUMNS, UNLABELLED_TYPES

COST = 0.05  # 60 test users: a cost large enough that the push reaches well into their top-10 lists


@pytest.fixture(scope="module")
def planted(model, seq_data):
    """The tiny data relabelled: the 20 films a fixed direction ``u`` promotes most form the genre "planted",
    the other 60 get one of three genres at random (so no label but "planted" relates to the embeddings)."""
    emb = model.item_emb.weight.detach()[1:].double()
    u = torch.randn(emb.shape[1], generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    u = u / u.norm()
    genre = np.random.default_rng(0).integers(1, 4, size=seq_data.num_items)
    genre[torch.argsort(emb @ u, descending=True)[:20].numpy()] = 0
    labels = np.zeros((seq_data.num_items + 1, 4), dtype=np.float32)
    labels[np.arange(1, seq_data.num_items + 1), genre] = 1.0
    data = dataclasses.replace(seq_data, item_genres=labels, genre_names=("planted", "b", "c", "d"))
    return data, u.float()


@pytest.fixture(scope="module")
def states(model, split):
    return sl.collect_activations(model, split.train, "final", progress=False)


@pytest.fixture(scope="module")
def planted_sae(planted, states):
    """An 8-latent SAE at "final": latent 0 writes along ``u``, latent 3 against the states' first principal
    direction, the others keep their random unit decoder rows."""
    sae = sl.SparseAutoencoder(sl.SAEConfig(d_in=16, d_sae=8, k=2, capture_point="final", seed=0))
    with torch.no_grad():
        sae.W_dec[0] = planted[1]
        sae.W_dec[3] = -pca_directions(states, 1)[0].float()
    return sae.eval()


@pytest.fixture(scope="module")
def evaluator(model, split, planted):
    return sl.SteeringEvaluator(model, split.test_inputs, split.test_targets, planted[0], n_boot=0)


@pytest.fixture(scope="module")
def steered(evaluator, planted_sae, states):
    return sl.unlabelled_steering(evaluator, planted_sae, [0, 1, 3], states, cost=COST, n_pca=2, n_random=16,
                                  n_null=100, return_items=True)


def test_the_planted_direction_surfaces_its_category_and_random_directions_centre_near_zero(steered, evaluator):
    table, items = steered
    assert list(table.columns) == list(UNLABELLED_COLUMNS)
    assert list(table["type"].unique()) == list(UNLABELLED_TYPES)
    assert (table["type"] == "PCA directions").sum() == 4 and (table["type"] == "random directions").sum() == 16
    row = table.set_index("direction").loc["latent 0"]
    assert row["reached"] and 0 < row["strength"] <= 64 and 0.8 * COST < row["ndcg_drop"] <= COST
    assert row["top_genre"] == "planted" and row["top_genre_lift"] > 2
    assert row["genre_excess"] > 0.4 and row["genre_kl"] > row["genre_kl_null"] > 0
    random = table[(table["type"] == "random directions") & table["reached"]]
    assert len(random) >= 8
    assert abs(random["genre_excess"].median()) < 0.15  # chance-corrected: a direction unrelated to the labels
    assert row["genre_excess"] > random["genre_excess"].quantile(0.9)
    reached = table[table["reached"]]
    assert (reached["ndcg_drop"] <= COST).all()
    assert reached["new_per_user"].between(0, 10).all() and reached["popularity_shift"].between(-1, 1).all()
    assert reached["decade_excess"].isna().all()  # synthetic films have no release year
    # the surfaced films add up to the entries of each direction
    assert list(items.columns) == list(ITEM_COLUMNS)
    n_users = evaluator.n_users
    per_direction = items.groupby("direction")["users"].sum()
    for name, r in reached.set_index("direction").iterrows():
        assert per_direction.get(name, 0) == pytest.approx(r["new_per_user"] * n_users)
        assert (items["direction"] == name).sum() == r["distinct_new"]


def test_a_latent_along_a_principal_direction_behaves_like_that_direction(steered):
    table = steered[0].set_index("direction")
    latent, pc = table.loc["latent 3"], table.loc["PC1-"]
    assert latent["strength"] == pytest.approx(pc["strength"], rel=1e-6)
    assert latent["new_per_user"] == pytest.approx(pc["new_per_user"])
    assert latent["genre_kl"] == pytest.approx(pc["genre_kl"], abs=1e-9)
    assert latent["genre_excess"] == pytest.approx(pc["genre_excess"], abs=0.05)  # the nulls draw differently


def test_compare_unlabelled_reads_direction_words_from_the_intervals():
    rng = np.random.default_rng(0)
    rows = [{"type": "SAE latents", "reached": True, "genre_excess": 1.0 + 0.01 * rng.standard_normal()}
            for _ in range(12)]
    rows += [{"type": "PCA directions", "reached": True, "genre_excess": 0.01 * rng.standard_normal()}
             for _ in range(12)]
    rows += [{"type": "random directions", "reached": True, "genre_excess": 1.0 + 0.01 * rng.standard_normal()}
             for _ in range(12)]
    rows += [{"type": "random directions", "reached": False, "genre_excess": np.nan}]
    out = sl.compare_unlabelled(pd.DataFrame(rows), scores=["genre_excess"], n_boot=500)
    assert list(out["control"]) == ["PCA directions", "random directions"]
    pca, rand = out.iloc[0], out.iloc[1]
    assert pca["genre_excess_verdict"] == "higher" and pca["genre_excess_ci_low"] > 0.9
    assert "more concentrated in genre" in pca["sentence"] and pca["sentence"].startswith("Against 12 PCA")
    assert rand["n_control"] == 12  # the direction that did not reach the cost is left out
    assert rand["genre_excess_verdict"] == "no clear difference"
    assert "not clearly more or less concentrated in genre" in rand["sentence"] and "includes 0" in rand["sentence"]
    with pytest.raises(ValueError, match="scores must be among"):
        sl.compare_unlabelled(pd.DataFrame(rows), scores=["genre_kl"])
    with pytest.raises(ValueError, match="reference"):
        sl.compare_unlabelled(pd.DataFrame(rows), reference="hidden dims", scores=["genre_excess"])
    with pytest.raises(TypeError):
        sl.compare_unlabelled(rows)


def test_unlabelled_latents_is_the_documented_rule():
    codes = np.zeros((1000, 6), dtype=np.float32)
    codes[0, 1] = 5.0                 # rare: fires once
    codes[:900, 2] = 1.0              # dense: fires on 90 % of positions
    codes[:100, 3] = 2.0              # energy 400
    codes[100:200, 4] = 2.0           # energy 400: ties with latent 3, the lower id first
    codes[:50, 5] = 1.0               # energy 50
    # latent 0 is dead; typical frequency (0 + 0.001 + 0.9 + 0.1 + 0.1 + 0.05) / 6 = 0.192
    chosen = sl.unlabelled_latents(codes, 3, band=(0.25, 4.0))
    assert chosen["latent"].tolist() == [3, 4, 5]
    assert chosen["energy_rank"].tolist() == [1, 2, 3]
    assert chosen["frequency"].tolist() == pytest.approx([0.1, 0.1, 0.05])
    assert (chosen["relative_frequency"].between(0.25, 4.0)).all()
    assert chosen["energy_share"].iloc[0] == pytest.approx(400 / (25 + 900 + 400 + 400 + 50))
    sparse = sl.unlabelled_latents(sl.interpret.LatentCodes.from_dense(codes), 3, band=(0.25, 4.0))
    pd.testing.assert_frame_equal(sparse, chosen)
    with pytest.raises(ValueError, match="only 3 latents"):
        sl.unlabelled_latents(codes, 4, band=(0.25, 4.0))
    with pytest.raises(ValueError):
        sl.unlabelled_latents(codes, 2, band=(4.0, 0.25))
    with pytest.raises(TypeError):
        sl.unlabelled_latents(codes, 2, band=0.5)
    bad = codes.copy()
    bad[3, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        sl.unlabelled_latents(bad, 2)
    with pytest.raises(ValueError, match="no firing"):
        sl.unlabelled_latents(np.zeros((10, 4), dtype=np.float32), 1)


def test_invalid_requests_raise(evaluator, planted_sae, states):
    def run(latents=(0,), st=states, **kw):
        options = {"n_pca": 0, "n_random": 0, **kw}
        return sl.unlabelled_steering(evaluator, planted_sae, list(latents), st, **options)

    with pytest.raises(ValueError, match="not a latent id: expected 0..7"):
        run([8])
    with pytest.raises(ValueError, match="repeat"):
        run([0, 0])
    with pytest.raises(ValueError, match="empty"):
        run([])
    with pytest.raises(ValueError, match="width"):
        run(st=torch.randn(50, 8))
    nan_states = states.acts[:50].clone()
    nan_states[0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        run(st=nan_states)
    with pytest.raises(ValueError, match="cost"):
        run(cost=0.0)
    with pytest.raises(ValueError, match="n_random"):
        run(n_random=17)
    with pytest.raises(TypeError, match="SteeringEvaluator"):
        sl.unlabelled_steering("evaluator", planted_sae, [0], states)
    with pytest.raises(TypeError, match="SparseAutoencoder"):
        sl.unlabelled_steering(evaluator, "sae", [0], states)

"""Tests for seqsae_lib.interpret codes, stats, contexts, effects and profiles (chapter 4)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from seqsae_lib.sae import ActivationStore, SAEConfig, SparseAutoencoder
from seqsae_lib.interpret import (
    PROFILE_COLUMNS,
    LatentCodes,
    category_profile,
    decade_profile,
    driving_items,
    feature_stats,
    genre_profile,
    latent_activations,
    popularity_profile,
    promoted_items,
    top_contexts,
    user_profile,
)
from seqsae_lib.model import SASRec
from seqsae_lib.data import SequenceData

GENRES = ("Action", "Comedy", "Drama", "Horror", "Children's")


def fake_data(num_users: int = 120, num_items: int = 40, seed: int = 0, d: int = 8) -> tuple[SequenceData, ActivationStore]:
    """A small hand-built SequenceData (titles, years, genres, demographics) and an aligned store."""
    rng = np.random.default_rng(seed)
    genres = (rng.random((num_items, len(GENRES))) < 0.25).astype(np.float32)
    genres[:, 3] = 0.0
    genres[genres.sum(1) == 0, 2] = 1.0  # every item has a genre (Drama by default)
    genres[:8] = 0.0
    genres[:8, 3] = 1.0  # items 1..8 are pure Horror
    item_genres = np.zeros((num_items + 1, len(GENRES)), dtype=np.float32)
    item_genres[1:] = genres
    seqs = [rng.integers(1, num_items + 1, size=int(rng.integers(5, 15))).astype(np.int64) for _ in range(num_users)]
    popularity = np.bincount(np.concatenate(seqs), minlength=num_items + 1)[1:]
    items = pd.DataFrame(
        {
            "movielens_id": np.arange(1, num_items + 1),
            "title": [f"film {i}" for i in range(1, num_items + 1)],
            "year": pd.array(rng.choice([1955, 1972, 1978, 1985, 1994, 1997], size=num_items), dtype="Int64"),
            "genres": [tuple(g for g, on in zip(GENRES, row) if on) for row in genres],
            "popularity": popularity,
        },
        index=pd.RangeIndex(1, num_items + 1, name="item"),
    )
    users = pd.DataFrame(
        {
            "user_id": np.arange(1, num_users + 1),
            "age": rng.integers(12, 70, size=num_users),
            "gender": rng.choice(["F", "M"], size=num_users),
            "occupation": rng.choice(["student", "engineer", "artist"], size=num_users),
        },
        index=pd.RangeIndex(num_users, name="user"),
    )
    data = SequenceData(
        name="fake",
        sequences=seqs,
        timestamps=[np.arange(len(s)) for s in seqs],
        user_ids=np.arange(1, num_users + 1),
        item_ids=np.arange(num_items + 1),
        items=items,
        genre_names=GENRES,
        item_genres=item_genres,
        users=users,
        params={},
    )
    user = np.concatenate([np.full(len(s), u) for u, s in enumerate(seqs)]).astype(np.int64)
    position = np.concatenate([np.arange(len(s)) for s in seqs]).astype(np.int64)
    input_item = np.concatenate(seqs).astype(np.int64)
    next_item = np.concatenate([np.append(s[1:], 0) for s in seqs]).astype(np.int64)
    g = torch.Generator().manual_seed(seed)
    store = ActivationStore("final", torch.randn(len(user), d, generator=g), user, position, input_item, next_item)
    return data, store


def planted_codes(data: SequenceData, store: ActivationStore, seed: int = 0) -> LatentCodes:
    """Latent 0: fires (value 2 + noise) exactly when the next item is Horror; 1: random; 2: dead;
    3: fires when the input item is item 5; 4: fires for female users."""
    rng = np.random.default_rng(seed)
    n = len(store)
    z = np.zeros((n, 5), dtype=np.float32)
    horror = data.item_genres[store.next_item][:, 3] > 0
    z[horror, 0] = 2.0 + rng.random(horror.sum())
    rand = rng.random(n) < 0.2
    z[:, 1] = np.where(rand, rng.random(n) + 0.1, 0.0)
    z[store.input_item == 5, 3] = 1.5
    female = data.users["gender"].to_numpy()[store.user] == "F"
    z[female, 4] = 1.0
    return LatentCodes.from_dense(torch.from_numpy(z))


# ---- LatentCodes ---------------------------------------------------------------------------------------


def test_latent_codes_roundtrip_and_helpers():
    g = torch.Generator().manual_seed(0)
    z = torch.relu(torch.randn(50, 12, generator=g) - 1.0)
    codes = LatentCodes.from_dense(z)
    assert codes.shape == (50, 12) and codes.nnz == int((z > 0).sum())
    assert torch.equal(codes.to_dense(), z)
    assert torch.equal(codes.column(3), z[:, 3])
    assert torch.equal(codes.firing_counts(), (z > 0).sum(0))
    rows = np.array([4, 0, 49, 4])
    assert torch.equal(codes.subset(rows).to_dense(), z[rows])
    mask = np.zeros(50, dtype=bool)
    mask[::3] = True
    assert torch.equal(codes.subset(mask).to_dense(), z[mask])
    assert torch.equal(codes.to_torch_sparse().to_dense(), z)
    assert torch.equal(codes.to_dense(rows=[1, 2]), z[1:3])
    assert "nnz" in repr(codes)


def test_latent_column_reads_the_column_major_copy_once_built():
    # column() scans every stored value until column_entries has sorted the codes by latent; then it reads
    # the latent's own entries. Both must give exactly the dense column, for every latent (dead ones too).
    from seqsae_lib.interpret.codes import column_entries

    g = torch.Generator().manual_seed(1)
    z = torch.relu(torch.randn(80, 9, generator=g) - 1.2)
    z[:, 4] = 0.0  # a dead latent
    codes = LatentCodes.from_dense(z)
    scanned = [codes.column(j) for j in range(9)]
    column_entries(codes)
    assert "columns" in codes._cache
    for j in range(9):
        assert torch.equal(codes.column(j), z[:, j]) and torch.equal(scanned[j], z[:, j])
    with pytest.raises(IndexError):
        codes.column(9)


def test_latent_codes_validation():
    with pytest.raises(ValueError, match="indices"):
        LatentCodes(torch.tensor([0, 1]), torch.tensor([5]), torch.tensor([1.0]), 3)
    with pytest.raises(TypeError):
        LatentCodes(torch.tensor([0, 1]), torch.tensor([0]), torch.tensor([1.0], dtype=torch.float64), 3)
    with pytest.raises(ValueError, match="indptr"):
        LatentCodes(torch.tensor([0, 2]), torch.tensor([0]), torch.tensor([1.0]), 3)
    with pytest.raises(ValueError, match="NaN"):
        LatentCodes.from_dense(torch.tensor([[float("nan"), 1.0]]))
    codes = LatentCodes.from_dense(torch.eye(3))
    with pytest.raises(IndexError):
        codes.column(3)
    with pytest.raises(ValueError):
        codes.subset(np.ones(2, dtype=bool))


@pytest.mark.parametrize("kind", ["topk", "relu"])
def test_latent_activations_match_dense_encode(kind):
    torch.manual_seed(0)
    sae = SparseAutoencoder(SAEConfig(d_in=8, d_sae=32, kind=kind, k=4, seed=1))
    x = torch.randn(300, 8)
    sae.train()
    codes = latent_activations(sae, x, batch_size=64)
    assert sae.training  # mode restored
    with torch.no_grad():
        dense = sae.eval().encode(x)
    assert torch.allclose(codes.to_dense(), dense)
    if kind == "topk":
        assert int((codes.indptr[1:] - codes.indptr[:-1]).max()) <= 4
    with pytest.raises(ValueError, match="width"):
        latent_activations(sae, torch.randn(5, 7))
    with pytest.raises(ValueError, match="batch_size"):
        latent_activations(sae, x, batch_size=0)


# ---- statistics ----------------------------------------------------------------------------------------


def test_feature_stats_known_answers():
    rng = np.random.default_rng(0)
    z = np.where(rng.random((400, 6)) < 0.3, rng.random((400, 6)) * 3, 0.0).astype(np.float32)
    z[:, 4] = 0.0  # dead
    stats = feature_stats(LatentCodes.from_dense(torch.from_numpy(z)), quantiles=(0.0, 0.5, 0.9, 1.0))
    for j in (0, 1, 5):
        on = z[:, j][z[:, j] > 0].astype(np.float64)
        assert stats.loc[j, "n_fires"] == len(on)
        assert stats.loc[j, "frequency"] == pytest.approx(len(on) / 400)
        assert stats.loc[j, "mean_act"] == pytest.approx(on.mean(), rel=1e-6)
        assert stats.loc[j, "max_act"] == pytest.approx(on.max(), rel=1e-6)
        assert stats.loc[j, "q50"] == pytest.approx(np.quantile(on, 0.5), rel=1e-6)
        assert stats.loc[j, "q90"] == pytest.approx(np.quantile(on, 0.9), rel=1e-6)
        assert stats.loc[j, "q0"] == pytest.approx(on.min(), rel=1e-6)
    assert stats.loc[4, "n_fires"] == 0 and np.isnan(stats.loc[4, "mean_act"])
    # dense input gives the same table
    pd.testing.assert_frame_equal(stats, feature_stats(z, quantiles=(0.0, 0.5, 0.9, 1.0)))
    with pytest.raises(ValueError, match="quantiles"):
        feature_stats(z, quantiles=(1.5,))


def test_feature_stats_frequency_last():
    data, store = fake_data()
    codes = planted_codes(data, store)
    stats = feature_stats(codes, store=store)
    last = store.is_last
    col = codes.column(3).numpy()
    assert stats.loc[3, "frequency_last"] == pytest.approx((col[last] > 0).mean())


# ---- contexts and items ----------------------------------------------------------------------------------


def test_top_contexts_and_driving_items():
    data, store = fake_data()
    codes = planted_codes(data, store)
    ctx = top_contexts(codes, store, data, latent=0, n=5, history=3)
    assert len(ctx) == 5
    assert (np.diff(ctx["activation"].to_numpy()) <= 0).all()
    for rec in ctx.to_dict("records"):
        seq = data.sequences[rec["user"]]
        assert rec["input"] == f"film {seq[rec['position']]}"
        assert rec["next"] == f"film {seq[rec['position'] + 1]}"
        assert rec["next"] in {f"film {i}" for i in range(1, 9)}  # the Horror films
        hist = [f"film {i}" for i in seq[max(0, rec["position"] - 3) : rec["position"]]]
        assert rec["history"] == " | ".join(hist)
    one = top_contexts(codes, store, data, latent=0, n=50, one_per_user=True)
    assert one["user"].is_unique
    assert top_contexts(codes, store, data, latent=2).empty  # dead latent

    drive = driving_items(codes, store, data, latent=3, n=3, min_count=1)
    assert drive.iloc[0]["item"] == 5 and drive.iloc[0]["mean_activation"] == pytest.approx(1.5)
    assert drive.iloc[0]["fire_rate"] == 1.0 and drive.iloc[1]["mean_activation"] == 0.0
    huge = driving_items(codes, store, data, latent=3, min_count=10_000)
    assert huge.empty


def test_context_functions_validate_alignment():
    data, store = fake_data()
    codes = planted_codes(data, store)
    with pytest.raises(ValueError, match="rows"):
        top_contexts(codes.subset(np.arange(10)), store, data, latent=0)
    other, _ = fake_data(seed=3)
    with pytest.raises(ValueError, match="does not match"):
        top_contexts(codes, store, other, latent=0)
    with pytest.raises(ValueError, match="which"):
        driving_items(codes, store, data, latent=0, which="previous")


def test_promoted_items_final_is_exact_and_inner_matches_derivative():
    torch.manual_seed(0)
    model = SASRec(num_items=20, max_len=6, d_model=8, n_layers=1, dropout=0.0).eval()
    sae = SparseAutoencoder(SAEConfig(d_in=8, d_sae=16, k=4, seed=0))
    with torch.no_grad():
        sae.input_scale.fill_(2.0)
    d = sae.W_dec[5].detach() / 2.0
    exact = (d @ model.item_emb.weight.detach().T)[1:].numpy()
    top = promoted_items(model, sae, 5, capture_point="final", n=20)
    assert (top["method"] == "exact").all()
    assert np.allclose(top.set_index("item").loc[np.arange(1, 21), "score"].to_numpy(), exact, atol=1e-6)
    assert (np.diff(top["score"].to_numpy()) <= 0).all()
    bottom = promoted_items(model, sae, 5, capture_point="final", n=3, bottom=True)
    assert bottom["score"].iloc[0] == pytest.approx(exact.min(), abs=1e-6)

    # block_0 -> final LayerNorm: a tiny finite difference equals the directional derivative
    rng = np.random.default_rng(0)
    seqs = [rng.integers(1, 21, size=int(rng.integers(2, 7))) for _ in range(12)]
    fd = promoted_items(model, sae, 5, capture_point="block_0", n=20, sequences=seqs, alpha=1e-3, n_states=12)
    assert (fd["method"] == "finite-difference").all()
    from seqsae_lib.data import left_pad

    ids = left_pad(seqs, 6)
    from seqsae_lib.model import record

    with record(model, "block_0") as rec:
        model(ids)
    h = rec["block_0"][:, -1]
    _, jvp = torch.autograd.functional.jvp(
        lambda x: model.final_ln(x) @ model.item_emb.weight.T, (h,), (d.expand_as(h).contiguous(),)
    )
    expected = jvp.mean(0)[1:].detach().numpy()
    got = fd.set_index("item").loc[np.arange(1, 21), "score"].to_numpy()
    assert np.allclose(got, expected, atol=2e-3 * np.abs(expected).max())
    with pytest.raises(ValueError, match="sequences"):
        promoted_items(model, sae, 5, capture_point="block_0")
    with pytest.raises(KeyError):
        promoted_items(model, sae, 5, capture_point="nowhere")


# ---- profiles --------------------------------------------------------------------------------------------


def test_genre_profile_planted_horror_latent():
    data, store = fake_data()
    codes = planted_codes(data, store)
    prof = genre_profile(codes, store, data, "next")
    assert list(prof.columns) == list(PROFILE_COLUMNS)
    assert len(prof) == 5 * len(GENRES) and set(prof["profile"]) == {"genre:next"}
    cell = prof[(prof.latent == 0) & (prof.category == "Horror")].iloc[0]
    known = store.next_item > 0
    base = (data.item_genres[store.next_item[known]][:, 3]).mean()
    assert cell["share"] == pytest.approx(1.0)
    assert cell["base_rate"] == pytest.approx(base)
    assert cell["lift"] == pytest.approx(1 / base)
    assert cell["p_value"] == pytest.approx(base**cell["n_eff"])  # Chernoff bound with share 1: base^n_eff
    assert cell["q_value"] < 1e-3
    assert 5 <= cell["n_eff"] <= 8  # eight Horror films, weighted
    rand = prof[prof.latent == 1]
    assert (rand["q_value"] > 0.01).all()
    dead = prof[prof.latent == 2]
    assert dead["share"].isna().all() and (dead["p_value"] == 1).all() and (dead["n_fires"] == 0).all()
    # the input-item profile of the item-5 latent: share 1 for item 5's genres, but one cluster
    inp = genre_profile(codes, store, data, "input")
    cell = inp[(inp.latent == 3) & (inp.category == "Horror")].iloc[0]
    assert cell["share"] == pytest.approx(1.0) and cell["n_eff"] == pytest.approx(1.0)
    assert cell["p_value"] == pytest.approx(cell["base_rate"])  # Chernoff bound, exact for one cluster


def test_category_profile_matches_brute_force():
    rng = np.random.default_rng(1)
    n = 200
    a = np.where(rng.random((n, 3)) < 0.4, rng.random((n, 3)), 0.0)
    cats = (rng.random((n, 4)) < 0.3).astype(float)
    clusters = rng.integers(0, 15, size=n)
    valid = rng.random(n) < 0.8
    prof = category_profile(a, cats, list("abcd"), valid=valid, clusters=clusters, profile="x")
    for j in range(3):
        w = np.where(valid, a[:, j], 0.0)
        share = (w[:, None] * cats).sum(0) / w.sum()
        per_cluster = np.bincount(clusters, weights=w)
        n_eff = w.sum() ** 2 / (per_cluster**2).sum()
        rows = prof[prof.latent == j]
        assert np.allclose(rows["share"], share)
        assert np.allclose(rows["base_rate"], cats[valid].mean(0))
        assert np.allclose(rows["n_eff"], n_eff)
        assert rows["n_fires"].iloc[0] == int(((a[:, j] > 0) & valid).sum())
    assert ((prof["q_value"] >= prof["p_value"]) | np.isclose(prof["q_value"], prof["p_value"])).all()
    with pytest.raises(ValueError, match="0/1"):
        category_profile(a, cats * 2, list("abcd"))
    with pytest.raises(ValueError, match="names"):
        category_profile(a, cats, list("abc"))


def test_decade_popularity_user_profiles():
    data, store = fake_data()
    codes = planted_codes(data, store)
    dec = decade_profile(codes, store, data, "next")
    assert set(dec["category"]) == {"1950s", "1970s", "1980s", "1990s"}
    base = dec[dec.latent == 0].set_index("category")["base_rate"]
    assert base.sum() == pytest.approx(1.0)
    pop = popularity_profile(codes, store, data, "input")
    assert set(pop["category"]) == {"long-tail", "mid-popularity", "popular"}
    assert pop[pop.latent == 0]["base_rate"].sum() == pytest.approx(1.0)
    assert pop["mean_percentile"].between(0, 1).all() or pop["mean_percentile"].isna().any()
    assert 0 < pop["base_percentile"].iloc[0] <= 1
    usr = user_profile(codes, store, data)
    assert set(usr["profile"]) == {"user:age", "user:gender", "user:occupation"}
    women = usr[(usr.latent == 4) & (usr.category == "F")].iloc[0]
    assert women["share"] == pytest.approx(1.0) and women["q_value"] < 1e-3
    assert usr[(usr.latent == 4) & (usr.category == "M")]["share"].iloc[0] == 0.0
    with pytest.raises(ValueError, match="unknown user column"):
        user_profile(codes, store, data, columns=["shoe_size"])


def test_end_to_end_on_synthetic_pipeline():
    """The real pipeline objects: synthetic data -> sequences -> split -> SASRec states -> SAE codes."""
    from seqsae_lib.sae import collect_activations
    from seqsae_lib.interpret import auto_label
    from seqsae_lib.interpret import genre_matrices, monosemanticity_scores
    from seqsae_lib.interpret import planted_recovery
    from seqsae_lib.data import leave_one_out, make_sequences
    from seqsae_lib.data import make_synthetic

    data = make_sequences(make_synthetic(num_users=40, num_items=120, num_topics=4, min_length=8, max_length=25, seed=0))
    split = leave_one_out(data)
    torch.manual_seed(0)
    model = SASRec(num_items=data.num_items, max_len=20, d_model=16, n_layers=1, dropout=0.0)
    store = collect_activations(model, split.train, "block_0", next_items=split.valid_targets, progress=False)
    sae = SparseAutoencoder(SAEConfig(d_in=16, d_sae=64, k=4, seed=0))
    codes = latent_activations(sae, store)
    stats = feature_stats(codes, store=store)
    assert len(stats) == 64 and stats["n_fires"].sum() == codes.nnz
    latent = int(stats["n_fires"].idxmax())
    ctx = top_contexts(codes, store, data, latent, n=3)
    assert len(ctx) == 3 and ctx["next"].str.startswith("item").all()
    assert len(driving_items(codes, store, data, latent, min_count=1)) > 0
    promoted = promoted_items(model, sae, latent, capture_point="block_0", n=5, seq_data=data, sequences=split.train,
                              n_states=16)
    assert len(promoted) == 5 and promoted["title"].str.startswith("item").all()
    profiles = [genre_profile(codes, store, data, w) for w in ("next", "input")]
    profiles += [user_profile(codes, store, data), popularity_profile(codes, store, data)]
    assert set(profiles[2]["profile"]) == {"user:main_topic"}
    assert decade_profile(codes, store, data).empty  # synthetic items have no year
    labels = auto_label(profiles, stats=stats)
    assert len(labels) == 64
    gn, gi = genre_matrices(store, data)
    scores = monosemanticity_scores(codes, gn, gi, genre_names=data.genre_names, min_positives=5)
    assert len(scores) == 64 and not scores.isna().any().any()
    topics = data.item_topic[store.next_item]
    result = planted_recovery(codes, topics)
    assert result["n_topics"] == 4 and 0 <= result["n_recovered"] <= 4

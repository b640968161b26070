"""Feature atlas, feature cards, the feature browser and the planted-topic experiment."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
import torch

import seqsae_lib as sl


@pytest.fixture(scope="module")
def tiny_atlas(tiny_seq, tiny_split, train_tiny_sasrec):
    model = train_tiny_sasrec(tiny_split, epochs=3)
    store = sl.collect_activations(model, tiny_split.train, "final", next_items=tiny_split.valid_targets,
                                   progress=False)
    sae, _ = sl.train_sae(store.acts, sl.SAEConfig(d_in=store.d_model, d_sae=48, k=4, seed=0),
                          sl.SAETrainConfig(num_epochs=3, batch_size=128, progress=False, num_threads=1))
    sae.eval()
    return sl.build_atlas(model, sae, store, tiny_seq, progress=False, min_lift=1.2)


def test_atlas_tables_cover_every_latent(tiny_atlas):
    atlas = tiny_atlas
    assert atlas.d_sae == 48 and len(atlas.stats) == 48 and len(atlas.labels) == 48
    assert atlas.stats["n_fires"].sum() == atlas.codes.nnz
    assert set(atlas.seconds) == {"encode", "stats", "genre profiles", "decade profile", "popularity profile",
                                  "user profile", "labels"}
    assert {"genre:next", "genre:input", "user:main_topic"} <= set(atlas.profiles["profile"])
    assert atlas.categories() == list(atlas.seq_data.genre_names)


def test_card_matches_the_codes(tiny_atlas):
    atlas = tiny_atlas
    j = int(atlas.stats["n_fires"].idxmax())
    card = atlas.card(j, n=3)
    column = atlas.codes.column(j).numpy()
    assert len(card.activations) == int((column > 0).sum()) == int(atlas.stats.loc[j, "n_fires"])
    assert card.contexts["activation"].iloc[0] == pytest.approx(column.max())
    assert card.contexts["user"].is_unique  # one context per user
    # At "final" the promoted items are exact: decoder row (raw units) times the item embeddings.
    direction = atlas.sae.W_dec[j].detach() / atlas.sae.input_scale
    expected = (atlas.model.item_emb.weight.detach() @ direction)[1:]
    top = torch.topk(expected, 3).indices + 1
    assert card.promoted["item"].tolist() == top.tolist()
    assert card.suppressed["score"].max() < card.promoted["score"].min()
    assert set(card.profiles["latent"]) == {j}
    genre = card.profile("genre:next")
    assert list(genre["lift"]) == sorted(genre["lift"], reverse=True)
    fig = sl.plot_feature_card(card)
    assert len(fig.axes) == 4 and str(j) in fig._suptitle.get_text()


def test_search_category_and_gallery(tiny_atlas):
    atlas = tiny_atlas
    labelled = atlas.labels[atlas.labels["source"] == "auto"]
    assert len(labelled) > 0, "no latent of the tiny SAE got a label"
    word = labelled["label"].iloc[0].split(",")[0].split("/")[0].strip()
    hits = atlas.search(word.upper())
    assert len(hits) > 0 and hits["label"].str.lower().str.contains(word.lower(), regex=False).all()
    assert list(hits["confidence"]) == sorted(hits["confidence"], reverse=True)
    topic = atlas.categories()[0]
    enriched = atlas.by_category(topic, min_share=0.0, alpha=1.0)
    assert (enriched["lift"].diff().dropna() <= 0).all()
    gallery = atlas.gallery(4, min_frequency=0.0)
    assert len(set(gallery)) == len(gallery) <= 4
    assert not atlas.labels.loc[gallery, "label"].isin([sl.interpret.labels.DEAD, sl.interpret.labels.NO_PROFILE]).any()


def test_atlas_errors(tiny_atlas):
    atlas = tiny_atlas
    with pytest.raises(ValueError, match="out of range"):
        atlas.card(48)
    with pytest.raises(TypeError):
        atlas.card("3")
    with pytest.raises(ValueError, match="unknown category"):
        atlas.by_category("Westerns")
    with pytest.raises(ValueError, match="unknown profile"):
        atlas.categories("genre:sideways")
    wrong = sl.SparseAutoencoder(sl.SAEConfig(d_in=8, d_sae=16, k=2))
    with pytest.raises(ValueError, match="8-dim"):
        sl.build_atlas(atlas.model, wrong, atlas.store, atlas.seq_data, progress=False)
    other = sl.SparseAutoencoder(sl.SAEConfig(d_in=atlas.store.d_model, d_sae=16, k=2, capture_point="block_0"))
    with pytest.raises(ValueError, match="block_0"):
        sl.build_atlas(atlas.model, other, atlas.store, atlas.seq_data, progress=False)


def test_feature_browser_updates(tiny_atlas):
    pytest.importorskip("ipywidgets")
    browser = sl.widgets.feature_browser(tiny_atlas, latent=int(tiny_atlas.stats["n_fires"].idxmax()))
    assert np.isfinite(browser.last_seconds)
    seconds = browser.show(1)
    assert seconds > 0 and "latent 1" in browser.children[2].value
    plain = browser._repr_mimebundle_()["text/plain"]  # what a notebook shows before it runs: a sentence, not the repr
    assert plain.startswith(f"Feature browser over the {tiny_atlas.d_sae:,} latents") and "VBox" not in plain
    card_page = browser.children[-1].value  # the HTML card and the contexts table
    assert card_page.startswith("<h4>Latent 1:") and "Pushes up:" in card_page and "Strongest contexts" in card_page
    assert all(t in card_page for t in tiny_atlas.card(1).promoted["title"].head(3))
    topic = tiny_atlas.categories()[1]
    browser.genre.value = topic
    chosen = [j for _, j in browser.choice.options]
    assert chosen == list(tiny_atlas.by_category(topic, n=30).index) or chosen == [-1]


def test_planted_experiment_runs_and_counts(tmp_path):
    exp = sl.planted_topic_experiment(
        synthetic=dict(num_users=80, num_items=120, num_topics=4, min_length=10, max_length=30),
        model=dict(max_len=20, d_model=8, n_layers=1), train=dict(max_epochs=3, batch_size=32),
        sae=dict(d_sae=32, k=2), sae_train=dict(num_epochs=3, batch_size=128), num_threads=1, progress=False)
    table = exp.table()
    assert list(table.index) == ["SAE", "hidden dims", "PCA", "random rotation", "untrained SAE"]
    assert (table["of"] == 4).all() and (table["topics recovered"] <= 4).all()
    assert table.loc["SAE", "units"] == 32 and table.loc["hidden dims", "units"] == 16  # both signs of 8 dims
    # The recovery is recomputed the same way by the public function.
    topic = exp.seq_data.item_topic[exp.store.next_item]
    again = sl.interpret.planted_recovery(exp.codes, topic, 0.9, n_topics=4)
    assert again["n_recovered"] == table.loc["SAE", "topics recovered"]
    assert all(0 <= p <= 1 for rec in exp.recoveries.values() for p in rec["best_purity"])
    assert 0 <= exp.model_metrics["NDCG@10"] <= 1


def test_interpretability_summary(tiny_atlas):
    atlas = tiny_atlas
    s = atlas.interpretability(min_frequency=0.05)
    fires = atlas.stats["n_fires"] > 0
    assert s["latents"] == 48 and s["alive"] == pytest.approx(fires.mean())
    labelled = ~atlas.labels["label"].isin([sl.interpret.labels.DEAD, sl.interpret.labels.NO_PROFILE])
    assert s["labelled"] == pytest.approx(labelled[fires].mean())
    assert s["frequent"] == (atlas.stats["frequency"] >= 0.05).sum()
    # The medians are those of the public scoring function on the atlas's codes.
    gn, _ = sl.interpret.genre_matrices(atlas.store, atlas.seq_data)
    direct = sl.monosemanticity_scores(atlas.codes, gn, genre_names=list(atlas.seq_data.genre_names))
    assert s["median auc_next"] == pytest.approx(float(np.median(direct["auc_next"])))
    assert s["median purity_lift"] == pytest.approx(float(np.median(direct["purity_lift"])))
    # Every latent frequent: the two medians agree; none frequent: NaN.
    all_frequent = atlas.interpretability(min_frequency=0.0)
    assert all_frequent["median purity_lift (frequent)"] == pytest.approx(all_frequent["median purity_lift"])
    assert np.isnan(atlas.interpretability(min_frequency=1.0)["median auc_next (frequent)"])
    with pytest.raises(ValueError, match="min_frequency"):
        atlas.interpretability(min_frequency=2.0)


def test_tradeoff_plot_draws_any_list_metric(tiny_atlas):
    import matplotlib.pyplot as plt
    import pandas as pd

    table = pd.DataFrame({"strength": [0.0, 1.0, 2.0], "NDCG@10": [0.3, 0.25, 0.2], "share@10": [0.1, 0.3, 0.5],
                          "popularity@10": [300.0, 250.0, 200.0]})
    table = table.assign(concept="long_tail", **{"reference_NDCG@10": 0.3, "reference_share@10": 0.1})
    ax = sl.plot_steering_tradeoff({"SAE": table}, metric="popularity@{k}")
    line = ax.get_lines()[0]
    assert list(line.get_ydata()) == [300.0, 250.0, 200.0]
    star = ax.get_lines()[-1]
    assert (float(star.get_xdata()[0]), float(star.get_ydata()[0])) == (0.3, 300.0)  # the strength-0 row
    assert "interactions" in ax.get_ylabel()
    with pytest.raises(ValueError, match="unknown metric"):
        sl.plot_steering_tradeoff({"SAE": table}, metric="nonsense")
    plt.close("all")


def test_inner_point_card_ranks_both_ends_from_one_computation(tiny_seq, tiny_split, train_tiny_sasrec, monkeypatch):
    import seqsae_lib.interpret.atlas as atlas_module

    model = train_tiny_sasrec(tiny_split, epochs=2)
    store = sl.collect_activations(model, tiny_split.train, "block_0", next_items=tiny_split.valid_targets,
                                   progress=False)
    sae, _ = sl.train_sae(store.acts, sl.SAEConfig(d_in=store.d_model, d_sae=16, k=2, seed=0),
                          sl.SAETrainConfig(num_epochs=1, batch_size=128, progress=False, num_threads=1))
    atlas = sl.build_atlas(model, sae.eval(), store, tiny_seq, sequences=tiny_split.train, n_states=16,
                           progress=False)
    calls = []
    real = atlas_module.latent_item_effects
    monkeypatch.setattr(atlas_module, "latent_item_effects", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    j = int(atlas.stats["n_fires"].idxmax())
    card = atlas.card(j, n=4)
    assert len(calls) == 1  # the finite differences run once for both ends
    options = dict(seq_data=tiny_seq, sequences=tiny_split.train, n_states=16,
                   alpha=float(atlas.stats.loc[j, "q90"]))
    top = sl.interpret.promoted_items(model, sae, j, capture_point="block_0", n=4, **options)
    low = sl.interpret.promoted_items(model, sae, j, capture_point="block_0", n=4, bottom=True, **options)
    assert card.promoted["item"].tolist() == top["item"].tolist()
    assert card.suppressed["item"].tolist() == low["item"].tolist()
    for table in (card.promoted, card.suppressed):
        assert (table["method"] == "finite-difference").all()
    with pytest.raises(ValueError, match="item effects"):
        sl.interpret.rank_item_effects(np.zeros(3), "exact", num_items=5)


def _card_latent(browser) -> int:
    """The latent the browser's HTML card shows (its heading)."""
    import re

    return int(re.match(r"<h4>Latent (\d+):", browser.children[-1].value).group(1))


def test_feature_browser_card_follows_every_relisting(tiny_atlas):
    pytest.importorskip("ipywidgets")
    atlas = tiny_atlas
    browser = sl.widgets.feature_browser(atlas)
    assert _card_latent(browser) == browser.shown == browser.choice.value  # the first card is the listed entry
    changed = 0
    for topic in atlas.categories():  # each genre relists the dropdown; the card follows its first entry
        before = browser.shown
        browser.genre.value = topic
        listed = [j for _, j in browser.choice.options]
        if listed[0] >= 0:
            assert browser.choice.value == listed[0] == _card_latent(browser) == browser.shown
            assert f"latent {listed[0]}:" in browser.children[2].value
            changed += browser.shown != before
        else:
            assert _card_latent(browser) == before and "no latent matches" in browser.children[2].value
    assert changed > 0, "no genre changed the card"
    browser.genre.value = "(any)"
    word = atlas.labels.loc[atlas.labels["source"] == "auto", "label"].iloc[-1].split(",")[0].split("/")[0]
    browser.search.value = word  # a search relists too
    hits = list(atlas.search(word, n=30).index)
    assert [j for _, j in browser.choice.options] == hits
    assert browser.choice.value == hits[0] == _card_latent(browser)
    if len(hits) > 1:  # picking another entry still updates the card
        browser.choice.value = hits[1]
        assert _card_latent(browser) == hits[1]
    browser.search.value = "no label says this"
    assert browser.choice.options[0][1] == -1 and _card_latent(browser) == browser.shown


def _with_decade_labels(atlas):
    """The tiny atlas (synthetic items have no years) with decade labels and a decade profile planted."""
    import dataclasses

    import pandas as pd

    labels = atlas.labels.copy()
    labels.loc[[0, 1, 2, 3, 4], "label"] = ["1970s", "1960s-70s", "topic 1, 1950s-1970s", "1980s", "1990s-00s"]
    labels.loc[[0, 1, 2, 3, 4], "confidence"] = [0.9, 0.8, 0.7, 0.95, 0.6]
    rows = [{"latent": j, "profile": "decade:next", "category": f"{d}s", "share": share, "base_rate": 0.07,
             "lift": share / 0.07, "q_value": q}
            for j in range(atlas.d_sae) for d, share, q in [(1970, 0.5 if j == 7 else 0.2 if j == 8 else 0.07,
                                                              0.001 if j in (7, 8) else 1.0), (1980, 0.1, 1.0),
                                                             (1990, 0.5, 1.0), (2000, 0.01, 1.0)]]
    profiles = pd.concat([atlas.profiles, pd.DataFrame(rows)], ignore_index=True)
    return dataclasses.replace(atlas, labels=labels, profiles=profiles)


def test_search_by_decade(tiny_atlas):
    atlas = _with_decade_labels(tiny_atlas)
    for query in ["1970s", "1970", "70s", "'70s", "70's", " 1970S "]:
        hits = list(atlas.search(query, n=48).index)
        # labels covering the 1970s first (most confident first), then latents enriched for it by lift
        assert hits[:5] == [0, 1, 2, 7, 8], query
    assert 3 not in atlas.search("1970s").index
    assert list(atlas.search("00s").index[:1]) == [4] and list(atlas.search("1990s").index[:1]) == [4]
    assert list(atlas.search("80s").index[:1]) == [3]
    assert atlas.search("1975").empty  # not a decade: a plain text search
    assert atlas.search("horror").equals(tiny_atlas.search("horror"))
    pytest.importorskip("ipywidgets")
    browser = sl.widgets.feature_browser(atlas, latent=5)
    browser.search.value = "70s"
    assert [j for _, j in browser.choice.options][:5] == [0, 1, 2, 7, 8] and _card_latent(browser) == 0

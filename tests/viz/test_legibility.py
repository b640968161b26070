"""Figures readable at page width: the book shows a figure at most about 600 px wide, drawn at 100 px per inch.

A figure at most 7.6 inches wide with no text under 8.5 points keeps every letter at 9 px or more on the page
(8.5 pt x 100/72 px per pt x 600/760 = 9.3 px). Each library figure of chapters 1-4 and 6 is drawn here from small
synthetic inputs and every visible text artist is measured.
"""

from __future__ import annotations

from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.text import Text  # noqa: E402

import seqsae_lib as sl  # noqa: E402
from seqsae_lib.viz import plot_concept_coverage, plot_median_cis  # noqa: E402

MAX_WIDTH_IN = 7.6
MIN_POINTS = 8.5


def _check(fig) -> None:
    fig.canvas.draw()
    width = fig.get_size_inches()[0]
    assert width <= MAX_WIDTH_IN + 1e-6, f"figure is {width:.1f} inches wide"
    small = sorted({(t.get_text(), t.get_fontsize()) for t in fig.findobj(Text)
                    if t.get_visible() and t.get_text().strip() and t.get_fontsize() < MIN_POINTS})
    assert not small, f"text under {MIN_POINTS} pt: {small[:5]}"
    plt.close(fig)


@pytest.fixture(scope="module")
def synthetic(tiny_seq, tiny_split):
    return tiny_seq, tiny_split  # conftest: 60 users, 80 items, 4 planted topics


def _card():
    genres = pd.DataFrame({"share": [0.6, 0.2, 0.1], "base_rate": [0.1, 0.3, 0.2]},
                          index=["Horror", "Thriller", "Action"])
    decades = pd.DataFrame({"share": [0.5, 0.3], "base_rate": [0.6, 0.2]}, index=["1990s", "1980s"])
    titles = pd.DataFrame({"title": ["A Film With A Rather Long Title Indeed (1995)", "Short (1980)"] * 3})
    return SimpleNamespace(latent=7, label="Horror · long-tail", confidence=0.8, stats=pd.Series({"frequency": 0.01}),
                           activations=np.random.default_rng(0).random(200),
                           profile=lambda name: genres if name.startswith("genre") else decades,
                           promoted=titles, suppressed=titles, driving=titles)


def test_chapter_1_figures(synthetic):
    seq, split = synthetic
    for draw in (lambda: sl.plot_sequence_lengths(seq), lambda: sl.plot_genre_counts(seq),
                 lambda: sl.plot_split(seq, split, 0), lambda: sl.plot_topic_transitions(seq)):
        _check(draw().figure)


def test_topic_heatmap_ticks_do_not_repeat_the_axis_label(synthetic):
    seq, _ = synthetic
    ax = sl.plot_topic_transitions(seq)
    assert [t.get_text() for t in ax.get_xticklabels()] == [str(i) for i in range(4)]
    plt.close(ax.figure)


def test_chapter_3_and_6_figures():
    history = SimpleNamespace(to_frame=lambda: pd.DataFrame({"vectors": [0, 1000, 2000], "fvu": [1.0, 0.5, 0.3],
                                                            "dead_fraction": [0.0, 0.1, 0.05]}))
    axes = sl.plot_sae_training({"AuxK": history, "plain": history})
    _check(axes[0].figure)
    grid = pd.DataFrame({"d_sae": [512, 512, 1024, 1024], "k": [8, 16, 8, 16], "l0": [8, 16, 8, 16],
                         "fvu": [0.3, 0.2, 0.25, 0.15]})
    _check(sl.plot_sae_frontier(grid).figure)


def test_chapter_4_figures():
    _check(sl.plot_feature_card(_card()))
    rng = np.random.default_rng(0)
    results = {name: pd.DataFrame({s: rng.random(30) for s in ("auc_next", "purity_lift", "js", "ms")})
               for name in ("SAE", "SAE, fires >= 1%", "hidden dims", "PCA", "random rotation", "untrained SAE")}
    _check(sl.plot_unit_type_comparison(results)[0].figure)
    recoveries = {name: {"best_auc": 0.8 + 0.2 * rng.random(24), "n_recovered": 20, "n_topics": 24, "threshold": 0.9}
                  for name in ("SAE", "hidden dims", "PCA", "random rotation", "untrained SAE")}
    ax = sl.plot_planted_recovery(recoveries)
    legend = ax.get_legend().get_window_extent()
    assert legend.y1 < ax.get_window_extent().y0, "the legend covers the bars"
    _check(ax.figure)
    summary = pd.DataFrame([{"unit_type": u, "score": s, "median": 0.5, "ci_low": 0.4, "ci_high": 0.6}
                            for u in ("SAE", "hidden dims", "PCA") for s in ("kl_input", "kl_next")])
    _check(plot_median_cis(summary)[0].figure)
    coverage = {u: pd.DataFrame({"label": ["Action", "Drama"], "best_purity": [0.6, 0.4]}) for u in ("SAE", "PCA")}
    _check(plot_concept_coverage(coverage).figure)

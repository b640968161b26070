"""Figures of the book, labelled and captioned-ready: each function draws on an axis and returns it.

Introduced in chapter 1; later chapters add their figures here.
The chapters call these so the notebooks keep teaching code, not plotting boilerplate.

Sizes: the book shows a figure at most about 600 px wide (the text column of a 1200 px browser window) and
draws it at 100 px per inch, so a figure wider than 6 inches is scaled down. Every figure here is at most 7.6
inches wide and uses no text under 8.5 points, which keeps all text at 9 px or more on the page.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from seqsae_lib.interpret import FeatureCard
    from seqsae_lib.interpret import Explanation

    from seqsae_lib.data import LeaveOneOutSplit, SequenceData

__all__ = [
    "plot_sequence_lengths",
    "plot_genre_counts",
    "plot_split",
    "plot_topic_transitions",
    "plot_sae_frontier",
    "plot_density_histogram",
    "plot_sae_training",
    "plot_feature_card",
    "plot_unit_type_comparison",
    "plot_planted_recovery",
    "plot_steering_tradeoff",
    "plot_explanation",
]


def _axis(ax: "Axes | None", size: tuple[float, float] = (6.4, 3.6)) -> "Axes":
    if ax is None:
        _, ax = plt.subplots(figsize=size, layout="constrained")
    return ax


def plot_sequence_lengths(data: "SequenceData", ax: "Axes | None" = None) -> "Axes":
    """Histogram of sequence lengths (log-spaced bins) with the median marked.

    Introduced in chapter 1.
    """
    ax = _axis(ax)
    lengths = data.lengths
    bins = np.geomspace(max(lengths.min(), 1), lengths.max() + 1, 30)
    ax.hist(lengths, bins=bins, color="#4C72B0", edgecolor="white")
    ax.set_xscale("log")
    ticks = [t for t in (5, 10, 20, 50, 100, 200, 500, 1000, 2000) if lengths.min() <= t <= lengths.max() * 1.05]
    ax.set_xticks(ticks, [str(t) for t in ticks])
    ax.xaxis.set_minor_formatter(plt.NullFormatter())
    med = float(np.median(lengths))
    ax.axvline(med, color="#C44E52", linestyle="--", label=f"median {med:.0f}")
    ax.set_xlabel("interactions per user (log scale)")
    ax.set_ylabel("number of users")
    ax.set_title(f"{data.name}: sequence lengths of {data.num_users:,} users")
    ax.legend(frameon=False)
    return ax


def plot_genre_counts(data: "SequenceData", ax: "Axes | None" = None) -> "Axes":
    """Share of items and share of interactions per genre (an item can have several genres).

    Introduced in chapter 1.
    """
    ax = _axis(ax, (6.4, 5.0))
    genres = data.item_genres[1:]
    items_share = genres.mean(0)
    pop = data.items["popularity"].to_numpy()[:, None]
    inter_share = (genres * pop).sum(0) / pop.sum()
    order = np.argsort(items_share)
    y = np.arange(len(order))
    ax.barh(y - 0.2, items_share[order], height=0.4, label="share of items", color="#4C72B0")
    ax.barh(y + 0.2, inter_share[order], height=0.4, label="share of interactions", color="#DD8452")
    ax.set_yticks(y, [data.genre_names[i] for i in order])
    ax.set_xlabel("fraction (items can carry several genres)")
    ax.set_title(f"{data.name}: genres of items and of interactions")
    ax.legend(frameon=False, loc="lower right")
    return ax


def plot_split(
    data: "SequenceData", split: "LeaveOneOutSplit", user: int, last: int = 12, ax: "Axes | None" = None
) -> "Axes":
    """One user's most recent items as a timeline, coloured by their role in the leave-one-out split.

    Introduced in chapter 1.
    """
    ax = _axis(ax, (7.4, 3.8))
    seq = data.sequences[user]
    shown = seq[-last:]
    roles = ["train"] * (len(shown) - 2) + ["validation target", "test target"]
    colours = {"train": "#4C72B0", "validation target": "#DD8452", "test target": "#C44E52"}
    x = np.arange(len(seq) - len(shown), len(seq))
    for xi, role in zip(x, roles):
        ax.scatter(xi, 0, s=160, color=colours[role], zorder=3)
    for role, c in colours.items():
        ax.scatter([], [], color=c, s=80, label=role)
    titles = data.titles(shown)
    for xi, title in zip(x, titles):
        ax.text(xi, 0.08, _short_title(title, 24), rotation=40, ha="left", va="bottom", fontsize=9)
    ax.plot(x, np.zeros_like(x), color="grey", zorder=1)
    ax.set_ylim(-0.3, 1.6)
    ax.set_yticks([])
    ax.set_xlabel("position in the user's sequence (chronological)")
    ax.set_title(
        f"user {int(data.user_ids[user])}: last {len(shown)} of {len(seq)} interactions\n"
        f"validation input = positions 0..{len(seq) - 3}, test input = 0..{len(seq) - 2}", fontsize=11
    )
    ax.set_xlim(x[0] - 0.5, x[-1] + 2.5)  # room for the last titles, which lean to the right
    ax.legend(frameon=False, loc="upper left", ncol=3, fontsize=9)
    for side in ("left", "right", "top"):
        ax.spines[side].set_visible(False)
    return ax


def plot_topic_transitions(data: "SequenceData", ax: "Axes | None" = None) -> "Axes":
    """Heatmap of P(next item's topic | current item's topic) for synthetic data with planted topics.

    Introduced in chapter 1.
    """
    import seaborn as sns

    if data.item_topic is None:
        raise ValueError(f"{data.name} has no planted topics (only synthetic data does)")
    ax = _axis(ax, (5.2, 4.4))
    k = int(data.item_topic.max()) + 1
    counts = np.zeros((k, k))
    for seq in data.sequences:
        t = data.item_topic[seq]
        np.add.at(counts, (t[:-1], t[1:]), 1)
    probs = counts / counts.sum(1, keepdims=True)
    # Names like "topic 3" become "3" on the ticks (the axis labels say "topic"): the full names ran together.
    names = [n[len("topic "):] if str(n).startswith("topic ") else str(n) for n in data.genre_names]
    frame = pd.DataFrame(probs, index=names, columns=names)
    sns.heatmap(frame, ax=ax, cmap="viridis", vmin=0, vmax=1, annot=True, fmt=".2f",
                annot_kws={"size": 9 if k <= 8 else 8.5}, cbar_kws={"label": "probability"})
    ax.tick_params(axis="y", rotation=0)
    ax.set_xlabel("topic of the next item")
    ax.set_ylabel("topic of the current item")
    ax.set_title("planted structure: users mostly stay on a topic")
    return ax


def plot_sae_frontier(grid: pd.DataFrame, ax: "Axes | None" = None) -> "Axes":
    """The sparsity-fidelity frontier: FVU against L0, one line per dictionary size, k annotated.

    Introduced in chapter 3; ``grid`` comes from
    :func:`seqsae_lib.train_sae_grid`.
    """
    ax = _axis(ax)
    for d_sae, rows in grid.sort_values("l0").groupby("d_sae"):
        line = ax.plot(rows["l0"], rows["fvu"], marker="o", label=f"{d_sae} latents")[0]
        for _, r in rows.iterrows():
            ax.annotate(f"k={int(r['k'])}", (r["l0"], r["fvu"]), textcoords="offset points", xytext=(4, 4),
                        fontsize=8.5, color=line.get_color())
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("L0: active latents per vector (log scale)")
    ax.set_ylabel("FVU: fraction of variance unexplained (log)")
    ax.set_title("Sparsity against reconstruction error")
    ax.legend(frameon=False)
    return ax


def plot_density_histogram(hist: "object", ax: "Axes | None" = None) -> "Axes":
    """Histogram of log10 firing frequencies of SAE latents, never-firing latents noted in the title.

    Introduced in chapter 3; ``hist`` comes from
    :func:`seqsae_lib.density_histogram`.
    """
    ax = _axis(ax)
    counts, edges = hist.counts, hist.edges  # type: ignore[attr-defined]
    ax.bar(edges[:-1], counts, width=np.diff(edges), align="edge", color="#4C72B0", edgecolor="white")
    ax.set_xlabel("log10 firing frequency (share of positions where the latent is active)")
    ax.set_ylabel("number of latents")
    ax.set_title(f"{hist.num_latents} latents, {hist.num_never_fired} never fire")  # type: ignore[attr-defined]
    return ax


def plot_sae_training(histories: "dict[str, object]", axes: "np.ndarray | None" = None) -> "np.ndarray":
    """FVU and dead fraction during training, one line per named run (e.g. with and without AuxK).

    Introduced in chapter 3.
    """
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(7.4, 3.4), layout="constrained")
    for name, history in histories.items():
        frame = history.to_frame()  # type: ignore[attr-defined]
        axes[0].plot(frame["vectors"], frame["fvu"], label=name)
        axes[1].plot(frame["vectors"], frame["dead_fraction"], label=name)
    axes[0].set_yscale("log")
    axes[0].set_ylabel("FVU on training batches (log)")
    axes[1].set_ylabel("share of dead latents")
    for ax in axes:
        ax.set_xlabel("training vectors seen")
        ax.ticklabel_format(axis="x", style="sci", scilimits=(0, 0))
        ax.legend(frameon=False)
    return axes


def _short(title: str, width: int = 38) -> str:
    return title if len(title) <= width else title[: width - 1] + "…"


def _short_title(title: str, width: int) -> str:
    """A film title cut to ``width`` characters, keeping its "(year)" at the end."""
    match = re.match(r"^(.*?)\s*(\(\d{4}\))$", title)
    if len(title) <= width or not match:
        return _short(title, width)
    return _short(match.group(1), width - len(match.group(2)) - 1) + " " + match.group(2)


def plot_feature_card(card: "FeatureCard", fig: "Figure | None" = None, *, n_items: int = 6) -> "Figure":
    """One latent on one figure: what it fires on (genres, decades, activations) and what it promotes.

    Introduced in chapter 4; ``card`` comes from
    :meth:`seqsae_lib.interpret.atlas.FeatureAtlas.card`. Panels: the next item's genres where the latent fires
    (activation-weighted share) against their base rate; the same for release decades; the histogram of
    its non-zero activations; the films its decoder direction pushes up and down, and the input films
    that switch it on most.
    """
    if fig is None:
        fig = plt.figure(figsize=(7.6, 6.8))
    # Fixed margins instead of a constrained layout: the browser redraws a card on every pick, and the
    # layout solver was most of the drawing time.
    axes = fig.subplots(2, 2, gridspec_kw={"left": 0.13, "right": 0.98, "top": 0.89, "bottom": 0.08,
                                            "wspace": 0.42, "hspace": 0.36})
    freq = float(card.stats.get("frequency", 0.0))
    fig.suptitle(f"Latent {card.latent}: {card.label}\n(confidence {card.confidence:.2f}, "
                 f"fires on {freq:.2%} of positions)", fontsize=11)
    for ax, profile, what in ((axes[0, 0], "genre:next", "genre"), (axes[0, 1], "decade:next", "release decade")):
        rows = card.profile(profile)
        if rows.empty:
            ax.text(0.5, 0.5, f"no {what} data", ha="center", va="center", transform=ax.transAxes)
            ax.set_axis_off()
            continue
        if profile.startswith("genre"):
            rows = rows.sort_values("share", ascending=False).head(8).iloc[::-1]
        else:
            rows = rows.sort_index()
        y = np.arange(len(rows))
        ax.barh(y - 0.2, rows["share"], height=0.4, color="#C44E52", label="where it fires")
        ax.barh(y + 0.2, rows["base_rate"], height=0.4, color="#BBBBBB", label="all positions")
        ax.set_yticks(y, [str(c) for c in rows.index], fontsize=9)
        ax.tick_params(axis="x", labelsize=9)
        ax.xaxis.set_major_locator(plt.MaxNLocator(4))
        ax.set_xlabel(f"share of next items by {what}", fontsize=9.5)
        ax.legend(frameon=False, fontsize=8.5, loc="lower right")
    ax = axes[1, 0]
    if len(card.activations):
        ax.hist(card.activations, bins=40, color="#4C72B0", edgecolor="white")
        ax.set_yscale("log")
    ax.set_xlabel("activation when firing", fontsize=9.5)
    ax.set_ylabel("positions (log)", fontsize=9.5)
    ax.tick_params(labelsize=9)
    ax = axes[1, 1]
    ax.set_axis_off()
    width = 32  # characters: the text panel is half of a 7.6-inch card
    lines = ["Pushes up:"] + [f"  {_short(t, width)}" for t in card.promoted.get("title", pd.Series(dtype=str))[:n_items]]
    lines += ["Pushes down:"] + [f"  {_short(t, width)}" for t in card.suppressed.get("title", pd.Series(dtype=str))[:3]]
    lines += ["Switched on by watching:"] + [f"  {_short(t, width)}"
                                             for t in card.driving.get("title", pd.Series(dtype=str))[:3]]
    ax.text(-0.08, 1.02, "\n".join(lines), va="top", ha="left", fontsize=9, family="monospace",
            transform=ax.transAxes)
    return fig


def plot_unit_type_comparison(results: "dict[str, pd.DataFrame]", scores: "tuple[str, ...]" = ("auc_next", "purity_lift", "js", "ms"),
                              axes: "np.ndarray | None" = None) -> "np.ndarray":
    """Distribution of monosemanticity scores per unit type (box plots, medians marked).

    Introduced in chapter 4; ``results`` maps a unit type to
    :func:`seqsae_lib.monosemanticity_scores`.
    """
    names = {"auc_next": "best-genre ROC-AUC (next item)", "auc_input": "best-genre ROC-AUC (input item)",
             "purity_lift": "top-N genre purity lift", "js": "Jensen-Shannon separability",
             "ms": "MS: top-item similarity"}
    if axes is None:  # at most two panels a row, so that the figure stays readable at page width
        ncols = min(len(scores), 2)
        nrows = -(-len(scores) // ncols)
        _, axes = plt.subplots(nrows, ncols, figsize=(7.4, 0.25 * len(results) * nrows + 1.3 * nrows + 0.2),
                               layout="constrained", squeeze=False)
    axes = np.atleast_1d(axes).ravel()
    for ax in axes[len(scores):]:
        ax.set_axis_off()
    labels = list(results)
    for ax, score in zip(axes, scores):
        data = [results[name][score].to_numpy() for name in labels]
        ax.boxplot(data, orientation="horizontal", showfliers=False, medianprops={"color": "#C44E52", "linewidth": 2})
        spec = ax.get_subplotspec()
        first_column = spec is None or spec.is_first_col()
        ax.set_yticks(np.arange(1, len(labels) + 1), labels if first_column else [""] * len(labels))
        ax.xaxis.set_major_locator(plt.MaxNLocator(5))
        ax.set_xlabel(names.get(score, score))
        ax.invert_yaxis()
    return axes


def plot_planted_recovery(recoveries: "dict[str, dict]", ax: "Axes | None" = None) -> "Axes":
    """Best AUC per planted topic for each unit type, with the recovery threshold.

    Introduced in chapter 4; values are
    :func:`~seqsae_lib.interpret.unit_types.planted_recovery` outputs.
    """
    ax = _axis(ax, (6.4, 4.4))
    width = 0.8 / max(len(recoveries), 1)
    threshold = None
    for i, (name, rec) in enumerate(recoveries.items()):
        x = np.arange(len(rec["best_auc"])) + i * width
        ax.bar(x, rec["best_auc"], width=width, label=f"{name}: {rec['n_recovered']}/{rec['n_topics']} recovered")
        threshold = rec["threshold"]
    if threshold is not None:
        ax.axhline(threshold, color="black", linestyle="--", linewidth=1, label=f"AUC {threshold}")
    n = max(len(r["best_auc"]) for r in recoveries.values())
    ax.set_xticks(np.arange(n) + 0.4 - width / 2, [str(t) for t in range(n)])
    ax.set_xlabel("planted topic")
    ax.set_ylabel("best ROC-AUC of any single unit")
    ax.set_ylim(0.5, 1.01)
    # Below the axes: inside, the legend covered the bars.
    ax.legend(frameon=False, fontsize=9, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2)
    ax.set_title("Does some unit detect each planted topic?")
    return ax


def plot_steering_tradeoff(results: "dict[str, pd.DataFrame]", ax: "Axes | None" = None, *, k: int = 10,
                           title: str | None = None, metric: str = "share@{k}") -> "Axes":
    """A list metric (default: concept share@k) against NDCG@k over each method's strength grid.

    Introduced in chapter 5; ``results`` maps a method name to
    :func:`seqsae_lib.evaluate_steering` tables. The unsteered model is the black star; with the default
    metric up and to the right is better. Chapter 6 draws ``metric="popularity@{k}"``, ``"Coverage@{k}"``
    and ``"Gini@{k}"`` (any column of the tables; ``{k}`` is filled in).

    Raises
    ------
    ValueError
        ``metric`` is not a column of the tables.
    """
    ax = _axis(ax)
    column = metric.format(k=k)
    first = next(iter(results.values()))
    if column not in first:
        raise ValueError(f"unknown metric {column!r}; the tables have {list(first.columns)}")
    base_x = base_y = None
    for name, table in results.items():
        rows = table.sort_values("strength", key=np.abs)
        ax.plot(rows[f"NDCG@{k}"], rows[column], marker="o", markersize=3, label=name)
        if column == f"share@{k}":
            if f"reference_share@{k}" in table and len(table):
                base_x = float(table[f"reference_NDCG@{k}"].iloc[0])
                base_y = float(table[f"reference_share@{k}"].iloc[0])
        else:  # the unsteered point is the row at strength 0, when the grid has one
            zero = table[table["strength"] == 0]
            if len(zero):
                base_x, base_y = float(zero[f"NDCG@{k}"].iloc[0]), float(zero[column].iloc[0])
    if base_x is not None and base_y is not None:
        ax.plot(base_x, base_y, marker="*", color="black", markersize=12, linestyle="none", label="unsteered")
    ax.set_xlabel(f"NDCG@{k} on the held-out item (higher is better)")
    ax.set_ylabel(f"concept share of the top-{k}" if column == f"share@{k}" else _METRIC_LABELS.get(metric, column))
    concept = str(first["concept"].iloc[0]) if "concept" in first and len(first) else "the concept"
    ax.set_title(title or f"Steering towards {concept}")
    ax.legend(frameon=False, fontsize=8)
    return ax


_METRIC_LABELS = {
    "popularity@{k}": "mean interactions of recommended items",
    "Coverage@{k}": "share of the catalogue recommended",
    "Gini@{k}": "Gini of recommendation counts (0 = even)",
    "Jaccard@{k}": "overlap with the unsteered top-k",
}


def plot_explanation(explanation: "Explanation", n: int = 8, ax: "Axes | None" = None) -> "Axes":
    """Waterfall of one recommendation's score: the ``n`` largest feature parts, the rest, bias and error.

    Introduced in chapter 5; ``explanation`` comes from
    :func:`seqsae_lib.interpret.explain.explain_final`. Bars start where the previous one ended, so the last bar
    ends at the model's score.
    """
    ax = _axis(ax, (7.2, 0.45 * (n + 4) + 1.0))
    c = explanation.contributions
    top = c.reindex(c["contribution"].abs().sort_values(ascending=False).index).head(n)
    rest = float(c["contribution"].sum() - top["contribution"].sum())
    names = [f"{lab} [{int(j)}]" if "label" in top else f"latent {int(j)}"
             for lab, j in zip(top.get("label", top["latent"]), top["latent"])]
    names = [_short(x, 44) for x in names] + [f"{len(c) - len(top)} other features", "SAE bias", "SAE error"]
    values = list(top["contribution"]) + [rest, explanation.bias, explanation.error]
    start = np.concatenate([[0.0], np.cumsum(values)[:-1]])
    colors = ["#55A868" if v >= 0 else "#C44E52" for v in values]
    y = np.arange(len(values))[::-1]
    ax.barh(y, values, left=start, color=colors)
    ax.axvline(explanation.score, color="black", linestyle="--", linewidth=1, zorder=1)
    for yi, s0, v in zip(y, start, values):  # on a white box, so the score line never crosses the digits
        ax.text(s0 + v, yi, f" {v:+.2f} ", va="center", ha="left" if v >= 0 else "right", fontsize=9.5, zorder=3,
                bbox={"facecolor": "white", "edgecolor": "none", "pad": 0})
    ends = np.concatenate([[0.0], np.cumsum(values)])
    lo, hi = float(min(ends.min(), explanation.score)), float(max(ends.max(), explanation.score))
    span = (hi - lo) or 1.0
    ax.set_xlim(lo - 0.04 * span - (0.12 * span if any(v < 0 for v in values) else 0.0),
                hi + 0.14 * span)  # room for the labels beyond the bars
    ax.set_ylim(-0.7, len(values) + 0.1)
    ax.text(explanation.score, len(values) - 0.3, f"score {explanation.score:.2f}", ha="center", va="center",
            fontsize=10, bbox={"facecolor": "white", "edgecolor": "none", "pad": 1})
    ax.set_yticks(y, names, fontsize=9.5)
    ax.set_xlabel("contribution to the score (logit)")
    ax.set_title(f"Why {_short(explanation.title or str(explanation.item), 50)}?")
    return ax

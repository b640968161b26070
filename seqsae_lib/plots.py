"""Figures of the book, labelled and captioned-ready: each function draws on an axis and returns it.

Introduced in chapter 1 (``chapters/01_data.ipynb``); later chapters add their figures here.
The chapters call these so the notebooks keep teaching code, not plotting boilerplate.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from seqsae_lib.sequences import LeaveOneOutSplit, SequenceData

__all__ = [
    "plot_sequence_lengths",
    "plot_genre_counts",
    "plot_split",
    "plot_topic_transitions",
]


def _axis(ax: "Axes | None", size: tuple[float, float] = (6.4, 3.6)) -> "Axes":
    if ax is None:
        _, ax = plt.subplots(figsize=size, layout="constrained")
    return ax


def plot_sequence_lengths(data: "SequenceData", ax: "Axes | None" = None) -> "Axes":
    """Histogram of sequence lengths (log-spaced bins) with the median marked.

    Introduced in chapter 1 (``chapters/01_data.ipynb``).
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

    Introduced in chapter 1 (``chapters/01_data.ipynb``).
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

    Introduced in chapter 1 (``chapters/01_data.ipynb``).
    """
    ax = _axis(ax, (9.0, 3.2))
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
        ax.text(xi, 0.08, title[:28], rotation=35, ha="left", va="bottom", fontsize=8)
    ax.plot(x, np.zeros_like(x), color="grey", zorder=1)
    ax.set_ylim(-0.3, 1.6)
    ax.set_yticks([])
    ax.set_xlabel("position in the user's sequence (chronological)")
    ax.set_title(
        f"user {int(data.user_ids[user])}: last {len(shown)} of {len(seq)} interactions; "
        f"validation input = positions 0..{len(seq) - 3}, test input = 0..{len(seq) - 2}"
    )
    ax.legend(frameon=False, loc="upper left", ncol=3)
    for side in ("left", "right", "top"):
        ax.spines[side].set_visible(False)
    return ax


def plot_topic_transitions(data: "SequenceData", ax: "Axes | None" = None) -> "Axes":
    """Heatmap of P(next item's topic | current item's topic) for synthetic data with planted topics.

    Introduced in chapter 1 (``chapters/01_data.ipynb``).
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
    frame = pd.DataFrame(probs, index=data.genre_names, columns=data.genre_names)
    sns.heatmap(frame, ax=ax, cmap="viridis", vmin=0, vmax=1, annot=True, fmt=".2f", annot_kws={"size": 7},
                cbar_kws={"label": "probability"})
    ax.set_xlabel("topic of the next item")
    ax.set_ylabel("topic of the current item")
    ax.set_title("planted structure: users mostly stay on a topic")
    return ax


def plot_sae_frontier(grid: pd.DataFrame, ax: "Axes | None" = None) -> "Axes":
    """The sparsity-fidelity frontier: FVU against L0, one line per dictionary size, k annotated.

    Introduced in chapter 3 (``chapters/03_sae.ipynb``); ``grid`` comes from
    :func:`seqsae_lib.train_sae_grid`.
    """
    ax = _axis(ax)
    for d_sae, rows in grid.sort_values("l0").groupby("d_sae"):
        line = ax.plot(rows["l0"], rows["fvu"], marker="o", label=f"{d_sae} latents")[0]
        for _, r in rows.iterrows():
            ax.annotate(f"k={int(r['k'])}", (r["l0"], r["fvu"]), textcoords="offset points", xytext=(4, 4),
                        fontsize=7, color=line.get_color())
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("L0: active latents per vector (log scale)")
    ax.set_ylabel("FVU: fraction of variance unexplained (log)")
    ax.set_title("Sparsity against reconstruction error")
    ax.legend(frameon=False)
    return ax


def plot_density_histogram(hist: "object", ax: "Axes | None" = None) -> "Axes":
    """Histogram of log10 firing frequencies of SAE latents, never-firing latents noted in the title.

    Introduced in chapter 3 (``chapters/03_sae.ipynb``); ``hist`` comes from
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

    Introduced in chapter 3 (``chapters/03_sae.ipynb``).
    """
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(9.6, 3.4), layout="constrained")
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

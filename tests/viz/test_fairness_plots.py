"""The fair-monosemanticity figures draw what they are given and refuse malformed input."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from seqsae_lib.viz import plot_auc_ceiling, plot_concept_coverage, plot_median_cis


def test_auc_ceiling_plots_every_firing_unit_twice_and_the_reference():
    rate = np.array([0.0, 1e-4, 1e-3, 0.1, 1.0])
    auc = np.array([0.5, 0.5002, 0.501, 0.55, 0.6])
    ceiling = np.array([0.5, 0.5004, 0.503, 0.62, 1.0])
    ax = plot_auc_ceiling(rate, auc, ceiling, reference=0.59)
    sizes = [len(c.get_offsets()) for c in ax.collections]
    assert sizes == [4, 4]  # the silent unit is left out of both series (log axis)
    assert ax.get_xscale() == "log"
    assert any(np.allclose(line.get_ydata(), 0.59) for line in ax.get_lines())
    plt.close("all")
    with pytest.raises(ValueError, match="one length"):
        plot_auc_ceiling(rate, auc[:3], ceiling)


def test_median_cis_draws_one_interval_per_unit_type_and_score():
    summary = pd.DataFrame({
        "unit_type": ["SAE", "hidden dims", "SAE", "hidden dims"],
        "score": ["kl_excess", "kl_excess", "lift", "lift"],
        "median": [0.2, 0.3, 2.0, 1.5], "ci_low": [0.15, 0.25, 1.8, 1.2], "ci_high": [0.25, 0.35, 2.2, 1.8],
    })
    axes = plot_median_cis(summary, order=["hidden dims", "SAE"])
    assert len(axes) == 2
    assert [t.get_text() for t in axes[0].get_yticklabels()] == ["hidden dims", "SAE"]
    assert len(axes[0].containers) == 2  # one error bar per unit type
    assert float(np.ravel(axes[0].containers[1].lines[0].get_xdata())[0]) == pytest.approx(0.2)  # SAE drawn second
    plt.close("all")
    with pytest.raises(ValueError, match="not in summary"):
        plot_median_cis(summary, ["ms"])
    with pytest.raises(ValueError, match="columns"):
        plot_median_cis(summary.drop(columns="ci_low"))


def test_concept_coverage_places_each_genre_once_per_unit_type():
    labels = ["Action", "Comedy", "Horror"]
    cov = {name: pd.DataFrame({"label": labels, "best_purity": vals})
           for name, vals in {"SAE": [0.6, 0.4, 0.9], "hidden dims": [0.3, 0.5, 0.2]}.items()}
    ax = plot_concept_coverage(cov)
    offsets = [c.get_offsets() for c in ax.collections]
    assert len(offsets) == 2
    np.testing.assert_allclose(offsets[0][:, 0], [0.6, 0.4, 0.9])
    np.testing.assert_allclose(offsets[0][:, 1], [0, 1, 2])
    plt.close("all")
    with pytest.raises(ValueError, match="needs the columns"):
        plot_concept_coverage({"SAE": cov["SAE"].rename(columns={"best_purity": "x"})})

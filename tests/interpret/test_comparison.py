"""Comparisons of unit types: verdicts from the interval, calibrated against known shifts and true nulls."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from seqsae_lib.interpret import (
    compare_to_controls, comparison_table, paired_comparison, verdict_sentence,
)


def frames_with_shift(shift: float, seed: int, n: int = 300) -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    return {
        "SAE": pd.DataFrame({"kl_excess": rng.normal(size=n) + shift}),
        "hidden dims": pd.DataFrame({"kl_excess": rng.normal(size=n)}),
    }


def test_a_known_shift_is_detected_in_its_direction_and_covered_by_the_interval():
    covered = 0
    for seed in range(10):
        for shift, verdict in ((0.5, "higher"), (-0.5, "lower")):
            row = compare_to_controls(frames_with_shift(shift, seed), "kl_excess", n_boot=1000, seed=seed).iloc[0]
            assert row["verdict"] == verdict
            assert row["p_value"] < 1e-3
            assert row["ci_low"] <= row["diff"] <= row["ci_high"]
            covered += row["ci_low"] <= shift <= row["ci_high"]
    # nominal coverage 95 %: fewer than 16 of 20 would happen with probability < 0.3 %
    assert covered >= 16


def test_identical_distributions_rarely_give_a_verdict():
    # at ci=0.95 a true null gives a verdict about 5 % of the time (3.5 % measured over 200 seeds);
    # 4 or more of 20 would happen with probability < 2 %
    verdicts = [
        compare_to_controls(frames_with_shift(0.0, seed), "kl_excess", n_boot=1000, seed=seed).iloc[0]["verdict"]
        for seed in range(100, 120)
    ]
    assert sum(v != "no clear difference" for v in verdicts) <= 3


def test_eligible_column_and_non_finite_scores_are_honoured():
    rng = np.random.default_rng(0)
    ref = pd.DataFrame({"s": np.r_[rng.normal(size=200), np.full(200, 10.0), [np.nan] * 5],
                        "eligible": [True] * 200 + [False] * 200 + [True] * 5})
    other = pd.DataFrame({"s": rng.normal(size=150)})  # no eligible column: every finite unit counts
    row = compare_to_controls({"SAE": ref, "PCA": other}, "s", n_boot=500).iloc[0]
    assert (row["n_reference"], row["n_other"]) == (200, 150)
    assert row["verdict"] == "no clear difference"
    # without the filter the 200 ineligible units at 10.0 dominate the median
    row = compare_to_controls({"SAE": ref, "PCA": other}, "s", n_boot=500, eligible_only=False).iloc[0]
    assert row["n_reference"] == 400 and row["verdict"] == "higher"


def test_one_row_per_other_type_and_stacked_tables():
    frames = frames_with_shift(0.5, 0)
    frames["PCA"] = frames["hidden dims"].assign(kl_excess=lambda f: f["kl_excess"] + 1.0)
    for f in frames.values():
        f["lift"] = 1.0 + f["kl_excess"].abs()
    out = compare_to_controls(frames, "kl_excess", n_boot=500)
    assert out["other"].tolist() == ["hidden dims", "PCA"]
    assert out["verdict"].tolist() == ["higher", "lower"]
    np.testing.assert_allclose(out["diff"], out["median_reference"] - out["median_other"])
    table = comparison_table(frames, ["kl_excess", "lift"], n_boot=500)
    assert table["score"].tolist() == ["kl_excess", "kl_excess", "lift", "lift"]
    pd.testing.assert_frame_equal(table.iloc[:2].reset_index(drop=True), out)
    # seeded: the same call gives the same interval
    again = compare_to_controls(frames, "kl_excess", n_boot=500)
    pd.testing.assert_frame_equal(again, out)


def test_paired_comparison_counts_and_verdicts():
    a = np.array([0.9, 0.8, 0.7, 0.6, 0.6, 0.55])
    b = np.array([0.8, 0.7, 0.7, 0.65, 0.5, 0.5])
    res = paired_comparison(a, b, score="best_auc", n_boot=500)
    assert (res["n"], res["wins"], res["ties"], res["losses"]) == (6, 4, 1, 1)
    assert res["median_diff"] == pytest.approx(np.median(a - b))
    assert res["verdict"] == ("higher" if res["ci_low"] > 0 else "no clear difference")
    # a tolerance turns small differences into ties
    res = paired_comparison(a, b, tie_tol=0.06, n_boot=500)
    assert (res["wins"], res["ties"], res["losses"]) == (3, 3, 0)
    # a clear paired shift over 18 concepts
    rng = np.random.default_rng(3)
    base = rng.uniform(0.5, 0.9, 18)
    res = paired_comparison(base + 0.05 + rng.normal(0, 0.01, 18), base, n_boot=1000)
    assert res["wins"] == 18 and res["verdict"] == "higher" and res["p_value"] < 1e-4
    res = paired_comparison(base, base + 0.05 + rng.normal(0, 0.01, 18), n_boot=1000)
    assert res["losses"] == 18 and res["verdict"] == "lower"
    # identical values: no difference, test undefined -> p = 1
    res = paired_comparison(base, base.copy(), n_boot=200)
    assert res["ties"] == 18 and res["p_value"] == 1.0 and res["verdict"] == "no clear difference"
    # Series are paired by label, NaN pairs dropped
    s1 = pd.Series([1.0, 2.0, np.nan], index=["x", "y", "z"])
    s2 = pd.Series([0.0, 1.5, 3.0], index=["y", "x", "z"])
    res = paired_comparison(s1, s2, n_boot=200)
    assert (res["n"], res["wins"], res["losses"]) == (2, 1, 1)  # by position it would be 2 wins


def test_verdict_sentence_direction_words_follow_the_verdict():
    base = {"reference": "SAE", "other": "hidden dims", "score": "kl_excess", "n_reference": 900, "n_other": 128,
            "median_reference": 0.216, "median_other": 0.299, "diff": -0.083, "ci_level": 0.95, "p_value": 0.001}
    lower = verdict_sentence({**base, "ci_low": -0.11, "ci_high": -0.05, "verdict": "lower"},
                             what="concentrated", context="by input genre")
    assert lower == ("SAE latents are less concentrated than hidden dims by input genre (median kl_excess 0.216 vs "
                     "0.299; difference -0.083, 95% CI -0.110 to -0.050; p = 0.001).")
    higher = verdict_sentence(pd.Series({**base, "diff": 0.083, "ci_low": 0.05, "ci_high": 0.11,
                                         "verdict": "higher"}), what="concentrated")
    assert "are more concentrated than" in higher and "less" not in higher
    none = verdict_sentence({**base, "ci_low": -0.1, "ci_high": 0.02, "verdict": "no clear difference"},
                            what="concentrated", fmt=".2f")
    assert "not clearly more or less concentrated" in none and "CI -0.10 to 0.02 includes 0" in none
    # a real row and a paired dict
    row = compare_to_controls(frames_with_shift(0.5, 1), "kl_excess", n_boot=500).iloc[0]
    assert verdict_sentence(row, what="concentrated").startswith("SAE latents are more concentrated than hidden dims")
    res = paired_comparison([0.9, 0.8, 0.7], [0.9, 0.8, 0.7], names=("SAE", "PCA"), score="best_auc", n_boot=200)
    text = verdict_sentence(res, what="detectable", nouns={"PCA": "principal directions"})
    assert text.startswith("SAE latents are not clearly more or less detectable than principal directions")
    assert "0 wins, 3 ties, 0 losses over 3 concepts" in text
    # a verdict its interval contradicts is refused
    with pytest.raises(ValueError, match="interval"):
        verdict_sentence({**base, "ci_low": -0.11, "ci_high": -0.05, "verdict": "higher"}, what="x")
    with pytest.raises(ValueError, match="lacks"):
        verdict_sentence({"verdict": "higher"}, what="x")


def test_bad_input_is_refused_with_clear_messages():
    frames = frames_with_shift(0.0, 0)
    with pytest.raises(ValueError, match="at least one other"):
        compare_to_controls({}, "kl_excess")
    with pytest.raises(ValueError, match="reference must be one of"):
        compare_to_controls(frames, "kl_excess", reference="sae")
    with pytest.raises(ValueError, match=r"frames\['hidden dims'\] has no column 'lift'"):
        compare_to_controls({**frames, "SAE": frames["SAE"].assign(lift=1.0)}, "lift")
    with pytest.raises(ValueError, match=r"frames\['SAE'\] has no finite"):
        compare_to_controls({**frames, "SAE": pd.DataFrame({"kl_excess": []})}, "kl_excess")
    with pytest.raises(ValueError, match="no eligible units with a finite"):
        compare_to_controls({**frames, "SAE": pd.DataFrame({"kl_excess": [1.0], "eligible": [False]})}, "kl_excess")
    with pytest.raises(TypeError, match="must be numeric"):
        compare_to_controls({**frames, "SAE": pd.DataFrame({"kl_excess": ["a"]})}, "kl_excess")
    with pytest.raises(TypeError, match="DataFrame"):
        compare_to_controls({**frames, "SAE": [1.0, 2.0]}, "kl_excess")
    with pytest.raises(ValueError, match="ci must be"):
        compare_to_controls(frames, "kl_excess", ci=1.0)
    with pytest.raises(ValueError, match="same length"):
        paired_comparison([1.0, 2.0], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="no pair of finite"):
        paired_comparison([np.nan], [1.0])
    with pytest.raises(ValueError, match="different"):
        paired_comparison(pd.Series([1.0], index=["a"]), pd.Series([1.0], index=["b"]))
    with pytest.raises(ValueError, match="at least one column"):
        comparison_table(frames, [])

"""Tests for seqsae_lib.steering.geometry and the active-only latent edits (chapter 5).

The geometry: at ``"final"`` the scores are ``h @ E.T``, so an additive steering there changes every user's
scores by the same vector (a fixed per-item bonus) and re-ranking with that bonus ranks exactly like it;
inner capture points and edits that read the user's code are user-dependent.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from seqsae_lib.model import SASRec, UnknownCapturePointError
from seqsae_lib.sae import SAEConfig, SparseAutoencoder
from seqsae_lib.steering import (
    LatentEdit,
    Rerank,
    Steering,
    SteeringEvaluator,
    VectorSteering,
    bonus_rerank_baseline,
    genre_concept,
    preactivation_std,
    score_changes,
    steered_scores,
    user_dependence,
)
from seqsae_lib.data import left_pad

D = 16
MAX_LEN = 12
LATENTS = [3, 7, 11]
# Measured on the tiny model below (2 epochs, seed 0): relative_spread ~0.33 for an add at block_0 or embed,
# ~0.42 for a scale of all active latents at final, ~1e-7 for any add at final. The margins leave a factor >= 6.
USER_DEPENDENT_MIN_SPREAD = 0.05


@pytest.fixture(scope="module")
def split(tiny_split):
    return tiny_split


@pytest.fixture(scope="module")
def model(split, train_tiny_sasrec) -> SASRec:
    return train_tiny_sasrec(split, epochs=2, d_model=D, max_len=MAX_LEN)


def sae_at(capture_point: str, seed: int = 0) -> SparseAutoencoder:
    """A random top-k SAE with unit-norm decoder rows, reading ``capture_point``."""
    sae = SparseAutoencoder(SAEConfig(d_in=D, d_sae=4 * D, kind="topk", k=4, normalize_input=False, seed=seed,
                                      capture_point=capture_point))
    with torch.no_grad():
        sae.W_dec.div_(sae.W_dec.norm(dim=1, keepdim=True))
    return sae.eval()


@pytest.fixture(scope="module")
def final_sae() -> SparseAutoencoder:
    return sae_at("final")


@pytest.fixture(scope="module")
def evaluator(model, split, tiny_seq) -> SteeringEvaluator:
    return SteeringEvaluator(model, split.test_inputs, split.test_targets, tiny_seq, batch_size=16, n_boot=0)


# --------------------------------------------------------------------------------------------------------
# user_dependence: known answers
# --------------------------------------------------------------------------------------------------------


def test_user_dependence_known_answers():
    bonus = np.array([0.0, 1.0, -2.0, 3.0])  # column 0 is the padding column
    fixed = np.tile(bonus, (5, 1))
    out = user_dependence(fixed)
    assert out["across_user_std"] == 0.0 and out["relative_spread"] == 0.0 and out["bonus_r2"] == 1.0
    assert out["mean_abs_change"] == pytest.approx(2.0)  # mean of |1|, |-2|, |3|
    # two users with opposite changes: the bonus (their mean) is 0 and explains nothing
    opposite = np.array([[0.0, 1.0, 2.0], [0.0, -1.0, -2.0]])
    out = user_dependence(opposite)
    assert out["across_user_std"] == pytest.approx(1.5) and out["mean_abs_change"] == pytest.approx(1.5)
    assert out["relative_spread"] == pytest.approx(1.0) and out["bonus_r2"] == pytest.approx(0.0)
    # a per-user constant moves nothing in a ranking: center=True removes it
    shifted = fixed + np.arange(5.0)[:, None]
    assert user_dependence(shifted)["relative_spread"] > 0.3
    centred = user_dependence(shifted, center=True)
    assert centred["relative_spread"] == pytest.approx(0.0, abs=1e-12) and centred["bonus_r2"] == pytest.approx(1.0)
    # padding_column=False keeps column 0 (here zeros: the mean |change| drops by a quarter)
    assert user_dependence(fixed, padding_column=False)["mean_abs_change"] == pytest.approx(1.5)
    # nothing changes: the ratios are undefined; the same non-zero change everywhere is a fixed bonus
    zero = user_dependence(torch.zeros(3, 4))
    assert zero["mean_abs_change"] == 0.0 and math.isnan(zero["relative_spread"]) and math.isnan(zero["bonus_r2"])
    const = user_dependence(torch.full((3, 4), 0.5))
    assert const["relative_spread"] == 0.0 and const["bonus_r2"] == 1.0


def test_user_dependence_bad_input():
    with pytest.raises(TypeError, match="2-D float"):
        user_dependence(np.zeros(5))
    with pytest.raises(TypeError, match="2-D float"):
        user_dependence(torch.zeros(3, 4, dtype=torch.long))
    with pytest.raises(TypeError, match="2-D float"):
        user_dependence([[0.0, 1.0], [0.0, 2.0]])
    with pytest.raises(ValueError, match="at least 2 users"):
        user_dependence(np.zeros((1, 5)))
    with pytest.raises(ValueError, match="at least 2 users and 1 item"):
        user_dependence(np.zeros((3, 1)))
    scores = torch.zeros(3, 4)
    scores[:, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN or inf"):
        user_dependence(scores)
    with pytest.raises(TypeError, match="center must be a bool"):
        user_dependence(np.zeros((3, 4)), center=1)


# --------------------------------------------------------------------------------------------------------
# THE GEOMETRY TEST: an additive steering at "final" is a fixed per-item bonus
# --------------------------------------------------------------------------------------------------------


def test_add_at_final_is_a_fixed_bonus_and_its_rerank_ranks_identically(model, split, tiny_seq, final_sae, evaluator):
    steering = Steering.add(final_sae, LATENTS, 2.0)
    changes = score_changes(model, steering, split.test_inputs, batch_size=16)
    assert changes.shape == (len(split.test_inputs), model.num_items + 1)
    assert bool((changes[:, 0] == 0).all())
    # it is the difference of the two score matrices (the hook path), and the bonus is v @ E.T
    ids = left_pad(split.test_inputs, MAX_LEN)
    direct = steered_scores(model, steering, ids) - steered_scores(model, None, ids)
    torch.testing.assert_close(changes[:, 1:], direct[:, 1:], atol=1e-5, rtol=0)
    expected = steering.add_vector() @ model.item_emb.weight.detach()[1:].T
    torch.testing.assert_close(changes[:, 1:], expected.expand_as(changes[:, 1:]), atol=1e-5, rtol=0)
    geometry = user_dependence(changes)
    assert geometry["mean_abs_change"] > 1e-3
    assert geometry["relative_spread"] < 1e-5
    assert geometry["bonus_r2"] > 1 - 1e-6
    # the same through the evaluator's cached states
    torch.testing.assert_close(score_changes(model, steering, evaluator=evaluator), changes, atol=1e-6, rtol=0)
    # the re-ranking with the steering's own bonus gives every user exactly the steered top-10
    method = lambda s: Steering.add(final_sae, LATENTS, s)  # noqa: E731
    bonus = bonus_rerank_baseline(model, method, split.test_inputs, batch_size=16)
    assert bonus.info["capture_point"] == "final" and bonus.info["relative_spread"] < 1e-5
    assert isinstance(bonus(1.0), Rerank)
    concept = genre_concept(tiny_seq, "topic 1")
    grid = [-4.0, -1.0, 0.5, 1.0, 2.0, 4.0, 8.0]
    steered, steered_details = evaluator.run(method, grid, concept, return_details=True)
    reranked, reranked_details = evaluator.run(bonus, grid, concept, return_details=True)
    assert not np.array_equal(steered_details.top_items[-1], steered_details.reference_top)  # it does steer
    np.testing.assert_array_equal(reranked_details.top_items, steered_details.top_items)
    for col in ("share@10", "NDCG@10", "Jaccard@10"):
        np.testing.assert_array_equal(reranked[col].to_numpy(), steered[col].to_numpy())
    # a vector steering (no SAE) at final is a fixed bonus too
    vec = VectorSteering("final", torch.randn(D, generator=torch.Generator().manual_seed(0)))
    assert user_dependence(score_changes(model, vec, split.test_inputs))["relative_spread"] < 1e-5


# --------------------------------------------------------------------------------------------------------
# user-dependent steerings: inner capture points, edits that read the user's code
# --------------------------------------------------------------------------------------------------------


def test_inner_points_and_code_reading_edits_depend_on_the_user(model, split, final_sae):
    inner = {
        "add at block_0": Steering.add(sae_at("block_0"), LATENTS, 2.0),
        "vector at embed": VectorSteering("embed", 2.0 * final_sae.W_dec[LATENTS[0]].detach()),
        "scale active latents at final": Steering.scale(final_sae, list(range(final_sae.d_sae)), 3.0),
        "clamp active latents at final": Steering.set(final_sae, list(range(final_sae.d_sae)), 1.0, active_only=True),
    }
    for name, steering in inner.items():
        geometry = user_dependence(score_changes(model, steering, split.test_inputs, batch_size=16))
        assert geometry["relative_spread"] > USER_DEPENDENT_MIN_SPREAD, (name, geometry)
        assert geometry["bonus_r2"] < 0.99, (name, geometry)
    # bonus re-ranking of a user-dependent steering keeps the mean change and says how far it is from a bonus
    bonus = bonus_rerank_baseline(model, inner["add at block_0"], split.test_inputs, unit=2.0)
    assert bonus.info["capture_point"] == "block_0"
    assert bonus.info["relative_spread"] > USER_DEPENDENT_MIN_SPREAD
    mean_change = score_changes(model, inner["add at block_0"], split.test_inputs).double().mean(0).float()
    torch.testing.assert_close(bonus(2.0).bonus, mean_change)
    torch.testing.assert_close(bonus(1.0).bonus, mean_change / 2)


# --------------------------------------------------------------------------------------------------------
# active-only edits
# --------------------------------------------------------------------------------------------------------


def test_active_only_edits_touch_only_states_where_the_latent_fires(final_sae):
    x = torch.randn(200, D, generator=torch.Generator().manual_seed(1))
    z = final_sae.encode(x).detach()
    latent = int(torch.argmax(((z > 0).float().mean(0) - 0.5).abs().neg()))  # fires on some rows, not all
    fires = z[:, latent] > 0
    assert 0 < int(fires.sum()) < len(x)
    # clamp: active rows get z = 2 exactly (delta along the decoder row), silent rows are untouched
    clamped = Steering.set(final_sae, latent, 2.0, active_only=True).apply(x)
    torch.testing.assert_close(clamped[~fires], x[~fires], atol=0, rtol=0)
    expected = x[fires] + (2.0 - z[fires, latent])[:, None] * final_sae.W_dec[latent].detach()
    torch.testing.assert_close(clamped[fires], expected, atol=1e-5, rtol=0)
    # the plain clamp switches the latent on everywhere: on silent rows it is a fixed push
    plain = Steering.set(final_sae, latent, 2.0).apply(x)
    torch.testing.assert_close(plain[~fires] - x[~fires], (2.0 * final_sae.W_dec[latent].detach()).expand(int((~fires).sum()), -1),
                               atol=1e-5, rtol=0)
    # scale already changes only active latents: the flag changes nothing
    torch.testing.assert_close(Steering.scale(final_sae, latent, 3.0, active_only=True).apply(x),
                               Steering.scale(final_sae, latent, 3.0).apply(x), atol=0, rtol=0)
    # shift_z: a big positive shift switches silent latents on, unless active_only
    std = preactivation_std(final_sae, x)
    on = Steering.shift_z(final_sae, latent, 50.0, std).apply(x)
    assert bool((on[~fires] != x[~fires]).any(dim=1).all())
    only = Steering.shift_z(final_sae, latent, 50.0, std, active_only=True).apply(x)
    torch.testing.assert_close(only[~fires], x[~fires], atol=0, rtol=0)
    torch.testing.assert_close(only[fires], on[fires], atol=1e-5, rtol=0)
    assert "active only" in repr(Steering.set(final_sae, latent, 2.0, active_only=True))
    assert Steering.set(final_sae, latent, 2.0, active_only=True).to_frame()["active_only"].tolist() == [True]
    assert Steering.set(final_sae, latent, 2.0, active_only=True) != Steering.set(final_sae, latent, 2.0)


# --------------------------------------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------------------------------------


def test_bad_requests_get_clear_errors(model, split, final_sae):
    with pytest.raises(ValueError, match="out of range.*0 .. 63"):
        Steering.scale(final_sae, 64, 2.0)
    with pytest.raises(ValueError, match="-1 is not a latent id"):
        Steering.set(final_sae, -1, 1.0, active_only=True)
    with pytest.raises(ValueError, match="'scale' needs a value >= 0"):
        Steering.scale(final_sae, 3, -0.5)
    with pytest.raises(ValueError, match="finite"):
        Steering.add(final_sae, 3, float("nan"))
    with pytest.raises(ValueError, match="finite"):
        Steering.shift_z(final_sae, 3, float("inf"), torch.ones(final_sae.d_sae))
    with pytest.raises(ValueError, match="active_only=True does not apply"):
        LatentEdit(3, "add", 1.0, active_only=True)
    with pytest.raises(TypeError, match="active_only must be a bool"):
        LatentEdit(3, "set", 1.0, active_only="yes")
    steering = Steering.add(final_sae, 3, 1.0)
    with pytest.raises(TypeError, match="call it with a strength first"):
        score_changes(model, lambda s: steering, split.test_inputs)
    with pytest.raises(TypeError, match="Steering or VectorSteering"):
        score_changes(model, "more horror", split.test_inputs)
    with pytest.raises(ValueError, match="inputs is empty"):
        score_changes(model, steering, [])
    with pytest.raises(ValueError, match="give inputs"):
        score_changes(model, steering)
    with pytest.raises(ValueError):
        score_changes(model, steering, [[1, 2], []])  # an empty history cannot be scored
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        score_changes(model, steering, split.test_inputs, batch_size=0)
    with pytest.raises(UnknownCapturePointError):
        score_changes(model, VectorSteering("block_9", torch.ones(D)), split.test_inputs)
    with pytest.raises(TypeError, match="SteeringEvaluator"):
        score_changes(model, steering, evaluator="evaluator")
    with pytest.raises(ValueError, match="unit must be non-zero"):
        bonus_rerank_baseline(model, steering, split.test_inputs, unit=0.0)
    with pytest.raises(ValueError, match="finite"):
        bonus_rerank_baseline(model, steering, split.test_inputs, unit=float("nan"))
    with pytest.raises(TypeError, match="Steering or VectorSteering"):
        bonus_rerank_baseline(model, lambda s: "not a steering", split.test_inputs)

"""Tests for seqsae_lib.interpret.effects (chapters 4 and 5): the one implementation of decoder effects on item scores.

``test_latent_item_effects_reproduce_latent_promotion`` is the contract with
:func:`seqsae_lib.steering.promotion.latent_promotion`: its numbers are a projection of
:func:`latent_item_effects` (see ``promotion_from_effects``), bit for bit, for every method and capture point.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from seqsae_lib.interpret import latent_item_effects, promoted_items, rank_item_effects
from seqsae_lib.model import SASRec
from seqsae_lib.sae import SAEConfig, SparseAutoencoder
from seqsae_lib.steering import Concept, latent_promotion

NUM_ITEMS, D = 30, 8


@pytest.fixture(scope="module")
def model() -> SASRec:
    torch.manual_seed(0)
    return SASRec(num_items=NUM_ITEMS, max_len=7, d_model=D, n_layers=2, dropout=0.0).eval()


@pytest.fixture(scope="module")
def sequences() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(1, NUM_ITEMS + 1, size=int(rng.integers(1, 9))) for _ in range(150)]


@pytest.fixture(scope="module")
def concept() -> Concept:
    mask = np.zeros(NUM_ITEMS + 1)
    mask[1:11] = 1.0
    mask[11:14] = 0.5  # a soft part
    return Concept("test", mask)


def sae_at(point: str | None, seed: int = 0) -> SparseAutoencoder:
    sae = SparseAutoencoder(SAEConfig(d_in=D, d_sae=12, k=3, seed=seed, capture_point=point)).eval()
    with torch.no_grad():
        sae.input_scale.fill_(1.7)
    return sae


def promotion_from_effects(effects: np.ndarray, concept: Concept) -> tuple[np.ndarray, np.ndarray]:
    """``latent_promotion``'s promotion and specificity from the effects, as latent_promotion computes them."""
    delta = torch.from_numpy(effects).to(torch.float32)  # exact: the effects are float32 values
    contrast = torch.from_numpy(concept.contrast()).to(torch.float32)
    promotion = (delta @ contrast[1:]).double().numpy()
    spread = delta.double().std(dim=1, unbiased=False).numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        specificity = np.where(spread > 0, promotion / spread, 0.0)
    return promotion, specificity


@pytest.mark.parametrize(
    ("point", "method", "latents"),
    [
        ("final", "auto", None),
        ("final", "linearised", [3, 1]),
        ("final", "exact", [0]),
        ("block_0", "auto", [4, 0, 11]),
        ("block_1", "finite-difference", [5, 2]),
        ("block_1", "linearised", None),
    ],
)
def test_latent_item_effects_reproduce_latent_promotion(model, sequences, concept, point, method, latents):
    sae = sae_at(point)
    ids = np.arange(sae.d_sae) if latents is None else np.asarray(latents)
    options = dict(method=method, alpha=0.7, n_states=40, seed=3)
    inner = {} if point == "final" else dict(sequences=sequences)
    expected = latent_promotion(concept, sae, model, capture_point=point, latents=latents, **inner, **options)
    effects, used = latent_item_effects(model, sae, ids, **inner, **options)  # capture point: the SAE's own
    assert effects.shape == (len(ids), NUM_ITEMS) and effects.dtype == np.float64
    assert (expected["method"] == used).all()
    promotion, specificity = promotion_from_effects(effects, concept)
    np.testing.assert_array_equal(promotion, expected["promotion"].to_numpy())
    np.testing.assert_array_equal(specificity, expected["specificity"].to_numpy())
    np.testing.assert_array_equal(ids, expected.index.to_numpy())


def test_latent_item_effects_one_latent_is_one_row_and_final_is_exact(model, sequences):
    sae = sae_at("final")
    one, method = latent_item_effects(model, sae, 4)
    many, _ = latent_item_effects(model, sae, [2, 4])
    assert method == "exact" and one.shape == (NUM_ITEMS,)
    np.testing.assert_allclose(one, many[1], rtol=1e-5, atol=1e-8)  # float32 products of other shapes
    direction = sae.W_dec.detach()[4].double() / 1.7
    np.testing.assert_allclose(one, (direction @ model.item_emb.weight.detach().double()[1:].T).numpy(), atol=1e-6)
    # the same numbers ranked, as promoted_items returns them
    top = promoted_items(model, sae, 4, n=NUM_ITEMS)
    pd.testing.assert_frame_equal(top, rank_item_effects(one, method, NUM_ITEMS))
    assert (top["method"] == "exact").all()


def test_latent_item_effects_finite_difference_matches_the_derivative(model, sequences):
    """A tiny step at block_1 (only the final LayerNorm follows): the directional derivative, averaged."""
    model1 = SASRec(num_items=NUM_ITEMS, max_len=7, d_model=D, n_layers=1, dropout=0.0).eval()
    sae = sae_at("block_0")
    effects, method = latent_item_effects(model1, sae, 6, sequences=sequences, alpha=1e-3, n_states=len(sequences))
    assert method == "finite-difference"
    from seqsae_lib.data import left_pad
    from seqsae_lib.model import record

    chosen = [s for s in sequences if len(s)]
    with torch.no_grad(), record(model1, "block_0") as rec:
        model1(left_pad(chosen, 7))
    h = rec["block_0"][:, -1]
    d = (sae.W_dec.detach()[6] / 1.7).expand_as(h).contiguous()
    _, jvp = torch.autograd.functional.jvp(lambda x: model1.final_ln(x) @ model1.item_emb.weight.T, (h,), (d,))
    expected = jvp.mean(0)[1:].detach().numpy()
    np.testing.assert_allclose(effects, expected, atol=2e-3 * np.abs(expected).max())


def test_latent_item_effects_capture_point_comes_from_the_sae(model, sequences):
    sae = sae_at("block_1")
    own, _ = latent_item_effects(model, sae, [1, 2], sequences=sequences, n_states=10)
    named, _ = latent_item_effects(model, sae, [1, 2], capture_point="block_1", sequences=sequences, n_states=10)
    np.testing.assert_array_equal(own, named)
    with pytest.raises(ValueError, match="reads SASRec at 'block_1', not 'final'"):
        latent_item_effects(model, sae, 1, capture_point="final")
    with pytest.raises(ValueError, match="does not record where it reads"):
        latent_item_effects(model, sae_at(None), 1)
    # an SAE that records nothing uses the capture point given
    plain, method = latent_item_effects(model, sae_at(None), 1, capture_point="final")
    assert method == "exact" and plain.shape == (NUM_ITEMS,)


def test_latent_item_effects_restore_the_model_mode_and_validate(model, sequences):
    sae = sae_at("block_0")
    model.train()
    try:
        latent_item_effects(model, sae, 0, sequences=sequences, n_states=5)
        assert model.training
    finally:
        model.eval()
    with pytest.raises(ValueError, match="needs sequences"):
        latent_item_effects(model, sae, 0)
    with pytest.raises(ValueError, match="'final' only"):
        latent_item_effects(model, sae, 0, sequences=sequences, method="exact")
    with pytest.raises(ValueError, match="method"):
        latent_item_effects(model, sae, 0, sequences=sequences, method="jacobian")
    with pytest.raises(ValueError, match="alpha"):
        latent_item_effects(model, sae, 0, sequences=sequences, alpha=0.0)
    with pytest.raises(ValueError, match="latents\\[1\\] = 12 is not a latent id"):
        latent_item_effects(model, sae, [0, 12], sequences=sequences)
    with pytest.raises(TypeError, match="latent"):
        latent_item_effects(model, sae, 1.5, sequences=sequences)
    with pytest.raises(TypeError, match="capture points"):
        latent_item_effects(torch.nn.Linear(2, 2), sae, 0)
    with pytest.raises(TypeError, match="SparseAutoencoder"):
        latent_item_effects(model, object(), 0)
    with pytest.raises(KeyError):
        latent_item_effects(model, sae_at(None), 0, capture_point="nowhere")

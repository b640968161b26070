"""Tests for seqsae_lib.steering.edits, latent_steering, vector_steering and scoring (chapter 5)."""

from __future__ import annotations

import math

import pytest
import torch

from seqsae_lib.model import SASRec, UnknownCapturePointError, record
from seqsae_lib.sae import SAEConfig, SparseAutoencoder
from seqsae_lib.steering import (
    OPS,
    LatentEdit,
    Steering,
    SteeringCache,
    VectorSteering,
    cached_last_state,
    preactivation_std,
    scores_from_state,
    steer,
    steered_scores,
)

D = 16
ATOL = 1e-5


# split and model (the shared tiny SASRec: d_model=D, max_len=12): conftest.py


@pytest.fixture()
def ids() -> torch.Tensor:
    # left-padded; the last row is a single item; one row uses the full width
    return torch.tensor([
        [0, 0, 0, 4, 5, 6, 7, 8],
        [1, 2, 3, 4, 5, 6, 9, 10],
        [0, 0, 0, 0, 0, 0, 0, 9],
        [0, 0, 11, 30, 31, 45, 46, 47],
    ])


def make_sae(kind: str = "topk", scale: float | None = None, seed: int = 0) -> SparseAutoencoder:
    """A random SAE with non-trivial biases (so that codes and reconstructions are generic)."""
    sae = SparseAutoencoder(SAEConfig(d_in=D, d_sae=4 * D, kind=kind, k=4, normalize_input=False, seed=seed))
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        sae.b_enc.copy_(0.1 * torch.randn(sae.d_sae, generator=gen))
        sae.b_dec.copy_(0.1 * torch.randn(D, generator=gen))
        if kind == "batchtopk":
            sae.threshold.fill_(0.05)
        if scale is not None:
            sae.input_scale.fill_(scale)
    return sae.eval()


def orthonormal_sae() -> SparseAutoencoder:
    """ReLU SAE with d_sae = d_in, W_dec = Q orthonormal, W_enc = Q.T, zero biases: encode(decode(z)) = z for z >= 0."""
    sae = SparseAutoencoder(SAEConfig(d_in=D, d_sae=D, kind="relu", normalize_input=False))
    q, _ = torch.linalg.qr(torch.randn(D, D, generator=torch.Generator().manual_seed(3)))
    with torch.no_grad():
        sae.W_dec.copy_(q)
        sae.W_enc.copy_(q.T)
        sae.b_enc.zero_()
        sae.b_dec.zero_()
    return sae.eval()


def states(n: int = 6, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, D, generator=torch.Generator().manual_seed(seed))


def _no_hooks(m: SASRec) -> bool:
    return all(not hp._forward_hooks for hp in m.hooks.values())


# --------------------------------------------------------------------------------------------------------
# identity
# --------------------------------------------------------------------------------------------------------


def test_empty_and_zero_interventions_are_the_identity(model, ids):
    sae = make_sae()
    std = torch.ones(sae.d_sae)
    base = model.scores(ids).detach()
    for point in model.capture_points:
        for positions in ("last", "all"):
            for st in (
                Steering.identity(sae, positions, capture_point=point),
                Steering.add(sae, [1, 5], 0.0, positions=positions, capture_point=point),
                Steering.scale(sae, 3, 1.0, positions=positions, capture_point=point),
                Steering.shift_z(sae, 7, 0.0, std, positions=positions, capture_point=point),
                Steering(sae, (), positions, capture_point=point),
            ):
                assert torch.equal(steered_scores(model, st, ids), base), (point, positions, st)
                assert torch.equal(SteeringCache(model, ids, point).scores(st), base)
    x = states()
    assert Steering.add(sae, 2, 0.0, capture_point="final").apply(x) is x
    assert torch.equal(VectorSteering("final", torch.zeros(D)).apply(x), x)
    assert _no_hooks(model)


def test_edits_that_change_nothing_return_the_state_exactly():
    """set to the current value of an inactive latent (0), ablate an inactive latent: bit-identical."""
    sae = make_sae()
    x = states(8)
    z = sae.encode(x)
    off = int(torch.nonzero(z.sum(0) == 0)[0])  # a latent inactive on every row
    for st in (Steering.ablate(sae, off, capture_point="final"), Steering.set(sae, off, 0.0, capture_point="final")):
        assert torch.equal(st.apply(x), x)


# --------------------------------------------------------------------------------------------------------
# semantics
# --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("scale", [None, 2.5])
def test_add_at_final_shifts_scores_by_the_decoder_logits(model, ids, scale):
    sae = make_sae(scale=scale)
    lat, value = 11, 1.75
    base = model.scores(ids).detach()
    out = steered_scores(model, Steering.add(sae, lat, value, capture_point="final"), ids)
    s = 1.0 if scale is None else scale
    expected = value * (sae.W_dec[lat].detach() / s) @ model.item_emb.weight.detach().T
    torch.testing.assert_close(out[:, 1:] - base[:, 1:], expected[1:].expand(len(ids), -1), rtol=0, atol=ATOL)
    assert torch.isinf(out[:, 0]).all()


def test_add_equals_x_plus_value_times_decoder_row():
    sae = make_sae()
    x = states()
    out = Steering.add(sae, [3, 9], [2.0, -0.5], capture_point="final").apply(x)
    expected = x + 2.0 * sae.W_dec[3].detach() - 0.5 * sae.W_dec[9].detach()
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)


def test_code_edits_keep_the_error_term():
    """x' - x = decode(z') - decode(z) = (z'_l - z_l) W_dec[l] / s exactly, for each code op."""
    for kind in ("topk", "relu", "batchtopk"):
        sae = make_sae(kind, scale=1.7)
        x = states(10, seed=4)
        z = sae.encode(x).detach()
        lat = int(z.sum(0).argmax())  # an often active latent
        cases = {
            "set": (Steering.set(sae, lat, 2.0, capture_point="final"), torch.full_like(z[:, lat], 2.0)),
            "scale": (Steering.scale(sae, lat, 3.0, capture_point="final"), 3.0 * z[:, lat]),
            "ablate": (Steering.ablate(sae, lat, capture_point="final"), torch.zeros_like(z[:, lat])),
        }
        for op, (st, new) in cases.items():
            out = st.apply(x).detach()
            z_new = z.clone()
            z_new[:, lat] = new
            expected = x + (sae.decode(z_new) - sae.decode(z)).detach()
            torch.testing.assert_close(out, expected, rtol=0, atol=1e-5, msg=f"{kind} {op}")


def test_set_makes_the_reencoded_activation_equal_the_clamp_value_on_the_reconstruction():
    """Error term excluded: the state is the SAE's own reconstruction x_hat = decode(encode(x)).

    For an SAE whose encoder inverts its decoder on non-negative codes (orthonormal W_dec, W_enc = W_dec.T,
    zero biases, ReLU), clamping latent l to c with "set" gives a state whose re-encoding has exactly
    z'_l = c and every other latent unchanged.
    """
    sae = orthonormal_sae()
    x = states(12, seed=5)
    z = sae.encode(x).detach()
    x_hat = sae.decode(z).detach()
    torch.testing.assert_close(sae.encode(x_hat), z, rtol=0, atol=1e-5)  # the premise
    for lat, c in ((0, 2.0), (5, 0.3), (9, 0.0)):
        steered = Steering.set(sae, lat, c, capture_point="final").apply(x_hat)
        z2 = sae.encode(steered).detach()
        torch.testing.assert_close(z2[:, lat], torch.full((len(x),), c), rtol=0, atol=1e-5)
        others = [j for j in range(sae.d_sae) if j != lat]
        torch.testing.assert_close(z2[:, others], z[:, others], rtol=0, atol=1e-5)


def test_shift_z_moves_the_pre_activation_by_standard_deviations():
    sae = make_sae("relu")
    x = states(10, seed=6)
    pre = sae.encode_pre(x).detach()
    z = sae.encode(x).detach()
    std = pre.std(0, unbiased=False)
    lat = 4
    for delta in (1.5, -0.7):
        out = Steering.shift_z(sae, lat, delta, std, capture_point="final").apply(x).detach()
        z_new = z.clone()
        z_new[:, lat] = torch.relu(pre[:, lat] + delta * std[lat])
        expected = x + (sae.decode(z_new) - sae.decode(z)).detach()
        torch.testing.assert_close(out, expected, rtol=0, atol=1e-5)


def test_shift_z_on_topk_switches_latents_on_and_off():
    sae = make_sae("topk")
    x = states(10, seed=7)
    z = sae.encode(x).detach()
    std = torch.ones(sae.d_sae)
    active = z > 0
    # a latent inactive on row 0: a huge positive shift makes it enter the code
    off = int(torch.nonzero(~active[0])[0])
    on = int(torch.nonzero(active[0])[0])
    grown = Steering.shift_z(sae, off, 100.0, std, capture_point="final").apply(x[:1]).detach()
    assert not torch.allclose(grown, x[:1])
    pre = sae.encode_pre(x[:1]).detach()
    z_new = z[:1].clone()
    z_new[0, off] = pre[0, off] + 100.0
    torch.testing.assert_close(grown, x[:1] + (sae.decode(z_new) - sae.decode(z[:1])).detach(), rtol=0, atol=1e-4)
    # an active latent: a huge negative shift switches it off (same as ablating it)
    shrunk = Steering.shift_z(sae, on, -100.0, std, capture_point="final").apply(x[:1])
    torch.testing.assert_close(shrunk, Steering.ablate(sae, on, capture_point="final").apply(x[:1]), rtol=0, atol=1e-6)


def test_preactivation_std_matches_torch(model):
    sae = make_sae()
    x = states(300, seed=8)
    expected = sae.encode_pre(x).detach().double().std(0, unbiased=False).float()
    torch.testing.assert_close(preactivation_std(sae, x, batch_size=64), expected, rtol=1e-5, atol=1e-6)


def test_edits_apply_in_order_and_adds_are_summed():
    sae = make_sae()
    x = states()
    a = Steering.add(sae, 2, 1.0, capture_point="final")
    b = Steering.add(sae, 2, 0.5, capture_point="final") + Steering.add(sae, 7, -1.0, capture_point="final")
    both = a + b
    assert [str(e) for e in both.edits] == ["add(2, +1)", "add(2, +0.5)", "add(7, -1)"]
    expected = x + 1.5 * sae.W_dec[2].detach() - sae.W_dec[7].detach()
    torch.testing.assert_close(both.apply(x), expected, rtol=0, atol=1e-6)
    # set then scale on the same latent: clamp to 2 then double
    z = sae.encode(x).detach()
    st = Steering.set(sae, 5, 2.0, capture_point="final") + Steering.scale(sae, 5, 2.0, capture_point="final")
    z_new = z.clone()
    z_new[:, 5] = 4.0
    torch.testing.assert_close(st.apply(x), x + (sae.decode(z_new) - sae.decode(z)).detach(), rtol=0, atol=1e-5)
    assert Steering.combine([a, b]).edits == both.edits
    # value semantics: equal edits on the same SAE are the same steering (labels are cosmetic)
    assert Steering.add(sae, [2, 7], [1.0, -1.0], capture_point="final") == Steering.add(sae, [2, 7], [1.0, -1.0], label="x", capture_point="final")
    assert len({Steering.add(sae, 2, 1.0, capture_point="final"), Steering.add(sae, 2, 1.0, capture_point="final")}) == 1
    assert Steering.add(sae, 2, 1.0, capture_point="final") != Steering.add(sae, 2, 1.0, positions="all", capture_point="final")
    assert Steering.add(sae, 2, 1.0, capture_point="final") != Steering.add(make_sae(), 2, 1.0, capture_point="final")
    assert VectorSteering("final", torch.ones(D)) == VectorSteering("final", torch.ones(D))


def test_padding_rows_are_never_touched():
    sae = make_sae()
    x = states(4)
    x[1] = 0.0
    out = Steering.add(sae, 1, 3.0, capture_point="final").apply(x)
    assert torch.equal(out[1], torch.zeros(D))
    out = VectorSteering("final", torch.ones(D)).apply(x)
    assert torch.equal(out[1], torch.zeros(D))


# --------------------------------------------------------------------------------------------------------
# inner capture points, caches
# --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("positions", ["last", "all"])
def test_inner_steering_equals_a_direct_forward_from_pass(model, ids, positions):
    sae = make_sae()
    lat, c = 6, 2.5
    st = Steering.set(sae, lat, c, positions=positions, capture_point="block_0") + Steering.add(sae, 3, 1.0, positions=positions, capture_point="block_0")
    with torch.no_grad():
        with record(model, "block_0") as rec:
            model(ids)
        hidden = rec["block_0"]
        edited = hidden.clone()
        rows = (slice(None), -1) if positions == "last" else (hidden != 0).any(-1)
        x = hidden[rows]
        z = sae.encode(x)
        z_new = z.clone()
        z_new[:, lat] = c
        edited[rows] = x + sae.decode(z_new) - sae.decode(z) + sae.W_dec[3]
        direct = model.score(model.forward_from("block_0", edited, ids)[:, -1])
    torch.testing.assert_close(steered_scores(model, st, ids), direct, rtol=0, atol=ATOL)


def _steerings(sae: SparseAutoencoder, point: str, positions: str) -> list:
    std = torch.linspace(0.5, 1.5, sae.d_sae)
    return [
        Steering.add(sae, [1, 2], [2.0, -1.0], positions=positions, capture_point=point),
        Steering.set(sae, 4, 3.0, positions=positions, capture_point=point),
        Steering.scale(sae, [0, 4, 8], 0.5, positions=positions, capture_point=point),
        Steering.ablate(sae, [0, 1, 2, 3], positions=positions, capture_point=point),
        Steering.shift_z(sae, [5, 6], [1.0, -2.0], std, positions=positions, capture_point=point)
        + Steering.add(sae, 7, 0.5, positions=positions, capture_point=point),
        VectorSteering(point, torch.linspace(-1, 1, D), positions),
    ]


def test_cached_fast_path_equals_the_hook_path(model, ids):
    for kind in ("topk", "relu"):
        sae = make_sae(kind)
        for point in model.capture_points:
            cache = SteeringCache(model, ids, point)
            for positions in ("last", "all"):
                for st in _steerings(sae, point, positions):
                    hook = steered_scores(model, st, ids)
                    torch.testing.assert_close(cache.scores(st), hook, rtol=0, atol=ATOL)
                    state = cached_last_state(model, ids, point)
                    torch.testing.assert_close(scores_from_state(model, point, state, ids, st), hook, rtol=0, atol=ATOL)
    assert _no_hooks(model)


def test_cache_trims_common_padding_and_keeps_the_state_small(model):
    padded = torch.tensor([[0, 0, 0, 0, 1, 2, 3], [0, 0, 0, 0, 0, 4, 5]])
    cache = SteeringCache(model, padded, "block_1")
    assert tuple(cache.input_ids.shape) == (2, 3)
    assert tuple(cache.state.shape) == (2, 3, D)
    assert tuple(SteeringCache(model, padded, "final").state.shape) == (2, D)
    torch.testing.assert_close(cache.scores(None), model.scores(padded).detach(), rtol=0, atol=ATOL)


def test_steer_restores_modes_and_removes_hooks(model, ids):
    sae = make_sae()
    sae.train()
    model.train()
    try:
        with steer(model, Steering.add(sae, 0, 1.0, capture_point="block_1")):
            assert not _no_hooks(model)
            assert not sae.training
        assert sae.training and model.training
        with pytest.raises(RuntimeError):
            with steer(model, Steering.add(sae, 0, 1.0, capture_point="final")):
                raise RuntimeError("boom")
        assert _no_hooks(model)
        steered_scores(model, Steering.add(sae, 0, 1.0, capture_point="final"), ids)
        assert model.training
    finally:
        model.eval()
        sae.eval()


# --------------------------------------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------------------------------------


def test_bad_requests_raise_clear_errors(model, ids):
    sae = make_sae()
    with pytest.raises(ValueError, match=r"latent id 64 is out of range.*valid ids are 0 \.\. 63"):
        Steering.add(sae, 64, 1.0, capture_point="final")
    with pytest.raises(ValueError, match="is not a latent id"):
        Steering.add(sae, -1, 1.0, capture_point="final")
    for bad in (float("nan"), float("inf"), -math.inf):
        with pytest.raises(ValueError, match="finite"):
            Steering.add(sae, 1, bad, capture_point="final")
    with pytest.raises(ValueError, match=r"unknown steering op 'boost'.*'add'.*'shift_z'"):
        LatentEdit(1, "boost", 1.0)
    assert set(OPS) == {"add", "set", "scale", "ablate", "shift_z"}
    with pytest.raises(ValueError, match=">= 0"):
        Steering.set(sae, 1, -1.0, capture_point="final")
    with pytest.raises(ValueError, match=">= 0"):
        Steering.scale(sae, 1, -0.5, capture_point="final")
    with pytest.raises(ValueError, match="latent_std"):
        Steering(sae, (LatentEdit(1, "shift_z", 1.0),), capture_point="final")
    with pytest.raises(ValueError, match="latent_std"):
        Steering.shift_z(sae, 1, 1.0, torch.ones(3), capture_point="final")
    with pytest.raises(ValueError, match="positions"):
        Steering.add(sae, 1, 1.0, positions="first", capture_point="final")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="2 values"):
        Steering.add(sae, [1, 2, 3], [1.0, 2.0], capture_point="final")
    wide = SparseAutoencoder(SAEConfig(d_in=2 * D, d_sae=4 * D, kind="topk", k=4))
    with pytest.raises(ValueError, match=r"d_in=32.*d_model=16"):
        steered_scores(model, Steering.add(wide, 1, 1.0, capture_point="final"), ids)
    with pytest.raises(ValueError, match=r"d_in=32.*d_model=16"):
        SteeringCache(model, ids, "final").scores(Steering.add(wide, 1, 1.0, capture_point="final"))
    with pytest.raises(UnknownCapturePointError, match=r"'block_7'.*\['embed', 'block_0', 'block_1', 'final'\]"):
        steered_scores(model, Steering.add(sae, 1, 1.0, capture_point="block_7"), ids)
    with pytest.raises(UnknownCapturePointError, match="valid names"):
        SteeringCache(model, ids, "blocks")
    with pytest.raises(ValueError, match="at 'final'"):
        SteeringCache(model, ids, "final").scores(Steering.add(sae, 1, 1.0, capture_point="block_0"))
    with pytest.raises(ValueError, match="different capture points"):
        Steering.add(sae, 1, 1.0, capture_point="final") + Steering.add(sae, 1, 1.0, capture_point="block_0")
    with pytest.raises(ValueError, match="different SAE"):
        Steering.add(sae, 1, 1.0, capture_point="final") + Steering.add(make_sae(), 1, 1.0, capture_point="final")
    with pytest.raises(ValueError, match="d_in=16"):
        Steering.add(sae, 1, 1.0, capture_point="final").apply(torch.zeros(3, 5))
    with pytest.raises(TypeError, match="SparseAutoencoder"):
        Steering.add("sae", 1, 1.0, capture_point="final")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="NaN or inf"):
        VectorSteering("final", torch.tensor([1.0, float("nan")]))
    saved = make_sae()
    saved.config.capture_point = "block_1"
    with pytest.raises(ValueError, match="reads SASRec at 'block_1', not 'final'"):
        Steering.add(saved, 1, 1.0, capture_point="final")
    assert Steering.add(saved, 1, 1.0).capture_point == "block_1"  # the SAE's own point is the default
    with pytest.raises(ValueError, match="does not record where it reads"):
        Steering.add(make_sae(), 1, 1.0)  # an SAE without a recorded point needs capture_point=
    with pytest.raises(ValueError, match="shape"):
        scores_from_state(model, "final", torch.zeros(2, D), ids)


def test_latents_argument_of_the_wrong_type_says_what_was_expected():
    sae = make_sae()
    # Strength passed where the latents go: used to fail with "'float' object is not iterable".
    with pytest.raises(TypeError, match=r"Steering\.add: latents must be a latent id \(an int\) or a sequence of ints"
                                        r".*got float \(3\.0\).*Steering\.add\(sae, latents, values\)"):
        Steering.add(sae, 3.0, 1.0, capture_point="final")
    with pytest.raises(TypeError, match=r"Steering\.ablate: latents must be .* got NoneType.*latents\)$"):
        Steering.ablate(sae, None, capture_point="final")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"Steering\.set: latents .* got str \('3'\)"):
        Steering.set(sae, "3", 1.0, capture_point="final")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"latents .* got bool"):
        Steering.add(sae, True, 1.0, capture_point="final")
    # What was accepted before still is: an int, numpy and torch integers, sequences and 1-element tensors.
    import numpy as np

    assert [e.latent for e in Steering.add(sae, np.int64(3), 1.0, capture_point="final").edits] == [3]
    assert [e.latent for e in Steering.add(sae, np.array([1, 2]), 1.0, capture_point="final").edits] == [1, 2]
    assert [e.latent for e in Steering.add(sae, torch.tensor(5), 1.0, capture_point="final").edits] == [5]

"""Tests for seqsae_lib.sae.autoencoder (chapter 3): the SAE module, its losses, folding and persistence."""

from __future__ import annotations

import dataclasses

import json
import math

import pytest
import torch

from seqsae_lib.sae import SAEConfig, SAEFileError, SAEMetadataMismatchError, SparseAutoencoder, is_dead, sae_paths

D_IN, D_SAE = 16, 64


def data(n: int = 512, d: int = D_IN, seed: int = 7, scale: float = 1.0, offset: float = 0.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return scale * torch.randn(n, d, generator=g) + offset


def make_sae(kind: str = "topk", **kw) -> SparseAutoencoder:
    cfg = SAEConfig(d_in=kw.pop("d_in", D_IN), d_sae=kw.pop("d_sae", D_SAE), kind=kind, **kw)
    return SparseAutoencoder(cfg)


def perturb(sae: SparseAutoencoder, seed: int = 3) -> SparseAutoencoder:
    """Move every parameter away from its (symmetric) initialisation, as training would."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in sae.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g))
    return sae


# ---- config ---------------------------------------------------------------------------------------------


def test_config_validation_names_the_field():
    with pytest.raises(ValueError, match="kind"):
        SAEConfig(8, 32, kind="jumprelu")
    with pytest.raises(ValueError, match="k must be <= d_sae"):
        SAEConfig(8, 32, k=33)
    with pytest.raises(TypeError, match="d_sae"):
        SAEConfig(8, 32.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="dead_after"):
        SAEConfig(8, 32, dead_after=0)
    # k is irrelevant for ReLU SAEs, so a large default k does not block a small dictionary
    assert SAEConfig(8, 16, kind="relu").kind == "relu"


def test_config_aux_k_default_and_dict_round_trip():
    cfg = SAEConfig(64, 2048)
    assert cfg.aux_k == 128
    assert SAEConfig(64, 100).aux_k == 100  # capped at d_sae
    assert SAEConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ValueError, match="unknown SAEConfig field"):
        SAEConfig.from_dict({**cfg.to_dict(), "dictionary_size": 3})


# ---- initialisation -------------------------------------------------------------------------------------


def test_initialisation_conventions():
    sae = make_sae()
    assert sae.W_enc.shape == (D_IN, D_SAE) and sae.W_dec.shape == (D_SAE, D_IN)
    assert sae.b_enc.shape == (D_SAE,) and sae.b_dec.shape == (D_IN,)
    torch.testing.assert_close(sae.W_dec.norm(dim=1), torch.ones(D_SAE))
    assert torch.equal(sae.W_enc, sae.W_dec.T)
    assert torch.count_nonzero(sae.b_enc) == 0
    # the seed lives in the config: same seed, same weights; the global RNG is irrelevant
    torch.manual_seed(123)
    a = make_sae(seed=5)
    torch.manual_seed(456)
    b = make_sae(seed=5)
    assert torch.equal(a.W_dec, b.W_dec)
    assert not torch.equal(a.W_dec, make_sae(seed=6).W_dec)


def test_init_b_dec_geometric_median_resists_outliers():
    g = torch.Generator().manual_seed(0)
    bulk = 0.1 * torch.randn(200, D_IN, generator=g) + 1.0
    outliers = torch.full((20, D_IN), 50.0)
    x = torch.cat([bulk, outliers])
    sae = make_sae(normalize_input=False)
    median = sae.init_b_dec(x, method="geometric_median")
    mean = sae.init_b_dec(x, method="mean")
    torch.testing.assert_close(mean, x.mean(dim=0))
    # the mean is dragged towards the outliers; the geometric median stays with the bulk
    assert (median - 1.0).norm() < 0.5
    assert (mean - 1.0).norm() > 10 * (median - 1.0).norm()


def test_init_input_scale_gives_mean_squared_norm_d_in():
    x = data(scale=7.0, offset=3.0)
    sae = make_sae()
    s = sae.init_input_scale(x)
    assert float((x * s).pow(2).sum(dim=1).mean()) == pytest.approx(D_IN, rel=1e-5)
    assert float(sae.input_scale) == pytest.approx(s)


# ---- encoding ---------------------------------------------------------------------------------------------


def test_topk_keeps_k_largest_preactivations_per_row():
    sae = perturb(make_sae(k=5))
    x = data(100)
    pre = sae.encode_pre(x)
    z = sae.encode(x)
    assert z.shape == (100, D_SAE)
    assert (z >= 0).all()
    assert ((z > 0).sum(dim=1) <= 5).all()
    # the active latents are the row's largest pre-activations (the positive ones among the top 5)
    top = pre.topk(5, dim=1)
    expected = torch.zeros_like(pre).scatter(1, top.indices, top.values.clamp_min(0))
    torch.testing.assert_close(z, expected)


def test_encode_decode_agree_with_forward_and_leading_dims():
    sae = perturb(make_sae())
    x = data(24)
    out = sae(x)
    torch.testing.assert_close(out.z, sae.encode(x))
    torch.testing.assert_close(out.x_hat, sae.decode(out.z), rtol=1e-5, atol=1e-5)
    out3 = sae(x.reshape(4, 6, D_IN))
    assert out3.x_hat.shape == (4, 6, D_IN) and out3.z.shape == (4, 6, D_SAE)
    torch.testing.assert_close(out3.x_hat.reshape(24, D_IN), out.x_hat)


@pytest.mark.parametrize("kind", ["topk", "batchtopk"])
def test_sparse_and_dense_decode_agree_including_gradients(kind):
    x = data(64)
    grads = []
    outs = []
    for sparse in (True, False):
        sae = perturb(make_sae(kind, k=4, sparse_decode=sparse)).train()
        dead = torch.zeros(D_SAE, dtype=torch.bool)
        dead[::3] = True
        out = sae(x, dead_mask=dead)
        out.loss.backward()
        outs.append(out)
        grads.append({n: p.grad.clone() for n, p in sae.named_parameters()})
    torch.testing.assert_close(outs[0].x_hat, outs[1].x_hat, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(outs[0].aux_loss, outs[1].aux_loss, rtol=1e-5, atol=1e-6)
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], rtol=1e-4, atol=1e-6, msg=name)


def test_batchtopk_shares_the_budget_in_training_and_uses_threshold_in_eval():
    sae = perturb(make_sae("batchtopk", k=4)).train()
    x = data(50)
    z = sae.encode(x)
    # k * batch activations in total (all top pre-activations are positive here), unevenly spread
    assert int((z > 0).sum()) == 4 * 50
    per_row = (z > 0).sum(dim=1)
    assert per_row.max() > per_row.min()
    assert float(sae.threshold) > 0  # the running estimate was updated
    sae.eval()
    pre = sae.encode_pre(x)
    z_eval = sae.encode(x)
    torch.testing.assert_close(z_eval, pre * (pre > sae.threshold))


def test_batchtopk_eval_without_threshold_raises():
    sae = make_sae("batchtopk").eval()
    with pytest.raises(RuntimeError, match="threshold"):
        sae.encode(data(4))


def test_calibrated_threshold_gives_l0_near_k_on_its_data():
    sae = perturb(make_sae("batchtopk", k=6))
    x = data(2048)
    sae.calibrate_threshold(x, batch_size=256)
    sae.eval()
    l0 = float((sae.encode(x) > 0).sum(dim=1).float().mean())
    assert 6 * 0.75 <= l0 <= 6 * 1.25


def test_relu_l1_penalty_weighs_by_decoder_norms():
    sae = perturb(make_sae("relu", l1_coefficient=0.5))
    x = data(32)
    out = sae(x)
    z = torch.relu(sae.encode_pre(x))
    expected = (z * sae.W_dec.norm(dim=1)).sum(dim=1).mean()
    torch.testing.assert_close(out.l1_loss, expected)
    torch.testing.assert_close(out.loss, out.mse + 0.5 * out.l1_loss + 0 * out.aux_loss)


# ---- AuxK ---------------------------------------------------------------------------------------------


def test_auxk_zero_without_dead_latents_and_trains_only_dead_ones():
    # plain AuxK: with aux_rescale the least-squares factor can be 0 for a batch, which stops this gradient
    sae = perturb(make_sae(k=4, aux_k=8, aux_rescale=False))
    x = data(128)
    assert float(sae(x).aux_loss) == 0.0
    assert float(sae(x, dead_mask=torch.zeros(D_SAE, dtype=torch.bool)).aux_loss) == 0.0
    dead = torch.zeros(D_SAE, dtype=torch.bool)
    dead[:32] = True
    out = sae(x, dead_mask=dead)
    assert 0.0 < out.aux_loss.item() < 10.0
    # the AuxK term's gradient reaches dead decoder rows and nothing beyond the dead latents' weights
    sae.zero_grad()
    out.aux_loss.backward()
    assert sae.W_dec.grad[:32].abs().sum() > 0
    assert sae.W_dec.grad[32:].abs().sum() == 0
    assert sae.W_enc.grad[:, 32:].abs().sum() == 0


def test_dead_mask_is_validated():
    sae = make_sae()
    with pytest.raises(ValueError, match=r"dead_mask.*\(64,\)"):
        sae(data(4), dead_mask=torch.zeros(10, dtype=torch.bool))


def test_is_dead_single_definition():
    counters = torch.tensor([0, 99, 100, 5000])
    assert is_dead(counters, 100).tolist() == [False, False, True, True]


# ---- input validation ---------------------------------------------------------------------------------


def test_bad_inputs_raise_clear_errors():
    sae = make_sae()
    x = data(8)
    x_nan = x.clone()
    x_nan[2, 3] = float("nan")
    with pytest.raises(ValueError, match="NaN or inf"):
        sae(x_nan)
    x_inf = x.clone()
    x_inf[0, 0] = math.inf
    with pytest.raises(ValueError, match="NaN or inf"):
        sae.encode(x_inf)
    with pytest.raises(ValueError, match=r"d_in=16.*\(8, 12\)"):
        sae(data(8, d=12))
    with pytest.raises(TypeError, match="floating-point"):
        sae.encode(torch.ones(8, D_IN, dtype=torch.long))
    with pytest.raises(TypeError, match="torch.Tensor"):
        sae.encode(x.numpy())
    with pytest.raises(ValueError, match="d_sae=64"):
        sae.decode(torch.zeros(3, 10))
    with pytest.raises(ValueError, match="empty"):
        sae(torch.zeros(0, D_IN))
    # float64 input is accepted and cast to the SAE's dtype
    assert sae(x.double()).x_hat.dtype == torch.float32


# ---- decoder hygiene and folding ---------------------------------------------------------------------------


def test_gradient_projection_and_unit_norm():
    sae = perturb(make_sae())
    sae.set_decoder_norm_to_unit_norm()
    torch.testing.assert_close(sae.W_dec.norm(dim=1), torch.ones(D_SAE))
    sae(data(64)).loss.backward()
    assert sae.W_dec.grad.abs().sum() > 0
    sae.remove_gradient_parallel_to_decoder_directions()
    parallel = (sae.W_dec.grad * sae.W_dec).sum(dim=1)
    assert parallel.abs().max() < 1e-6


@pytest.mark.parametrize("kind", ["topk", "batchtopk", "relu"])
def test_fold_normalization_keeps_reconstructions(kind):
    x = data(256, scale=20.0, offset=5.0)  # far from unit scale
    sae = make_sae(kind, k=4)
    s = sae.init_input_scale(x)
    sae.init_b_dec(x)
    perturb(sae)
    sae.set_decoder_norm_to_unit_norm()
    if kind == "batchtopk":
        sae.calibrate_threshold(x, batch_size=64)
    sae.eval()
    before = sae(x)
    sae.fold_normalization()
    after = sae(x)
    assert float(sae.input_scale) == 1.0
    assert s < 0.2
    torch.testing.assert_close(after.x_hat, before.x_hat, rtol=1e-4, atol=1e-3)
    # latents are now in raw units: scaled by 1 / s, same support
    torch.testing.assert_close(after.z, before.z / s, rtol=1e-4, atol=1e-3)
    assert torch.equal(after.z > 0, before.z > 0)
    torch.testing.assert_close(sae.W_dec.norm(dim=1), torch.ones(D_SAE), rtol=0, atol=1e-5)


def test_fold_decoder_norms_relu_keeps_outputs_and_refuses_topk():
    sae = perturb(make_sae("relu"))
    with torch.no_grad():
        sae.W_dec.mul_(torch.linspace(0.2, 3.0, D_SAE)[:, None])
    x = data(64)
    before = sae(x)
    sae.fold_decoder_norms()
    after = sae(x)
    torch.testing.assert_close(sae.W_dec.norm(dim=1), torch.ones(D_SAE))
    torch.testing.assert_close(after.x_hat, before.x_hat, rtol=1e-5, atol=1e-5)
    # the norm-weighted L1 penalty is invariant too
    torch.testing.assert_close(after.l1_loss, before.l1_loss, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="relu"):
        make_sae("topk").fold_decoder_norms()


# ---- persistence --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["topk", "batchtopk"])
def test_save_load_round_trip(tmp_path, kind):
    x = data(256)
    sae = make_sae(kind, k=4)
    sae.init_input_scale(x)
    sae.init_b_dec(x)
    perturb(sae)
    if kind == "batchtopk":
        sae.calibrate_threshold(x, batch_size=64)
    sae.eval()
    meta = {"capture_point": "final", "fingerprint": {"num_items": 1682, "sha": "abc"}, "fvu": 0.12}
    pt, js = sae.save(tmp_path / "models" / "sae", extra_meta=meta)
    assert pt.is_file() and js.is_file()
    assert sorted(p.name for p in pt.parent.iterdir()) == ["sae.json", "sae.pt"]  # no temp files left
    loaded = SparseAutoencoder.load(tmp_path / "models" / "sae", expected={"capture_point": "final"})
    assert not loaded.training
    # a file whose config predates the capture-point field takes it from its metadata
    assert loaded.config == dataclasses.replace(sae.config, capture_point="final")
    assert loaded.metadata["metadata"] == meta
    for name, tensor in sae.state_dict().items():
        assert torch.equal(tensor, loaded.state_dict()[name]), name
    torch.testing.assert_close(loaded(x).x_hat, sae(x).x_hat)
    # nested and config expectations
    SparseAutoencoder.load(tmp_path / "models" / "sae.pt", expected={"fingerprint": {"num_items": 1682}, "config": {"k": 4}})


def test_load_reports_metadata_mismatch_by_key(tmp_path):
    sae = make_sae()
    sae.save(tmp_path / "sae", extra_meta={"capture_point": "block_0", "fingerprint": {"num_items": 1682}})
    with pytest.raises(SAEMetadataMismatchError, match="capture_point: file has 'block_0', expected 'final'"):
        SparseAutoencoder.load(tmp_path / "sae", expected={"capture_point": "final"})
    with pytest.raises(SAEMetadataMismatchError, match=r"fingerprint\.num_items: file has 1682, expected 3706"):
        SparseAutoencoder.load(tmp_path / "sae", expected={"fingerprint": {"num_items": 3706}})
    with pytest.raises(SAEMetadataMismatchError, match="model_sha: missing from the file"):
        SparseAutoencoder.load(tmp_path / "sae", expected={"model_sha": "x"})
    with pytest.raises(SAEMetadataMismatchError, match="config.d_sae: file has 64, expected 128"):
        SparseAutoencoder.load(tmp_path / "sae", expected={"config": {"d_sae": 128}})


def test_load_detects_missing_truncated_and_corrupt_files(tmp_path):
    sae = make_sae()
    pt, js = sae.save(tmp_path / "sae", extra_meta={"capture_point": "final"})
    with pytest.raises(FileNotFoundError, match="other.pt"):
        SparseAutoencoder.load(tmp_path / "other")

    good = pt.read_bytes()
    pt.write_bytes(good[: len(good) // 2])
    with pytest.raises(SAEFileError, match="truncated"):
        SparseAutoencoder.load(tmp_path / "sae")
    pt.write_bytes(good)

    text = js.read_text()
    js.write_text(text[: len(text) // 2])
    with pytest.raises(SAEFileError, match="corrupt or truncated"):
        SparseAutoencoder.load(tmp_path / "sae")

    js.write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(SAEFileError, match="not a seqsae SAE file"):
        SparseAutoencoder.load(tmp_path / "sae")

    pt.unlink()
    with pytest.raises(FileNotFoundError, match="sae.pt"):
        SparseAutoencoder.load(tmp_path / "sae")


def test_save_rejects_bad_metadata_and_writes_nothing(tmp_path):
    sae = make_sae()
    with pytest.raises(TypeError, match="JSON"):
        sae.save(tmp_path / "sae", extra_meta={"bad": object()})
    with pytest.raises(ValueError, match="reserved"):
        sae.save(tmp_path / "sae", extra_meta={"config": 1})
    assert list(tmp_path.iterdir()) == []
    assert sae_paths("a/b.json") == sae_paths("a/b")


@pytest.mark.parametrize("kind", ["topk", "batchtopk", "relu"])
def test_encode_sparse_equals_the_nonzeros_of_encode(kind):
    torch.manual_seed(0)
    sae = SparseAutoencoder(SAEConfig(d_in=8, d_sae=32, kind=kind, k=3, seed=0))
    x = torch.randn(50, 8)
    if kind == "batchtopk":
        sae.train()
        sae.encode(x)  # sets the inference threshold
    sae.eval()
    with torch.no_grad():
        z = sae.encode(x)
        rows, latents, values = sae.encode_sparse(x)
    r, c = z.nonzero(as_tuple=True)
    assert torch.equal(rows, r) and torch.equal(latents, c) and torch.equal(values, z[r, c])
    with pytest.raises(ValueError, match="2-D"):
        sae.encode_sparse(x.reshape(5, 10, 8))
    with pytest.raises(ValueError):
        sae.encode_sparse(torch.full((2, 8), float("nan")))


def test_non_finite_weights_are_refused_on_save_and_load(tmp_path):
    import hashlib
    import io

    sae = make_sae()
    with torch.no_grad():
        sae.b_dec[2] = float("nan")
    with pytest.raises(SAEFileError, match=r"refusing to save the SAE.*'b_dec' \(1 NaN, 0 inf of 16\).*nothing was written"):
        sae.save(tmp_path / "sae")
    assert list(tmp_path.iterdir()) == []
    # A file pair with NaN weights (written by another tool, checksum recorded) is refused on load.
    pt, js = make_sae().save(tmp_path / "sae")
    buf = io.BytesIO()
    torch.save({k: v.clone() for k, v in sae.state_dict().items()}, buf)
    pt.write_bytes(buf.getvalue())
    meta = json.loads(js.read_text())
    meta["weights_sha256"] = hashlib.sha256(buf.getvalue()).hexdigest()
    js.write_text(json.dumps(meta))
    with pytest.raises(SAEFileError, match=r"sae.pt hold non-finite values in tensor\(s\) 'b_dec'"):
        SparseAutoencoder.load(tmp_path / "sae")


def test_the_sae_knows_where_it_reads(tmp_path):
    sae = SparseAutoencoder(SAEConfig(d_in=8, d_sae=32, k=4, capture_point="block_0"))
    assert sae.capture_point == "block_0"
    assert sae.check_capture_point(None) == "block_0" == sae.check_capture_point("block_0")
    with pytest.raises(ValueError, match="reads SASRec at 'block_0', not 'final'"):
        sae.check_capture_point("final")
    sae.save(tmp_path / "sae")
    assert SparseAutoencoder.load(tmp_path / "sae").capture_point == "block_0"
    plain = SparseAutoencoder(SAEConfig(d_in=8, d_sae=32, k=4))
    assert plain.check_capture_point("final") == "final"
    with pytest.raises(ValueError, match="does not record where it reads"):
        plain.check_capture_point(None)

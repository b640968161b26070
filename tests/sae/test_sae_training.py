"""Tests for seqsae_lib.sae.training (chapter 3): training SAEs on synthetic activations with known atoms.

The synthetic activations are sums of 3-4 of 128 random unit "atoms" in 32 dimensions with positive
magnitudes, a constant offset and a little noise: a TopK SAE should find the atoms as decoder rows.
"""

from __future__ import annotations

import math

import pytest
import pandas as pd
import torch

from seqsae_lib.sae import (
    SAEConfig,
    SAEHistory,
    SAETrainConfig,
    SparseAutoencoder,
    atom_recovery,
    evaluate_reconstruction,
    lr_factor,
    sparse_dictionary_data,
    train_sae,
    train_sae_grid,
)

D, N_ATOMS, N = 32, 128, 20_000


def make_atoms_data(n: int = N, d: int = D, m: int = N_ATOMS, seed: int = 1234) -> tuple[torch.Tensor, torch.Tensor]:
    """Activations from a known sparse dictionary; the seed differs from any SAE seed used below."""
    return sparse_dictionary_data(n, d, m, active=(3, 4), seed=seed)


@pytest.fixture(scope="module")
def atoms_data() -> tuple[torch.Tensor, torch.Tensor]:
    return make_atoms_data()


def fast(**kw) -> SAETrainConfig:
    args = dict(batch_size=512, lr=1e-2, num_epochs=4, warmup_steps=10, progress=False, num_threads=1, log_every=5)
    args.update(kw)
    return SAETrainConfig(**args)


@pytest.fixture(scope="module")
def trained_topk(atoms_data) -> tuple[SparseAutoencoder, SAEHistory]:
    x, _ = atoms_data
    return train_sae(x, SAEConfig(D, 256, kind="topk", k=4, dead_after=5000), fast(num_epochs=5))


def mean_max_cosine(atoms: torch.Tensor, sae: SparseAutoencoder) -> float:
    return float(atom_recovery(atoms, sae.W_dec).mean())


def test_synthetic_data_has_the_intended_structure(atoms_data):
    x, atoms = atoms_data
    assert x.shape == (N, D) and atoms.shape == (N_ATOMS, D)
    # a fresh (random) decoder does not already contain the atoms
    assert mean_max_cosine(atoms, SparseAutoencoder(SAEConfig(D, 256))) < 0.6


def test_topk_recovers_the_atoms(atoms_data, trained_topk):
    x, atoms = atoms_data
    sae, history = trained_topk
    assert mean_max_cosine(atoms, sae) >= 0.9
    metrics = evaluate_reconstruction(sae, x)
    assert metrics["l0"] <= 4.0
    assert metrics["fvu"] < 0.25
    assert history.fvu[-1] < history.fvu[0]


def test_trained_sae_is_returned_on_cpu_in_eval_mode_with_unit_decoder_rows(trained_topk):
    sae, _ = trained_topk
    assert not sae.training
    assert sae.device.type == "cpu"
    torch.testing.assert_close(sae.W_dec.detach().norm(dim=1), torch.ones(256), rtol=0, atol=1e-5)


def test_history_logging(trained_topk):
    _, history = trained_topk
    steps_total = math.ceil(N / 512) * 5
    frame = history.to_frame()
    assert frame.index[-1] == steps_total
    assert list(frame.index[:3]) == [5, 10, 15]
    assert {"fvu", "l0", "dead_fraction", "loss", "lr", "aux_loss", "vectors", "epoch"} <= set(frame.columns)
    assert frame["vectors"].iloc[-1] == 5 * N
    assert frame["epoch"].iloc[-1] == pytest.approx(5.0)
    assert (frame["l0"] <= 4.0).all()
    # warm-up, then linear decay towards zero at the end
    lr = frame["lr"].to_numpy()
    assert lr[0] < lr[2] and lr[-1] < 0.05 * lr.max()
    assert history.vectors_since_fired is not None and history.vectors_since_fired.shape == (256,)
    assert history.seconds > 0


def test_lr_factor_schedule():
    f = [lr_factor(s, 100, 10, 0.8) for s in range(100)]
    assert f[0] == pytest.approx(1 / 11) and f[9] == pytest.approx(10 / 11)
    assert f[10:80] == [1.0] * 70
    assert all(a > b for a, b in zip(f[80:], f[81:]))
    assert 0 < f[-1] <= 1 / 20


def test_training_is_deterministic_on_cpu(atoms_data):
    x = atoms_data[0][:3000]
    cfg = SAEConfig(D, 64, kind="topk", k=4, dead_after=1000)
    a, ha = train_sae(x, cfg, fast(num_epochs=2))
    b, hb = train_sae(x, cfg, fast(num_epochs=2))
    for name, tensor in a.state_dict().items():
        assert torch.equal(tensor, b.state_dict()[name]), name
    assert ha.loss == hb.loss
    c, _ = train_sae(x, cfg, fast(num_epochs=2, seed=1))  # another shuffling order
    assert not torch.equal(a.W_dec, c.W_dec)


def test_auxk_revives_latents_that_were_killed(atoms_data):
    """Half the latents get tiny encoder columns, so they never win the top-k: only AuxK can revive them."""
    x, _ = atoms_data
    results = {}
    for aux in (0.0, 1 / 32):
        cfg = SAEConfig(D, 128, kind="topk", k=4, dead_after=2000, aux_coefficient=aux)
        sae = SparseAutoencoder(cfg)
        sae.init_input_scale(x[:4096])
        sae.init_b_dec(x[:4096])
        with torch.no_grad():
            sae.W_enc[:, 64:] *= 0.02
        sae, history = train_sae(x, cfg, fast(batch_size=1024, lr=3e-3, num_epochs=4, warmup_steps=5), sae=sae)
        results[aux] = (history.dead_fraction[-1], evaluate_reconstruction(sae, x, dead_after=2000))
    dead_without, eval_without = results[0.0]
    dead_with, eval_with = results[1 / 32]
    assert dead_without >= 0.45 and eval_without["dead_fraction"] >= 0.45
    assert dead_with <= 0.1 and eval_with["dead_fraction"] <= 0.1
    assert eval_with["fvu"] < eval_without["fvu"]


def test_batchtopk_threshold_gives_l0_near_k_in_eval_mode(atoms_data):
    x, _ = atoms_data
    sae, history = train_sae(x, SAEConfig(D, 128, kind="batchtopk", k=4, dead_after=5000), fast(num_epochs=3))
    assert float(sae.threshold) > 0
    assert history.l0[-1] == pytest.approx(4.0)  # in training, exactly k per row on average
    l0_eval = evaluate_reconstruction(sae, x)["l0"]
    assert 3.0 <= l0_eval <= 5.0


def test_relu_l1_gives_sparser_codes_as_l1_grows(atoms_data):
    x = atoms_data[0][:10_000]
    l0s, fvus = [], []
    for l1 in (1e-3, 1e-2, 3e-2):
        sae, _ = train_sae(x, SAEConfig(D, 128, kind="relu", l1_coefficient=l1, dead_after=5000), fast(num_epochs=4))
        m = evaluate_reconstruction(sae, x)
        l0s.append(m["l0"])
        fvus.append(m["fvu"])
    assert l0s[0] > 1.1 * l0s[1] > 1.1 * 1.1 * l0s[2]
    assert fvus[0] < fvus[2]  # sparsity costs reconstruction


def test_num_vectors_overrides_epochs_and_resume(atoms_data):
    x = atoms_data[0][:2048]
    cfg = SAEConfig(D, 64, k=4)
    sae, history = train_sae(x, cfg, fast(num_vectors=3000, log_every=1))
    assert history.vectors[-1] == 3072  # rounded up to whole batches of 512
    b_dec = sae.b_dec.detach().clone()
    sae2, _ = train_sae(x, cfg, fast(num_vectors=512, lr=1e-9, warmup_steps=0), sae=sae)
    assert sae2 is sae
    torch.testing.assert_close(sae2.b_dec.detach(), b_dec, rtol=0, atol=1e-6)  # no re-initialisation
    with pytest.raises(ValueError, match="differs"):
        train_sae(x, SAEConfig(D, 64, k=8), fast(), sae=sae)


def test_bad_activations_raise(atoms_data):
    cfg = SAEConfig(D, 64, k=4)
    x = atoms_data[0][:100].clone()
    with pytest.raises(ValueError, match=r"\(n, 32\).*\(100, 16\)"):
        train_sae(x[:, :16], cfg, fast())
    x[5, 5] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        train_sae(x, cfg, fast())
    with pytest.raises(TypeError, match="floating-point"):
        train_sae(torch.ones(10, D, dtype=torch.int64), cfg, fast())
    with pytest.raises(ValueError, match="lr"):
        SAETrainConfig(lr=0.0)
    with pytest.raises(ValueError, match="decay_start"):
        SAETrainConfig(decay_start=1.5)


def test_thread_count_is_restored(atoms_data):
    before = torch.get_num_threads()
    train_sae(atoms_data[0][:1024], SAEConfig(D, 32, k=2), fast(num_epochs=1, num_threads=1))
    assert torch.get_num_threads() == before


def test_grid_returns_the_saes_it_measured(atoms_data):
    x, _ = atoms_data
    table, saes = train_sae_grid(x[:2000], [32, 64], [2, 4], fast(num_epochs=1), progress=False, return_saes=True)
    assert set(saes) == {(32, 2), (32, 4), (64, 2), (64, 4)}
    for row in table.itertuples():
        sae = saes[(row.d_sae, row.k)]
        assert not sae.training and sae.config.d_sae == row.d_sae and sae.config.k == row.k
        # The table's figures are those of the returned SAE.
        assert evaluate_reconstruction(sae, x[:2000])["fvu"] == pytest.approx(row.fvu, rel=1e-5)
    assert isinstance(train_sae_grid(x[:500], [32], [2], fast(num_epochs=1), progress=False), pd.DataFrame)


def test_training_on_a_store_records_its_capture_point(tiny_split, train_tiny_sasrec):
    from seqsae_lib.sae import collect_activations

    model = train_tiny_sasrec(tiny_split, epochs=1)
    store = collect_activations(model, tiny_split.train, "block_0", progress=False)
    sae, _ = train_sae(store, SAEConfig(d_in=store.d_model, d_sae=32, k=4), fast(num_epochs=1))
    assert sae.capture_point == "block_0"
    with pytest.raises(ValueError, match="holds states from 'block_0'"):
        train_sae(store, SAEConfig(d_in=store.d_model, d_sae=32, k=4, capture_point="final"), fast(num_epochs=1))


@pytest.mark.parametrize("kind", ["topk", "batchtopk", "relu"])
def test_fit_encoder_scale_keeps_the_selection_and_fits_the_size(atoms_data, kind):
    x, _ = atoms_data
    sample = x[:2048]
    sae = SparseAutoencoder(SAEConfig(d_in=D, d_sae=256, kind=kind, k=8, seed=0))
    sae.init_input_scale(sample)
    sae.init_b_dec(sample)
    sae.train()
    before = sae.encode_pre(sample)
    factor = sae.fit_encoder_scale(sample)
    assert factor > 0
    after = sae.encode_pre(sample)
    torch.testing.assert_close(after, before * factor, rtol=1e-5, atol=1e-5)
    if kind == "topk":  # the same latents win on every row
        assert torch.equal(before.topk(8).indices.sort().values, after.topk(8).indices.sort().values)
    with torch.no_grad():  # the least-squares factor of the new reconstructions is now 1
        centred = sample * sae.input_scale - sae.b_dec
        z = sae.encode(sample) if kind != "batchtopk" else None
        if z is not None:
            e = z @ sae.W_dec
            assert float((e * centred).sum() / e.pow(2).sum()) == pytest.approx(1.0, rel=1e-4)


def test_fit_encoder_scale_speeds_up_early_training(atoms_data):
    x, _ = atoms_data
    fvu = {}
    for fit in (False, True):
        config = SAEConfig(d_in=D, d_sae=512, kind="topk", k=16, seed=0)
        train = SAETrainConfig(batch_size=512, lr=4e-4, warmup_steps=0, decay_start=1.0, num_vectors=20 * 512,
                               fit_encoder_scale=fit, progress=False, num_threads=1, device="cpu")
        sae, _ = train_sae(x, config, train)
        fvu[fit] = float(evaluate_reconstruction(sae, x[:4096])["fvu"])
    assert fvu[True] < 0.5 * fvu[False]
    with pytest.raises(TypeError, match="fit_encoder_scale"):
        SAETrainConfig(fit_encoder_scale=1)


@pytest.mark.parametrize("kind", ["topk", "batchtopk"])
def test_forward_without_dense_codes_gives_the_same_losses_and_gradients(atoms_data, kind):
    x, _ = atoms_data
    sae = SparseAutoencoder(SAEConfig(d_in=D, d_sae=256, kind=kind, k=8, seed=0, dead_after=1))
    sae.init_b_dec(x[:2048])
    sae.train()
    dead = torch.zeros(256, dtype=torch.bool)
    dead[::3] = True
    outs, grads = [], []
    for dense in (True, False):
        sae.zero_grad()
        out = sae(x[:512], dead_mask=dead, dense_codes=dense)
        out.loss.backward()
        outs.append(out)
        grads.append(torch.cat([p.grad.flatten() for p in sae.parameters()]))
    assert outs[1].z is None and outs[1].code is not None
    torch.testing.assert_close(outs[1].loss, outs[0].loss)
    torch.testing.assert_close(outs[1].x_hat, outs[0].x_hat)
    torch.testing.assert_close(grads[1], grads[0])
    idx, vals, offsets = outs[1].code
    rows = torch.arange(512).repeat_interleave(8) if offsets is None else \
        torch.repeat_interleave(torch.arange(512), torch.diff(torch.cat([offsets, torch.tensor([len(idx)])])))
    rebuilt = torch.zeros(512, 256).index_put_((rows, idx.reshape(-1)), vals.reshape(-1).detach(), accumulate=True)
    torch.testing.assert_close(rebuilt, outs[0].z.detach())

"""Dead latents: the data-based decoder initialisation and the rescaled AuxK keep TopK latents alive."""

from __future__ import annotations

import pytest
import torch

import seqsae_lib.sae as sae_module
from seqsae_lib.sae import (
    UNIT_START_SAE, UNIT_START_TRAIN, ActivationStore, SAEConfig, SAETrainConfig, SparseAutoencoder,
    evaluate_reconstruction, train_sae,
)

OLD = ({"aux_rescale": False, "aux_coefficient": 1 / 32}, {"fit_encoder_scale": False})
"""The library's defaults when the dead-latent fix was made (the shipped recipes' settings)."""
FIXED = ({"aux_rescale": True, "aux_coefficient": 1 / 32}, {"decoder_init": "data", "fit_encoder_scale": False})
"""The dead-latent fix as the conditions study uses it."""


def test_the_named_old_settings_are_the_old_defaults():
    # written out above on purpose: the constants the recipes pin must keep meaning the settings they trained with
    assert (dict(UNIT_START_SAE), dict(UNIT_START_TRAIN)) == OLD
    with pytest.raises(TypeError):
        UNIT_START_SAE["aux_coefficient"] = 0.5  # read-only: a caller cannot change every recipe at once


def cone(n: int = 6000, d: int = 16, seed: int = 0) -> torch.Tensor:
    """Vectors in a narrow cone: a large common offset plus noise in four directions (as SASRec states are
    offset and low-dimensional); random decoder rows mostly point where no vector is."""
    g = torch.Generator().manual_seed(seed)
    basis = torch.linalg.qr(torch.randn(d, d, generator=g))[0]
    scales = torch.tensor([3.0, 2.0, 1.0, 0.5] + [0.05] * (d - 4))
    return (torch.randn(n, d, generator=g) * scales) @ basis.T + 5 * basis[:, 0]


def train(x: torch.Tensor, seed: int, sae_options: dict, train_options: dict) -> dict:
    config = SAEConfig(d_in=x.shape[1], d_sae=256, k=2, dead_after=2000, seed=seed, **sae_options)
    sae, _ = train_sae(x, config, SAETrainConfig(batch_size=256, lr=2e-3, num_epochs=5, seed=seed, num_threads=1,
                                                 progress=False, **train_options))
    return evaluate_reconstruction(sae, x)


@pytest.mark.parametrize("seed", [0, 1])
def test_the_fix_keeps_latents_alive_where_the_old_recipe_leaves_most_dead(seed):
    x = cone(seed=seed)
    before = train(x, seed, *OLD)
    after = train(x, seed, *FIXED)
    assert before["dead_fraction"] >= 0.5
    assert after["dead_fraction"] <= 0.02
    assert after["fvu"] <= before["fvu"] + 0.02  # living latents are not bought with reconstruction
    # the library's defaults (fitted start, rescaled AuxK at 1/4) sit between: on this narrow cone they leave
    # about 65% dead (seeds 0, 1) against 79-81%; the data-based rows are what revive latents here
    defaults = train(x, seed, {}, {})
    assert defaults["dead_fraction"] <= before["dead_fraction"] - 0.08


def test_defaults_and_old_files():
    # the defaults: random rows, the rescaled AuxK at 1/4, the fitted encoder start (bench/bench_sae_init.py)
    defaults = SAEConfig(d_in=4, d_sae=8, k=2)
    assert SAETrainConfig().decoder_init == "random" and SAETrainConfig().fit_encoder_scale is True
    assert defaults.aux_rescale is True and defaults.aux_coefficient == 0.25
    # a config saved before the field existed loads with the old behaviour
    saved = SAEConfig(d_in=4, d_sae=8, k=2).to_dict()
    del saved["aux_rescale"]
    assert SAEConfig.from_dict(saved).aux_rescale is False


def test_data_init_points_rows_along_centred_sample_vectors():
    x = cone(n=500)
    sae = SparseAutoencoder(SAEConfig(d_in=16, d_sae=64, k=2))
    sae.init_input_scale(x)
    sae.init_b_dec(x)
    assert sae.init_decoder_from_data(x, generator=torch.Generator().manual_seed(0)) == 64
    centred = x * sae.input_scale - sae.b_dec
    cos = (sae.W_dec @ (centred / centred.norm(dim=1, keepdim=True)).T).max(dim=1).values
    assert torch.allclose(sae.W_dec.norm(dim=1), torch.ones(64), atol=1e-5)
    assert bool((cos > 1 - 1e-5).all())  # every row is one of the sample's directions
    assert torch.equal(sae.W_enc, sae.W_dec.T) and not sae.b_enc.any()
    few = SparseAutoencoder(SAEConfig(d_in=16, d_sae=64, k=2))
    random_rows = few.W_dec.detach().clone()
    assert few.init_decoder_from_data(x[:10]) == 10  # fewer vectors than rows: the rest stay random
    assert torch.equal(few.W_dec[10:], random_rows[10:])


def test_rescaled_aux_loss_is_at_most_that_of_predicting_zero():
    """With aux_rescale the AuxK loss is min over a in [0, 1] of ||a e_hat - e||^2 / var(e): at most the
    normalised error of predicting zero (||e||^2 / var(e), about 1); the plain AuxK can exceed it when the
    dead latents overshoot a small residual."""
    x = cone(n=512)
    losses = {}
    for rescale in (False, True):
        sae = SparseAutoencoder(SAEConfig(d_in=16, d_sae=256, k=2, aux_k=32, aux_rescale=rescale))
        sae.init_input_scale(x)
        sae.init_b_dec(x)
        dead = torch.arange(256) >= 8
        out = sae(x, dead_mask=dead)
        residual = (x - out.x_hat).detach() * sae.input_scale
        variance = (residual - residual.mean(0)).pow(2).sum(1).mean()
        zero_prediction = float(residual.pow(2).sum(1).mean() / variance)
        losses[rescale] = float(out.aux_loss.detach())
        out.loss.backward()
        assert sae.W_enc.grad[:, dead].abs().sum() > 0  # the dead latents learn from AuxK either way
        if rescale:
            # the loss of the best factor in [0, 1], found by a grid search on the same reconstruction
            with torch.no_grad():
                centred = x * sae.input_scale - sae.b_dec
                pre = centred @ sae.W_enc[:, dead] + sae.b_enc[dead]
                vals, pos = pre.topk(32, dim=1)
                e_hat = torch.zeros(len(x), 256).scatter_(1, torch.nonzero(dead).squeeze(1)[pos], vals.relu()) @ sae.W_dec
                best = min(float((a * e_hat - residual).pow(2).sum(1).mean() / variance)
                           for a in torch.linspace(0, 1, 201))
            assert losses[True] <= best + 1e-3 * best and losses[True] >= best - 0.01 * best
            assert losses[True] <= zero_prediction + 1e-5
    assert losses[False] > zero_prediction  # random dead rows overshoot: the plain loss pushes them down


def test_invalid_options_name_the_field():
    with pytest.raises(ValueError, match="decoder_init"):
        SAETrainConfig(decoder_init="pca")
    with pytest.raises(TypeError, match="aux_rescale"):
        SAEConfig(d_in=4, d_sae=8, k=2, aux_rescale="yes")
    with pytest.raises(TypeError, match="aux_rescale"):
        SAEConfig(d_in=4, d_sae=8, k=2, aux_rescale=1)


@pytest.fixture
def condition_settings(monkeypatch):
    """``run(**kwargs)``: the SAEConfig and SAETrainConfig run_condition trains a tiny condition with (training is
    stopped before it starts)."""
    from types import SimpleNamespace

    import numpy as np

    import seqsae_lib.experiments.conditions as conditions

    seen = {}

    def fake_train(store, config, train_config):
        seen.update(config=config, train=train_config)
        raise RuntimeError("stop")

    monkeypatch.setattr(conditions, "train_sae", fake_train)
    n = 20
    store = ActivationStore(capture_point="final", acts=torch.randn(n, 8), user=np.zeros(n, dtype=np.int64),
                            position=np.arange(n), input_item=np.ones(n, dtype=np.int64),
                            next_item=np.ones(n, dtype=np.int64))

    def run(**kwargs):
        with pytest.raises(RuntimeError, match="stop"):
            conditions.run_condition(conditions.Condition("tiny", d_sae=16, k=2), store,
                                     SimpleNamespace(name="ml-100k"), num_epochs=1, **kwargs)
        return seen["config"], seen["train"]

    return run


def test_run_condition_trains_with_the_fix(condition_settings):
    """The conditions study trains with both options; shipped recipes keep the old defaults."""
    from seqsae_lib.experiments.pretrained import SAE_RECIPES_BY_NAME

    config, train_config = condition_settings()
    assert config.aux_rescale is True and train_config.decoder_init == "data"
    assert (train_config.batch_size, train_config.lr, train_config.num_epochs) == (1024, 2e-3, 1)
    for recipe in SAE_RECIPES_BY_NAME.values():
        # the shipped recipes pin what they were trained with: plain AuxK at 1/32, random rows, unit-norm start
        assert recipe.sae["aux_rescale"] is False and recipe.sae["aux_coefficient"] == 1 / 32
        assert "decoder_init" not in recipe.train and recipe.train["fit_encoder_scale"] is False


def test_run_condition_options_replace_the_recorded_settings(condition_settings):
    """``--library-defaults`` of the conditions study: options replace the pinned settings, not the condition's."""
    config, train_config = condition_settings(sae_options={"aux_coefficient": 0.25},
                                              train_options={"decoder_init": "random", "fit_encoder_scale": True})
    assert (config.aux_coefficient, config.aux_rescale, config.k) == (0.25, True, 2)
    assert (train_config.decoder_init, train_config.fit_encoder_scale, train_config.lr) == ("random", True, 2e-3)
    for options in ({"sae_options": {"k": 4}}, {"train_options": {"num_epochs": 3}}):
        with pytest.raises(ValueError, match="may not set"):
            condition_settings(**options)


@pytest.mark.parametrize("decoder_init", ["random", "data"])
def test_initial_sae_is_the_trainers_starting_point(decoder_init):
    # with a vanishing learning rate (Adam steps of ~1e-12) training moves nothing measurable: the result must
    # equal initial_sae's SAE
    x = cone(n=2000)
    config = SAEConfig(d_in=16, d_sae=64, k=2, seed=3, aux_rescale=True)
    train_config = SAETrainConfig(batch_size=256, lr=1e-12, num_epochs=1, seed=5, num_threads=1, progress=False,
                                  decoder_init=decoder_init)
    trained, _ = train_sae(x, config, train_config)
    start = sae_module.initial_sae(x, config, train_config)
    for name, value in start.state_dict().items():
        assert torch.allclose(value, trained.state_dict()[name], atol=1e-6), name
    other_seed = sae_module.initial_sae(x, config, SAETrainConfig(**{**train_config.__dict__, "seed": 6}))
    if decoder_init == "data":  # the rows come from the sample the seed draws
        assert not torch.allclose(other_seed.W_dec, start.W_dec)


def test_initial_sae_refuses_what_train_sae_refuses():
    x = cone(n=300)
    config = SAEConfig(d_in=16, d_sae=32, k=2)
    with pytest.raises(ValueError):
        sae_module.initial_sae(x[:, :8], config)  # wrong width
    bad = x.clone()
    bad[3, 2] = float("nan")
    with pytest.raises(ValueError):
        sae_module.initial_sae(bad, config)
    with pytest.raises(TypeError, match="SAETrainConfig"):
        sae_module.initial_sae(x, config, train_config={"seed": 0})

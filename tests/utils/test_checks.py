"""The shared argument checks (utils.checks) and the configurations and functions that use them."""

from __future__ import annotations

import numpy as np
import pytest

from seqsae_lib.utils.checks import check_choice, check_float, check_int


def test_check_int_returns_plain_ints_and_states_the_range():
    assert check_int("n", np.int64(3), 1) == 3 and type(check_int("n", np.int64(3), 1)) is int
    with pytest.raises(TypeError, match=r"n must be an int, got float \(3\.0\)"):
        check_int("n", 3.0)
    with pytest.raises(TypeError, match="n must be an int, got bool"):
        check_int("n", True)
    with pytest.raises(ValueError, match="n must be >= 1, got 0"):
        check_int("n", 0, 1)
    with pytest.raises(ValueError, match="n must be <= 5, got 6"):
        check_int("n", 6, maximum=5)
    with pytest.raises(ValueError, match=r"n must be in \[1, 5\], got 6"):
        check_int("n", 6, 1, 5)


@pytest.mark.parametrize(
    ("bounds", "bad", "message"),
    [
        (dict(minimum=0.0), -0.5, r"x must be >= 0\.0, got -0\.5"),
        (dict(minimum=0.0, exclusive_minimum=True), 0.0, r"x must be > 0\.0, got 0\.0"),
        (dict(maximum=1.0, exclusive_maximum=True), 1.0, r"x must be < 1\.0, got 1\.0"),
        (dict(minimum=0.0, maximum=1.0, exclusive_maximum=True), 1.0, r"x must be in \[0\.0, 1\.0\), got 1\.0"),
        (dict(minimum=0.0, maximum=1.0, exclusive_minimum=True, exclusive_maximum=True), 0.0,
         r"x must be in \(0\.0, 1\.0\), got 0\.0"),
        (dict(minimum=0.5, maximum=1.0, exclusive_minimum=True), 1.5, r"x must be in \(0\.5, 1\.0\], got 1\.5"),
    ],
)
def test_check_float_bounds(bounds, bad, message):
    with pytest.raises(ValueError, match=message):
        check_float("x", bad, **bounds)
    assert check_float("x", 0.75, **bounds) == 0.75  # strictly inside every range above


def test_check_float_refuses_non_numbers_and_non_finite_values():
    assert check_float("x", np.float32(0.25)) == 0.25 and check_float("x", 2) == 2.0
    with pytest.raises(TypeError, match="x must be a number, got str"):
        check_float("x", "0.1")
    with pytest.raises(TypeError, match="x must be a number, got bool"):
        check_float("x", False)
    for bad in (float("nan"), float("inf")):
        with pytest.raises(ValueError, match="x must be a finite number"):
            check_float("x", bad, 0.0)


def test_check_choice_lists_the_choices():
    assert check_choice("mode", "a", ("a", "b")) == "a"
    with pytest.raises(ValueError, match=r"mode must be one of \['a', 'b'\], got 'c'"):
        check_choice("mode", "c", ("a", "b"))


def test_configurations_name_the_setting_and_the_range():
    from seqsae_lib.model import SASRecConfig, TrainConfig
    from seqsae_lib.sae import SAEConfig, SAETrainConfig

    with pytest.raises(ValueError, match=r"SASRecConfig\.dropout must be in \[0\.0, 1\.0\), got 1\.0"):
        SASRecConfig(num_items=5, dropout=1.0)
    with pytest.raises(TypeError, match=r"SASRecConfig\.attn_dropout must be a number, got str"):
        SASRecConfig(num_items=5, attn_dropout="0.1")
    with pytest.raises(ValueError, match=r"SASRecConfig\.init_std must be > 0\.0"):
        SASRecConfig(num_items=5, init_std=0.0)
    with pytest.raises(ValueError, match=r"SASRecConfig\.layer_norm_eps must be a finite number"):
        SASRecConfig(num_items=5, layer_norm_eps=float("nan"))
    with pytest.raises(ValueError, match=r"TrainConfig\.patience \(None: no early stopping\) must be >= 1, got 0"):
        TrainConfig(patience=0)
    with pytest.raises(TypeError, match=r"TrainConfig\.patience .* must be an int, got float"):
        TrainConfig(patience=2.5)
    with pytest.raises(ValueError, match=r"TrainConfig\.weight_decay must be a finite number"):
        TrainConfig(weight_decay=float("nan"))  # used to pass (nan < 0 is False)
    with pytest.raises(ValueError, match=r"TrainConfig\.grad_clip \(None: no clipping\) must be > 0\.0"):
        TrainConfig(grad_clip=0)
    assert TrainConfig(patience=np.int64(3)).patience == 3 and type(TrainConfig(max_len=np.int64(7)).max_len) is int
    with pytest.raises(ValueError, match=r"threshold_momentum must be in \[0\.0, 1\.0\), got 1\.0"):
        SAEConfig(d_in=4, d_sae=8, k=2, threshold_momentum=1.0)
    with pytest.raises(ValueError, match=r"adam_betas\[1\] must be in \[0\.0, 1\.0\), got 1\.0"):
        SAETrainConfig(adam_betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="adam_betas must be two numbers"):
        SAETrainConfig(adam_betas=(0.9,))


def test_evaluation_k_names_the_bad_entry():
    from seqsae_lib.model.evaluation import _ks

    assert _ks([10, 5, 10]) == (5, 10) and _ks(np.int64(3)) == (3,)
    with pytest.raises(ValueError, match=r"k\[1\] must be >= 1, got 0"):
        _ks([5, 0])
    with pytest.raises(TypeError, match=r"k\[0\] must be an int, got float"):
        _ks([2.5])
    with pytest.raises(ValueError, match="non-empty sequence"):
        _ks([])
    with pytest.raises(TypeError, match="k must be a positive int or a non-empty sequence"):
        _ks("10")


def test_set_threads_refuses_a_bad_argument_even_under_the_environment_override(monkeypatch):
    from seqsae_lib.utils.runtime import THREADS_ENV_VAR, set_threads

    monkeypatch.setenv(THREADS_ENV_VAR, "1")
    with pytest.raises(ValueError, match=r"num_threads \(None: PyTorch's default\) must be >= 1, got 0"):
        set_threads(0)
    with pytest.raises(TypeError, match="num_threads .* must be an int"):
        set_threads(1.5)

"""Fixtures shared by the steering tests: the tiny synthetic data, its split and the shared tiny SASRec."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="module")
def seq_data(tiny_seq):
    return tiny_seq


@pytest.fixture(scope="module")
def split(tiny_split):
    return tiny_split


@pytest.fixture(scope="module")
def model(tiny_sasrec):
    """``tiny_sasrec``: d_model=16 (the tests' ``D``), max_len=12 (their ``MAX_LEN``), trained for 2 epochs."""
    return tiny_sasrec


@pytest.fixture(scope="session")
def concept_direction():
    """Return ``direction(model, concept)``: the unit vector from the mean embedding of the other items to the
    mean embedding of the concept's items, which promotes the concept when added to the final state."""

    def direction(model, concept) -> torch.Tensor:
        emb = model.item_emb.weight.detach()[1:]
        w = concept.as_tensor()[1:]
        d = (w[:, None] * emb).sum(0) / w.sum() - ((1 - w)[:, None] * emb).sum(0) / (1 - w).sum()
        return d / d.norm()

    return direction


@pytest.fixture(scope="module")
def final_sae(tiny_split, model):
    """A 32-latent TopK (k=4) SAE trained for 2 epochs on the tiny SASRec's final states (the live-steering tests)."""
    import seqsae_lib as sl

    store = sl.collect_activations(model, tiny_split.train, "final", progress=False)
    sae, _ = sl.train_sae(store, sl.SAEConfig(d_in=store.d_model, d_sae=32, k=4, seed=0),
                          sl.SAETrainConfig(num_epochs=2, batch_size=128, progress=False, num_threads=1))
    return sae.eval()

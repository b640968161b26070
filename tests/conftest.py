"""Shared fixtures: the real MovieLens copies in ../shared/data (or $SEQSAE_DATA), loaded once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# The chapters run under nbval in kernels started by this pytest process: they inherit this variable, so
# every ``sl.key_figures(...)`` call compares its figures with their measured tolerances (seqsae_lib.reporting).
os.environ.setdefault("SEQSAE_KEY_FIGURES_CHECK", str(REPO / "chapters" / "key_figures.json"))


def shared_data_dir() -> Path | None:
    """The folder holding ml-100k/ (and ml-1m/): $SEQSAE_DATA, else ../shared/data beside the repo."""
    env = os.environ.get("SEQSAE_DATA")
    if env and Path(env).is_dir():
        return Path(env)
    candidate = REPO.parent / "shared" / "data"
    return candidate if candidate.is_dir() else None


@pytest.fixture(scope="session")
def data_dir() -> Path:
    folder = shared_data_dir()
    if folder is None or not (folder / "ml-100k" / "u.data").is_file():
        pytest.skip("no local MovieLens copy: set SEQSAE_DATA to a folder holding ml-100k/")
    return folder


@pytest.fixture(scope="session")
def ml100k(data_dir):
    import seqsae_lib as sl

    return sl.load_movielens("ml-100k", data_dir)


@pytest.fixture(scope="session")
def ml100k_seq(ml100k):
    import seqsae_lib as sl

    return sl.make_sequences(ml100k)


@pytest.fixture
def ml1m_partial_dir(data_dir, tmp_path, monkeypatch):
    """A folder holding ml-1m/ with the real movies.dat, users.dat and the partial ratings (users 1-2999).

    The expected counts are lowered to the partial file's so the whole ML-1M path can run end to end
    (parsing, id checks, genres, sequencing). Results on it are not ML-1M results.
    """
    import gzip
    import shutil

    import seqsae_lib as sl

    partial = data_dir / "ml-1m-first2999users" / "ratings.dat.gz"
    if not partial.is_file() or not (data_dir / "ml-1m" / "movies.dat").is_file():
        pytest.skip("partial ML-1M copy not available")
    folder = tmp_path / "ml-1m"
    folder.mkdir()
    for f in ("movies.dat", "users.dat"):
        shutil.copy(data_dir / "ml-1m" / f, folder / f)
    with gzip.open(partial, "rb") as src, open(folder / "ratings.dat", "wb") as dst:
        shutil.copyfileobj(src, dst)
    ratings = sl.movielens.parse_ml1m_ratings(folder / "ratings.dat")
    patched = {**sl.movielens.EXPECTED_COUNTS["ml-1m"], "ratings": len(ratings),
               "rated_items": ratings["item_id"].nunique()}
    monkeypatch.setitem(sl.movielens.EXPECTED_COUNTS, "ml-1m", patched)
    return tmp_path


@pytest.fixture(scope="session")
def tiny_seq():
    """Small synthetic sequences (60 users, 80 items, 4 planted topics) shared by the model-level tests."""
    import seqsae_lib as sl

    return sl.make_sequences(sl.make_synthetic(num_users=60, num_items=80, num_topics=4, max_length=30))


@pytest.fixture(scope="session")
def tiny_split(tiny_seq):
    import seqsae_lib as sl

    return sl.leave_one_out(tiny_seq)


@pytest.fixture(scope="session")
def train_tiny_sasrec():
    """Return ``train(split, epochs, d_model=16, max_len=12)``: a small seeded SASRec trained for a few epochs."""
    import torch

    import seqsae_lib as sl

    def train(split, epochs: int, d_model: int = 16, max_len: int = 12):
        torch.set_num_threads(1)
        torch.manual_seed(0)
        model = sl.SASRec(num_items=split.num_items, max_len=max_len, d_model=d_model, n_layers=2, dropout=0.1)
        sl.train_sasrec(model, split, sl.TrainConfig(max_epochs=epochs, batch_size=32, lr=5e-3, progress=False,
                                                      num_threads=1))
        return model.eval()

    return train

"""Shared fixtures: the real MovieLens copies in ../shared/data (or $SEQSAE_DATA), loaded once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# The chapters run under nbval in kernels started by this pytest process: they inherit this variable, so
# every ``sl.key_figures(...)`` call compares its figures with their measured tolerances (seqsae_lib.utils.reporting).
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


def _ml1m_u2999_available(folder: Path) -> bool:
    return (folder / "ml-1m-first2999users" / "ratings.dat.gz").is_file() and all(
        (folder / "ml-1m" / f).is_file() for f in ("movies.dat", "users.dat")
    )


@pytest.fixture(scope="session")
def ml1m_u2999(data_dir):
    """"MovieLens-1M, users 1–2,999 (487,650 ratings)" from the shared prefix file.

    Its results are never ML-1M results.
    """
    import seqsae_lib as sl

    if not _ml1m_u2999_available(data_dir):
        pytest.skip("ml-1m-first2999users/ratings.dat.gz or ml-1m/movies.dat, users.dat not available")
    return sl.load_movielens("ml-1m-u2999", data_dir)


@pytest.fixture(scope="session")
def ml1m_standin_facts(data_dir, tmp_path_factory) -> dict:
    """A synthetic stand-in for the full ML-1M, which is not on the development machines.

    ``<folder>/ml-1m/`` in GroupLens' layout: ``ratings.dat`` is the real prefix (users 1–2,999, unmodified)
    followed by 20 generated ratings for each of the users 3,000–6,040 of ``users.dat``, in user order like
    GroupLens' file; ``movies.dat`` and ``users.dat`` are the real ones. Returns the folder and the counts
    the stand-in has instead of ML-1M's (use the ``ml1m_standin`` fixture, which patches them in).
    """
    import gzip
    import shutil

    import numpy as np

    import seqsae_lib as sl

    if not _ml1m_u2999_available(data_dir):
        pytest.skip("ml-1m-first2999users/ratings.dat.gz or ml-1m/movies.dat, users.dat not available")
    root = tmp_path_factory.mktemp("ml1m-standin")
    folder = root / "ml-1m"
    folder.mkdir()
    for f in ("movies.dat", "users.dat"):
        shutil.copy(data_dir / "ml-1m" / f, folder / f)
        (folder / f).chmod(0o644)
    prefix = gzip.decompress((data_dir / "ml-1m-first2999users" / "ratings.dat.gz").read_bytes())
    movie_ids = np.array([int(line.split(b"::", 1)[0]) for line in (folder / "movies.dat").read_bytes().splitlines()])
    rng = np.random.default_rng(0)
    users = np.arange(3_000, 6_041)
    per_user = 20
    items = np.concatenate([rng.choice(movie_ids, per_user, replace=False) for _ in users])
    lines = [
        f"{u}::{i}::{r}::{t}\n"
        for u, i, r, t in zip(np.repeat(users, per_user), items, rng.integers(1, 6, len(items)),
                              rng.integers(975_000_000, 1_046_000_000, len(items)))
    ]
    (folder / "ratings.dat").write_bytes(prefix + "".join(lines).encode("latin-1"))
    ratings = sl.data.movielens_files.parse_ml1m_ratings(folder / "ratings.dat")
    assert len(ratings) == prefix.count(b"\n") + len(lines)
    return {"folder": root, "ratings": len(ratings), "rated_items": int(ratings["item_id"].nunique())}


@pytest.fixture
def ml1m_standin(ml1m_standin_facts, monkeypatch) -> Path:
    """The folder holding the stand-in ``ml-1m/``, with ML-1M's expected counts patched to the stand-in's.

    Only the full data set's counts are patched; the subset ``"ml-1m-u2999"`` keeps its own.
    """
    import seqsae_lib as sl

    patched = {**sl.data.movielens_files.EXPECTED_COUNTS["ml-1m"], "ratings": ml1m_standin_facts["ratings"],
               "rated_items": ml1m_standin_facts["rated_items"]}
    monkeypatch.setitem(sl.data.movielens_files.EXPECTED_COUNTS, "ml-1m", patched)
    return ml1m_standin_facts["folder"]


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
    """Return ``train(split, epochs, d_model=16, max_len=12)``: a small seeded SASRec trained for a few epochs.

    It trains with ``nn.Dropout`` and ``F.cross_entropy`` (``fast_dropout=False``, ``fused_loss=False``), the
    settings the tiny model had when the steering tests' thresholds were set on it: with the library's
    defaults the same seed draws other dropout masks, and two of those thresholds (the user dependence of
    scaling active latents at ``final``, the planted direction reaching its NDCG cost) do not hold for that
    model. ``tests/model`` covers training with the defaults.
    """
    import torch

    import seqsae_lib as sl

    def train(split, epochs: int, d_model: int = 16, max_len: int = 12):
        torch.set_num_threads(1)
        torch.manual_seed(0)
        model = sl.SASRec(num_items=split.num_items, max_len=max_len, d_model=d_model, n_layers=2, dropout=0.1,
                          fast_dropout=False)
        sl.train_sasrec(model, split, sl.TrainConfig(max_epochs=epochs, batch_size=32, lr=5e-3, progress=False,
                                                      num_threads=1, fused_loss=False))
        return model.eval()

    return train


@pytest.fixture(scope="session")
def tiny_sasrec(tiny_split, train_tiny_sasrec):
    """The SASRec most model-level tests share: ``train_tiny_sasrec(tiny_split, epochs=2)`` (d_model=16, max_len=12).

    Trained once per session (the training is seeded, so every test sees the weights it would train itself).
    Tests that switch it to train mode restore eval mode, and none changes its weights (copy it first).
    """
    return train_tiny_sasrec(tiny_split, epochs=2, d_model=16, max_len=12)

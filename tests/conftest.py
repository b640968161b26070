"""Shared fixtures: the real MovieLens copies in ../shared/data (or $SEQSAE_DATA), loaded once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


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

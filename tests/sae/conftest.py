"""Fixtures shared by the SAE tests."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def split(tiny_split):
    return tiny_split

"""Fixtures for the indexers tests (helpers live in indexer_testkit.py)."""

from __future__ import annotations

import pytest
from indexer_testkit import Dataset, make_dataset


@pytest.fixture(scope="session")
def big_dataset() -> Dataset:
    """2,000 clustered vectors, 20 queries."""
    return make_dataset(2000, 20, seed=7)


@pytest.fixture(scope="session")
def small_dataset() -> Dataset:
    """300 clustered vectors, 5 queries."""
    return make_dataset(300, 5, seed=11, rare=5)

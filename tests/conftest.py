"""Shared fixtures: the generated sample dataset and the real files in ../shared/data."""

from __future__ import annotations

from pathlib import Path

import pytest

from genen_dgl.data.sample import generate

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` beside the checkout; tests using it skip where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not available: {SHARED_DATA} is absent")
    return SHARED_DATA


@pytest.fixture(scope="session")
def sample_spec(tmp_path_factory) -> Path:
    """The embedded sample dataset (seed 0), generated once per test session."""
    return generate(tmp_path_factory.mktemp("sample") / "data")

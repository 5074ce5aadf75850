"""Shared pytest fixtures: where the shared real RGB-D samples are, and an isolated DDS domain per test run."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    """../shared/data/real beside the repository (or $G2VLM_SHARED_DATA); these samples are required, not optional."""
    path = Path(os.environ.get("G2VLM_SHARED_DATA", REPO.parent / "shared" / "data" / "real"))
    if not path.is_dir():
        raise FileNotFoundError(f"real RGB-D samples not found at {path}; set G2VLM_SHARED_DATA")
    return path

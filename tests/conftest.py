"""Shared fixtures: where the read-only development data lives, and tiny spaces for fast tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = (REPO.parent / "shared" / "data").resolve()
NB201_CSV = SHARED_DATA / "nb201" / "cifar10_test_accuracy.csv"
CIFAR10 = SHARED_DATA / "cifar10"

torch.set_num_threads(max(1, min(2, torch.get_num_threads())))


@pytest.fixture
def nb201_csv() -> Path:
    if not NB201_CSV.exists():
        pytest.skip(f"NAS-Bench-201 ground truth not found at {NB201_CSV}")
    return NB201_CSV


@pytest.fixture
def cifar10_root() -> Path:
    if not (CIFAR10 / "train").is_dir():
        pytest.skip(f"CIFAR-10 ImageFolder copy not found at {CIFAR10}")
    return CIFAR10

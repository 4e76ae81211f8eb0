"""The NATS-Bench size-space table for benchmarks: where it is and how to load it (exits with a message
naming the option to pass when it is absent, as the NAS-Bench-201 benchmarks do)."""

from __future__ import annotations

from pathlib import Path

from _common import SHARED_DATA, require

from nas_sampler.space.sss import read_ground_truth

NATS_SSS_CSV = SHARED_DATA / "nats_sss" / "cifar10_test_accuracy.csv"


def load_sss(path: Path = NATS_SSS_CSV, option: str = "--csv") -> dict[str, tuple[float, int]]:
    """``{genotype string (e.g. '64:64:56:64:24'): (CIFAR-10 test accuracy %, parameters)}``."""
    return read_ground_truth(require(path, "NATS-Bench size-space table", option))

"""The cell-space sampler benchmark keeps working, and its parallel runs are the serial ones."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _run(cifar10_root: Path, jobs: int) -> dict:
    r = subprocess.run(
        [
            sys.executable, str(REPO / "benchmarks" / "cell_search.py"), "--samplers", "genetic,random",
            "--seeds", "1", "--budget", "6", "--population", "3", "--batch-size", "8",
            "--data", str(cifar10_root / "train"), "--jobs", str(jobs),
        ],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def _without_cpu(result: dict) -> dict:
    return {s: {k: v for k, v in figures.items() if k != "cpu_minutes"} for s, figures in result.items()}


def test_cell_search_benchmark_reports_each_sampler_and_jobs_do_not_change_it(cifar10_root) -> None:
    serial = _run(cifar10_root, jobs=1)
    assert set(serial) == {"genetic", "random"}
    for figures in serial.values():
        assert set(figures) == {"hypervolume", "best_rank_sum", "cpu_minutes", "median_params"}
        assert 0 <= figures["best_rank_sum"] <= 1 and figures["median_params"] > 0
    parallel = _run(cifar10_root, jobs=2)
    assert _without_cpu(parallel) == _without_cpu(serial)  # seeded searches, each alone in its process

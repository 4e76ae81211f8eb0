"""The size-space benchmark keeps working: a tiny budget, one seed, two samplers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SHARED_DATA, run_benchmark

from nas_sampler.space.sss import read_ground_truth

REPO = Path(__file__).resolve().parents[1]
SSS_CSV = SHARED_DATA / "nats_sss" / "cifar10_test_accuracy.csv"


def test_sss_search_benchmark_runs_end_to_end(tmp_path, cifar10_root) -> None:
    if not SSS_CSV.exists():
        pytest.skip(f"NATS-Bench size-space table not found at {SSS_CSV}")
    last = run_benchmark(
        "sss_search.py", "--samplers", "genetic,random", "--seeds", "1", "--budget", "12", "--batch-size", "8",
        "--population", "6", "--csv", str(SSS_CSV), "--data", str(cifar10_root / "train"), "--out", str(tmp_path),
    )  # fmt: skip
    assert set(last) == {"genetic", "random"}
    saved = json.loads((tmp_path / "results.json").read_text())
    best = saved["reference"]
    assert best == {"best_under_300k": 92.69, "best_under_200k": 92.02}  # the figures from the table
    for figures in last.values():
        assert set(figures) == {"acc_under_300k", "acc_under_200k", "hv_fraction", "cpu_minutes"}
        assert 10 <= figures["acc_under_300k"] <= best["best_under_300k"]
        assert 10 <= figures["acc_under_200k"] <= best["best_under_200k"]
        assert 0 < figures["hv_fraction"] < 1 and figures["cpu_minutes"] > 0
    truth = read_ground_truth(SSS_CSV)
    for run in saved["runs"]:  # each choice keeps to its budget, and is scored as the table says
        assert truth[run["chosen_under_300k"]][1] <= 300_000 and truth[run["chosen_under_200k"]][1] <= 200_000
        assert run["acc_under_300k"] == truth[run["chosen_under_300k"]][0]


def test_sss_correlation_benchmark_runs_end_to_end(cifar10_root) -> None:
    if not SSS_CSV.exists():
        pytest.skip(f"NATS-Bench size-space table not found at {SSS_CSV}")
    r = subprocess.run(
        [
            sys.executable, str(REPO / "benchmarks" / "sss_correlation.py"), "--archs", "8", "--batch-size", "8",
            "--csv", str(SSS_CSV), "--data", str(cifar10_root / "train"),
            "--metrics", "ntk_cond,activation,jacobian,swap,expressivity", "--combos", "expressivity+params",
        ],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    last = json.loads(r.stdout.strip().splitlines()[-1])
    names = {"ntk_cond", "activation", "jacobian", "swap", "expressivity", "params", "expressivity+params"}
    assert last["archs"] == 8 and set(last["kendall_tau"]) == names
    taus = last["kendall_tau"]
    assert all(t["tau"] is None or -1 <= t["tau"] <= 1 for t in taus.values())
    assert taus["params"]["tau"] > 0  # capacity ranks this space: 0.72 over 160 networks, 0.79 over these 8

"""The tournament-bias benchmark keeps working: one seed, two pairs, two groups, a few steps."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_tournament_bias_benchmark_reports_its_rates_on_real_cells(nb201_csv, cifar10_root) -> None:
    r = subprocess.run(
        [
            sys.executable, str(REPO / "benchmarks" / "tournament_bias.py"), "--pairs", "2", "--groups", "2",
            "--seeds", "1", "--steps", "2", "--warmup", "1", "--batch", "8", "--threads", "1",
            "--csv", str(nb201_csv), "--data", str(cifar10_root / "train"),
        ],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    figures = json.loads(r.stdout.strip().splitlines()[-1])
    assert figures["pairs"] == 2 and figures["groups_of_4"] == 2
    rate, (low, high) = figures["winner_is_group_best_by_nb201"], figures["group_best_95ci"]
    assert rate in (0.0, 0.5, 1.0) and low <= rate <= high
    assert figures["parameter_free_win_rate"] in (0.0, 0.5, 1.0)
    assert figures["cpu_seconds_per_group_of_4"] > 0


def test_tournament_bias_benchmark_draws_near_ties_above_the_accuracy_asked(nb201_csv, cifar10_root) -> None:
    r = subprocess.run(
        [
            sys.executable, str(REPO / "benchmarks" / "tournament_bias.py"), "--pairs", "0", "--groups", "2",
            "--seeds", "1", "--steps", "2", "--warmup", "1", "--batch", "8", "--threads", "1",
            "--min-accuracy", "93.5", "--csv", str(nb201_csv), "--data", str(cifar10_root / "train"),
        ],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    figures = json.loads(r.stdout.strip().splitlines()[-1])
    assert figures["groups_of_4"] == 2 and figures["pairs"] == 0
    assert figures["lowest_group_cell_accuracy"] >= 93.5
    # the winner is one of its group: at most the spread of cells within 93.5 .. the optimum above the mean
    assert abs(figures["winner_accuracy_above_group_mean"]) <= 94.37 - 93.5


def test_tournament_bias_benchmark_refuses_an_accuracy_too_few_cells_reach(nb201_csv) -> None:
    r = subprocess.run(
        [
            sys.executable, str(REPO / "benchmarks" / "tournament_bias.py"), "--pairs", "0", "--groups", "2",
            "--min-accuracy", "99", "--csv", str(nb201_csv),
        ],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode == 2 and "--min-accuracy 99.0: only 0 cells reach it" in r.stderr


def test_tournament_bias_benchmark_names_a_missing_table(tmp_path) -> None:
    missing = tmp_path / "none.csv"
    r = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "tournament_bias.py"), "--csv", str(missing)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode != 0 and str(missing) in r.stderr and "--csv" in r.stderr

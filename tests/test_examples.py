"""Every example runs, as a user would run it, and prints what it promises."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _run(name: str, *args: str, cwd: Path) -> str:
    r = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args], cwd=cwd, capture_output=True, text=True, timeout=600
    )
    assert r.returncode == 0, r.stderr[-3000:]
    return r.stdout


def test_quickstart(tmp_path) -> None:
    out = _run("quickstart.py", cwd=tmp_path)
    assert (tmp_path / "quickstart.db").exists()
    assert len([ln for ln in out.splitlines() if "|" in ln]) >= 1  # front rows carry genotype strings


def test_resume(tmp_path) -> None:
    assert "identical genotypes in the same order: True" in _run("resume.py", cwd=tmp_path)


def test_compare_samplers(tmp_path) -> None:
    out = _run("compare_samplers.py", cwd=tmp_path)
    for name in ("genetic", "nsga2", "random"):
        assert any(ln.startswith(name) and "hypervolume" in ln for ln in out.splitlines())


def test_custom_operation(tmp_path) -> None:
    out = _run("custom_operation.py", cwd=tmp_path)
    used = int(out.split(" of ")[0])
    assert used > 0  # the registered operation is searched over


def test_postgres_workers(tmp_path, postgres_server) -> None:
    out = _run("postgres_workers.py", postgres_server, cwd=tmp_path)
    assert "per generation: {0: 6, 1: 6, 2: 6}" in out and "distinct genotypes: 18 of 18" in out


def test_nb201_ground_truth(tmp_path, nb201_csv) -> None:
    out = _run("nb201_ground_truth.py", str(nb201_csv), cwd=tmp_path)
    assert "its true accuracy" in out


@pytest.mark.skipif(not (EXAMPLES / "train_final.py").exists(), reason="no train_final example")
def test_train_final_help(tmp_path) -> None:
    r = subprocess.run([sys.executable, str(EXAMPLES / "train_final.py"), "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "usage" in r.stdout

"""The short kill campaign (benchmarks/kill_resume.py): a search SIGKILLed at random moments and resumed
with the same command ends as the uninterrupted search, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "kill_resume.py"


@pytest.mark.slow
@pytest.mark.parametrize("storage", ["sqlite", "postgresql"])
def test_random_kills_leave_the_search_identical_to_an_uninterrupted_one(storage: str, request) -> None:
    if storage == "postgresql":
        request.getfixturevalue("postgres_server")  # fails or skips with the server's reason
    args = ["--storage", storage, "--kills", "3", "--target", "32", "--seed", "1", "--load", "1"]
    proc = subprocess.run([sys.executable, str(BENCH), *args], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["kills"] >= 2, result  # the kills landed before the search ended
    assert result["identical"] == result["kills"] and result["final_identical"], result
    assert result["lost_completed"] == 0 and result["duplicate_genotypes"] == 0, result
    assert result["generation_sizes_exact"], result

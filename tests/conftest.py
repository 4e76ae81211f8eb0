"""Shared fixtures: where the read-only development data lives, and tiny spaces for fast tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from hypothesis import settings

# CI (HYPOTHESIS_PROFILE=ci, set by .ci/run): the same examples on every run, so a red run is
# reproducible; elsewhere hypothesis draws new ones each time, to keep finding cases.
settings.register_profile("ci", derandomize=True, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

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


_TERMINATE = "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :d AND pid <> pg_backend_pid()"
PG_ADMIN_URL = os.environ.get("NAS_SAMPLER_PG_ADMIN", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")


def _pg_unavailable(reason: str) -> None:
    msg = f"PostgreSQL not reachable at {PG_ADMIN_URL}: {reason}"
    if os.environ.get("NAS_SAMPLER_REQUIRE_POSTGRES"):
        pytest.fail(msg + " (NAS_SAMPLER_REQUIRE_POSTGRES is set, so this fails instead of skipping)")
    pytest.skip(msg)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A fresh PostgreSQL database for this test run, dropped at the end; yields its URL."""
    try:
        import sqlalchemy as sa
    except ImportError as e:  # pragma: no cover
        _pg_unavailable(str(e))
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"nas_sampler_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except Exception as e:  # noqa: BLE001 - any connection failure means "no server"
        admin.dispose()
        _pg_unavailable(str(e).splitlines()[0])
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(_TERMINATE), {"d": name})
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def storage_url(request, tmp_path) -> str:
    """Both storages the project supports: a SQLite file and the real PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'study.db'}"
    return request.getfixturevalue("postgres_server")


def run_benchmark(script: str, *args: str, timeout: float = 900) -> dict:
    """Run ``benchmarks/<script>`` as a user would; its last line, the JSON figures (the error shown on failure)."""
    r = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / script), *args], capture_output=True, text=True, timeout=timeout
    )
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])

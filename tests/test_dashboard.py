"""optuna-dashboard on a finished search, through its HTTP API and (when present) headless Chromium."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import optuna
import pytest

from nas_sampler import GeneticCellSampler, NB201Space, TrainingFreeObjective


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory):
    """A finished small study in SQLite with cell pictures, and `nas-sampler dashboard` serving it."""
    tmp = tmp_path_factory.mktemp("dash")
    url = f"sqlite:///{tmp / 'nas.db'}"
    (tmp / "nas-artifacts").mkdir()
    store = optuna.artifacts.FileSystemArtifactStore(str(tmp / "nas-artifacts"))
    space = NB201Space(width=4, cells_per_stage=1)
    objective = TrainingFreeObjective(space, data="builtin", batch_size=8, artifact_store=store)
    study = optuna.create_study(
        directions=objective.directions, sampler=GeneticCellSampler(population_size=4, seed=0), storage=url,
        study_name="dash",
    )  # fmt: skip
    study.optimize(objective, n_trials=8)
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "nas_sampler.cli", "dashboard", "--storage", url, "--port", str(port)],
        cwd=tmp,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while True:
        try:
            _get(f"{base}/api/studies")
            break
        except OSError:
            if proc.poll() is not None or time.time() > deadline:
                proc.kill()
                pytest.fail(f"dashboard did not start: {proc.stderr.read().decode()}")
            time.sleep(0.5)
    try:
        yield base, study, tmp
    finally:
        proc.terminate()  # stopped by its PID
        proc.wait(timeout=20)


def test_api_shows_the_front_metric_names_and_cell_pictures(dashboard) -> None:
    base, study, _ = dashboard
    summaries = _get(f"{base}/api/studies")["study_summaries"]
    (summary,) = [s for s in summaries if s["study_name"] == "dash"]
    detail = _get(f"{base}/api/studies/{summary['study_id']}")
    assert sorted(t["number"] for t in detail["best_trials"]) == sorted(t.number for t in study.best_trials)
    assert detail["objective_names"] == ["ntk_cond", "activation", "jacobian"]
    completed = [t for t in detail["trials"] if t["state"] == "Complete"]
    assert completed and all(any(a["mimetype"] == "image/svg+xml" for a in t["artifacts"]) for t in completed), (
        "every completed trial carries its cell picture"
    )
    genotypes = {t["number"]: {a["key"]: a["value"] for a in t["user_attrs"]}["genotype"] for t in detail["trials"]}
    assert genotypes == {t.number: t.user_attrs["genotype"] for t in study.trials}


def test_artifact_is_downloadable_svg(dashboard) -> None:
    base, study, _ = dashboard
    summaries = _get(f"{base}/api/studies")["study_summaries"]
    study_id = [s for s in summaries if s["study_name"] == "dash"][0]["study_id"]
    trial = _get(f"{base}/api/studies/{study_id}")["trials"][0]
    art = trial["artifacts"][0]
    with urllib.request.urlopen(
        f"{base}/artifacts/{study_id}/{trial['trial_id']}/{art['artifact_id']}", timeout=10
    ) as r:
        body = r.read().decode()
    assert body.startswith("<svg") and trial["user_attrs"] and "</svg>" in body


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Chromium is not installed (apt-get install chromium)")
def test_headless_chromium_screenshot_of_the_study_page(dashboard) -> None:
    base, _, tmp = dashboard
    shot = Path(tmp) / "dashboard.png"
    subprocess.run(
        [
            "chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp / 'chrome'}",
            "--window-size=1400,1000", "--virtual-time-budget=15000", f"--screenshot={shot}",
            f"{base}/dashboard/studies/1",
        ],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    assert shot.exists() and shot.stat().st_size > 20_000  # a rendered page, not a blank one

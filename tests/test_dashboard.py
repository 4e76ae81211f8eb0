"""optuna-dashboard on a finished search, through its HTTP API and (when present) headless Chromium."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import optuna
import pytest

from nas_sampler import DashboardFigures, GeneticCellSampler, NB201Space, TrainingFreeObjective


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())


def _study_id(base: str) -> int:
    """The dashboard's id of the fixture's study, found by name through its API."""
    (summary,) = [s for s in _get(f"{base}/api/studies")["study_summaries"] if s["study_name"] == "dash"]
    return summary["study_id"]


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory):
    """A finished small study (3 generations) in SQLite with cell pictures, figures and notes, and
    `nas-sampler dashboard` serving it."""
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
    study.optimize(objective, n_trials=12, callbacks=[DashboardFigures()])
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
    detail = _get(f"{base}/api/studies/{_study_id(base)}")
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
    study_id = _study_id(base)
    trial = _get(f"{base}/api/studies/{study_id}")["trials"][0]
    art = trial["artifacts"][0]
    with urllib.request.urlopen(
        f"{base}/artifacts/{study_id}/{trial['trial_id']}/{art['artifact_id']}", timeout=10
    ) as r:
        body = r.read().decode()
    assert body.startswith("<svg") and trial["user_attrs"] and "</svg>" in body


def _rendered_text(url: str, profile: Path) -> str:
    """The visible text of ``url`` after headless Chromium has run its scripts (the dashboard is a
    JavaScript app: the served HTML holds no study data)."""
    if shutil.which("chromium") is None:
        msg = "Chromium is not installed (apt-get install chromium)"
        if os.environ.get("NAS_SAMPLER_REQUIRE_CHROMIUM"):
            pytest.fail(msg + " (NAS_SAMPLER_REQUIRE_CHROMIUM is set, so this fails instead of skipping)")
        pytest.skip(msg)
    dom = subprocess.run(
        [
            "chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
            "--window-size=1400,1000", "--virtual-time-budget=15000", "--dump-dom", url,
        ],
        check=True, capture_output=True, text=True, timeout=120,
    ).stdout  # fmt: skip
    dom = re.sub(r"<(style|script)[^>]*>.*?</\1>", " ", dom, flags=re.S)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", dom))


def test_browser_shows_the_pareto_front_with_the_metric_names(dashboard) -> None:
    """What a user sees: the study page, rendered by headless Chromium, plots the Pareto front on the
    score names and lists as best trials exactly the study's Pareto front."""
    base, study, tmp = dashboard
    text = _rendered_text(f"{base}/dashboard/studies/{_study_id(base)}", Path(tmp) / "chrome")
    assert "Pareto Front Objective X: ntk_cond" in text and "Objective Y: activation" in text
    shown = {int(n) for n in re.findall(r"Trial (\d+) Objective Values", text)}
    assert shown == {t.number for t in study.best_trials}


FIGURE_TITLES = {
    "scores-ntk_cond": "ntk_cond by generation",
    "scores-activation": "activation by generation",
    "scores-jacobian": "jacobian by generation",
    "operators-mutation": "Adaptive mutation choice by generation",
    "operators-crossover": "Adaptive crossover choice by generation",
    "operators-operation": "Adaptive operation choice by generation",
    "params-ntk_cond": "Parameters against ntk_cond",
    "params-activation": "Parameters against activation",
    "params-jacobian": "Parameters against jacobian",
}


def test_api_serves_the_figures_per_generation_the_note_and_each_trials_lineage(dashboard) -> None:
    base, study, _ = dashboard
    detail = _get(f"{base}/api/studies/{_study_id(base)}")
    figures = {g["id"]: json.loads(g["graph_object"]) for g in detail["plotly_graph_objects"]}
    assert {k: f["layout"]["title"]["text"] for k, f in figures.items()} == FIGURE_TITLES
    assert all(t["x"] == [0, 1, 2] for t in figures["scores-ntk_cond"]["data"])  # three generations
    assert all(t["x"] == [1, 2] for t in figures["operators-mutation"]["data"])  # bred from generation 1 on
    assert "**12** trials completed over **3** generations" in detail["note"]["body"]
    for t in detail["trials"]:
        generation = study.trials[t["number"]].system_attrs["GeneticCellSampler:generation"]
        lineage = {a["key"]: a["value"] for a in t["user_attrs"]}["lineage"]
        assert lineage.startswith(f"generation {generation}, slot ")
        if generation > 0:
            assert re.search(r"(crossover \w+|a copy) of trial \d+", lineage), lineage


def test_browser_shows_the_evolution_figures(dashboard) -> None:
    """What a user sees on the study page: every figure, by its title, with its axes drawn."""
    base, _, tmp = dashboard
    text = _rendered_text(f"{base}/dashboard/studies/{_study_id(base)}", Path(tmp) / "chrome-figures")
    missing = [title for title in FIGURE_TITLES.values() if title not in text]
    assert not missing, f"not on the page: {missing}"
    assert "survival rate" in text and "Pareto front" in text


def test_browser_shows_a_trials_generation_and_parents(dashboard) -> None:
    base, study, tmp = dashboard
    bred = next(t for t in study.trials if t.system_attrs["GeneticCellSampler:generation"] == 2)
    url = f"{base}/dashboard/studies/{_study_id(base)}/trials?numbers={bred.number}"
    text = _rendered_text(url, Path(tmp) / "chrome-trial")
    parents = bred.system_attrs["GeneticCellSampler:slot"]["child"]["parents"]
    assert f"Trial {bred.number}" in text and "generation 2" in text
    assert all(f"trial {p}" in text for p in parents)

"""The search's figures and notes: what they show is what the study holds, one draw per generation,
and a figure that cannot be drawn never stops the search."""

from __future__ import annotations

import json
import logging

import numpy as np
import optuna
import pytest

from nas_sampler import DartsTournament, DashboardFigures, GeneticCellSampler, NB201Space, dashboard
from nas_sampler.dashboard import study_note
from nas_sampler.evolution import AdaptiveState, EvolutionConfig
from nas_sampler.figures import build_figures
from nas_sampler.history import read_history
from nas_sampler.internals import storage_of, study_id_of

optuna.logging.set_verbosity(optuna.logging.WARNING)
SPACE = NB201Space()
GENERATIONS, POPULATION = 5, 4


def _objective(trial: optuna.Trial) -> tuple[float, float]:
    g = SPACE.suggest(trial)
    text = str(g)
    trial.set_user_attr("params", 1000 + 10 * len(text))
    return float(text.count("conv")), float(text.count("skip") - text.count("none"))


def _figure(fig: dict | object) -> dict:
    return json.loads(fig.to_json()) if not isinstance(fig, dict) else fig


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    url = f"sqlite:///{tmp_path_factory.mktemp('fig') / 'fig.db'}"
    study = optuna.create_study(
        directions=["maximize", "minimize"], storage=url, study_name="fig",
        sampler=GeneticCellSampler(population_size=POPULATION, seed=3, min_kind_prob=0.1),
    )  # fmt: skip
    study.set_metric_names(["convs", "skips"])
    figures = DashboardFigures()
    study.optimize(_objective, n_trials=POPULATION * GENERATIONS, callbacks=[figures])
    return study, figures


def test_one_draw_per_generation_and_every_figure_stored(searched) -> None:
    study, figures = searched
    assert len(figures.seconds) == GENERATIONS  # one worker: drawn as each generation's last slot finishes
    stored = dashboard_graph_objects(study)
    assert set(stored) == {
        "scores-convs", "scores-skips", "operators-mutation", "operators-crossover", "operators-operation",
        "params-convs", "params-skips",
    }  # fmt: skip
    assert stored["scores-convs"]["layout"]["title"]["text"] == "convs by generation"


def dashboard_graph_objects(study: optuna.Study) -> dict[str, dict]:
    from optuna_dashboard._custom_plot_data import get_plotly_graph_objects

    attrs = storage_of(study).get_study_system_attrs(study_id_of(study))
    return {k: json.loads(v) for k, v in get_plotly_graph_objects(attrs).items()}


def test_scores_by_generation_are_each_generations_best_median_and_worst(searched) -> None:
    study, _ = searched
    figs = build_figures(read_history(study))
    gen_of = {t.number: t.system_attrs["GeneticCellSampler:generation"] for t in study.trials}
    for i, (name, best_is_max) in enumerate((("convs", True), ("skips", False))):
        traces = {tr["name"]: tr for tr in _figure(figs[f"scores-{name}"])["data"]}
        assert traces["best"]["x"] == list(range(GENERATIONS))
        for g in range(GENERATIONS):
            values = [t.values[i] for t in study.trials if gen_of[t.number] == g and t.values]
            best, worst = (max(values), min(values)) if best_is_max else (min(values), max(values))
            assert traces["best"]["y"][g] == pytest.approx(best, rel=1e-3)
            assert traces["worst"]["y"][g] == pytest.approx(worst, rel=1e-3)
            assert traces["median"]["y"][g] == pytest.approx(float(np.median(values)), rel=1e-3)


def test_operator_probabilities_are_those_each_generation_was_bred_with(searched) -> None:
    study, _ = searched
    figs = build_figures(read_history(study), EvolutionConfig(min_kind_prob=0.1))
    attrs = storage_of(study).get_study_system_attrs(study_id_of(study))
    probability = [t for t in _figure(figs["operators-mutation"])["data"] if t["xaxis"] == "x"]
    assert [t["name"] for t in probability] == list(SPACE.mutations)
    assert probability[0]["x"] == list(range(1, GENERATIONS))  # generation 0 is drawn at random
    for k, g in enumerate(range(1, GENERATIONS)):
        state = AdaptiveState.from_dict(attrs[f"GeneticCellSampler:parent:{g}"]["state"])
        expected = state.mutation_probs(list(SPACE.mutations), floor=0.1)
        assert [t["y"][k] for t in probability] == pytest.approx(list(expected), rel=1e-3)


def test_the_front_is_marked_on_the_size_figures(searched) -> None:
    study, _ = searched
    figs = build_figures(read_history(study))
    front = next(t for t in _figure(figs["params-convs"])["data"] if t["name"] == "Pareto front")
    assert sorted(n for n, _ in front["customdata"]) == sorted(t.number for t in study.best_trials)


def test_each_trial_names_its_generation_slot_and_parents_and_the_study_how_to_go_on(searched) -> None:
    study, _ = searched
    for t in study.trials:
        tag = t.system_attrs["GeneticCellSampler:slot"]
        lineage = t.user_attrs["lineage"]  # what optuna-dashboard shows on the trial's page
        assert lineage.startswith(f"generation {tag['generation']}, slot {tag['slot']}: ")
        if tag["generation"] == 0:
            assert lineage.endswith("drawn at random")
        else:
            assert all(f"trial {p}" in lineage for p in tag["child"]["parents"]), lineage
    note = study_note(read_history(study), "sqlite:///fig.db")
    assert "population 4" in note and "seed 3" in note and "optuna.load_study(study_name='fig'" in note


def test_a_study_note_a_person_wrote_is_kept() -> None:
    import optuna_dashboard

    study = optuna.create_study(directions=["maximize", "minimize"], sampler=GeneticCellSampler(population_size=4))
    optuna_dashboard.save_note(study, "my notes on this search")
    study.optimize(_objective, n_trials=8, callbacks=[DashboardFigures()])
    assert optuna_dashboard.get_note(study) == "my notes on this search"
    fresh = optuna.create_study(directions=["maximize", "minimize"], sampler=GeneticCellSampler(population_size=4))
    fresh.optimize(_objective, n_trials=8, callbacks=[DashboardFigures()])
    assert optuna_dashboard.get_note(fresh).startswith("# nas-sampler search")


def test_tournament_generations_show_each_candidates_share_and_the_winners(tmp_path) -> None:
    space = NB201Space(width=4, cells_per_stage=1)
    tour = DartsTournament(data="builtin", every=2, size=2, device="cpu", seed=0, steps=4, warmup_steps=2, batch_size=8)
    study = optuna.create_study(
        directions=["maximize", "minimize"], sampler=GeneticCellSampler(population_size=4, seed=0, tournament=tour)
    )
    study.optimize(lambda t: (float(str(space.suggest(t)).count("conv")), 0.0), n_trials=12)
    fig = _figure(build_figures(read_history(study))["tournaments"])
    record = study.user_attrs["nas_sampler:tournament:2"]
    winners = next(t for t in fig["data"] if t["name"] == "group winner")
    assert sorted(n for n, _, _ in winners["customdata"]) == sorted(record["winners"]) and set(winners["x"]) == {2}
    everyone = [n for t in fig["data"] for n, _, _ in t["customdata"]]
    assert sorted(everyone) == sorted(record["candidates"])


def test_a_figure_that_cannot_be_drawn_never_stops_the_search(monkeypatch, caplog) -> None:
    def broken(*args, **kwargs):
        raise RuntimeError("plotly is broken")

    monkeypatch.setattr(dashboard, "read_history", broken)
    study = optuna.create_study(
        directions=["maximize", "minimize"], sampler=GeneticCellSampler(population_size=POPULATION, seed=0)
    )
    with caplog.at_level(logging.WARNING, logger="nas_sampler.dashboard"):
        study.optimize(_objective, n_trials=2 * POPULATION, callbacks=[DashboardFigures()])
    assert len([t for t in study.trials if t.values]) == 2 * POPULATION
    assert "figures were not updated" in caplog.text and "plotly is broken" in caplog.text


def test_flops_get_size_figures_where_the_search_computes_them() -> None:
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=GeneticCellSampler(population_size=4))
    study.set_metric_names(["convs", "flops"])
    study.optimize(_objective, n_trials=8)
    figs = build_figures(read_history(study))
    assert {k for k in figs if k.startswith(("params-", "flops-"))} == {"params-convs", "flops-convs"}
    flops = {t.number: t.values[1] for t in study.trials}
    traces = _figure(figs["flops-convs"])["data"]
    points = [(n, x) for tr in traces for (n, _), x in zip(tr["customdata"], tr["x"], strict=True)]
    assert sorted(points) == sorted(flops.items())

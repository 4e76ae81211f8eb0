"""What the dashboard's figures and notes cost a search: per generation and per trial.

A generational search in SQLite over the default CellSpace whose objective returns cheap synthetic
scores (so what is timed is the figures, not scoring), with :class:`nas_sampler.DashboardFigures` as
its callback, the way the CLI runs. Prints the seconds of each figure draw (one per generation: a read
of the study, the figures built, stored and the study note) at the first, middle and last generation,
the rest of the difference per trial (what storing the figures in the study costs the trials
that read it), the same search's time without the callback, and the JSON of the stored
figures in kB. The last line is one JSON object.

    .venv/bin/python benchmarks/dashboard_cost.py --generations 30 --population 10
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import optuna

from nas_sampler import CellSpace, DashboardFigures, GeneticCellSampler
from nas_sampler.internals import storage_of, study_id_of

SPACE = CellSpace()


def objective(trial: optuna.Trial) -> tuple[float, float, float]:
    g = SPACE.suggest(trial)
    edges = [e for _, e in g.edges()]
    trial.set_user_attr("params", 1000 * sum(e.channels for e in edges))
    return float(len(edges)), float(g.num_nodes), float(sum(e.channels for e in edges) % 17)


def search(folder: Path, name: str, trials: int, population: int, figures: DashboardFigures | None) -> float:
    study = optuna.create_study(
        directions=["minimize", "maximize", "minimize"],
        storage=f"sqlite:///{folder / (name + '.db')}",
        study_name=name,
        sampler=GeneticCellSampler(population_size=population, seed=0),
    )
    start = time.perf_counter()
    study.optimize(objective, n_trials=trials, callbacks=[figures] if figures else [])
    return time.perf_counter() - start


def per_figure(study: optuna.Study) -> dict[str, float]:
    """One draw of the finished study, timed by part: the read of the study, then each kind of figure
    built and stored (a kind with nothing to show, such as tournaments in a search without them, is
    left out), then the study note."""
    import optuna_dashboard

    from nas_sampler.dashboard import study_note
    from nas_sampler.evolution import EvolutionConfig
    from nas_sampler.figures import FIGURES
    from nas_sampler.history import read_history

    t = time.perf_counter()
    h = read_history(study)
    parts = {"read": time.perf_counter() - t}
    for kind, make in FIGURES.items():
        t = time.perf_counter()
        figures = make(h, EvolutionConfig())
        for name, fig in figures.items():
            optuna_dashboard.save_plotly_graph_object(study, fig, graph_object_id=name)
        if figures:
            parts[f"{kind} ({len(figures)})"] = time.perf_counter() - t
    t = time.perf_counter()
    optuna_dashboard.save_note(study, study_note(h, None))
    parts["note"] = time.perf_counter() - t
    return parts


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--generations", type=int, default=30)
    p.add_argument("--population", type=int, default=10)
    p.add_argument("--repeats", type=int, default=2, help="searches of each kind, alternated")
    args = p.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    trials = args.generations * args.population
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        plains, drawns = [], []
        for r in range(args.repeats):  # alternated, the fastest of each kept: the machine's noise is one-sided
            plains.append(search(folder, f"plain{r}", trials, args.population, None))
            figures = DashboardFigures()
            drawns.append(search(folder, "drawn", trials, args.population, figures) - sum(figures.seconds))
            if r < args.repeats - 1:
                (folder / "drawn.db").unlink()
        plain, drawn = min(plains), min(drawns) + sum(figures.seconds)
        study = optuna.load_study(study_name="drawn", storage=f"sqlite:///{folder / 'drawn.db'}")
        attrs = storage_of(study).get_study_system_attrs(study_id_of(study))
        stored_kb = sum(len(v) for k, v in attrs.items() if k.startswith("dashboard:plot_data:")) / 1000
        parts = per_figure(study)
    draws = figures.seconds
    per_trial_ms = 1000 * (drawn - plain - sum(draws)) / trials
    mid = len(draws) // 2
    print(f"{trials} trials, {len(draws)} figure draws (one per generation)")
    print(f"draw at generation 1: {draws[0]:.3f} s, {mid + 1}: {draws[mid]:.3f} s, {len(draws)}: {draws[-1]:.3f} s")
    print(f"mean draw {statistics.mean(draws):.3f} s; outside the draws {per_trial_ms:.1f} ms a trial")
    print(f"search without the figures {plain:.1f} s, with them {drawn:.1f} s; stored figures {stored_kb:.0f} kB")
    print("one draw at the end, by part (seconds): " + ", ".join(f"{k} {v:.3f}" for k, v in parts.items()))
    out = {
        "trials": trials,
        "draws": len(draws),
        "draw_first_s": round(draws[0], 3),
        "draw_last_s": round(draws[-1], 3),
        "draw_mean_s": round(statistics.mean(draws), 3),
        "other_ms_per_trial": round(per_trial_ms, 1),
        "search_s_without": round(plain, 1),
        "search_s_with": round(drawn, 1),
        "stored_figures_kb": round(stored_kb),
        "last_draw_by_part_s": {k: round(v, 3) for k, v in parts.items()},
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()

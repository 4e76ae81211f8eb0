"""The search's figures, as Plotly figures built from a :class:`~nas_sampler.history.SearchHistory`.

One table, :data:`FIGURES`, of small named builders, each giving its figures by name: the dashboard
stores each under its name (optuna-dashboard shows a study's Plotly figures on its page, each in a
box of :data:`HEIGHT` pixels, so each figure is one panel or two side by side) and ``nas-sampler
report`` writes each as a PNG and into one HTML page. A builder gives nothing when it has nothing to
show (no tournament ran, no generation was bred yet). Numbers are rounded to 4 significant digits and the
template is Plotly's bare one, so the figures stored in the study stay small and cheap to build.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import plotly.graph_objects as go
from optuna.study import StudyDirection
from plotly.subplots import make_subplots

from nas_sampler.evolution import EvolutionConfig
from nas_sampler.history import SearchHistory, TrialRecord, success_rates

_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#7f7f7f")
_STAT_COLOURS = {"best": "#2ca02c", "median": "#1f77b4", "worst": "#d62728"}


def _r(x: float) -> float:
    return float(f"{x:.4g}")


HEIGHT = 450  # optuna-dashboard shows each figure in a 450-pixel box, half the page wide
WIDTH = 700  # the report's PNG width


def _layout(fig: go.Figure, title: str, legend_y: float = -0.25) -> go.Figure:
    fig.update_layout(
        title={"text": title, "x": 0.01},
        template="none",
        height=HEIGHT,
        margin={"l": 60, "r": 20, "t": 60, "b": 60},
        legend={"orientation": "h", "y": legend_y, "x": 0},
    )
    fig.update_xaxes(showgrid=True, gridcolor="#e8e8e8", zeroline=False)
    fig.update_yaxes(showgrid=True, gridcolor="#e8e8e8", zeroline=False)
    return fig


def _best_median_worst(values: Sequence[float], direction: StudyDirection) -> tuple[float, float, float]:
    lo, med, hi = float(np.min(values)), float(np.median(values)), float(np.max(values))
    return (hi, med, lo) if direction == StudyDirection.MAXIMIZE else (lo, med, hi)


def _slug(name: str) -> str:
    """A metric name as part of an HTML id (what optuna-dashboard allows in a figure's id)."""
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in name)


def scores_by_generation(h: SearchHistory, config: EvolutionConfig) -> dict[str, go.Figure]:
    """How the population moves: per score, its best, median and worst among each generation's trials."""
    gens = h.generations
    if not gens:
        return {}
    out = {}
    for i, (name, direction) in enumerate(zip(h.metric_names, h.directions, strict=True)):
        stats = [_best_median_worst([t.values[i] for t in h.of_generation(g)], direction) for g in gens]
        fig = go.Figure()
        for k, label in enumerate(("best", "median", "worst")):
            fig.add_trace(
                go.Scatter(
                    x=gens,
                    y=[_r(s[k]) for s in stats],
                    mode="lines+markers",
                    name=label,
                    line={"color": _STAT_COLOURS[label]},
                    hovertemplate=f"generation %{{x}}<br>{label} {name} %{{y}}<extra></extra>",
                )
            )
        better = "higher" if direction == StudyDirection.MAXIMIZE else "lower"
        fig.update_xaxes(title_text="generation", dtick=1 if len(gens) <= 20 else None)
        fig.update_yaxes(title_text=f"{name} ({better} is better)")
        out[f"scores-{_slug(name)}"] = _layout(fig, f"{name} by generation", legend_y=-0.2)
    return out


def adaptive_operators(h: SearchHistory, config: EvolutionConfig) -> dict[str, go.Figure]:
    """Which mutations, crossovers and operations the search learned to prefer: per table, the
    probability each generation was bred with, and the share of each kind's children that survived."""
    if not h.states:
        return {}
    gens = list(h.states)
    probs = [h.probabilities(h.states[g], config) for g in gens]
    rates = [success_rates(h.states[g]) for g in gens]
    out = {}
    for table in ("mutation", "crossover", "operation"):
        kinds = list(probs[0].get(table, {}))
        if not kinds:
            continue
        fig = make_subplots(rows=1, cols=2, subplot_titles=("probability", "survival rate"), horizontal_spacing=0.1)
        for i, kind in enumerate(kinds):
            colour = _COLOURS[i % len(_COLOURS)]
            counts = [r[table].get(kind, (0, 0)) for r in rates]
            fig.add_trace(
                go.Scatter(
                    x=gens,
                    y=[_r(p[table][kind]) for p in probs],
                    mode="lines+markers",
                    name=kind,
                    legendgroup=kind,
                    line={"color": colour},
                    hovertemplate=f"generation %{{x}}<br>{kind}: p=%{{y}}<extra></extra>",
                ),
                row=1,
                col=1,
            )
            fig.add_trace(
                go.Scatter(
                    x=gens,
                    y=[_r(s / a) if a else None for a, s in counts],
                    customdata=[[s, a] for a, s in counts],
                    mode="lines+markers",
                    name=kind,
                    legendgroup=kind,
                    showlegend=False,
                    line={"color": colour, "dash": "dot"},
                    hovertemplate=f"generation %{{x}}<br>{kind}: %{{customdata[0]}} of %{{customdata[1]}} "
                    "children survived<extra></extra>",
                ),
                row=1,
                col=2,
            )
        fig.update_yaxes(rangemode="tozero")
        fig.update_xaxes(title_text="generation", dtick=1 if len(gens) <= 20 else None)
        out[f"operators-{table}"] = _layout(fig, f"Adaptive {table} choice by generation", legend_y=-0.3)
    return out


def tournaments(h: SearchHistory, config: EvolutionConfig) -> dict[str, go.Figure]:
    """Every DARTS tournament: each candidate's share of its group (softmax weight times group size,
    1 = an even share) at its generation, the group winners starred."""
    if not h.tournaments:
        return {}
    fig = go.Figure()
    for won in (False, True):
        xs, ys, info = [], [], []
        for g, rec in h.tournaments.items():
            winners = {int(n) for n in rec.get("winners", ())}
            for k, group in enumerate(rec.get("groups", ())):
                for n in map(int, group):
                    if (n in winners) != won:
                        continue
                    xs.append(g)
                    ys.append(_r(float(rec["weight"][str(n)]) * len(group)))
                    info.append([n, k + 1, _r(float(rec.get("alpha", {}).get(str(n), float("nan"))))])
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=ys,
                customdata=info,
                mode="markers",
                name="group winner" if won else "other candidate",
                marker={"symbol": "star", "size": 14, "color": "#ff7f0e"} if won else {"size": 7, "color": "#9aa5b1"},
                hovertemplate="generation %{x}: trial %{customdata[0]} (group %{customdata[1]})<br>share %{y}, "
                "alpha %{customdata[2]}<extra></extra>",
            )
        )
    fig.add_hline(y=1.0, line={"color": "#888", "dash": "dash"})
    fig.update_xaxes(title_text="generation", dtick=1 if len(h.tournaments) <= 20 else None)
    fig.update_yaxes(title_text="share of its group (1 = even)")
    return {"tournaments": _layout(fig, "DARTS tournaments: alphas and winners", legend_y=-0.2)}


def params_against_scores(h: SearchHistory, config: EvolutionConfig) -> dict[str, go.Figure]:
    """Size against each score over all trials, the study's Pareto front marked: the parameter count,
    and the FLOPs where a search computes them (as its ``flops`` objective)."""
    names = h.metric_names
    # (key, axis title, figure title's first word, the size of a trial)
    sizes: list[tuple[str, str, str, Callable[[TrialRecord], float | None]]] = [
        ("params", "parameters", "Parameters", lambda t: t.params)
    ]
    if "flops" in names:
        k = names.index("flops")
        sizes.append(("flops", "FLOPs", "FLOPs", lambda t: t.values[k] if t.values else None))
    on_front = {t.number for t in h.front()}
    out = {}
    for key, label, word, size_of in sizes:
        sized = [(t, size_of(t)) for t in h.completed if size_of(t) is not None]
        for i, name in enumerate(names):
            if not sized or name in ("params", "flops"):
                continue
            fig = go.Figure()
            for front in (False, True):
                ts = [(t, x) for t, x in sized if (t.number in on_front) == front]
                fig.add_trace(
                    go.Scatter(
                        x=[x for _, x in ts],
                        y=[_r(t.values[i]) for t, _ in ts],
                        customdata=[[t.number, t.generation] for t, _ in ts],
                        mode="markers",
                        name="Pareto front" if front else "other trials",
                        marker={"color": "#d62728" if front else "#9aa5b1", "size": 9 if front else 6},
                        hovertemplate="trial %{customdata[0]} (generation %{customdata[1]})<br>"
                        f"%{{x}} {label}<br>{name} %{{y}}<extra></extra>",
                    )
                )
            fig.update_xaxes(title_text=label, type="log")
            fig.update_yaxes(title_text=name)
            out[f"{key}-{_slug(name)}"] = _layout(fig, f"{word} against {name}", legend_y=-0.2)
    return out


Builder = Callable[[SearchHistory, EvolutionConfig], "dict[str, go.Figure]"]
FIGURES: dict[str, Builder] = {
    "scores": scores_by_generation,
    "operators": adaptive_operators,
    "tournaments": tournaments,
    "params": params_against_scores,
}
"""Every kind of figure; each builder gives its figures by name (``scores-ntk_cond``, ...), the id
each is stored under in the dashboard and its report file's stem."""


def build_figures(h: SearchHistory, config: EvolutionConfig | None = None) -> dict[str, go.Figure]:
    """Every figure that has something to show, by name."""
    cfg = config or EvolutionConfig()
    return {name: fig for make in FIGURES.values() for name, fig in make(h, cfg).items()}

"""The search in optuna-dashboard: its figures and the study's note.

:class:`DashboardFigures` is an Optuna callback (``study.optimize(..., callbacks=[DashboardFigures()])``;
the CLI always adds it). When a generation is done it stores every figure of
:data:`nas_sampler.figures.FIGURES` (``optuna_dashboard.save_plotly_graph_object``) and the study's
note (settings, data, seed, how to resume or join). Its cost is bounded: one read of the study and a
few writes per generation, nothing per trial (``docs/results.md`` gives the figures). Each trial's
page shows its generation, slot and parents through the ``lineage`` user attribute the sampler writes.
"""

from __future__ import annotations

import json
import logging
import shlex
import time
from typing import Any

import optuna
import sqlalchemy
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial

from nas_sampler import schema
from nas_sampler.evolution import EvolutionConfig
from nas_sampler.history import SAMPLER, SearchHistory, read_history
from nas_sampler.internals import backend_of, storage_of, study_id_of

_log = logging.getLogger(__name__)
NOTE_HEADER = "# nas-sampler search "  # the study notes this module writes, and only those, it rewrites


def storage_url(study: optuna.Study) -> str | None:
    """The study's database URL with any password hidden, or None for an in-memory storage."""
    url = getattr(backend_of(storage_of(study)), "url", None)
    if url is None:
        return None
    return sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)


def study_note(h: SearchHistory, url: str | None) -> str:
    """The study's page: what is searched, with what, and how to go on."""
    cfg = h.sampler_config
    done, gens = h.completed, h.generations
    objectives = ", ".join(
        f"{n} ({'max' if d == StudyDirection.MAXIMIZE else 'min'})"
        for n, d in zip(h.metric_names, h.directions, strict=True)
    )
    lines = [
        f"{NOTE_HEADER}`{h.study_name}`",
        f"- **{len(done)}** trials completed over **{len(gens)}** generations"
        + (f", {len(h.front())} on the Pareto front" if done else ""),
        f"- objectives: {objectives}",
    ]
    if cfg:
        lines.append(
            f"- sampler: seed {cfg.get('seed')}, population {cfg.get('population_size')}, "
            f"{cfg.get('offspring_per_generation')} children per generation, {cfg.get('mode', 'generational')} mode"
        )
    for label, key in (("space", schema.SPACE), ("data", schema.DATA)):
        if key in h.user_attrs:
            lines.append(f"- {label}: `{json.dumps(h.user_attrs[key], sort_keys=True)}`")
    settings = h.user_attrs.get(schema.CONFIG)
    if h.tournaments:
        lines.append(f"- DARTS tournaments at generations {', '.join(map(str, h.tournaments))}")
    where = f"--storage {shlex.quote(url)} --study {shlex.quote(h.study_name)}" if url else None
    lines.append("\n## Resume or join")
    if where is None:
        lines.append("An in-memory study: it ends with its process.")
    else:
        if settings:
            lines.append(
                f"`nas-sampler worker {where}` resumes the search, or joins it as one more worker: it reads "
                "the settings below from the study.\n"
            )
        lines.append(
            f"From Python: `optuna.load_study(study_name={h.study_name!r}, storage={url!r}, "
            "sampler=GeneticCellSampler())`, then `study.optimize(objective, ...)`; the study records the "
            "seed and the space, so every worker and every resumed run goes on with the same search."
        )
        lines.append(f"\nFront: `nas-sampler front {where}` · figures as files: `nas-sampler report {where}`")
    if settings:
        lines.append(f"\n## Settings\n```json\n{json.dumps(settings, indent=1, sort_keys=True)}\n```")
    return "\n".join(line for line in lines if line)


class DashboardFigures:
    """Keeps a study's figures and note in optuna-dashboard up to date (an Optuna callback).

    Args:
        sampler: the prefix of the sampler's keys in the study (:mod:`nas_sampler.schema`).
    """

    def __init__(self, sampler: str = SAMPLER) -> None:
        self.sampler = sampler
        self._drawn_upto = -1  # the newest generation drawn complete
        self.seconds: list[float] = []  # each draw's cost, for the benchmark
        self._sizes: dict[str, Any] = {}

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        """Never stops the search: a figure that cannot be drawn is logged and skipped."""
        try:
            self._update(study, trial)
        except Exception as e:  # a view must not stop or bend the search it shows
            _log.warning("the dashboard's figures were not updated after trial %d: %s", trial.number, e)

    def _update(self, study: optuna.Study, trial: FrozenTrial) -> None:
        stored = trial.system_attrs.get(schema.slot_key(self.sampler))
        if stored is None:
            return
        tag = schema.SlotTag.from_json(stored)
        # a generation is drawn when its last slot finishes or, if that trial ran elsewhere (another
        # worker, a retry), when the next generation's first trial here finishes: it was bred from it
        g = tag.generation
        if tag.slot == self._slots(study, g) - 1:
            self.draw(study)
            self._drawn_upto = max(self._drawn_upto, g)
        elif g - 1 > self._drawn_upto:
            self.draw(study)
            self._drawn_upto = g - 1

    def _slots(self, study: optuna.Study, generation: int) -> int:
        if not self._sizes:  # written once, when the search starts
            self._sizes = (
                storage_of(study)
                .get_study_system_attrs(study_id_of(study))
                .get(schema.sampler_config_key(self.sampler), {})
            )
        key = "population_size" if generation == 0 else "offspring_per_generation"
        return int(self._sizes.get(key, 0))

    def draw(self, study: optuna.Study) -> dict[str, Any]:
        """Store every figure and the study note now; returns the figures drawn."""
        import optuna_dashboard

        from nas_sampler.figures import build_figures  # plotly: imported when the first figure is drawn

        start = time.perf_counter()
        h = read_history(study, self.sampler)
        config = getattr(study.sampler, "evolution_config", None) or EvolutionConfig()
        figures = build_figures(h, config)
        for name, fig in figures.items():
            optuna_dashboard.save_plotly_graph_object(study, fig, graph_object_id=name)
        current = optuna_dashboard.get_note(study)
        if not current or current.startswith(NOTE_HEADER):  # a note a person wrote is left alone
            optuna_dashboard.save_note(study, study_note(h, storage_url(study)))
        self.seconds.append(time.perf_counter() - start)
        return figures

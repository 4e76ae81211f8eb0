"""``nas-sampler report``: the dashboard's figures as PNG files and one self-contained HTML page.

For papers and for readers without the dashboard: the same :data:`~nas_sampler.figures.FIGURES`
built from the same :func:`~nas_sampler.history.read_history`, from any storage. PNG files are
rendered by kaleido, which drives a local Chrome or Chromium; the HTML page carries plotly.js
itself, so it opens offline.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path

import optuna
from tqdm.auto import tqdm

from nas_sampler.errors import ConfigError, NASError
from nas_sampler.evolution import EvolutionConfig
from nas_sampler.figures import HEIGHT, WIDTH, build_figures
from nas_sampler.history import read_history

FORMATS = ("png", "html")
_BAR_FROM = 500  # a progress bar over the trials read from this many on


def _pngs(figures: dict, out: Path) -> list[Path]:
    import kaleido
    from choreographer.errors import ChromeNotFoundError

    paths = [out / f"{name}.png" for name in figures]
    jobs = [
        {
            "fig": fig,
            "path": str(path),
            "opts": {"format": "png", "width": WIDTH, "height": HEIGHT, "scale": 2},
        }
        for fig, path in zip(figures.values(), paths, strict=True)
    ]
    try:
        errors = kaleido.write_fig_from_object_sync(jobs)  # a figure that fails is returned, not raised
    except ChromeNotFoundError as e:
        raise NASError(
            "PNG files are drawn by kaleido, which needs Chrome or Chromium and found neither "
            f"({e}): install one (apt-get install chromium, or run plotly_get_chrome), or write only "
            "the HTML page with --format html"
        ) from e
    if errors:
        raise NASError(f"kaleido could not draw every figure as PNG: {errors[0]}; --format html still works")
    return paths


def _page(study_name: str, figures: dict) -> str:
    parts = [
        fig.to_html(full_html=False, include_plotlyjs=i == 0, default_width=f"{WIDTH}px")
        for i, fig in enumerate(figures.values())
    ]
    title = html.escape(f"nas-sampler report: {study_name}")
    body = "\n".join(f"<section>{p}</section>" for p in parts)
    return (
        f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{title}</title></head>'
        f'<body style="font-family:sans-serif;margin:1em"><h1>{title}</h1>\n'
        f'<div style="display:flex;flex-wrap:wrap;gap:1em">{body}</div>\n</body></html>\n'
    )


def write_report(
    study: optuna.Study,
    out_dir: str | Path,
    formats: Sequence[str] = FORMATS,
    config: EvolutionConfig | None = None,
    progress: bool = True,
) -> list[Path]:
    """Write ``study``'s figures into ``out_dir`` (``<figure>.png`` and ``report.html``); returns the
    files written."""
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise ConfigError(f"format {','.join(unknown) or '(none)'} is invalid: choose from {', '.join(FORMATS)}")
    trials = study.get_trials(deepcopy=False)
    if progress and len(trials) >= _BAR_FROM:
        trials = tqdm(trials, desc="reading trials", unit="trial")
    figures = build_figures(read_history(study, trials=trials), config)
    if not figures:
        raise NASError(f"study {study.study_name!r} has no completed trial to draw: run the search first")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = _pngs(figures, out) if "png" in formats else []
    if "html" in formats:
        page = out / "report.html"
        page.write_text(_page(study.study_name, figures), encoding="utf-8")
        written.append(page)
    return written

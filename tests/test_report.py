"""`nas-sampler report`: a study's figures as PNG files and one HTML page that opens offline."""

from __future__ import annotations

import os
import re
import shutil
import struct

import optuna
import pytest

from nas_sampler import GeneticCellSampler, NB201Space
from nas_sampler.cli import main
from nas_sampler.figures import HEIGHT, WIDTH

optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.fixture(scope="module")
def storage(tmp_path_factory) -> str:
    space = NB201Space()
    url = f"sqlite:///{tmp_path_factory.mktemp('report') / 'r.db'}"
    study = optuna.create_study(
        directions=["maximize", "minimize"], storage=url, study_name="r",
        sampler=GeneticCellSampler(population_size=4, seed=0),
    )  # fmt: skip

    def objective(trial: optuna.Trial) -> tuple[float, float]:
        text = str(space.suggest(trial))
        trial.set_user_attr("params", 100 * len(text))
        return float(text.count("conv")), float(text.count("skip"))

    study.optimize(objective, n_trials=12)
    optuna.create_study(storage=url, study_name="empty")
    return url


def _needs_chromium() -> None:
    if shutil.which("chromium") is None and shutil.which("google-chrome") is None:
        msg = "Chromium is not installed (apt-get install chromium): kaleido draws PNG files with it"
        if os.environ.get("NAS_SAMPLER_REQUIRE_CHROMIUM"):
            pytest.fail(msg + " (NAS_SAMPLER_REQUIRE_CHROMIUM is set, so this fails instead of skipping)")
        pytest.skip(msg)


def test_html_page_holds_every_figure_and_plotly_itself(storage, tmp_path, capsys) -> None:
    out = tmp_path / "rep"
    assert main(["report", "--storage", storage, "--study", "r", "--out", str(out), "--format", "html"]) == 0
    assert capsys.readouterr().out.split() == [str(out / "report.html")]
    page = (out / "report.html").read_text()
    for title in ("value0 by generation", "value1 by generation", "Adaptive mutation choice by generation",
                  "Parameters against value0"):  # fmt: skip
        assert title in page
    assert not re.search(r"<script[^>]+src=", page), "the page loads no script from elsewhere"
    assert page.count("</div></section>") == 7  # 2 scores, 3 operator tables, 2 sizes (plotly.js may say newPlot)
    assert len(page) > 1_000_000  # plotly.js is inside


def test_png_files_one_per_figure(storage, tmp_path, capsys) -> None:
    _needs_chromium()
    out = tmp_path / "rep"
    assert main(["report", "--storage", storage, "--study", "r", "--out", str(out), "--format", "png"]) == 0
    written = capsys.readouterr().out.split()
    assert sorted(os.path.basename(p) for p in written) == sorted(
        f"{n}.png" for n in ("scores-value0", "scores-value1", "operators-mutation", "operators-crossover",
                             "operators-operation", "params-value0", "params-value1")
    )  # fmt: skip
    for path in written:
        head = open(path, "rb").read(24)
        assert head[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", head[16:24]) == (2 * WIDTH, 2 * HEIGHT)


@pytest.mark.parametrize(
    ("argv", "code", "words"),
    [
        (["--study", "r", "--format", "pdf"], 2, "format pdf is invalid: choose from png, html"),
        (["--study", "empty"], 1, "study 'empty' has no completed trial to draw: run the search first"),
        (["--study", "nope"], 1, "no study named 'nope'"),
    ],
)
def test_bad_requests_get_one_line(storage, tmp_path, capsys, argv, code, words) -> None:
    assert main(["report", "--storage", storage, "--out", str(tmp_path / "x"), *argv]) == code
    err = capsys.readouterr().err.strip()
    assert words in err and len(err.splitlines()) == 1

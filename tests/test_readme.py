"""The README's commands and code work as written (CI runs its set-up and test blocks verbatim)."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()
BIN = Path(sys.executable).parent


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```", README, re.M | re.S)


def _ast(code: str) -> str:
    tree = ast.parse(code)
    body = [n for n in tree.body if not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant))]
    return ast.dump(ast.Module(body=body, type_ignores=[]))


def test_readme_opens_with_the_two_setup_commands() -> None:
    setup, tests = _blocks("bash")[:2]
    assert "pip install torch==2.14.1 torchvision==0.29.1" in setup and "nas-sampler search" in setup
    assert tests.strip() == ".venv/bin/python -m pytest -q"
    ci = (REPO / ".ci" / "run").read_text()
    assert "readme_block 1" in ci and "readme_block 2" in ci


def test_quickstart_block_is_the_quickstart_example() -> None:
    quickstart = next(b for b in _blocks("python") if "GeneticCellSampler" in b)
    assert _ast(quickstart) == _ast((REPO / "examples" / "quickstart.py").read_text())


def test_front_and_dashboard_commands(tmp_path) -> None:
    run = subprocess.run(
        [str(BIN / "nas-sampler"), "search", "--population", "4", "--trials", "4", "--batch-size", "8"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    lines = [ln.strip() for ln in _blocks("bash")[2].splitlines() if ln.strip()]
    assert [ln.split()[1] for ln in lines] == ["front", "dashboard"]
    front = subprocess.run(
        [str(BIN / Path(lines[0].split()[0]).name), *lines[0].split()[1:]], cwd=tmp_path, capture_output=True,
        text=True, timeout=120,
    )  # fmt: skip
    assert front.returncode == 0 and "Pareto front" in front.stdout, front.stderr
    dash = subprocess.Popen(
        [str(BIN / Path(lines[1].split()[0]).name), *lines[1].split()[1:]], cwd=tmp_path,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.time() + 60
        while True:
            try:
                with urllib.request.urlopen("http://127.0.0.1:8080/api/studies", timeout=5) as r:
                    assert b'"nas"' in r.read()
                break
            except OSError:
                assert dash.poll() is None and time.time() < deadline, "dashboard did not start on port 8080"
                time.sleep(0.5)
    finally:
        dash.terminate()
        dash.wait(timeout=20)

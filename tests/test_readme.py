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


def test_calls_shown_in_the_readme_use_real_parameters_and_their_real_defaults() -> None:
    """Every ``Name(key=value)`` the README shows for a class of the package names a real parameter;
    in a call shown as the signature (three or more keywords) a literal value is that parameter's
    default (a README once showed a default that was not)."""
    import inspect

    import nas_sampler

    checked = 0
    for text in re.findall(r"`([A-Z]\w+\((?:[^`()]|\([^`()]*\))*\))`", README):
        for call in ast.walk(ast.parse(" ".join(text.split()), mode="eval")):
            obj = getattr(nas_sampler, getattr(getattr(call, "func", None), "id", ""), None)
            if not isinstance(call, ast.Call) or obj is None:
                continue
            params = inspect.signature(obj).parameters
            for kw in call.keywords:
                assert kw.arg in params, f"README: {text}: {obj.__name__} has no parameter {kw.arg!r}"
                if len(call.keywords) < 3 or not _is_literal(kw.value) or ast.literal_eval(kw.value) is Ellipsis:
                    continue
                shown, default = ast.literal_eval(kw.value), params[kw.arg].default
                norm = lambda v: tuple(v) if isinstance(v, list) else v  # noqa: E731
                assert norm(shown) == norm(default), f"README: {text}: {kw.arg} defaults to {default!r}, not {shown!r}"
            checked += 1
    assert checked >= 4


def _is_literal(node: ast.AST) -> bool:
    try:
        ast.literal_eval(node)
    except ValueError:
        return False
    return True


def test_every_python_block_of_the_readme_runs(tmp_path) -> None:
    """Each block as a script in a fresh process (the quickstart is examples/quickstart.py, which
    test_examples runs)."""
    examples = {_ast(f.read_text()) for f in (REPO / "examples").glob("*.py")}
    blocks = [b for b in _blocks("python") if _ast(b) not in examples]
    assert blocks and len(_blocks("python")) > len(blocks)
    for code in blocks:
        run = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, f"README block failed:\n{code}\n{run.stderr[-2000:]}"


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

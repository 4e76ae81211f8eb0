"""The README's dashboard picture: a real search, optuna-dashboard serving it, headless Chromium.

Runs ``nas-sampler search --preset smoke --generations G`` in a temporary folder, starts
``nas-sampler dashboard`` on it, screenshots the study page with Debian's ``chromium`` and keeps the
part that holds the search's own figures (below optuna-dashboard's built-in plots).

    .venv/bin/python benchmarks/dashboard_screenshot.py --out docs/dashboard_figures.png
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from PIL import Image

WIDTH, HEIGHT = 1400, 3400


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="docs/dashboard_figures.png")
    p.add_argument("--generations", type=int, default=6)
    p.add_argument("--top", type=int, default=1740, help="first pixel row kept (where the figures start)")
    p.add_argument("--rows", type=int, default=1000, help="pixel rows kept")
    args = p.parse_args()
    if shutil.which("chromium") is None:
        sys.exit("chromium not found: apt-get install chromium")
    cli = [sys.executable, "-m", "nas_sampler.cli"]
    with tempfile.TemporaryDirectory() as tmp:
        url = "sqlite:///nas.db"
        search = [*cli, "search", "--preset", "smoke", "--storage", url, "--generations", str(args.generations)]
        subprocess.run(search, cwd=tmp, check=True, stderr=subprocess.DEVNULL)
        port = _free_port()
        server = subprocess.Popen([*cli, "dashboard", "--storage", url, "--port", str(port)], cwd=tmp)
        base = f"http://127.0.0.1:{port}"
        try:
            for _ in range(120):
                try:
                    with urllib.request.urlopen(f"{base}/api/studies", timeout=5) as r:
                        study_id = json.loads(r.read())["study_summaries"][0]["study_id"]
                    break
                except OSError:
                    time.sleep(0.5)
            shot = Path(tmp) / "page.png"
            subprocess.run(
                ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--hide-scrollbars",
                 f"--user-data-dir={Path(tmp) / 'chrome'}", f"--window-size={WIDTH},{HEIGHT}",
                 "--virtual-time-budget=20000", f"--screenshot={shot}", f"{base}/dashboard/studies/{study_id}"],
                check=True, capture_output=True, timeout=180,
            )  # fmt: skip
            Image.open(shot).crop((60, args.top, WIDTH, args.top + args.rows)).save(args.out, optimize=True)
        finally:
            server.terminate()
            server.wait(timeout=20)
    print(args.out)


if __name__ == "__main__":
    main()

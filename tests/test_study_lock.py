"""The study's lock: one holder at a time across threads and processes, re-entrant within a thread."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import optuna

from nas_sampler.internals import storage_of, study_id_of
from nas_sampler.study_lock import StudyLock

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _lock(url: str) -> tuple[optuna.Study, StudyLock]:
    study = optuna.create_study(storage=url, study_name="s", load_if_exists=True)
    return study, StudyLock(storage_of(study), study_id_of(study))


def test_the_holder_may_take_it_again_and_other_threads_wait(tmp_path: Path) -> None:
    _, lock = _lock(f"sqlite:///{tmp_path / 'l.db'}")
    order: list[str] = []

    def take() -> None:
        with lock():
            order.append("other")

    with lock():
        with lock():  # the sampler heals stale trials while its worker holds the lock: no deadlock
            other = threading.Thread(target=take)
            other.start()
            other.join(timeout=0.3)
            order.append("holder")
    other.join(timeout=10)
    assert order == ["holder", "other"]  # the other thread got it only once the holder let go


def test_another_process_waits_for_the_holder(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'l.db'}"
    _, lock = _lock(url)
    script = (
        "import sys, time; sys.path.insert(0, '.')\n"
        f"from tests.test_study_lock import _lock\n"
        f"_, lock = _lock({url!r})\n"
        "with lock():\n"
        "    print(time.time())\n"
    )
    with lock():
        child = subprocess.Popen(
            [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parent.parent
        )
        time.sleep(2.0)  # the child has started and waits on the lock meanwhile
        released = time.time()
    out, _ = child.communicate(timeout=120)
    assert child.returncode == 0 and float(out.strip()) >= released

"""One lock per study, held by every worker process of it: a PostgreSQL advisory lock, a file lock
beside a SQLite database, else a lock of this process.

Workers take trials under it (so together they take exactly the search's slots) and heal dead
workers' trials under it (so a killed trial is retried once, however many workers find it). It is
re-entrant per thread: the sampler may heal stale trials while its worker holds the lock.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy
from optuna.storages import BaseStorage

from nas_sampler.internals import backend_of


@contextlib.contextmanager
def file_lock(db: Path) -> Iterator[None]:
    """An exclusive lock on ``<database>.nas-lock``, shared by every process on this machine."""
    import fcntl

    with open(str(db) + ".nas-lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


_process_locks: dict[tuple[int, int], threading.Lock] = {}
_process_locks_guard = threading.Lock()
_held = threading.local()  # the keys this thread holds


class StudyLock:
    """The study's lock (see the module); ``with lock():`` holds it."""

    def __init__(self, storage: BaseStorage, study_id: int) -> None:
        backend = backend_of(storage)
        self._engine = getattr(backend, "engine", None)
        self._dialect = self._engine.dialect.name if self._engine is not None else ""
        digest = hashlib.sha256(f"nas_sampler:{study_id}".encode()).digest()[:8]
        self._key = int.from_bytes(digest, "big") - 2**63  # PostgreSQL's bigint is signed
        self._path: str | None = None
        if self._dialect == "sqlite":
            db = self._engine.url.database
            if db and db != ":memory:":
                self._path = db
        self._local = (id(backend), study_id)
        with _process_locks_guard:  # one lock per study in this process: its threads exclude each other
            self._thread_lock = _process_locks.setdefault(self._local, threading.Lock())

    @contextlib.contextmanager
    def __call__(self) -> Iterator[None]:
        held: set[tuple[int, int]] = _held.__dict__.setdefault("keys", set())
        if self._local in held:  # this thread holds it already
            yield
            return
        with self._thread_lock:
            held.add(self._local)
            try:
                with self._across_processes():
                    yield
            finally:
                held.discard(self._local)

    @contextlib.contextmanager
    def _across_processes(self) -> Iterator[None]:
        if self._dialect == "postgresql":
            with self._engine.connect() as conn:
                conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(:k)"), {"k": self._key})
                try:
                    yield
                finally:
                    conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": self._key})
                    conn.commit()
        elif self._path is not None:
            with file_lock(Path(self._path)):
                yield
        else:
            yield

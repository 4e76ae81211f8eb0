"""A fresh PostgreSQL database for a benchmark run, dropped afterwards."""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Callable

ADMIN_URL = os.environ.get("NAS_SAMPLER_PG_ADMIN", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")


def fresh_database() -> tuple[str, Callable[[], None]]:
    """A new database on the local server (``$NAS_SAMPLER_PG_ADMIN``), and the function that drops it."""
    import sqlalchemy as sa

    admin = sa.create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"nas_sampler_bench_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except Exception as e:  # noqa: BLE001 - any failure means no usable server
        sys.exit(f"cannot create a database on {ADMIN_URL} ({str(e).splitlines()[0]}); pass --storage URL")

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(
                sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :d"), {"d": name}
            )
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()

    return ADMIN_URL.rsplit("/", 1)[0] + "/" + name, drop

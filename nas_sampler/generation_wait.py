"""Waiting at a generation boundary for the previous generation's running trials.

Only that generation is waited for: a trial whose worker died without a heartbeat stays RUNNING for
ever, and it must not hold up every later generation too. With a heartbeat, stale trials are failed
(and retried) meanwhile. The poll asks only for the running trials' states where the storage allows,
as often as keeps its delay within a tenth of the wait so far, so the next generation starts soon
after the last trial ends.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

import optuna
from optuna.trial import FrozenTrial

from nas_sampler import heartbeat
from nas_sampler.internals import running, storage_of

_log = logging.getLogger("nas_sampler.sampler")


def wait_for_generation(
    study: optuna.Study,
    generation: int,
    read: Callable[[], list[FrozenTrial]],
    running_members: Callable[[Sequence[FrozenTrial]], list[int]],
    timeout: float,
) -> list[FrozenTrial]:
    """All trials (``read()``), once ``running_members(trials)`` is empty or ``timeout`` seconds passed."""
    started = time.monotonic()
    deadline = started + timeout
    delay = 0.01
    beats = heartbeat.enabled(storage_of(study))
    next_stale_check = 0.0
    told = False
    while True:
        trials = read()
        waiting_on = running_members(trials)
        if not waiting_on:
            return trials
        while waiting_on:  # then read everything again: a retry may have joined the generation
            if beats and time.monotonic() >= next_stale_check:
                heartbeat.fail_stale(study)
                next_stale_check = time.monotonic() + 1.0
            elif not beats and not told and delay >= 0.1:
                _log.info(
                    "waiting up to %.0f s for running trials %s of generation %d before choosing the next "
                    "parents; without a storage heartbeat a trial whose worker died stays RUNNING until then "
                    "(use RDBStorage(heartbeat_interval=...) to have such trials failed and retried)",
                    timeout,
                    waiting_on,
                    generation,
                )
                told = True
            if time.monotonic() >= deadline:
                _log.warning(
                    "generation %d still has running trials %s after %.0f s; choosing the next parents "
                    "without them (raise generation_timeout to wait longer)",
                    generation,
                    waiting_on,
                    timeout,
                )
                return read()
            time.sleep(delay)
            still = running(study, waiting_on)
            if still is None:  # no cheap poll on this storage
                delay = min(delay * 1.5, 0.5)
                break
            # a cheap poll: its latency is kept to a tenth of the time waited so far
            delay = min(0.5, max(0.01, 0.1 * (time.monotonic() - started)))
            waiting_on = sorted(still)

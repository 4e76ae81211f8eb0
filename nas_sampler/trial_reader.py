"""Reading a study's trials incrementally: each finished trial once, then only those unfinished when
last read and those created since.

Where the storage allows (:func:`nas_sampler.internals.read_trials`), a generation boundary then reads
one generation, not every running trial again with all its parameters through Optuna's ORM; elsewhere
Optuna's own read answers.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import optuna
from optuna.trial import FrozenTrial

from nas_sampler.internals import read_trials


@dataclass
class TrialReader:
    lock: threading.RLock = field(default_factory=threading.RLock)
    finished: dict[int, FrozenTrial] = field(default_factory=dict)  # finished trials never change
    unfinished: set[int] = field(default_factory=set)  # numbers below read_upto not finished when read
    read_upto: int = 0

    def read(self, study: optuna.Study) -> list[FrozenTrial]:
        """All of the study's trials, fresh, by number."""
        with self.lock:
            start, again = self.read_upto, sorted(self.unfinished)
        fresh = read_trials(study, start, again)
        if fresh is None:
            return study.get_trials(deepcopy=False)
        with self.lock:
            new = {t.number: t for t in fresh}
            for t in fresh:
                if t.state.is_finished():
                    self.finished[t.number] = t
                    self.unfinished.discard(t.number)
                else:
                    self.unfinished.add(t.number)
            upto = max(start, max(new, default=-1) + 1)
            self.read_upto = max(self.read_upto, upto)
            trials = [self.finished[n] if n in self.finished else new.get(n) for n in range(upto)]
        if any(t is None for t in trials):  # a number missing from the storage: let Optuna's read decide
            return study.get_trials(deepcopy=False)
        return trials  # type: ignore[return-value]

"""What one process knows about one study it samples for: the slot ledger, the trial reader, each
generation's parents and children, and the genotypes already proposed. All of it can be rebuilt
from the study, so a process that starts late (a resumed run, one more worker) knows the same.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from optuna.trial import FrozenTrial

from nas_sampler import schema
from nas_sampler.errors import GenotypeError
from nas_sampler.evolution import AdaptiveState
from nas_sampler.genotype import Genotype
from nas_sampler.schema import ChildRecord
from nas_sampler.slots import Slot, SlotLedger
from nas_sampler.space import SearchSpace
from nas_sampler.trial_reader import TrialReader


@dataclass
class Generation:
    parents: list[Genotype]
    parent_numbers: list[int]  # as chosen (best first)
    state: AdaptiveState
    seen: Seen
    children: list[tuple[Genotype, ChildRecord]] = field(default_factory=list)
    parent_trials: list[int] = field(default_factory=list)  # the trial number of each of ``parents``

    def bred(self, record: ChildRecord) -> ChildRecord:
        """``record`` with its parents' positions in ``parents`` turned into their trial numbers."""
        return replace(record, parents=tuple(self.parent_trials[i] for i in record.parents))


@dataclass
class StudyContext:
    """What one process knows about one study; all of it can be rebuilt from the study."""

    seed: int
    space: SearchSpace
    space_recorded: bool
    ledger: SlotLedger
    lock: threading.RLock = field(default_factory=threading.RLock)  # re-entered: _index reads through _trials
    reader: TrialReader = field(init=False)
    gens: dict[int, Generation] = field(default_factory=dict)
    genotypes: dict[int, str] = field(default_factory=dict)  # finished trial number -> genotype string
    known: Counter[str] = field(default_factory=Counter)  # genotypes of generations < known_gen
    known_gen: int = 0
    pending: dict[int, str | None] = field(default_factory=dict)  # counted while unfinished: recheck later
    pool: list[int] = field(default_factory=list)  # async mode: the current parents' trial numbers
    pooled: set[int] = field(default_factory=set)  # async mode: completed trials already offered to the pool

    _names: frozenset[str] = field(default=frozenset(), init=False, repr=False)  # see _param_names
    _names_of: SearchSpace | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.reader = TrialReader(self.lock)

    def forget_genotypes(self) -> None:
        """The space changed (the objective's was recorded): genotypes must be read again."""
        self.gens.clear()
        self.genotypes.clear()
        self.known.clear()
        self.known_gen = 0
        self.pending.clear()

    def _param_names(self) -> frozenset[str]:
        """The space's parameter names, built once per space (a running trial without them is asked
        for its genotype on every child the async mode breeds)."""
        if self._names_of is not self.space:
            self._names, self._names_of = self.space.required_params(), self.space
        return self._names

    def genotype_of(self, t: FrozenTrial, trials: Sequence[FrozenTrial] = ()) -> str | None:
        """The genotype string a trial evaluated (its user attribute, else its parameters). A retry not
        yet started holds the genotype of the trial it retries (same slot, same child), so a later
        generation does not propose it again while the retry waits to run."""
        cached = self.genotypes.get(t.number)
        if cached is not None:
            return cached
        result: str | None = None
        if schema.GENOTYPE in t.user_attrs or self._param_names() <= t.params.keys():  # else: not sampled yet
            try:
                result = str(self.space.genotype_of(t))
            except GenotypeError:
                result = None
        original = t.system_attrs.get(schema.RETRY)
        if result is None and original is not None and 0 <= int(original) < len(trials):
            return self.genotype_of(trials[int(original)], trials)
        if result is not None and t.state.is_finished():
            self.genotypes[t.number] = result
        return result

    def fixed_genotype(self, slot: Slot) -> Genotype | None:
        params = self.ledger.fixed.get(slot)
        if params is None:
            return None
        try:
            return self.space.from_params(params)
        except GenotypeError:  # a partial enqueue: the sampler fills the rest, the result is not known here
            return None

    def known_before(self, trials: Sequence[FrozenTrial], g: int) -> Counter[str]:
        """Genotypes of the trials of generations before ``g``, kept up to date incrementally (each
        trial is read once, plus trials still unfinished when first read).

        Failed trials count too: a failed genotype is retried in its own slot, never proposed again
        as a new child. (Optuna fails a stale trial and creates its retry in two transactions; a
        worker reading between them, which left failed genotypes out, could propose it again.)"""

        def read(n: int, counted: str | None) -> None:
            t = trials[n] if n < len(trials) else None
            if t is None:
                self.pending[n] = counted
                return
            if counted is None:
                counted = self.genotype_of(t, trials)
                if counted is not None:
                    self.known[counted] += 1
            if t.state.is_finished():
                self.pending.pop(n, None)
            else:
                self.pending[n] = counted

        if g < self.known_gen:  # an old generation (rare): count it on its own
            known: Counter[str] = Counter()
            for k in range(g):
                for n in self.ledger.members_of(k):
                    if n < len(trials):
                        text = self.genotype_of(trials[n], trials)
                        if text is not None:
                            known[text] += 1
            return known
        for n, counted in list(self.pending.items()):
            read(n, counted)
        while self.known_gen < g:
            for n in self.ledger.members_of(self.known_gen):
                read(n, None)
            self.known_gen += 1
        return self.known


class Seen:
    """Genotypes a generation must avoid: the study's known ones plus the generation's own."""

    __slots__ = ("known", "local")

    def __init__(self, known: Counter[str], local: set[str]) -> None:
        self.known = known
        self.local = local

    def __contains__(self, text: object) -> bool:
        return text in self.local or self.known.get(text, 0) > 0  # type: ignore[call-overload]

    def add(self, text: str) -> None:
        self.local.add(text)

"""The slot ledger: which (generation, slot) every trial of a study holds.

Generation 0 has ``population_size`` slots, every later generation ``offspring`` slots. Trials take
slots in the order of their trial numbers, which the storage hands out atomically, so every worker
computes the same slot for the same trial from the system attributes the trial was created with,
without writing anything. A trial retried by Optuna's stale-trial callback (``failed_trial``) re-takes
the failed trial's slot instead of a new one. Pure: no storage, no Optuna study.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from optuna.trial import FrozenTrial

from nas_sampler import schema
from nas_sampler.schema import SlotTag

Slot = tuple[int, int]  # (generation, slot)


@dataclass
class SlotLedger:
    population_size: int
    offspring: int
    slot_key: str  # the sampler's trial system attribute holding a SlotTag
    slots: list[Slot] = field(default_factory=list)  # by trial number
    holders: dict[Slot, int] = field(default_factory=dict)  # slot -> the first trial number in it
    fixed: dict[Slot, dict[str, Any]] = field(default_factory=dict)  # enqueued parameters by slot
    members: dict[int, list[int]] = field(default_factory=dict)  # generation -> trial numbers in it
    consumers: int = 0  # trials that took a new slot

    def __len__(self) -> int:
        return len(self.slots)

    def __getitem__(self, number: int) -> Slot:
        return self.slots[number]

    def members_of(self, generation: int) -> list[int]:
        return self.members.get(generation, [])

    def slot_of_consumer(self, c: int) -> Slot:
        """The slot the ``c``-th trial that takes a new slot gets."""
        if c < self.population_size:
            return 0, c
        c -= self.population_size
        return 1 + c // self.offspring, c % self.offspring

    def add(self, number: int, attrs: Mapping[str, Any]) -> None:
        """Give trial ``number`` (the next one not yet in the ledger) its slot, decided by the system
        attributes ``attrs`` it had when created."""
        stored = attrs.get(self.slot_key)
        tag = None if stored is None else SlotTag.from_json(stored)
        if schema.RETRY in attrs or (tag is not None and tag.trial != number):
            if tag is not None:
                slot = (tag.generation, tag.slot)
            else:
                original = int(attrs[schema.RETRY])
                slot = self.slots[original] if 0 <= original < len(self.slots) else self.slot_of_consumer(0)
        else:
            slot = self.slot_of_consumer(self.consumers)
            self.consumers += 1
            self.holders[slot] = number
            if schema.FIXED_PARAMS in attrs:
                self.fixed[slot] = dict(attrs[schema.FIXED_PARAMS])
        self.slots.append(slot)
        self.members.setdefault(slot[0], []).append(number)

    def add_trials(self, trials: Sequence[FrozenTrial]) -> None:
        """Add every trial of ``trials`` (all of a study's, by number) not yet in the ledger."""
        for t in trials[len(self.slots) :]:
            if t.number != len(self.slots):  # a gap would misnumber slots; storages number trials 0, 1, ...
                raise RuntimeError(f"trial numbers are not contiguous at {t.number} (expected {len(self.slots)})")
            self.add(t.number, t.system_attrs)

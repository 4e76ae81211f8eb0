"""The slot ledger is a pure function of the trials' system attributes (no storage needed)."""

from __future__ import annotations

from nas_sampler.schema import SlotTag
from nas_sampler.slots import SlotLedger

KEY = "GeneticCellSampler:slot"


def test_new_trials_fill_generations_in_order() -> None:
    ledger = SlotLedger(population_size=3, offspring=2, slot_key=KEY)
    for n in range(8):
        ledger.add(n, {})
    assert ledger.slots == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (2, 0), (2, 1), (3, 0)]
    assert ledger.members_of(1) == [3, 4] and ledger.members_of(9) == []


def test_a_retry_retakes_the_slot_of_the_trial_it_replaces() -> None:
    ledger = SlotLedger(population_size=2, offspring=2, slot_key=KEY)
    ledger.add(0, {})
    ledger.add(1, {KEY: SlotTag(0, 1, 1).to_json()})
    ledger.add(2, {"failed_trial": 1})  # Optuna's retry of trial 1, before it has a tag
    ledger.add(3, {"failed_trial": 2, KEY: SlotTag(0, 1, 1).to_json()})  # a retry of the retry, tagged
    ledger.add(4, {})
    assert ledger.slots == [(0, 0), (0, 1), (0, 1), (0, 1), (1, 0)]
    assert ledger.holders == {(0, 0): 0, (0, 1): 1, (1, 0): 4}


def test_an_enqueued_trial_keeps_its_parameters_by_slot() -> None:
    ledger = SlotLedger(population_size=2, offspring=2, slot_key=KEY)
    ledger.add(0, {"fixed_params": {"node1_in0": "skip_connect"}})
    assert ledger.fixed == {(0, 0): {"node1_in0": "skip_connect"}}
    # a tag whose trial number is another's: a copy of that trial's slot (read as a retry)
    ledger.add(1, {KEY: {"g": 0, "s": 0, "n": 0}})
    assert ledger[1] == (0, 0) and ledger.consumers == 1

"""What a study holds is readable by a person, follows Optuna's GA conventions, and what earlier
versions wrote is still read."""

from __future__ import annotations

import numpy as np
import optuna

from nas_sampler import GeneticCellSampler, NB201Space
from nas_sampler.schema import ChildRecord, SlotTag

optuna.logging.set_verbosity(optuna.logging.WARNING)


def test_trials_carry_readable_slots_and_optunas_generation_key() -> None:
    space = NB201Space()
    sampler = GeneticCellSampler(population_size=4, seed=0)
    study = optuna.create_study(directions=["minimize"], sampler=sampler)
    study.enqueue_trial(space.to_params(space.random(np.random.default_rng(0))))
    study.optimize(lambda t: float(len(str(space.suggest(t)))), n_trials=12)
    for t in study.trials:
        tag = t.system_attrs["GeneticCellSampler:slot"]
        assert set(tag) <= {"generation", "slot", "trial", "child", "default_space"}
        assert t.system_attrs["GeneticCellSampler:generation"] == tag["generation"] == t.number // 4
        assert sampler.get_trial_generation(study, t) == tag["generation"]
    bred = study.trials[5].system_attrs["GeneticCellSampler:slot"]["child"]
    assert set(bred) == {"crossover", "mutations", "operations", "fallback", "parents"}
    for t in study.trials[4:]:  # every bred child names its parents: one (a copy) or two (a crossover)
        child = t.system_attrs["GeneticCellSampler:slot"]["child"]
        g = t.system_attrs["GeneticCellSampler:generation"]
        assert len(child["parents"]) == (2 if child["crossover"] else 1)
        assert set(child["parents"]) <= {p.number for p in sampler.select_parent(study, g)}
    assert "child" not in study.trials[0].system_attrs["GeneticCellSampler:slot"]  # enqueued: not bred
    assert [len(sampler.get_population(study, g)) for g in range(3)] == [4, 4, 4]


def test_slot_tags_of_earlier_versions_are_read() -> None:
    old = {"g": 2, "s": 5, "n": 17, "r": {"x": "uniform", "m": ["add_op"], "o": ["sep_conv_3x3"], "f": False}, "u": 1}
    tag = SlotTag.from_json(old)
    assert tag == SlotTag(2, 5, 17, ChildRecord("uniform", ("add_op",), ("sep_conv_3x3",)), default_space=True)
    assert SlotTag.from_json(tag.to_json()) == tag
    assert SlotTag.from_json({"g": 0, "s": 1, "n": 1}).child is None

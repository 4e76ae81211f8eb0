"""Every attribute nas-sampler writes to an Optuna study or trial, with its JSON shape.

Users read these in optuna-dashboard and in their own scripts, so the keys are spelled out. What a
study written by an earlier version holds is still read: :meth:`SlotTag.from_json` and
:meth:`ChildRecord.from_json` accept the short keys of before (``{"g", "s", "n", "r", "u"}`` and
``{"x", "m", "o", "f"}``), and ``tests/fixtures/old_study_*.db`` are such studies.

Study user attributes (``study.user_attrs``):

* ``nas_sampler:space``: the space's ``definition()``, e.g. ``{"kind": "nb201", "ops": [...], ...}``.
* ``nas_sampler:data``: the scoring data's spec (:mod:`nas_sampler.data`).
* ``nas_sampler:config``: the CLI's search settings (``SearchConfig.to_dict()``).
* ``nas_sampler:tournament:<generation>``: one DARTS tournament's groups, alphas, winners.
* ``trained_accuracy`` (``{"<trial numbers>": accuracy}``) and ``nas_sampler:final_training``
  (a list of runs): what ``nas_sampler.train`` recorded.

Study system attributes (the sampler's, prefixed with its class name, ``GeneticCellSampler``):

* ``<sampler>:config``: ``{"seed": int, "population_size": int, "offspring_per_generation": int}``
  and ``"mode": "async"`` when asynchronous.
* ``<sampler>:parent:<generation>``: ``{"parents": [trial numbers, best first], "state":
  AdaptiveState.to_dict()}``.

Trial user attributes: ``genotype`` (the canonical string), ``repaired_from``, ``params``
(parameter count), ``seconds`` (``{"build", "heuristics", "total", per score}``), ``device``,
``degenerate``, ``fail_reason``; and, written by the sampler so that optuna-dashboard shows it on the
trial's page, ``lineage``: :meth:`SlotTag.describe`, e.g. ``"generation 2, slot 5: crossover uniform
of trials 3 and 7, then add_op (sep_conv_3x3)"``.

Trial system attributes:

* ``<sampler>:generation``: the generation, an int (``BaseGASampler``'s key, which Optuna's tools read).
* ``<sampler>:slot``: :class:`SlotTag` as JSON, e.g. ``{"generation": 2, "slot": 5, "trial": 17,
  "child": {"crossover": "uniform", "mutations": ["add_op"], "operations": ["sep_conv_3x3"],
  "fallback": false, "parents": [3, 7]}}`` (``parents``, the trial numbers it was bred from, is
  absent in studies written before it was recorded).
* ``constraints:params`` (set by ``trial.set_constraint``, read back as ``FrozenTrial.constraints``): with
  ``TrainingFreeObjective(max_params=N)``, the parameter count minus ``N`` (feasible when <= 0).
* Written by Optuna and read here: ``failed_trial`` and ``retry_history`` (a retried trial),
  ``fixed_params`` (an enqueued trial).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# study user attributes
SPACE = "nas_sampler:space"
DATA = "nas_sampler:data"
CONFIG = "nas_sampler:config"
ARTIFACTS = "nas_sampler:artifacts"  # the absolute folder of the study's cell pictures (CLI searches)
TOURNAMENT_PREFIX = "nas_sampler:tournament:"
TRAINED = "trained_accuracy"
FINAL_TRAINING = "nas_sampler:final_training"

# trial user attributes
GENOTYPE = "genotype"
REPAIRED = "repaired_from"
LINEAGE = "lineage"

# trial constraints (``trial.set_constraint(PARAMS_CONSTRAINT, params - max_params)``)
PARAMS_CONSTRAINT = "params"

# written by Optuna, read here
RETRY = "failed_trial"  # RetryHeartbeatStaleTrialCallback: the trial this one retries
RETRY_HISTORY = "retry_history"
FIXED_PARAMS = "fixed_params"  # study.enqueue_trial


def slot_key(sampler: str) -> str:
    return f"{sampler}:slot"


def sampler_config_key(sampler: str) -> str:
    return f"{sampler}:config"


@dataclass(frozen=True)
class ChildRecord:
    """How a child was made: what the adaptive state learns from when the child survives or not."""

    crossover: str | None = None
    mutations: tuple[str, ...] = ()
    ops: tuple[str, ...] = ()  # operations chosen by success rate (add_op, add_node, change_edge)
    fallback: bool = False  # a random unseen genotype after max_retries duplicates
    # the parents it was bred from: trial numbers as stored (the evolution's pure functions give
    # positions in the parent list they were handed, which the sampler turns into trial numbers)
    parents: tuple[int, ...] = ()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "crossover": self.crossover,
            "mutations": list(self.mutations),
            "operations": list(self.ops),
            "fallback": self.fallback,
        }
        if self.parents:
            out["parents"] = list(self.parents)
        return out

    @staticmethod
    def from_json(d: Mapping[str, Any] | None) -> ChildRecord:
        if not d:
            return ChildRecord()
        if "x" in d or "m" in d:  # written before the keys were spelled out
            return ChildRecord(d.get("x"), tuple(d.get("m", ())), tuple(d.get("o", ())), bool(d.get("f", False)))
        return ChildRecord(
            d.get("crossover"),
            tuple(d.get("mutations", ())),
            tuple(d.get("operations", ())),
            bool(d.get("fallback", False)),
            tuple(int(n) for n in d.get("parents", ())),
        )


@dataclass(frozen=True)
class SlotTag:
    """Where a trial sits in the search: its generation and slot, the trial number that first took
    the slot, how its child was made (None for a trial the sampler did not breed: enqueued), and
    whether it was bred before the study recorded its space (for the default space)."""

    generation: int
    slot: int
    trial: int
    child: ChildRecord | None = None
    default_space: bool = False

    def describe(self) -> str:
        """Where the trial sits and how it was made, for a person."""
        where = f"generation {self.generation}, slot {self.slot}"
        c = self.child
        if c is None:
            return f"{where}: enqueued"
        if c.fallback:
            return f"{where}: a random unseen genotype (its parents bred only known ones)"
        if not (c.parents or c.crossover or c.mutations):
            return f"{where}: drawn at random"
        who = " and ".join(f"trial {n}" for n in c.parents) or "parents not recorded"
        text = f"crossover {c.crossover} of {who}" if c.crossover else f"a copy of {who}"
        if c.mutations:
            text += f", then {', '.join(c.mutations)}" + (f" ({', '.join(c.ops)})" if c.ops else "")
        return f"{where}: {text}"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"generation": self.generation, "slot": self.slot, "trial": self.trial}
        if self.child is not None:
            out["child"] = self.child.to_json()
        if self.default_space:
            out["default_space"] = True
        return out

    @staticmethod
    def from_json(d: Mapping[str, Any]) -> SlotTag:
        if "g" in d:  # written before the keys were spelled out
            child = ChildRecord.from_json(d["r"]) if "r" in d else None
            return SlotTag(int(d["g"]), int(d["s"]), int(d["n"]), child, bool(d.get("u")))
        child = ChildRecord.from_json(d["child"]) if "child" in d else None
        return SlotTag(int(d["generation"]), int(d["slot"]), int(d["trial"]), child, bool(d.get("default_space")))

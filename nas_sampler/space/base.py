"""What every search space offers, the registry of spaces, and how a space is recorded in a study.

A space turns a genotype into ordinary Optuna parameters (``to_params``/``from_params`` and
``distributions``), so any Optuna sampler can drive it, builds the networks for a genotype, and
owns its genetic operators: tables of named mutations and crossovers that the evolution draws from
by name (as DARTS's ``OPS`` table holds its operations), so the evolution never asks which space
it works on. A new space is one module with a subclass decorated by :func:`register_space`, and its
import in :mod:`nas_sampler.space`.
"""

from __future__ import annotations

import json
import weakref
from abc import ABC, abstractmethod
from bisect import bisect_right
from collections.abc import Callable, Mapping, Sequence
from itertools import accumulate
from typing import Any, ClassVar, TypeVar

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, IntDistribution
from torch import nn

from nas_sampler import ops as _ops
from nas_sampler import schema, trial_log
from nas_sampler.errors import ConfigError, GenotypeError, SpaceMismatchError
from nas_sampler.genotype import Genotype
from nas_sampler.internals import frozen_trial_of, storage_of, store_params, study_id_of

SPACE_ATTR = schema.SPACE
GENOTYPE_ATTR = schema.GENOTYPE
REPAIRED_ATTR = schema.REPAIRED

trial_log.install()  # Optuna's finished-trial line shows the genotype of every trial a space suggests


Mutation = Callable[[Any, Genotype, np.random.Generator, np.ndarray], tuple[Genotype, "str | None"]]
"""``(space, genotype, rng, op_probs) -> (child, operation chosen or None)``; the child is repaired
and may equal the genotype when the mutation does not apply. ``op_probs`` weighs ``space.ops``."""
Crossover = Callable[[Any, Genotype, Genotype, np.random.Generator], Genotype]
"""``(space, parent_a, parent_b, rng) -> child``, repaired."""


def choice(rng: np.random.Generator, items: Sequence[Any], p: Sequence[float] | np.ndarray | None = None) -> Any:
    """One item, with probabilities ``p`` (uniform when None); one uniform draw by inverse CDF,
    several times faster than ``Generator.choice`` on these short lists."""
    if p is None:
        return items[int(rng.integers(len(items)))]
    cdf = list(accumulate(float(x) for x in p))
    return items[min(bisect_right(cdf, rng.random() * cdf[-1]), len(items) - 1)]


class SearchSpace(ABC):
    """What every space offers; subclasses fix the cell's shape, its parameters and its operators.

    ``mutations`` and ``crossovers`` are the space's operator tables, in a fixed order (the adaptive
    state's probabilities follow it). ``final_cells`` is the number of cells a final network stacks by
    default, and ``max_final_cells`` the most it can (None: any)."""

    kind: ClassVar[str] = ""
    mutations: ClassVar[Mapping[str, Mutation]] = {}
    crossovers: ClassVar[Mapping[str, Crossover]] = {}
    final_cells: ClassVar[int] = 3
    max_final_cells: ClassVar[int | None] = None

    def __init__(self, ops: tuple[str, ...] | list[str], width: int, cells_per_stage: int):
        ops = tuple(ops)
        if not ops:
            raise ConfigError("ops is empty: give at least one operation name")
        if len(set(ops)) != len(ops):
            raise ConfigError(f"ops lists an operation twice: {list(ops)}")
        for op in ops:
            _ops.check_op(op)
        check_positive_int("width", width)
        check_positive_int("cells_per_stage", cells_per_stage)
        self.ops = ops
        self.width = width
        self.cells_per_stage = cells_per_stage

    # ---- identity -------------------------------------------------------------------------
    @abstractmethod
    def definition(self) -> dict[str, Any]:
        """A JSON-able description; equal definitions mean equal spaces."""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SearchSpace) and self.definition() == other.definition()

    def __hash__(self) -> int:
        return hash(json.dumps(self.definition(), sort_keys=True))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.definition().items() if k != "kind")
        return f"{type(self).__name__}({args})"

    # ---- genotypes ------------------------------------------------------------------------
    @abstractmethod
    def problems(self, g: Genotype) -> list[str]:
        """Everything that makes ``g`` invalid in this space (empty when valid)."""

    @abstractmethod
    def repair(self, g: Genotype) -> Genotype:
        """The nearest valid genotype; a valid genotype is returned unchanged."""

    @abstractmethod
    def random(self, rng: np.random.Generator) -> Genotype:
        """A random valid genotype."""

    def validate(self, g: Genotype) -> Genotype:
        if not isinstance(g, Genotype):
            raise GenotypeError(f"expected a Genotype, got {type(g).__name__} {g!r}")
        found = self.problems(g)
        if found:
            raise GenotypeError(
                f"genotype '{g}' does not fit {self!r}: "
                + "; ".join(found)
                + ". Use space.repair(genotype) to make it valid"
            )
        return g

    def is_valid(self, g: Genotype) -> bool:
        return not self.problems(g)

    def parse(self, text: str) -> Genotype:
        """Read a genotype string and check it against this space."""
        return self.validate(Genotype.parse(text))

    # ---- genetic operators ----------------------------------------------------------------
    def mutate(self, g: Genotype, kind: str, rng: np.random.Generator, op_p: np.ndarray) -> tuple[Genotype, str | None]:
        """Apply the mutation named ``kind`` from this space's table."""
        op = self.mutations.get(kind)
        if op is None:
            raise ConfigError(
                f"unknown mutation kind {kind!r} for {type(self).__name__}; known: {', '.join(self.mutations)}"
            )
        return op(self, g, rng, op_p)

    def crossover(self, a: Genotype, b: Genotype, kind: str, rng: np.random.Generator) -> Genotype:
        """Apply the crossover named ``kind`` from this space's table."""
        op = self.crossovers.get(kind)
        if op is None:
            raise ConfigError(
                f"unknown crossover kind {kind!r} for {type(self).__name__}; known: {', '.join(self.crossovers)}"
            )
        return op(self, a, b, rng)

    # ---- the Optuna bridge ----------------------------------------------------------------
    @abstractmethod
    def distributions(self) -> dict[str, BaseDistribution]:
        """Every parameter any genotype can have, by stable readable name."""

    def distributions_of(self, g: Genotype) -> dict[str, BaseDistribution]:
        """The distributions of ``g``'s parameters (``to_params(g)``), e.g. for ``optuna.trial.create_trial``."""
        dists = self.distributions()
        return {name: dists[name] for name in self.to_params(g)}

    def required_params(self) -> frozenset[str]:
        """Names every genotype's parameters include (a trial without them has not been sampled yet)."""
        return frozenset(self.distributions())

    @classmethod
    def from_definition(cls, definition: dict[str, Any]) -> SearchSpace:
        """The space of a :meth:`definition` (without its ``kind``)."""
        return cls(**definition)

    @abstractmethod
    def to_params(self, g: Genotype) -> dict[str, Any]: ...

    @abstractmethod
    def _raw_from_params(self, params: dict[str, Any]) -> Genotype:
        """The unrepaired genotype of ``params``; a missing parameter raises KeyError or GenotypeError."""

    def suggest_raw(self, trial: optuna.trial.BaseTrial) -> Genotype:
        """The unrepaired genotype, asked of ``trial`` parameter by parameter (every one here)."""
        return self._raw_from_params({name: ask(trial, name, dist) for name, dist in self.distributions().items()})

    def from_params(self, params: dict[str, Any]) -> Genotype:
        """The genotype of a parameter dict (repaired, so always valid)."""
        try:
            raw = self._raw_from_params(params)
        except KeyError as e:
            raise GenotypeError(f"parameter {e} of {self!r} is missing") from None
        return self.repair(raw)

    def genotype_attrs(self, params: dict[str, Any]) -> dict[str, str]:
        """The user attributes a trial with ``params`` notes: its genotype, and the unrepaired one when
        it was repaired; a missing parameter raises KeyError or GenotypeError."""
        raw = self._raw_from_params(params)
        return _genotype_attrs(raw, self.repair(raw))

    def genotype_of(self, trial: optuna.trial.FrozenTrial) -> Genotype:
        """The genotype a trial evaluated: its ``genotype`` attribute, else its parameters."""
        text = trial.user_attrs.get(GENOTYPE_ATTR)
        if text is not None:
            return self.parse(text)
        try:
            return self.from_params(trial.params)
        except GenotypeError as e:
            raise GenotypeError(
                f"trial {trial.number} has no genotype attribute and its parameters do not fit: {e}"
            ) from e

    def suggest(self, trial: optuna.trial.BaseTrial) -> Genotype:
        """Ask ``trial`` for a genotype through ordinary ``suggest_*`` calls.

        The first call in a study records this space there; a study that records another space
        refuses. A repaired genotype notes the original on the trial (``repaired_from``).
        """
        study = getattr(trial, "study", None)
        space = self if study is None else record_space(study, self)
        if isinstance(trial, optuna.Trial):
            _store_sampled_params(trial, space)
        raw = space.suggest_raw(trial)
        g = space.repair(raw)
        if hasattr(trial, "set_user_attr"):
            stored = trial.user_attrs  # the sampler's child has them already (stored with its parameters)
            for key, value in _genotype_attrs(raw, g).items():
                if stored.get(key) != value:
                    trial.set_user_attr(key, value)
        trial_log.remember(trial.params, str(g))
        return g

    # ---- networks -------------------------------------------------------------------------
    @abstractmethod
    def cell(self, g: Genotype, C_in: int, stride: int = 1) -> nn.Module: ...

    def scoring_network(self, g: Genotype, num_classes: int = 10, in_channels: int = 3) -> nn.Module:
        """The network the heuristics score for ``g``: ``cells_per_stage`` cells of ``g`` per stage."""
        from nas_sampler.phenotype import StagedNetwork

        return StagedNetwork(
            lambda C_in: self.cell(g, C_in),
            width=self.width,
            cells_per_stage=self.cells_per_stage,
            num_classes=num_classes,
            in_channels=in_channels,
        )

    @abstractmethod
    def final_network(
        self, genotypes: list[Genotype], num_classes: int = 10, in_channels: int = 3, **kwargs: Any
    ) -> nn.Module:
        """The network to train from the chosen cells."""


SPACES: dict[str, type[SearchSpace]] = {}  # kind -> class, filled by @register_space
S = TypeVar("S", bound=type[SearchSpace])


def register_space(cls: S) -> S:
    """Class decorator: make a space known by its ``kind`` (to presets, the CLI and stored studies)."""
    if not cls.kind or cls.kind in SPACES:
        raise ConfigError(f"{cls.__name__}: a registered space needs a kind of its own, got {cls.kind!r}")
    if not cls.mutations or not cls.crossovers:
        raise ConfigError(f"{cls.__name__}: a registered space needs tables of mutations and crossovers")
    SPACES[cls.kind] = cls
    return cls


def space_from_definition(definition: dict[str, Any]) -> SearchSpace:
    """Rebuild a space from :meth:`SearchSpace.definition` (as stored in a study)."""
    d = dict(definition)
    kind = d.pop("kind", None)
    if kind not in SPACES:
        raise ConfigError(f"unknown space kind {kind!r}; known: {', '.join(SPACES)}")
    return SPACES[kind].from_definition(d)


def ask(trial: optuna.trial.BaseTrial, name: str, dist: BaseDistribution) -> Any:
    """``trial``'s ``suggest_*`` call for ``dist`` (the kinds of distribution a space uses)."""
    if isinstance(dist, CategoricalDistribution):
        return trial.suggest_categorical(name, dist.choices)
    if isinstance(dist, IntDistribution):
        return trial.suggest_int(name, dist.low, dist.high, step=dist.step, log=dist.log)
    raise ConfigError(f"parameter {name!r}: a space's distributions are categorical or integer, not {dist!r}")


def make_space(name: str, **kwargs: Any) -> SearchSpace:
    """A space by its registered kind (``cell``, ``nb201``, ``nats_sss``, or one registered by a user)."""
    if name not in SPACES:
        raise ConfigError(f"unknown space {name!r}; choose one of: {', '.join(SPACES)}")
    return SPACES[name](**kwargs)


def recorded_space(study: optuna.Study) -> SearchSpace | None:
    """The space a study records, or None before its first ``suggest``."""
    d = study.user_attrs.get(SPACE_ATTR)
    return None if d is None else space_from_definition(d)


def _store_sampled_params(trial: optuna.Trial, space: SearchSpace) -> None:
    """Store the sampler's values of the space's parameters in one transaction where the storage
    allows (:func:`nas_sampler.internals.store_params`); anything not chosen by the sampler (a retry,
    an enqueued trial, another sampler's independent draws) takes Optuna's usual path."""
    cached = frozen_trial_of(trial)
    fixed = cached.system_attrs.get(schema.FIXED_PARAMS, {})
    given = {**fixed, **cached.params}
    if space.required_params() <= given.keys():
        try:
            space.from_params(given)
            return  # a retry or an enqueued trial: nothing for the sampler to choose, so not asked
        except GenotypeError:
            pass
    dists = space.distributions()
    missing = [name for name in dists if name not in given]
    chosen = trial.relative_params  # an error of the sampler's propagates, as from suggest_*
    search_space = trial.relative_search_space or {}
    todo = {name: dists[name] for name in missing if name in chosen and search_space.get(name) == dists[name]}
    if todo:
        values = {name: chosen[name] for name in todo}
        try:  # the genotype's attributes go in the same transaction when the child is whole
            attrs = space.genotype_attrs({**given, **values})
        except (KeyError, GenotypeError):
            attrs = {}
        store_params(storage_of(trial.study), cached, values, todo, attrs)


def _genotype_attrs(raw: Genotype, g: Genotype) -> dict[str, str]:
    """What a trial notes of its genotype: the valid one, and the original when it was repaired."""
    return {GENOTYPE_ATTR: str(g)} if g == raw else {REPAIRED_ATTR: str(raw), GENOTYPE_ATTR: str(g)}


#: (study id, space definition) -> the space to use, for pairs already checked against each storage
#: by this process: a study's space never changes once recorded, so each worker reads it once.
_CHECKED: weakref.WeakKeyDictionary[Any, dict[tuple[int, str], SearchSpace]] = weakref.WeakKeyDictionary()


def record_space(study: optuna.Study, space: SearchSpace) -> SearchSpace:
    """Record ``space`` in ``study`` and return it; refuse if the study already records a different
    one. A study recorded with the same space in another Optuna encoding returns the recorded space:
    a study is extended in the encoding it was made with (the networks are the same)."""
    key = (study_id_of(study), json.dumps(space.definition(), sort_keys=True))
    checked = _CHECKED.setdefault(storage_of(study), {})
    if key in checked:
        return checked[key]
    existing = study.user_attrs.get(SPACE_ATTR)
    use = space
    if existing is None:
        study.set_user_attr(SPACE_ATTR, space.definition())
    elif existing != space.definition():
        recorded = space_from_definition(existing)
        if not same_but_encoding(recorded, space):
            raise SpaceMismatchError(
                f"study {study.study_name!r} was searched with space {json.dumps(existing, sort_keys=True)}, "
                f"not {json.dumps(space.definition(), sort_keys=True)}; use the study's space "
                "(nas_sampler.space.recorded_space(study)) or a new study name"
            )
        use = recorded
    checked[key] = use
    return use


def same_but_encoding(a: SearchSpace, b: SearchSpace) -> bool:
    """``a`` and ``b`` are the same space, perhaps in different Optuna encodings."""
    return _without_encoding(a.definition()) == _without_encoding(b.definition())


def _without_encoding(definition: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in definition.items() if k != "encoding"}


def check_positive_int(name: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"{name}={value!r} is invalid: give a positive integer")

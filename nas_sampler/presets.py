"""Search settings: one validated dataclass, read from a TOML preset and overridden by flags.

A preset file has the sections ``[study]``, ``[space]``, ``[data]``, ``[search]``, ``[storage]`` and
``[tournament]``; every key is optional. An unknown section or key, or a value of the wrong type, is a
:class:`ConfigError` naming it.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nas_sampler.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

PRESET_DIR = Path(__file__).resolve().parents[1] / "studies"


@dataclass
class StudySettings:
    name: str = "nas"
    storage: str = "sqlite:///nas.db"
    seed: int = 0


@dataclass
class DataSettings:
    name: str = "builtin"
    batch_size: int = 64
    strategy: str = "random"
    download: bool = False


@dataclass
class SearchSettings:
    population: int = 10
    offspring: int | None = None
    trials: int | None = None
    generations: int | None = 3
    ntk_mode: str = "fast"
    ntk_batch: int | None = None  # images of the batch the NTK uses (None: all)
    device: str = "auto"
    extra_objectives: list[str] = field(default_factory=list)
    metrics: list[str] | None = None  # training-free scores that are objectives (None: the three)
    reduction: str = "rank_sum"
    crossover_prob: float = 0.9  # GeneticCellSampler's defaults
    mutation_prob: float = 0.8
    mode: str = "generational"  # or "async": steady-state, no generation barrier (GeneticCellSampler's mode)
    max_params: int | None = None  # parameter budget, a constraint on every trial (None: none)


@dataclass
class StorageSettings:
    heartbeat_interval: int = 30
    grace_period: int = 90
    max_retry: int = 5
    artifact_dir: str | None = None


@dataclass
class TournamentSettings:
    every: int = 0
    size: int = 4
    steps: int = 40
    batch_size: int = 32


@dataclass
class SearchConfig:
    study: StudySettings = field(default_factory=StudySettings)
    space: dict[str, Any] = field(default_factory=lambda: {"kind": "cell"})
    data: DataSettings = field(default_factory=DataSettings)
    search: SearchSettings = field(default_factory=SearchSettings)
    storage: StorageSettings = field(default_factory=StorageSettings)
    tournament: TournamentSettings = field(default_factory=TournamentSettings)

    @property
    def offspring(self) -> int:
        return self.search.offspring or self.search.population

    @property
    def n_trials(self) -> int:
        """Total trials the search aims for: explicit trials, else generation 0 plus offspring generations."""
        if self.search.trials is not None:
            return self.search.trials
        gens = self.search.generations or 1
        return self.search.population + (gens - 1) * self.offspring

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def validate(self) -> SearchConfig:
        positive = {
            "search.population": self.search.population,
            "data.batch_size": self.data.batch_size,
            "storage.heartbeat_interval": self.storage.heartbeat_interval,
            "tournament.size": self.tournament.size,
            "tournament.steps": self.tournament.steps,
        }
        for key, v in positive.items():
            if v < 1:
                raise ConfigError(f"{key} = {v} is invalid: give a positive integer")
        for key, v in {
            "search.offspring": self.search.offspring,
            "search.trials": self.search.trials,
            "search.generations": self.search.generations,
            "search.ntk_batch": self.search.ntk_batch,
            "search.max_params": self.search.max_params,
        }.items():
            if v is not None and v < 1:
                raise ConfigError(f"{key} = {v} is invalid: give a positive integer")
        for key, v in {
            "search.crossover_prob": self.search.crossover_prob,
            "search.mutation_prob": self.search.mutation_prob,
        }.items():
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not 0.0 <= v <= 1.0:
                raise ConfigError(f"{key} = {v!r} is invalid: give a probability between 0 and 1")
        if self.storage.max_retry < 0:
            raise ConfigError(f"storage.max_retry = {self.storage.max_retry} is invalid: give an integer >= 0")
        if self.search.mode == "async" and self.tournament.every > 0:
            raise ConfigError(
                f"search.mode = 'async' has no generation boundary for tournament.every = {self.tournament.every}: "
                "set tournament.every = 0 or search.mode = 'generational'"
            )
        if self.storage.grace_period <= self.storage.heartbeat_interval:
            raise ConfigError(
                f"storage.grace_period = {self.storage.grace_period} must exceed storage.heartbeat_interval = "
                f"{self.storage.heartbeat_interval}"
            )
        from nas_sampler.evolution import REDUCTIONS
        from nas_sampler.sampler import MODES

        choices = {
            "search.ntk_mode": (self.search.ntk_mode, ("fast", "exact")),
            "search.device": (self.search.device, ("auto", "cpu", "cuda")),
            "search.reduction": (self.search.reduction, REDUCTIONS),
            "search.mode": (self.search.mode, MODES),
            "data.strategy": (self.data.strategy, ("random", "class_focused")),
        }
        for key, (v, allowed) in choices.items():
            if v not in allowed and not (key == "search.device" and str(v).startswith("cuda:")):
                raise ConfigError(f"{key} = {v!r} is invalid: choose one of {', '.join(allowed)}")
        from nas_sampler.heuristics import check_metrics
        from nas_sampler.objective import parse_extra

        if self.search.metrics is not None:
            try:
                check_metrics(self.search.metrics)
            except ConfigError as e:
                raise ConfigError(f"search.metrics: {e}") from None

        for extra in self.search.extra_objectives:
            try:
                parse_extra(extra)
            except ConfigError as e:
                raise ConfigError(f"search.extra_objectives: {e}") from None
        from nas_sampler.space import SPACES, make_space

        space = dict(self.space)
        kind = space.pop("kind", "cell")
        if kind in SPACES:
            _check_space_keys(kind, SPACES[kind], space)
        try:
            self.space = make_space(kind, **space).definition()  # canonical: every key spelled out
        except TypeError as e:
            raise ConfigError(f"[space] has a value of the wrong type for space {kind!r}: {e}") from None
        return self


def _check_space_keys(kind: str, cls: type, values: dict[str, Any]) -> None:
    """Unknown keys, and values whose type differs from the setting's default, each one line."""
    import inspect

    params = {n: p for n, p in inspect.signature(cls.__init__).parameters.items() if n != "self"}
    for key, value in values.items():
        if key not in params:
            raise ConfigError(f"[space] {key!r} is not a setting of space {kind!r}; its settings: {', '.join(params)}")
        default = params[key].default
        wrong = f"[space] {key} = {value!r} has the wrong type"
        if isinstance(default, (tuple, list)) and not isinstance(value, list):
            raise ConfigError(f"{wrong}: expected a list, e.g. {key} = {json.dumps(list(default))}")
        if isinstance(default, int) and not isinstance(default, bool) and not isinstance(value, int):
            raise ConfigError(f"{wrong}: expected an integer, e.g. {key} = {default}")


_SECTIONS = {
    "study": StudySettings,
    "data": DataSettings,
    "search": SearchSettings,
    "storage": StorageSettings,
    "tournament": TournamentSettings,
}


def _coerce(section: str, key: str, value: Any, f: dataclasses.Field) -> Any:
    expected = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    ok = {
        "str": isinstance(value, str),
        "bool": isinstance(value, bool),
        "int": isinstance(value, int) and not isinstance(value, bool),
        "int | None": value is None or (isinstance(value, int) and not isinstance(value, bool)),
        "str | None": value is None or isinstance(value, str),
        "list[str]": isinstance(value, list) and all(isinstance(v, str) for v in value),
    }.get(expected, True)
    if not ok:
        raise ConfigError(f"[{section}] {key} = {value!r} has the wrong type: expected {expected}")
    return value


def config_from_dict(raw: dict[str, Any], source: str = "preset") -> SearchConfig:
    cfg = SearchConfig()
    for section, values in raw.items():
        if section == "space":
            if not isinstance(values, dict):
                raise ConfigError(f"{source}: [space] must be a table")
            cfg.space = {"kind": "cell", **values}
            continue
        if section not in _SECTIONS:
            raise ConfigError(f"{source}: unknown section [{section}]; known: {', '.join(['space', *_SECTIONS])}")
        if not isinstance(values, dict):
            raise ConfigError(f"{source}: [{section}] must be a table")
        target = getattr(cfg, section)
        fields = {f.name: f for f in dataclasses.fields(target)}
        for key, value in values.items():
            if key not in fields:
                raise ConfigError(f"{source}: unknown key {key!r} in [{section}]; known: {', '.join(fields)}")
            try:
                setattr(target, key, _coerce(section, key, value, fields[key]))
            except ConfigError as e:
                raise ConfigError(f"{source}: {e}") from None
    try:
        return cfg.validate()
    except ConfigError as e:
        raise type(e)(f"{source}: {e}") from None  # the same kind (an unknown operation stays one)


def find_preset(name_or_path: str) -> Path:
    """A preset by path, or by name in the project's ``studies/`` folder."""
    p = Path(name_or_path)
    if p.is_file():
        return p
    for candidate in (PRESET_DIR / name_or_path, PRESET_DIR / f"{name_or_path}.toml"):
        if candidate.is_file():
            return candidate
    raise ConfigError(
        f"preset {name_or_path!r} not found; give a TOML file path or one of: {', '.join(list_presets()) or 'none'}"
    )


def list_presets() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.toml")) if PRESET_DIR.is_dir() else []


def load_preset(name_or_path: str) -> SearchConfig:
    path = find_preset(name_or_path)
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    return config_from_dict(raw, source=str(path))

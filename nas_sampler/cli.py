"""The ``nas-sampler`` command: search, worker, front, export, train, dashboard, studies.

(Over 450 lines: seven commands with their arguments; the worker runtime is :mod:`nas_sampler.worker`,
the search itself the library's.)

Exit codes: 0 success, 2 bad arguments or settings, 1 runtime failure. Errors are one line on
stderr saying what to do; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import re
import shlex
import signal
import sys
import time
import traceback
import warnings
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy.exc

from nas_sampler import heartbeat, schema
from nas_sampler.dashboard import DashboardFigures
from nas_sampler.errors import ConfigError, NASError, SpaceMismatchError
from nas_sampler.final import NO_FEASIBLE_ADVICE, RULES, no_feasible_error
from nas_sampler.internals import FastRDBStorage
from nas_sampler.presets import SearchConfig, config_from_dict, find_preset, list_presets, load_preset
from nas_sampler.progress import SearchProgress, finished_trials
from nas_sampler.selection import feasible_trials
from nas_sampler.space import SPACES
from nas_sampler.study_lock import file_lock
from nas_sampler.worker import connection_error, first_line, run_trials, work_left

_log = logging.getLogger(__name__)
CONFIG_ATTR = schema.CONFIG
# settings that define a search: changing them on resume would mix two different searches
_FIXED_KEYS = (
    ("space",),
    ("study", "seed"),
    ("data", "name"),
    ("data", "batch_size"),
    ("data", "strategy"),
    ("search", "population"),
    ("search", "offspring"),
    ("search", "ntk_mode"),
    ("search", "ntk_batch"),
    ("search", "extra_objectives"),
    ("search", "reduction"),
    ("search", "crossover_prob"),
    ("search", "mutation_prob"),
    ("search", "mode"),
    ("search", "max_params"),
    ("tournament",),
)


class UsageError(NASError):
    """Bad arguments: exit code 2."""


# the library's parameter names, as the flags a user typed them (an error names what the user wrote)
_FLAGS = {
    "search": {
        "population_size": "--population",
        "offspring_per_generation": "--offspring",
        "seed": "--seed",
        "max_params": "--max-params",
    },
    "export": {"n_cells": "--cells", "seed": "--seed", "finalists": "--finalists"},
    "train": {
        "epochs": "--epochs",
        "batch_size": "--batch-size",
        "lr": "--lr",
        "subset": "--subset",
        "test_subset": "--test-subset",
        "seed": "--seed",
    },
}


# advice in the library's words, as a command-line user follows it
_ADVICE = {
    "export": {
        "use rule='rank_sum' or search with GeneticCellSampler(tournament=DartsTournament(...))": (
            "use --rule rank_sum, or search with a preset whose [tournament] has every > 0"
        ),
        NO_FEASIBLE_ADVICE: (
            "search longer (the same search command with a larger --trials or --generations), or search "
            "again under a new --study with a larger --max-params"
        ),
    },
    "train": {"or pass weights=False": "or export the network again (nas-sampler export)"},
}


def _as_flags(command: str, message: str) -> str:
    """``population_size=1 is invalid: ...`` -> ``--population 1 is invalid: ...`` for ``command``'s flags,
    and the library's advice as the command line's."""
    for library, cli_words in _ADVICE.get(command, {}).items():
        message = message.replace(library, cli_words)
    m = re.match(r"(\w+)=(\S+) is invalid", message)
    flag = _FLAGS.get(command, {}).get(m.group(1)) if m else None
    return message if m is None or flag is None else f"{flag} {m.group(2)} is invalid{message[m.end() :]}"


# ----------------------------------------------------------------------------- storage


def default_artifact_dir(storage_url: str) -> Path:
    """Cell pictures live beside a SQLite file (``nas.db`` -> ``nas-artifacts/``), else in ./nas-artifacts."""
    if storage_url.startswith("sqlite:///"):
        db = Path(storage_url[len("sqlite:///") :])
        return db.with_name(db.stem + "-artifacts")
    return Path("nas-artifacts")


def open_storage(url: str, cfg: SearchConfig | None = None, *, must_exist: bool = False) -> optuna.storages.RDBStorage:
    """Optuna's RDBStorage; with ``cfg``, heartbeat on and a killed trial retried up to
    ``storage.max_retry`` times. ``must_exist`` (commands that read a search): a SQLite file that is
    not there is refused, and nothing is created (no database, no lock file)."""
    _check_supported(url)
    kwargs: dict[str, Any] = {}
    if cfg is not None:
        kwargs = {
            "heartbeat_interval": cfg.storage.heartbeat_interval,
            "grace_period": cfg.storage.grace_period,
            "heartbeat_stale_trial_callback": heartbeat.RetryKilledTrial(cfg.storage.max_retry),
        }
    sqlite_path = Path(url[len("sqlite:///") :]) if url.startswith("sqlite:///") else None
    if must_exist and sqlite_path is not None and (not sqlite_path.exists() or sqlite_path.stat().st_size == 0):
        raise ConfigError(
            f"--storage {url!r}: there is no database at {sqlite_path.resolve()} (nothing was created); check the "
            f"path, or start a search there with nas-sampler search --storage {url}"
        )
    if sqlite_path is None:  # a connection the server closed (restart, idle timeout) is replaced, not fatal
        kwargs["engine_kwargs"] = {"pool_pre_ping": True}
    try:
        # workers starting together on a new database race to create its tables: on one machine
        # (SQLite) a file lock orders them; on a server the loser retries once the winner is done
        creating = sqlite_path is not None and not must_exist
        with file_lock(sqlite_path) if creating else contextlib.nullcontext():
            if sqlite_path is not None:
                _check_sqlite_file(sqlite_path)
            try:
                return FastRDBStorage(url, **kwargs)
            except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError, sqlalchemy.exc.OperationalError):
                time.sleep(1.0)
                return FastRDBStorage(url, **kwargs)
    except NASError:
        raise
    except Exception as e:  # noqa: BLE001 - SQLAlchemy/Optuna raise many kinds; the user needs one line
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise NASError(
            f"cannot open storage {url!r}: {first}. Check the URL (e.g. sqlite:///nas.db or "
            "postgresql+psycopg2://user@host:5432/db) and that the database server is running"
        ) from e


def _check_supported(url: str) -> None:
    """Refuse storages without a heartbeat (Optuna's JournalStorage and GrpcStorageProxy): on them a dead
    worker's trial stays RUNNING, holds up its generation and is never retried."""
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme in ("grpc", "grpcs") or url.endswith((".log", ".journal")):
        kind = "GrpcStorageProxy" if scheme.startswith("grpc") else "JournalStorage"
        raise ConfigError(
            f"--storage {url!r} looks like an Optuna {kind}, which has no heartbeat, so a killed worker's trial would "
            "never be retried; nas-sampler's workers support RDB storages: sqlite:///FILE on one machine, "
            "postgresql+psycopg2://user@host/db (or mysql://...) for many workers, each pointed at the database itself"
        )
    if not scheme:
        raise ConfigError(
            f"--storage {url!r} is not a storage URL; give sqlite:///FILE (one machine) or "
            "postgresql+psycopg2://user@host:5432/db (many workers)"
        )


def _check_sqlite_file(path: Path) -> None:
    """Refuse a file that is not a SQLite database, or one that holds other tables than Optuna's
    (Optuna would add its own tables to it)."""
    if not path.exists() or path.stat().st_size == 0:
        return
    with open(path, "rb") as f:
        if f.read(16) != b"SQLite format 3\x00":
            raise NASError(f"{path} is not a SQLite database; give another file name with --storage")
    import sqlite3

    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as con:
            tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.DatabaseError as e:
        raise NASError(
            f"{path} is a damaged SQLite database ({e}); restore it from a backup or give another file"
        ) from e
    if tables and not {"studies", "trials", "alembic_version"} <= tables:
        raise NASError(
            f"{path} is a SQLite database of something else (tables: {', '.join(sorted(tables)[:5])}); "
            "give another file name with --storage"
        )


def load_existing_study(storage: optuna.storages.BaseStorage, name: str, url: str) -> optuna.Study:
    names = [s.study_name for s in optuna.study.get_all_study_summaries(storage, include_best_trial=False)]
    if name not in names:
        raise NASError(
            f"no study named {name!r} in {url}; existing studies: {', '.join(names) or 'none'}. "
            "Start one with 'nas-sampler search --storage URL --study NAME'"
        )
    return optuna.load_study(study_name=name, storage=storage)


# ----------------------------------------------------------------------------- search / worker


def _apply_flags(cfg: SearchConfig, args: argparse.Namespace) -> SearchConfig:
    raw = cfg.to_dict()
    flag_map = {
        "storage": ("study", "storage"),
        "study": ("study", "name"),
        "seed": ("study", "seed"),
        "data": ("data", "name"),
        "batch_size": ("data", "batch_size"),
        "download": ("data", "download"),
        "population": ("search", "population"),
        "offspring": ("search", "offspring"),
        "ntk_mode": ("search", "ntk_mode"),
        "device": ("search", "device"),
        "artifact_dir": ("storage", "artifact_dir"),
        "heartbeat_interval": ("storage", "heartbeat_interval"),
        "grace_period": ("storage", "grace_period"),
        "tournament_every": ("tournament", "every"),
        "mode": ("search", "mode"),
        "max_params": ("search", "max_params"),
    }
    for flag, (section, key) in flag_map.items():
        value = getattr(args, flag, None)
        if value is not None:
            raw[section][key] = value
    if getattr(args, "space", None) is not None and args.space != raw["space"].get("kind"):
        raw["space"] = {"kind": args.space}
    if getattr(args, "trials", None) is not None:
        raw["search"]["trials"], raw["search"]["generations"] = args.trials, None
    if getattr(args, "generations", None) is not None:
        raw["search"]["generations"], raw["search"]["trials"] = args.generations, None
    return config_from_dict(raw, source="command line")


def _check_same_search(stored: dict[str, Any], cfg: SearchConfig, study_name: str) -> None:
    new, defaults = cfg.to_dict(), SearchConfig().to_dict()
    diffs = []
    for path in _FIXED_KEYS:
        a, b, d = stored, new, defaults
        for k in path:
            a, b = a.get(k) if isinstance(a, dict) else None, b.get(k) if isinstance(b, dict) else None
            d = d.get(k) if isinstance(d, dict) else None
        if a is None and path[0] == "search":  # a setting added since the study was made: it had the default
            a = d
        if path == ("space",) and isinstance(a, dict) and isinstance(b, dict):
            a, b = (dict(x) for x in (a, b))  # a study goes on in the Optuna encoding it was made with
            a.pop("encoding", None), b.pop("encoding", None)
        if a != b:
            diffs.append(f"{'.'.join(path)}: stored {json.dumps(a)}, given {json.dumps(b)}")
    if diffs:
        raise SpaceMismatchError(
            f"study {study_name!r} was started with other settings ({'; '.join(diffs)}); resume it with the preset "
            "and flags that started it, or pick a new --study name"
        )


def build_search(cfg: SearchConfig):
    """The (objective, sampler) pair of a configuration."""
    from nas_sampler.objective import TrainingFreeObjective
    from nas_sampler.sampler import GeneticCellSampler
    from nas_sampler.space import make_space

    space_kwargs = dict(cfg.space)
    space = make_space(space_kwargs.pop("kind", "cell"), **space_kwargs)
    objective = TrainingFreeObjective(
        space,
        data=cfg.data.name,
        batch_size=cfg.data.batch_size,
        device=cfg.search.device,
        seed=cfg.study.seed,
        ntk_mode=cfg.search.ntk_mode,
        ntk_batch=cfg.search.ntk_batch,
        extra_objectives=tuple(cfg.search.extra_objectives),
        **({} if cfg.search.metrics is None else {"metrics": cfg.search.metrics}),
        strategy=cfg.data.strategy,
        download=cfg.data.download,
        max_params=cfg.search.max_params,
    )
    tournament = None
    if cfg.tournament.every > 0:
        from nas_sampler.tournament import DartsTournament

        tournament = DartsTournament(
            data=cfg.data.name,
            every=cfg.tournament.every,
            size=cfg.tournament.size,
            steps=cfg.tournament.steps,
            batch_size=cfg.tournament.batch_size,
            device=cfg.search.device,
            seed=cfg.study.seed,
        )
    sampler_kwargs: dict[str, Any] = {
        "population_size": cfg.search.population,
        "offspring_per_generation": cfg.offspring,
        "space": space,
        "seed": cfg.study.seed,
        "reduction": cfg.search.reduction,
        "crossover_prob": cfg.search.crossover_prob,
        "mutation_prob": cfg.search.mutation_prob,
        "mode": cfg.search.mode,
    }
    if tournament is not None:
        sampler_kwargs["tournament"] = tournament
    return objective, GeneticCellSampler(**sampler_kwargs)


def _artifact_store(artifact_dir: Path) -> optuna.artifacts.FileSystemArtifactStore:
    artifact_dir.mkdir(parents=True, exist_ok=True)
    return optuna.artifacts.FileSystemArtifactStore(str(artifact_dir))


def run_search(cfg: SearchConfig, resume_hint: str, create: bool) -> int:
    objective, sampler = build_search(cfg)  # data errors first, before anything is written
    storage = open_storage(cfg.study.storage, cfg)
    if create:
        study = optuna.create_study(
            storage=storage,
            study_name=cfg.study.name,
            directions=objective.directions,
            sampler=sampler,
            load_if_exists=True,
        )
    else:
        study = load_existing_study(storage, cfg.study.name, cfg.study.storage)
        study.sampler = sampler
    if len(study.directions) != len(objective.directions):  # checked first: a foreign study is left untouched
        raise SpaceMismatchError(
            f"study {cfg.study.name!r} has {len(study.directions)} objectives, this search has "
            f"{len(objective.directions)} ({', '.join(objective.metric_names)}); use a new --study name"
        )
    stored = study.user_attrs.get(CONFIG_ATTR)
    if stored is not None:
        _check_same_search(stored, cfg, cfg.study.name)
    objective.artifact_store = _artifact_store(_study_artifact_dir(study, cfg))
    if stored is None:
        study.set_user_attr(CONFIG_ATTR, cfg.to_dict())
    else:
        _extend_budget(study, stored, cfg)

    target = cfg.n_trials
    done = finished_trials(study)
    print(f"study {cfg.study.name!r} in {cfg.study.storage}: {done}/{target} trials finished", file=sys.stderr)
    if not work_left(study, target):
        print("nothing to do: the search has reached its trials; raise --trials or --generations to go on")
        return 0
    stop = _GracefulStop(resume_hint)
    progress = SearchProgress(study, sampler, target)
    figures = DashboardFigures()
    with stop, progress:
        run_trials(
            study,
            objective,
            target,
            catch=objective.catch,
            callbacks=[progress, figures],
            should_stop=lambda: stop.requested,
        )
    figures.draw(study)  # the figures and the study note as the search leaves them
    done = finished_trials(study)
    running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    if stop.requested and (work_left(study, target) or running):  # Ctrl-C in the final wait: not done either
        print(f"stopped after {done}/{target} trials. Resume with:\n  {resume_hint}", file=sys.stderr)
        return 130
    print(
        f"done: {done} trials finished; the Pareto front: nas-sampler front --storage "
        f"{shlex.quote(cfg.study.storage)} --study {shlex.quote(cfg.study.name)}",
        file=sys.stderr,
    )
    return 0


def _study_artifact_dir(study: optuna.Study, cfg: SearchConfig) -> Path:
    """The study's picture folder: the one it records (so every worker, wherever it starts, and the
    dashboard use the same), else the given or default one, made absolute and recorded."""
    recorded = study.user_attrs.get(schema.ARTIFACTS)
    given = cfg.storage.artifact_dir
    if recorded is not None:
        if given is not None and Path(given).resolve() != Path(recorded):
            raise ConfigError(
                f"--artifact-dir {given}: study {study.study_name!r} keeps its cell pictures in {recorded}; "
                "leave --artifact-dir out (every worker uses the study's folder) or give that folder"
            )
        return Path(recorded)
    folder = Path(given or default_artifact_dir(cfg.study.storage)).resolve()
    study.set_user_attr(schema.ARTIFACTS, str(folder))
    return folder


def dashboard_artifact_dir(storage: optuna.storages.BaseStorage, given: str | None, url: str) -> Path:
    """The folder the dashboard serves pictures from: ``given``, else the one the storage's studies
    record (the most recent study's when they differ, with a warning), else the default."""
    if given:
        return Path(given)
    recorded = [
        s.user_attrs[schema.ARTIFACTS]
        for s in optuna.get_all_study_summaries(storage, include_best_trial=False)
        if schema.ARTIFACTS in s.user_attrs
    ]
    if not recorded:
        return default_artifact_dir(url)
    if len(set(recorded)) > 1:
        print(
            f"nas-sampler: warning: the studies keep pictures in {len(set(recorded))} folders; serving "
            f"{recorded[-1]} (the newest study's); pass --artifact-dir for another",
            file=sys.stderr,
        )
    return Path(recorded[-1])


def _extend_budget(study: optuna.Study, stored: dict[str, Any], cfg: SearchConfig) -> None:
    """A search given a larger budget than the study records records it, so every worker that joins
    (``nas-sampler worker``, which reads the study's settings) searches to it too. A budget only grows:
    a smaller one given later does not stop the others."""
    recorded = config_from_dict(stored, source=f"study {cfg.study.name!r}")
    if cfg.n_trials > recorded.n_trials:
        search = {**stored["search"], "trials": cfg.search.trials, "generations": cfg.search.generations}
        study.set_user_attr(CONFIG_ATTR, {**stored, "search": search})


class _GracefulStop:
    """First Ctrl-C: finish the running trial, then stop. Second: abort at once."""

    def __init__(self, resume_hint: str):
        self.requested = False
        self.resume_hint = resume_hint
        self._previous: Any = None

    def __enter__(self) -> _GracefulStop:
        try:
            self._previous = signal.signal(signal.SIGINT, self._handle)
        except ValueError:  # not the main thread
            self._previous = None
        return self

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print("\nCtrl-C: stopping after the running trial (press again to abort now)", file=sys.stderr)


def cmd_search(args: argparse.Namespace) -> int:
    cfg = load_preset(args.preset) if args.preset else SearchConfig()
    cfg = _apply_flags(cfg, args)
    hint = "nas-sampler " + shlex.join(sys.argv[1:] if args.argv is None else args.argv)
    return run_search(cfg, hint, create=True)


def cmd_worker(args: argparse.Namespace) -> int:
    storage = open_storage(args.storage, must_exist=True)
    study = load_existing_study(storage, args.study, args.storage)
    stored = study.user_attrs.get(CONFIG_ATTR)
    if stored is None:
        raise NASError(f"study {args.study!r} was not created by 'nas-sampler search'; no settings to join it with")
    raw = json.loads(json.dumps(stored))
    raw["study"]["storage"] = args.storage
    raw.setdefault("storage", {})["artifact_dir"] = None  # the study's recorded folder, wherever this starts
    if args.device is not None:
        raw["search"]["device"] = args.device
    cfg = config_from_dict(raw, source=f"study {args.study!r}")
    hint = f"nas-sampler worker --storage {shlex.quote(args.storage)} --study {shlex.quote(args.study)}"
    return run_search(cfg, hint, create=False)


# ----------------------------------------------------------------------------- front / studies / dashboard


def front_rows(study: optuna.Study) -> list[dict[str, Any]]:
    names = study.metric_names or [f"value{i}" for i in range(len(study.directions))]
    rows = []
    for t in sorted(study.best_trials, key=lambda t: t.number):
        row = {"trial": t.number, "genotype": t.user_attrs.get("genotype", "")}
        row.update({n: v for n, v in zip(names, t.values, strict=True)})
        row["params"] = t.user_attrs.get("params")
        rows.append(row)
    return rows


def cmd_front(args: argparse.Namespace) -> int:
    storage = open_storage(args.storage, must_exist=True)
    study = load_existing_study(storage, args.study, args.storage)
    rows = front_rows(study)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if not rows:  # none completed, or none within the constraints: say which, and by how much
        print(_as_flags("export", str(no_feasible_error(study, done))) if done else "no completed trials yet")
        return 0
    cols = list(rows[0])
    cells = [[_fmt(r[c]) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    print("  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)))
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)))
    within = f" ({len(feasible_trials(done))} within the constraints)" if any(t.constraints for t in done) else ""
    print(f"{len(rows)} trials on the Pareto front of {len(study.trials)}{within}")
    return 0


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    return "" if v is None else str(v)


def cmd_studies(args: argparse.Namespace) -> int:
    for name in list_presets():
        path = find_preset(name)
        first = next((ln.lstrip("# ").strip() for ln in path.read_text().splitlines() if ln.startswith("#")), "")
        print(f"{name:<20} {first}")
    return 0


def cmd_dashboard(args: argparse.Namespace) -> int:
    import optuna_dashboard

    storage = open_storage(args.storage, must_exist=True)  # fail early, with our message, on a bad URL
    artifact_dir = dashboard_artifact_dir(storage, args.artifact_dir, args.storage)
    print(f"optuna-dashboard on http://{args.host}:{args.port} (Ctrl-C to stop)", file=sys.stderr, flush=True)
    try:
        store = _artifact_store(artifact_dir)
        optuna_dashboard.run_server(storage, host=args.host, port=args.port, artifact_store=store)
    except KeyboardInterrupt:
        pass
    except OSError as e:
        raise NASError(f"cannot listen on {args.host}:{args.port}: {e.strerror}; pick another --port") from e
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from nas_sampler.report import write_report

    storage = open_storage(args.storage, must_exist=True)
    study = load_existing_study(storage, args.study, args.storage)
    formats = [f.strip() for f in args.format.split(",") if f.strip()]
    for path in write_report(study, args.out, formats):
        print(path)
    return 0


def _trial_numbers(text: str) -> list[int]:
    try:
        return [int(t) for t in text.split(",")]
    except ValueError:
        raise UsageError(
            f"--trials {text!r} is invalid: give comma-separated trial numbers, e.g. --trials 12,40"
        ) from None


def cmd_export(args: argparse.Namespace) -> int:
    from nas_sampler.final import export_final

    storage = open_storage(args.storage, must_exist=True)
    study = load_existing_study(storage, args.study, args.storage)
    trials = _trial_numbers(args.trials) if args.trials else None
    if args.rescore is not None and args.rescore < 0:
        raise UsageError(f"--rescore {args.rescore} is invalid: give the number of extra scorings, 0 or more")
    stored = study.user_attrs.get(CONFIG_ATTR)
    cfg = None if stored is None else config_from_dict(stored, source=f"study {args.study!r}")
    rescore = []
    if args.rescore:
        if cfg is None:
            raise ConfigError(
                f"--rescore needs the search's settings, and study {args.study!r} was not started by nas-sampler "
                "search; re-score in Python: export_final(..., rescore=[objective.reseeded(s) for s in (1, 2)])"
            )
        objective, _ = build_search(cfg)
        rescore = [objective.reseeded(cfg.study.seed + k) for k in range(1, args.rescore + 1)]
    # by default the final choice ranks as the search ranked its survivors (search.reduction)
    rule = args.rule or (cfg.search.reduction if cfg is not None else "rank_sum")
    record = export_final(
        study, args.out, n_cells=args.cells, rule=rule, trials=trials, seed=args.seed, rescore=rescore
    )
    print(
        f"wrote {record['path']} ({len(record['genotypes'])} cells from trials {record['trials']}) and "
        f"{record['program']} (loads with torch.export.load, no nas-sampler needed); train it with:\n"
        f"  nas-sampler train {shlex.quote(str(record['path']))} --epochs 10"
    )
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from nas_sampler.train import train

    result = train(
        args.model,
        data=args.data,
        test_data=args.test_data,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        subset=args.subset,
        test_subset=args.test_subset,
        device=args.device,
        seed=args.seed,
        out_dir=args.out_dir,
        storage=args.storage,
    )
    print(
        f"test accuracy {100 * result.test_accuracy:.2f} % after {args.epochs} epochs ({result.seconds:.0f} s on "
        f"{result.device}, {result.parameters:,} parameters); metrics: {result.metrics_path}; the trained "
        f"network for plain PyTorch: {result.program_path}"
    )
    return 0


# ----------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="nas-sampler", description="Training-free genetic neural architecture search on Optuna."
    )
    p.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("search", help="create or continue a search (the same command again resumes)")
    s.add_argument("--preset", help="a TOML preset: a path or a name from 'nas-sampler studies'")
    s.add_argument("--storage", help="storage URL (default sqlite:///nas.db)")
    s.add_argument("--study", help="study name (default 'nas')")
    s.add_argument("--space", choices=sorted(SPACES), help="search space (default cell)")
    s.add_argument("--data", help="'builtin' (offline default), a torchvision name (cifar10, ...) or an image folder")
    s.add_argument("--batch-size", type=int, help="images in the scoring batch (default 64)")
    s.add_argument(
        "--download",
        action="store_true",
        default=None,
        help="download a named torchvision data set into $NAS_SAMPLER_DATA (needs internet)",
    )
    s.add_argument("--population", type=int, help="population size (default 10)")
    s.add_argument("--offspring", type=int, help="children per generation (default: the population size)")
    budget = s.add_mutually_exclusive_group()
    budget.add_argument("--trials", type=int, help="total completed trials to reach")
    budget.add_argument("--generations", type=int, help="generations to reach (default 3)")
    s.add_argument("--seed", type=int, help="seed of the search and of the scoring batch (default 0)")
    s.add_argument("--device", help="auto, cpu, cuda or cuda:N (default auto)")
    s.add_argument("--ntk-mode", choices=["fast", "exact"], help="NTK condition number mode (default fast)")
    s.add_argument("--tournament-every", type=int, help="DARTS tournament every k-th generation (0 = off)")
    s.add_argument(
        "--mode",
        choices=["generational", "async"],
        help="generational (default: exact, reproducible) or async (no generation barrier; for many workers)",
    )
    s.add_argument(
        "--max-params",
        type=int,
        metavar="N",
        help="parameter budget: each trial records params - N as an Optuna constraint; survival prefers, and\n"
        "front and export keep, networks of at most N parameters (default: no budget)",
    )
    s.add_argument("--artifact-dir", help="where cell pictures are stored (default beside the SQLite file)")
    s.add_argument("--heartbeat-interval", type=int, help="seconds between worker heartbeats (default 30)")
    s.add_argument("--grace-period", type=int, help="seconds before a silent worker's trial is retried (default 90)")
    s.set_defaults(func=cmd_search)

    w = sub.add_parser("worker", help="join an existing study as one more worker")
    w.add_argument("--storage", required=True, help="storage URL of the study")
    w.add_argument("--study", required=True, help="study name")
    w.add_argument("--device", help="device of this worker (auto, cpu, cuda, cuda:N)")
    w.set_defaults(func=cmd_worker)

    f = sub.add_parser("front", help="print the current Pareto front")
    f.add_argument("--storage", default="sqlite:///nas.db", help="storage URL (default sqlite:///nas.db)")
    f.add_argument("--study", default="nas", help="study name (default 'nas')")
    f.add_argument("--json", action="store_true", help="print JSON instead of a table")
    f.set_defaults(func=cmd_front)

    e = sub.add_parser("export", help="choose the final cells of a study and write the final network")
    e.add_argument("--storage", default="sqlite:///nas.db", help="storage URL (default sqlite:///nas.db)")
    e.add_argument("--study", default="nas", help="study name (default 'nas')")
    e.add_argument("--out", default="final.json", help="the JSON file to write; weights go beside it (.pt)")
    e.add_argument("--cells", type=int, help="cells to stack (default 3 for cell spaces, 1 for nb201)")
    e.add_argument(
        "--rule",
        choices=list(RULES),
        help="how to choose cells (default: the search's search.reduction, else rank_sum: first front by sum of\n"
        "per-objective ranks; log_rank: by AZ-NAS's sum of log ranks, which punishes one very bad rank more)",
    )
    e.add_argument("--trials", help="comma-separated trial numbers to use instead of a rule")
    e.add_argument(
        "--rescore",
        type=int,
        default=0,
        metavar="N",
        help="score the 10 best candidates again on N other batches and initial weights and choose by all\n"
        "the scores (rank_sum and log_rank only; guards against picking the luckiest draw). Default 0",
    )
    e.add_argument("--seed", type=int, default=0, help="seed of the initial weights (default 0)")
    e.set_defaults(func=cmd_export)

    t = sub.add_parser("train", help="train an exported final network (or any model JSON) and report accuracy")
    t.add_argument("model", help="the JSON written by 'nas-sampler export'")
    t.add_argument("--data", help="data set name or ImageFolder folder (default: the data the study was scored on)")
    t.add_argument("--test-data", help="test split, when it cannot be found beside --data")
    t.add_argument("--epochs", type=int, default=10, help="epochs (default 10)")
    t.add_argument("--batch-size", type=int, default=128, help="batch size (default 128)")
    t.add_argument("--lr", type=float, default=0.05, help="initial learning rate, cosine schedule (default 0.05)")
    t.add_argument("--subset", type=int, help="train on a seeded random subset of this many images")
    t.add_argument("--test-subset", type=int, help="test on a seeded random subset of this many images (default all)")
    t.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    t.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    t.add_argument("--out-dir", help="where weights.pt and metrics.json go (default beside the JSON)")
    t.add_argument("--storage", help="record the trained accuracy on the study's trials in this storage")
    t.set_defaults(func=cmd_train)

    d = sub.add_parser("dashboard", help="start optuna-dashboard on a storage")
    d.add_argument("--storage", default="sqlite:///nas.db", help="storage URL (default sqlite:///nas.db)")
    d.add_argument("--host", default="127.0.0.1", help="host to listen on (default 127.0.0.1)")
    d.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    d.add_argument("--artifact-dir", help="cell pictures folder (default beside the SQLite file)")
    d.set_defaults(func=cmd_dashboard)

    r = sub.add_parser("report", help="write a study's figures as PNG files and one HTML page")
    r.add_argument("--storage", default="sqlite:///nas.db", help="storage URL (default sqlite:///nas.db)")
    r.add_argument("--study", default="nas", help="study name (default 'nas')")
    r.add_argument("--out", default="report", help="folder to write into (default ./report)")
    r.add_argument("--format", default="png,html", help="png, html or both (default png,html)")
    r.set_defaults(func=cmd_report)

    st = sub.add_parser("studies", help="list the study presets")
    st.set_defaults(func=cmd_studies)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = argv
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING, format="%(levelname)s %(message)s")
    optuna.logging.set_verbosity(optuna.logging.DEBUG if args.debug else optuna.logging.WARNING)
    if not args.debug:  # heartbeat and its retry callback are marked experimental; users chose them knowingly
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    try:
        return int(args.func(args) or 0)
    except (ConfigError, UsageError) as e:
        if args.debug:
            traceback.print_exc()
        print(f"nas-sampler: error: {_as_flags(args.command, str(e))}", file=sys.stderr)
        return 2
    except NASError as e:
        if args.debug:
            traceback.print_exc()
        print(f"nas-sampler: error: {e}", file=sys.stderr)
        return 1
    except (optuna.exceptions.StorageInternalError, sqlalchemy.exc.SQLAlchemyError) as e:
        if args.debug:
            traceback.print_exc()
        lost = connection_error(e)
        what = (
            f"lost the connection to the storage ({first_line(lost)})"
            if lost
            else f"storage error: {first_line(e.__cause__ or e)}"
        )
        print(f"nas-sampler: error: {what}; finished trials are stored: run the same command again", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("nas-sampler: aborted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

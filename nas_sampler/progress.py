"""A progress bar for searches: trials done, current generation, best value per metric, front size."""

from __future__ import annotations

from typing import Any

import optuna
from tqdm.auto import tqdm

from nas_sampler.sampler import RETRY_ATTR


def finished_trials(study: optuna.Study) -> int:
    """Trials that took a slot of the search and finished (a stale trial's retry stands in for it)."""
    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL)
    trials = study.get_trials(deepcopy=False)
    retried = {t.system_attrs[RETRY_ATTR] for t in trials if RETRY_ATTR in t.system_attrs}
    return sum(1 for t in trials if t.state in states and t.number not in retried)


class SearchProgress:
    """Optuna callback and context manager around a tqdm bar counting completed trials."""

    def __init__(self, study: optuna.Study, sampler: Any, target: int):
        self.study = study
        self.sampler = sampler
        self.target = target
        self.bar: tqdm | None = None

    def __enter__(self) -> SearchProgress:
        done = finished_trials(self.study)
        self.bar = tqdm(total=self.target, initial=done, unit="trial", dynamic_ncols=True, desc="search")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.close()

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if self.bar is None:
            return
        done = finished_trials(study)
        self.bar.n = min(done, self.target)
        postfix: dict[str, Any] = {}
        try:
            postfix["gen"] = self.sampler.get_trial_generation(study, trial)
        except Exception:  # noqa: BLE001 - a sampler without generations
            pass
        completed = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        if completed:
            names = study.metric_names or [f"v{i}" for i in range(len(study.directions))]
            for i, name in enumerate(names):
                values = [t.values[i] for t in completed]
                best = min(values) if study.directions[i] == optuna.study.StudyDirection.MINIMIZE else max(values)
                postfix[name] = f"{best:.4g}"
            postfix["front"] = len(study.best_trials)
        if trial.state == optuna.trial.TrialState.FAIL:
            postfix["failed"] = trial.number
        self.bar.set_postfix(postfix, refresh=False)
        self.bar.refresh()

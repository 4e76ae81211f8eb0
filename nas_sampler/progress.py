"""A progress bar for searches: trials done, current generation, best value per metric, front size."""

from __future__ import annotations

from typing import Any

import optuna
from tqdm.auto import tqdm


class SearchProgress:
    """Optuna callback and context manager around a tqdm bar counting completed trials."""

    def __init__(self, study: optuna.Study, sampler: Any, target: int):
        self.study = study
        self.sampler = sampler
        self.target = target
        self.bar: tqdm | None = None

    def __enter__(self) -> SearchProgress:
        done = len(self.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)))
        self.bar = tqdm(total=self.target, initial=done, unit="trial", dynamic_ncols=True, desc="search")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.close()

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if self.bar is None:
            return
        done = len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)))
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

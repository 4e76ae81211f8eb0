"""The parents of each generation, chosen once and kept in the study (``<sampler>:parent:<generation>``,
see :mod:`nas_sampler.schema`), so every worker and every resumed run breeds from the same parents
with the same adaptive state. One write per generation: a crash leaves it complete or absent, and
concurrent writers write the same value (selection is deterministic).
"""

from __future__ import annotations

from typing import Any

import optuna

from nas_sampler.evolution import AdaptiveState
from nas_sampler.internals import storage_of, study_id_of


def write_once(study: optuna.Study, key: str, value: Any) -> None:
    """One study system attribute; a concurrent writer of the same key (a unique-key race) is not an error."""
    storage, sid = storage_of(study), study_id_of(study)
    try:
        storage.set_study_system_attr(sid, key, value)
    except Exception:
        if key not in storage.get_study_system_attrs(sid):
            raise


class ParentCache:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix  # BaseGASampler's parent cache key prefix

    def read(self, study: optuna.Study, generation: int) -> tuple[list[int], AdaptiveState] | None:
        """The parents' trial numbers (best first) and the adaptive state of ``generation``, if chosen."""
        cached = storage_of(study).get_study_system_attrs(study_id_of(study)).get(self.prefix + str(generation))
        if cached is None:
            return None
        return [int(n) for n in cached["parents"]], AdaptiveState.from_dict(cached["state"])

    def write(self, study: optuna.Study, generation: int, parents: list[int], state: AdaptiveState) -> None:
        write_once(study, self.prefix + str(generation), {"parents": parents, "state": state.to_dict()})

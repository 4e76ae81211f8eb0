"""Same seed, same search: the sampler proposes exactly the genotypes pinned before the redesign
(``tests/golden.py`` says how the fixture was made)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import golden  # noqa: E402

PINNED = json.loads(golden.FIXTURE.read_text())


@pytest.mark.parametrize("case", golden.cases(), ids=lambda c: golden.key(*c))
def test_the_sampler_proposes_the_pinned_genotypes(case: tuple[str, int, bool]) -> None:
    pinned = PINNED[golden.key(*case)]
    assert len(pinned) == golden.POPULATION * golden.GENERATIONS
    assert golden.run(*case) == pinned

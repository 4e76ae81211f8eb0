"""Search spaces: which genotypes exist, their validation, repair and genetic operators, the networks
they build, and the Optuna bridge (see :mod:`nas_sampler.space.base`).

Each space is one module; importing it here registers it (``make_space``, presets, the CLI and
stored studies then know its ``kind``).
"""

from nas_sampler.space.base import (
    GENOTYPE_ATTR,
    REPAIRED_ATTR,
    SPACE_ATTR,
    SPACES,
    Crossover,
    Mutation,
    SearchSpace,
    choice,
    make_space,
    record_space,
    recorded_space,
    register_space,
    same_but_encoding,
    space_from_definition,
)
from nas_sampler.space.cell import CellSpace
from nas_sampler.space.nb201 import NB201Space
from nas_sampler.space.sss import SSSSpace

__all__ = [
    "GENOTYPE_ATTR",
    "REPAIRED_ATTR",
    "SPACE_ATTR",
    "SPACES",
    "CellSpace",
    "Crossover",
    "Mutation",
    "NB201Space",
    "SSSSpace",
    "SearchSpace",
    "choice",
    "make_space",
    "record_space",
    "recorded_space",
    "register_space",
    "same_but_encoding",
    "space_from_definition",
]

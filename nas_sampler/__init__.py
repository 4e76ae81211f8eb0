"""nas-sampler: training-free genetic neural architecture search as an Optuna sampler."""

from nas_sampler.errors import GenotypeError, NASError, SpaceMismatchError, UnknownOperationError
from nas_sampler.genotype import Edge, Genotype
from nas_sampler.ops import build_op, known_ops, register_op
from nas_sampler.phenotype import count_flops, count_parameters
from nas_sampler.space import CellSpace, NB201Space, SearchSpace, make_space, recorded_space

__all__ = [
    "CellSpace",
    "Edge",
    "Genotype",
    "GenotypeError",
    "NASError",
    "NB201Space",
    "SearchSpace",
    "SpaceMismatchError",
    "UnknownOperationError",
    "build_op",
    "count_flops",
    "count_parameters",
    "known_ops",
    "make_space",
    "recorded_space",
    "register_op",
]
__version__ = "0.1.0"

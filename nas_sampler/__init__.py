"""nas-sampler: training-free genetic neural architecture search as an Optuna sampler."""

from nas_sampler.dashboard import DashboardFigures
from nas_sampler.data import BuiltinShapes, load_dataset, scoring_batch
from nas_sampler.errors import (
    ConfigError,
    DataError,
    GenotypeError,
    NASError,
    SpaceMismatchError,
    UnknownOperationError,
)
from nas_sampler.final import build_final_network, choose_trials, export_final
from nas_sampler.genotype import Edge, Genotype
from nas_sampler.heuristics import (
    HeuristicError,
    activation_score,
    jacobian_score,
    ntk_condition_number,
    score_all,
    swap_score,
)
from nas_sampler.objective import TrainingFreeObjective
from nas_sampler.ops import build_op, known_ops, register_op
from nas_sampler.phenotype import count_flops, count_parameters
from nas_sampler.sampler import GeneticCellSampler
from nas_sampler.space import (
    CellSpace,
    NB201Space,
    SearchSpace,
    SSSSpace,
    make_space,
    recorded_space,
    register_space,
)
from nas_sampler.tournament import DartsTournament
from nas_sampler.train import train
from nas_sampler.worker import run_trials

__all__ = [
    "BuiltinShapes",
    "CellSpace",
    "ConfigError",
    "DartsTournament",
    "DashboardFigures",
    "DataError",
    "Edge",
    "GeneticCellSampler",
    "Genotype",
    "GenotypeError",
    "HeuristicError",
    "NASError",
    "NB201Space",
    "SSSSpace",
    "SearchSpace",
    "SpaceMismatchError",
    "TrainingFreeObjective",
    "UnknownOperationError",
    "activation_score",
    "build_final_network",
    "build_op",
    "choose_trials",
    "count_flops",
    "count_parameters",
    "export_final",
    "jacobian_score",
    "known_ops",
    "load_dataset",
    "make_space",
    "ntk_condition_number",
    "recorded_space",
    "register_op",
    "register_space",
    "run_trials",
    "score_all",
    "swap_score",
    "scoring_batch",
    "train",
]
__version__ = "0.1.0"

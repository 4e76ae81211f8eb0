"""The objective end to end: any sampler drives it, studies record what makes resumed runs score alike."""

from __future__ import annotations

import math

import numpy as np
import optuna
import pytest
import torch
from PIL import Image

from nas_sampler.data import DATA_ATTR, BuiltinShapes, recorded_data_spec
from nas_sampler.errors import ConfigError, SpaceMismatchError
from nas_sampler.evolution import select_survivors
from nas_sampler.final import choose_trials
from nas_sampler.heuristics import swap_score
from nas_sampler.objective import TrainingFreeObjective, init_seed
from nas_sampler.phenotype import count_flops, count_parameters
from nas_sampler.sampler import GeneticCellSampler
from nas_sampler.selection import ParetoSelector
from nas_sampler.space import NB201Space

optuna.logging.set_verbosity(optuna.logging.WARNING)

ALL_NONE = "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"
POOL_SKIP = "|skip_connect~0|+|avg_pool_3x3~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|avg_pool_3x3~2|"
CONV = "|nor_conv_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_3x3~0|none~1|avg_pool_3x3~2|"


@pytest.fixture(scope="module")
def space() -> NB201Space:
    return NB201Space(width=4, cells_per_stage=1)


@pytest.fixture(scope="module")
def tiny() -> BuiltinShapes:
    return BuiltinShapes(size=120, image_size=12)


def objective(space: NB201Space, tiny: BuiltinShapes, **kwargs) -> TrainingFreeObjective:
    kwargs.setdefault("batch_size", 8)
    kwargs.setdefault("device", "cpu")
    return TrainingFreeObjective(space, data=tiny, **kwargs)


def test_names_directions_and_bad_options(space, tiny):
    obj = objective(space, tiny)
    assert obj.metric_names == ["ntk_cond", "activation", "jacobian"] and obj.directions == ["minimize"] * 3
    obj = objective(space, tiny, extra_objectives=["params", "flops", ("ops", lambda net, g: 1.0)])
    assert obj.metric_names == ["ntk_cond", "activation", "jacobian", "params", "flops", "ops"]
    assert objective(space, tiny, metrics=["activation"]).metric_names == ["activation"]
    with pytest.raises(ConfigError, match="extra objective 'latency' is unknown"):
        objective(space, tiny, extra_objectives=["latency"])
    with pytest.raises(ConfigError, match="objective names repeat"):
        objective(space, tiny, extra_objectives=["params", ("params", lambda net, g: 0.0)])
    with pytest.raises(ConfigError, match="'params:max' is unknown.*'params:maximize'"):
        objective(space, tiny, extra_objectives=["params:max"])
    with pytest.raises(ConfigError, match="metrics=.*invalid"):
        objective(space, tiny, metrics=["accuracy"])
    with pytest.raises(ConfigError, match="ntk_mode='slow'"):
        objective(space, tiny, ntk_mode="slow")
    with pytest.raises(ConfigError, match="device='gpu0' is invalid"):
        objective(space, tiny, device="gpu0")


def test_same_genotype_gets_the_same_weights_whatever_the_order(space, tiny):
    obj = objective(space, tiny)
    g, h = space.parse(CONV), space.random(np.random.default_rng(1))
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    a = obj.build(g).state_dict()
    obj.build(h)
    assert torch.equal(torch.rand(3), expected_next)  # the global generator is left alone
    b = obj.build(g).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    other = objective(space, tiny, seed=1).build(g).state_dict()
    assert not all(torch.equal(a[k], other[k]) for k in a)
    assert init_seed(0, g) == init_seed(0, str(g)) != init_seed(1, g)


def test_in_memory_study_records_scores_and_attributes(space, tiny):
    obj = objective(space, tiny, extra_objectives=["params", "flops", ("depth", lambda net, g: float(g.num_nodes))])
    study = optuna.create_study(directions=obj.directions, sampler=optuna.samplers.RandomSampler(seed=0))
    study.enqueue_trial(space.to_params(space.parse(CONV)))
    study.optimize(obj, n_trials=3)
    assert study.metric_names == obj.metric_names
    assert recorded_data_spec(study)["batch_size"] == 8
    t = study.trials[0]
    assert t.state == optuna.trial.TrialState.COMPLETE and t.user_attrs["genotype"] == CONV
    net = space.scoring_network(space.parse(CONV), num_classes=10, in_channels=3)
    assert t.user_attrs["params"] == count_parameters(net) == t.values[3]
    assert t.values[4] == count_flops(net, (1, 3, 12, 12)) and t.values[5] == 3.0
    assert t.user_attrs["device"] == "cpu"
    assert set(t.user_attrs["seconds"]) >= {"build", "heuristics", "params", "flops", "depth", "total"}
    assert all(math.isfinite(v) for v in t.values[:3])
    # the stored values are the genotype's scores: a fresh objective reproduces them
    values = objective(space, tiny, extra_objectives=["params", "flops"]).score(space.parse(CONV)).values
    assert [values[m] for m in ("ntk_cond", "activation", "jacobian")] == pytest.approx(t.values[:3], rel=1e-6)


@pytest.mark.parametrize(
    "sampler",
    [
        optuna.samplers.RandomSampler(seed=1),
        optuna.samplers.TPESampler(seed=1, n_startup_trials=3),
        optuna.samplers.NSGAIISampler(seed=1, population_size=4),
    ],
    ids=["random", "tpe", "nsga2"],
)
def test_any_optuna_sampler_drives_it(space, tiny, sampler):
    obj = objective(space, tiny)
    study = optuna.create_study(directions=obj.directions, sampler=sampler)
    study.optimize(obj, n_trials=7)
    complete = study.get_trials(states=[optuna.trial.TrialState.COMPLETE])
    assert len(study.trials) == 7 and len(complete) >= 5  # a degenerate genotype may fail, the rest completes
    assert all(space.parse(t.user_attrs["genotype"]) == space.from_params(t.params) for t in study.trials)
    assert study.best_trials


def test_degenerate_genotype_fails_its_trial_with_the_reason_and_the_study_goes_on(space, tiny):
    obj = objective(space, tiny)
    study = optuna.create_study(directions=obj.directions, sampler=optuna.samplers.RandomSampler(seed=0))
    study.enqueue_trial(space.to_params(space.parse(ALL_NONE)))
    study.enqueue_trial(space.to_params(space.parse(CONV)))
    study.optimize(obj, n_trials=3)  # no catch= needed
    t = study.trials[0]
    assert t.state == optuna.trial.TrialState.FAIL
    assert ALL_NONE in t.user_attrs["fail_reason"] and "degenerate" in t.user_attrs["fail_reason"]
    assert set(t.user_attrs["degenerate"]) <= set(obj.metric_names) and t.user_attrs["degenerate"]
    assert [u.state for u in study.trials[1:]] == [optuna.trial.TrialState.COMPLETE] * 2


def test_degenerate_genotype_gets_the_worst_value_on_request(space, tiny):
    from nas_sampler.heuristics import WORST_SCORE

    obj = objective(space, tiny, on_degenerate="worst")
    study = optuna.create_study(directions=obj.directions, sampler=optuna.samplers.NSGAIISampler(seed=0))
    study.enqueue_trial(space.to_params(space.parse(ALL_NONE)))
    study.enqueue_trial(space.to_params(space.parse(CONV)))
    study.optimize(obj, n_trials=2)
    worst, good = study.trials
    assert worst.state == good.state == optuna.trial.TrialState.COMPLETE
    bad = worst.user_attrs["degenerate"]
    assert bad and all(worst.values[obj.metric_names.index(m)] == WORST_SCORE for m in bad)
    assert all(v < WORST_SCORE for v in good.values) and "degenerate" not in good.user_attrs
    assert [t.number for t in study.best_trials] == [1]
    with pytest.raises(ConfigError, match="on_degenerate='skip'"):
        objective(space, tiny, on_degenerate="skip")


def test_a_parameter_budget_is_a_constraint_on_every_trial(space, tiny):
    small, large = (count_parameters(objective(space, tiny).build(space.parse(g))) for g in (POOL_SKIP, CONV))
    budget = (small + large) // 2
    obj = objective(space, tiny, max_params=budget, on_degenerate="worst")
    study = optuna.create_study(directions=obj.directions, sampler=optuna.samplers.NSGAIISampler(seed=0))
    for g in (ALL_NONE, POOL_SKIP, CONV):
        study.enqueue_trial(space.to_params(space.parse(g)))
    study.optimize(obj, n_trials=3)
    worst, within, over = study.trials
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials) and worst.user_attrs["degenerate"]
    for t in study.trials:  # Optuna's convention: params - budget, feasible when <= 0
        assert t.constraints == {"params": float(t.user_attrs["params"] - budget)}
    assert within.constraints["params"] <= 0 < over.constraints["params"]
    assert over.number not in {t.number for t in study.best_trials}  # Optuna reads it back

    failing = objective(space, tiny, max_params=budget)  # a degenerate trial that fails still records it
    study = optuna.create_study(directions=failing.directions)
    study.enqueue_trial(space.to_params(space.parse(ALL_NONE)))
    study.optimize(failing, n_trials=1)
    (t,) = study.trials
    assert t.state == optuna.trial.TrialState.FAIL
    assert t.constraints == {"params": float(count_parameters(failing.build(space.parse(ALL_NONE))) - budget)}
    plain = optuna.create_study(directions=obj.directions)  # no budget, no constraint
    plain.enqueue_trial(space.to_params(space.parse(CONV)))
    plain.optimize(objective(space, tiny), n_trials=1)
    assert plain.trials[0].constraints == {}


@pytest.mark.parametrize("bad", [0, -5, True, 2.5, "1000"])
def test_a_bad_parameter_budget_names_the_value_and_the_fix(space, tiny, bad):
    with pytest.raises(ConfigError, match=rf"max_params={bad!r} is invalid: give the parameter budget as a positive"):
        objective(space, tiny, max_params=bad)


def test_a_search_under_a_budget_keeps_its_parents_and_its_front_within_it(space, tiny):
    budget = 9000  # this space's cells have 4,894 to 14,134 parameters; half of generation 0 is over it
    obj = objective(space, tiny, max_params=budget)
    sampler = GeneticCellSampler(population_size=4, seed=0, space=space)
    study = optuna.create_study(directions=obj.directions, sampler=sampler)
    study.optimize(obj, n_trials=16)
    done = study.get_trials(states=[optuna.trial.TrialState.COMPLETE])
    within = [t for t in done if t.user_attrs["params"] <= budget]
    assert 4 <= len(within) < len(done)  # both kinds exist, enough within it to fill a population
    # survival by constrained domination: the parents of the next generation are within the budget,
    # though by the scores alone a network over it would survive among the same trials
    assert all(t.user_attrs["params"] <= budget for t in sampler.select_parent(study, 4))
    assert all(t.user_attrs["params"] <= budget for t in ParetoSelector().select(study, space, done, 4, 4))
    unconstrained = select_survivors(np.array([t.values for t in done]), study.directions, 4)
    assert any(done[i].user_attrs["params"] > budget for i in unconstrained)
    # the front a user sees and the cell export picks: within the budget
    assert study.best_trials and all(t.user_attrs["params"] <= budget for t in study.best_trials)
    assert all(t.user_attrs["params"] <= budget for t in choose_trials(study, 3))


def test_nan_extra_objective_fails_the_trial(space, tiny):
    obj = objective(space, tiny, extra_objectives=[("broken", lambda net, g: float("nan"))])
    study = optuna.create_study(directions=obj.directions)
    study.enqueue_trial(space.to_params(space.parse(CONV)))
    study.optimize(obj, n_trials=1)
    t = study.trials[0]
    assert t.state == optuna.trial.TrialState.FAIL and "broken=nan" in t.user_attrs["fail_reason"]


def test_sqlite_study_resumes_on_the_same_images(space, tiny, tmp_path):
    url = f"sqlite:///{tmp_path / 'nas.db'}"
    kw = {"batch_size": 8, "seed": 3, "strategy": "class_focused"}
    first = objective(space, tiny, **kw)
    study = optuna.create_study(
        directions=first.directions, storage=url, study_name="s", sampler=optuna.samplers.RandomSampler(seed=0)
    )
    study.optimize(first, n_trials=3)

    second = objective(space, BuiltinShapes(size=120, image_size=12), **kw)  # a new process would build anew
    resumed = optuna.load_study(study_name="s", storage=url, sampler=optuna.samplers.RandomSampler(seed=1))
    resumed.optimize(second, n_trials=2)
    assert torch.equal(first.images, second.images)
    assert len(resumed.trials) == 5 and resumed.metric_names == second.metric_names
    assert resumed.user_attrs[DATA_ATTR]["fingerprint"] == second.data_spec["fingerprint"]
    for t in resumed.get_trials(states=[optuna.trial.TrialState.COMPLETE]):
        again = second.score(space.parse(t.user_attrs["genotype"])).values
        assert list(again.values()) == pytest.approx(t.values, rel=1e-6)

    other = objective(space, tiny, batch_size=8, seed=4, strategy="class_focused")
    with pytest.raises(SpaceMismatchError, match=r"seed: study has 3, given 4"):
        optuna.load_study(study_name="s", storage=url).optimize(other, n_trials=1)
    assert len(optuna.load_study(study_name="s", storage=url).get_trials(states=[optuna.trial.TrialState.COMPLETE]))


def test_study_with_other_directions_or_metrics_is_refused(space, tiny):
    obj = objective(space, tiny)
    with pytest.raises(ConfigError, match=r"directions=objective.directions"):
        optuna.create_study(directions=["minimize", "minimize"]).optimize(obj, n_trials=1)
    with pytest.raises(ConfigError, match=r"directions"):
        optuna.create_study(directions=["maximize"] * 3).optimize(obj, n_trials=1)
    study = optuna.create_study(directions=obj.directions)
    with pytest.warns(optuna.exceptions.ExperimentalWarning):
        study.set_metric_names(["a", "b", "c"])
    with pytest.raises(SpaceMismatchError, match=r"records the objectives \['a', 'b', 'c'\]"):
        study.optimize(obj, n_trials=1)


def test_single_metric_and_fixed_trial(space, tiny):
    obj = objective(space, tiny, metrics=["jacobian"])
    g = space.parse(CONV)
    value = obj(optuna.trial.FixedTrial(space.to_params(g)))
    assert isinstance(value, float) and math.isfinite(value)
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0))
    study.optimize(obj, n_trials=2)
    assert study.metric_names == ["jacobian"]


def test_swap_as_an_objective(space, tiny):
    obj = objective(space, tiny, metrics=["ntk_cond", "swap"], extra_objectives=["params:maximize"])
    assert obj.metric_names == ["ntk_cond", "swap", "params"]
    study = optuna.create_study(directions=obj.directions)
    study.enqueue_trial(space.to_params(space.parse(CONV)))
    study.optimize(obj, n_trials=1)
    (t,) = study.trials
    net = obj.score(space.parse(CONV)).net
    assert t.values[1] == swap_score(net, obj.images) < 0


def test_cell_pictures_go_to_the_artifact_store(space, tiny, tmp_path):
    store = optuna.artifacts.FileSystemArtifactStore(str(tmp_path))
    obj = objective(space, tiny, artifact_store=store)
    storage = optuna.storages.InMemoryStorage()
    study = optuna.create_study(directions=obj.directions, storage=storage)
    study.enqueue_trial(space.to_params(space.parse(CONV)))  # a random draw may be degenerate (fails)
    study.optimize(obj, n_trials=1)
    (meta,) = optuna.artifacts.get_all_artifact_meta(study.trials[0], storage=storage)
    assert meta.mimetype == "image/svg+xml"
    with store.open_reader(meta.artifact_id) as f:
        assert b"<svg" in f.read()


def _folder(root, mode: str) -> str:
    rng = np.random.default_rng(0)
    for c in ("a", "b", "c"):
        (root / c).mkdir(parents=True)
        for i in range(4):
            shape = (10, 10, 3) if mode == "RGB" else (10, 10)
            Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode=mode).save(root / c / f"{i}.png")
    return str(root)


@pytest.mark.parametrize("mode,channels", [("RGB", 3), ("L", 1)])
def test_image_folder_data_by_path(space, tmp_path, mode, channels):
    obj = TrainingFreeObjective(space, data=_folder(tmp_path / "d", mode), batch_size=8, device="cpu")
    assert obj.in_channels == channels and obj.num_classes == 3
    assert obj.data_spec["data"] == str((tmp_path / "d").resolve())
    study = optuna.create_study(directions=obj.directions)
    study.enqueue_trial(space.to_params(space.parse(CONV)))  # a random draw may be degenerate (fails)
    study.optimize(obj, n_trials=1)
    assert study.trials[0].state == optuna.trial.TrialState.COMPLETE


def test_real_cifar10_folder(space, cifar10_root):
    obj = TrainingFreeObjective(space, data=str(cifar10_root / "train"), batch_size=8, device="cpu")
    assert obj.images.shape == (8, 3, 32, 32) and obj.num_classes == 10
    study = optuna.create_study(directions=obj.directions)
    study.enqueue_trial(space.to_params(space.parse(CONV)))
    study.optimize(obj, n_trials=1)
    assert all(math.isfinite(v) for v in study.trials[0].values)


def test_default_is_the_builtin_task(space):
    obj = TrainingFreeObjective(space, batch_size=8, device="cpu")
    assert obj.data_spec["data"] == "builtin" and obj.images.shape == (8, 3, 32, 32)


def test_out_of_memory_fails_one_trial_with_its_reason(space, tiny, monkeypatch):
    obj = objective(space, tiny)
    real_score = obj.score

    def score(genotype):
        if "nor_conv_3x3~0" in str(genotype):
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real_score(genotype)

    monkeypatch.setattr(obj, "score", score)
    study = optuna.create_study(directions=obj.directions, sampler=optuna.samplers.RandomSampler(seed=0))
    study.enqueue_trial(space.to_params(space.parse(CONV)))
    study.enqueue_trial(space.to_params(space.parse(POOL_SKIP)))
    study.optimize(obj, n_trials=2, catch=obj.catch)
    failed, ok = study.trials
    assert failed.state == optuna.trial.TrialState.FAIL and "OutOfMemoryError" in failed.user_attrs["fail_reason"]
    assert ok.state == optuna.trial.TrialState.COMPLETE and "fail_reason" not in ok.user_attrs


def test_maximised_extra_objective_sets_its_direction(space, tiny):
    obj = objective(space, tiny, extra_objectives=["params:maximize", ("depth", lambda net, g: 1.0, "maximize")])
    assert obj.metric_names == ["ntk_cond", "activation", "jacobian", "params", "depth"]
    assert obj.directions == ["minimize"] * 3 + ["maximize"] * 2
    study = optuna.create_study(directions=obj.directions, sampler=optuna.samplers.RandomSampler(seed=0))
    study.enqueue_trial(space.to_params(space.parse(CONV)))  # not a degenerate cell: its trial completes
    study.optimize(obj, n_trials=1)
    assert study.trials[0].values[3] == study.trials[0].user_attrs["params"] > 0
    # a study created for the minimised count is refused, naming both
    wrong = optuna.create_study(directions=["minimize"] * 5)
    with pytest.raises(ConfigError, match="'maximize', 'maximize'"):
        obj.prepare(wrong)
    # +inf is "better than everything" for a maximised value: the trial fails instead
    broken = objective(space, tiny, extra_objectives=[("broken", lambda net, g: float("inf"), "maximize")])
    s2 = optuna.create_study(directions=broken.directions)
    s2.enqueue_trial(space.to_params(space.parse(CONV)))
    s2.optimize(broken, n_trials=1)
    assert s2.trials[0].state == optuna.trial.TrialState.FAIL and "broken=inf" in s2.trials[0].user_attrs["fail_reason"]


def test_ntk_batch_reaches_the_scores(space, tiny):
    from nas_sampler.heuristics import score_all

    obj = objective(space, tiny, ntk_mode="exact", ntk_batch=4)
    g = space.parse(CONV)
    expected = score_all(obj.build(g), obj.images, "exact", device="cpu", seed=init_seed(0, g), ntk_batch=4)
    assert obj.score(g).values == pytest.approx(expected, rel=1e-9)
    assert obj.score(g).values["ntk_cond"] != pytest.approx(objective(space, tiny).score(g).values["ntk_cond"])
    with pytest.raises(ConfigError, match="ntk_batch=0 is invalid"):
        objective(space, tiny, ntk_batch=0)


def test_reseeded_objective_keeps_the_settings_and_draws_a_new_batch(space, tiny):
    obj = objective(space, tiny, ntk_mode="exact", ntk_batch=4, extra_objectives=["params:maximize"])
    other = obj.reseeded(7)
    assert other.seed == 7 and other.metric_names == obj.metric_names and other.directions == obj.directions
    assert (other.ntk_mode, other.ntk_batch, other.images.shape) == ("exact", 4, obj.images.shape)
    assert not torch.equal(other.images, obj.images)
    g = space.parse(CONV)
    assert obj.reseeded(0).score(g).values == obj.score(g).values  # the same seed scores the same

from __future__ import annotations

import pytest

from nas_sampler.errors import ConfigError, UnknownOperationError
from nas_sampler.presets import config_from_dict, list_presets, load_preset


def test_every_shipped_preset_loads() -> None:
    names = list_presets()
    assert {"smoke", "cifar10", "nb201-cifar10", "nats-sss-cifar10", "postgres-workers"} <= set(names)
    for name in names:
        cfg = load_preset(name)
        assert cfg.n_trials >= cfg.search.population


def test_space_is_stored_canonically() -> None:
    short = config_from_dict({"space": {"kind": "cell"}})
    full = config_from_dict({"space": {"kind": "cell", "max_nodes": 4}})
    assert short.space == full.space and short.space["channel_choices"] == [0, 4, 8, 16, 32, 64]


@pytest.mark.parametrize(
    "raw, words",
    [
        ({"serch": {}}, ["[serch]", "search"]),
        ({"search": {"populaton": 5}}, ["'populaton'", "population"]),
        ({"search": {"population": "ten"}}, ["population", "'ten'", "int"]),
        ({"search": {"population": 0}}, ["search.population", "positive"]),
        ({"search": {"max_params": 0}}, ["search.max_params = 0", "positive"]),
        ({"search": {"max_params": True}}, ["max_params", "True", "int | None"]),
        ({"search": {"ntk_mode": "slow"}}, ["ntk_mode", "fast, exact"]),
        ({"search": {"extra_objectives": ["latency"]}}, ["latency", "params, flops"]),
        ({"search": {"metrics": ["ntk_cond", "naswot"]}}, ["search.metrics", "'naswot'", "swap"]),
        ({"space": {"kind": "cell", "depth": 3}}, ["[space]", "depth"]),
        ({"storage": {"heartbeat_interval": 60, "grace_period": 30}}, ["grace_period", "heartbeat_interval"]),
        ({"search": {"mutation_prob": 1.5}}, ["search.mutation_prob = 1.5", "between 0 and 1"]),
        ({"search": {"crossover_prob": "high"}}, ["search.crossover_prob = 'high'", "probability"]),
    ],
)
def test_bad_preset_values_name_the_key(raw, words) -> None:
    with pytest.raises(ConfigError) as err:
        config_from_dict(raw, source="my.toml")
    for w in ["my.toml", *words]:
        assert w in str(err.value)


def test_unknown_operation_in_a_preset() -> None:
    with pytest.raises(UnknownOperationError, match="'conv9'"):
        config_from_dict({"space": {"kind": "cell", "ops": ["conv9"]}})


def test_missing_and_invalid_preset_files(tmp_path) -> None:
    with pytest.raises(ConfigError, match="not found.*smoke"):
        load_preset("no-such-preset")
    bad = tmp_path / "bad.toml"
    bad.write_text("[search\npopulation = 3")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_preset(str(bad))


def test_preset_metrics_reach_the_objective() -> None:
    from nas_sampler.cli import build_search

    cfg = config_from_dict({"space": {"kind": "nb201"}, "data": {"name": "builtin"}, "search": {"metrics": ["swap"]}})
    objective, _ = build_search(cfg)
    assert objective.metric_names == ["swap"]
    assert config_from_dict(cfg.to_dict()).search.metrics == ["swap"]  # stored and read back (resume, workers)
    objective, _ = build_search(config_from_dict({"space": {"kind": "nb201"}, "data": {"name": "builtin"}}))
    assert objective.metric_names == ["ntk_cond", "activation", "jacobian"]


def test_preset_child_probabilities_reach_the_sampler() -> None:
    from nas_sampler.cli import build_search

    raw = {"data": {"name": "builtin"}, "search": {"crossover_prob": 0.5, "mutation_prob": 1}}
    _, sampler = build_search(config_from_dict(raw))
    assert (sampler.evolution_config.crossover_prob, sampler.evolution_config.mutation_prob) == (0.5, 1)
    _, sampler = build_search(config_from_dict({"data": {"name": "builtin"}}))
    assert (sampler.evolution_config.crossover_prob, sampler.evolution_config.mutation_prob) == (0.9, 0.8)

"""The final network loads anywhere: the ``.pt2`` program beside an export (initial weights) and beside
a training run (trained weights) loads with plain PyTorch, in a process that cannot import
nas_sampler, and computes what the network computes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import optuna
import torch

from nas_sampler import build_final_network, export_final, train
from nas_sampler.space import CellSpace, record_space

LOAD_WITHOUT_NAS_SAMPLER = """
import json, sys
sys.modules["nas_sampler"] = None  # any import of the package fails from here on
try:
    import nas_sampler  # noqa: F401
    raise SystemExit("nas_sampler was importable")
except ImportError:
    pass
import torch
program, inputs, out = sys.argv[1:4]
extra = {"nas_sampler.json": ""}
module = torch.export.load(program, extra_files=extra).module()
torch.save([module(x) for x in torch.load(inputs)], out)
print(extra["nas_sampler.json"])
"""


def _outputs_elsewhere(program: Path, inputs: list[torch.Tensor], tmp: Path) -> tuple[list[torch.Tensor], dict]:
    torch.save(inputs, tmp / "inputs.pt")
    run = subprocess.run(
        [sys.executable, "-c", LOAD_WITHOUT_NAS_SAMPLER, str(program), str(tmp / "inputs.pt"), str(tmp / "out.pt")],
        cwd=tmp, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    return torch.load(tmp / "out.pt"), json.loads(run.stdout)


def _study(tmp_path: Path) -> tuple[optuna.Study, str]:
    space = CellSpace(width=8)
    storage = f"sqlite:///{tmp_path / 'nas.db'}"
    study = optuna.create_study(storage=storage, study_name="p", directions=["minimize", "minimize"])
    record_space(study, space)
    for g, v in (("|sep_conv_3x3:8~0|+|skip_connect:4~1|", [0.0, 1.0]), ("|max_pool_3x3:8~0|", [1.0, 0.0])):
        genotype = space.parse(g)
        study.add_trial(
            optuna.trial.create_trial(
                params=space.to_params(genotype), distributions=space.distributions_of(genotype), values=v,
                user_attrs={"genotype": g},
            )
        )  # fmt: skip
    return study, storage


def test_an_exported_network_loads_and_runs_without_nas_sampler(tmp_path: Path) -> None:
    study, _ = _study(tmp_path)
    record = export_final(study, tmp_path / "final.json", n_cells=2, num_classes=10, in_channels=3, width=8)
    program = tmp_path / record["program"]
    assert program.is_file() and record["input_shape"] == [3, 32, 32]
    net = build_final_network(tmp_path / "final.json").eval()
    inputs = [torch.randn(1, 3, 32, 32), torch.randn(5, 3, 32, 32)]  # not the batch size it was exported at
    got, meta = _outputs_elsewhere(program, inputs, tmp_path)
    with torch.no_grad():
        for x, y in zip(inputs, got, strict=True):
            assert torch.allclose(net(x), y, rtol=1e-5, atol=1e-6)
    assert meta["input_shape"] == [3, 32, 32] and meta["num_outputs"] == 10
    assert meta["genotypes"] == record["genotypes"]


def test_a_trained_network_is_written_as_a_program_with_its_trained_weights(tmp_path: Path) -> None:
    study, storage = _study(tmp_path)
    export_final(study, tmp_path / "final.json", n_cells=2, num_classes=10, in_channels=3, width=8)
    quick = dict(epochs=1, batch_size=64, subset=256, test_subset=64, num_workers=0, progress=False, device="cpu")
    result = train(tmp_path / "final.json", "builtin", **quick)
    trained = build_final_network(tmp_path / "final.json", weights=False)
    trained.load_state_dict(torch.load(result.weights_path, weights_only=True))
    trained.eval()
    x = torch.randn(4, 3, 32, 32)
    (got,), meta = _outputs_elsewhere(Path(result.program_path), [x], tmp_path)
    with torch.no_grad():
        assert torch.allclose(trained(x), got, rtol=1e-5, atol=1e-6)
        assert not torch.allclose(build_final_network(tmp_path / "final.json").eval()(x), got)  # trained, not initial
    assert meta["test_accuracy"] == result.test_accuracy

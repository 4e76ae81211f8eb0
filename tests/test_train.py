"""Training: it learns, writes its files, is deterministic, and records the accuracy in the study."""

from __future__ import annotations

import json

import optuna
import pytest
import torch
from torchvision import transforms

from nas_sampler.data import load_dataset
from nas_sampler.errors import ConfigError
from nas_sampler.final import export_final
from nas_sampler.space import CellSpace, record_space
from nas_sampler.train import TRAINED_ATTR, cifar_transforms, train

GENOTYPE = "|sep_conv_3x3:16~0|+|max_pool_3x3:16~1|skip_connect:8~0|"
QUICK = dict(epochs=2, batch_size=64, subset=1000, test_subset=500, num_workers=0, progress=False, device="cpu")


def test_training_learns_and_writes_weights_and_metrics(tmp_path) -> None:
    space = CellSpace(width=8)
    r = train(GENOTYPE, "builtin", space=space, out_dir=tmp_path / "run", **QUICK)
    assert r.test_accuracy > 0.15, "ten balanced classes: chance is 0.10"
    assert r.history[-1]["train_loss"] < r.history[0]["train_loss"]
    assert len(r.history) == 2 and r.history[-1]["lr_end"] == pytest.approx(0.0, abs=1e-9)  # cosine to zero
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["test_accuracy"] == r.test_accuracy and metrics["test_images"] == 500
    assert metrics["train_images"] == 1000
    net = space.final_network([space.parse(GENOTYPE)], num_classes=10)
    net.load_state_dict(torch.load(tmp_path / "run" / "weights.pt", weights_only=True))

    again = train(GENOTYPE, "builtin", space=space, out_dir=tmp_path / "again", **QUICK)
    assert again.test_accuracy == r.test_accuracy and again.history[-1]["train_loss"] == r.history[-1]["train_loss"]


def test_augmentation_is_the_standard_cifar_one() -> None:
    train_tf, test_tf = cifar_transforms(load_dataset("builtin"))
    kinds = [type(t) for t in train_tf.transforms]
    assert kinds == [transforms.RandomCrop, transforms.RandomHorizontalFlip, transforms.ToTensor, transforms.Normalize]
    assert train_tf.transforms[0].padding == 4 and train_tf.transforms[0].size == (32, 32)
    assert [type(t) for t in test_tf.transforms] == [transforms.ToTensor, transforms.Normalize]


def test_training_an_export_records_accuracy_in_the_study(tmp_path) -> None:
    space = CellSpace(width=8)
    storage = f"sqlite:///{tmp_path / 'nas.db'}"
    study = optuna.create_study(storage=storage, study_name="s", directions=["minimize", "minimize"])
    record_space(study, space)
    for g, v in ((GENOTYPE, [0.0, 1.0]), ("|sep_conv_3x3:8~0|", [1.0, 0.0])):
        study.add_trial(
            optuna.trial.create_trial(
                params=space.to_params(space.parse(g)),
                distributions=space.distributions_of(space.parse(g)),
                values=v,
                user_attrs={"genotype": g},
            )
        )
    export_final(study, tmp_path / "final.json", n_cells=2, num_classes=10, in_channels=3, width=8)
    r = train(tmp_path / "final.json", "builtin", storage=storage, **{**QUICK, "epochs": 1})
    assert (tmp_path / "final-trained" / "metrics.json").is_file()
    reloaded = optuna.load_study(study_name="s", storage=storage)
    assert reloaded.user_attrs[TRAINED_ATTR] == {"0": round(r.test_accuracy, 6), "1": round(r.test_accuracy, 6)}
    assert reloaded.user_attrs["nas_sampler:final_training"][0]["trials"] == [0, 1]


def test_bad_inputs(tmp_path) -> None:
    with pytest.raises(ConfigError, match="epochs"):
        train(GENOTYPE, "builtin", space=CellSpace(), epochs=0)
    with pytest.raises(ConfigError, match="space="):
        train(GENOTYPE, "builtin", out_dir=tmp_path, **QUICK)
    with pytest.raises(ConfigError, match="export .json"):
        train(GENOTYPE, "builtin", space=CellSpace(width=8), study=optuna.create_study(), out_dir=tmp_path, **QUICK)
    with pytest.raises(ConfigError, match="data=None"):
        train(torch.nn.Linear(2, 2))


def test_cifar10_folder_gets_its_test_split(cifar10_root, tmp_path) -> None:
    space = CellSpace(width=8)
    r = train(GENOTYPE, cifar10_root / "train", space=space, out_dir=tmp_path, **{**QUICK, "subset": 128, "epochs": 1})
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["test_images"] == 500 and 0.0 <= r.test_accuracy <= 1.0

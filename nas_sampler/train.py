"""Train a network (the exported final network, or any genotype's) the standard CIFAR way.

Random crop with padding 4, horizontal flip and the data set's normalisation on the training split;
SGD with Nesterov momentum and a cosine schedule (per step, to zero); cross-entropy. Test accuracy is
measured once at the end (or after every epoch with ``eval_every_epoch=True``). The trained weights
(``weights.pt``, a state dict) and ``metrics.json`` (settings, per-epoch loss and accuracy, test
accuracy, times) are written to ``out_dir``.

When the network comes from an export (:func:`nas_sampler.export_final`) and the study can be
reached (``study=`` or ``storage=``), the trained accuracy is recorded in the study: Optuna forbids
changing a finished trial, so it goes to the study user attribute ``trained_accuracy`` (trial number
-> accuracy, for each trial whose cell the network holds) and the details of the run to
``nas_sampler:final_training`` (one entry per run).
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset
from torchvision import datasets, transforms

from nas_sampler import schema
from nas_sampler.device import resolve_device
from nas_sampler.errors import ConfigError, DataError
from nas_sampler.phenotype import count_parameters
from nas_sampler.portable import save_program
from nas_sampler.tournament import _check_int, _check_positive_float

logger = logging.getLogger(__name__)

TRAINED_ATTR = schema.TRAINED
RUNS_ATTR = schema.FINAL_TRAINING


@dataclass
class TrainResult:
    """What a training run measured and where it wrote its files."""

    test_accuracy: float
    test_loss: float
    history: list[dict[str, float]] = field(default_factory=list)
    parameters: int = 0
    seconds: float = 0.0
    device: str = "cpu"
    weights_path: str | None = None
    metrics_path: str | None = None
    program_path: str | None = None  # the trained network as a torch.export program (nas_sampler.portable)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ----------------------------------------------------------------------------- data


def cifar_transforms(dataset: Dataset, augment: bool = True) -> tuple[Any, Any]:
    """(training transform, test transform) for ``dataset`` as :func:`nas_sampler.data.load_dataset`
    returned it: its own normalisation, and for training a random crop of the image size with padding
    4 and a horizontal flip."""
    base = getattr(dataset, "transform", None)
    norm = [t for t in getattr(base, "transforms", []) if isinstance(t, transforms.Normalize)]
    if base is None or not norm:
        raise DataError(
            f"the data set {type(dataset).__name__} has no normalising transform to build on; "
            "load it with nas_sampler.data.load_dataset"
        )
    img = dataset[0][0]
    if not isinstance(img, torch.Tensor):
        raise DataError(f"the data set returns {type(img).__name__} images, not tensors")
    size = (int(img.shape[-2]), int(img.shape[-1]))
    test = transforms.Compose([transforms.ToTensor(), *norm])
    if not augment:
        return test, test
    train_tf = transforms.Compose(
        [transforms.RandomCrop(size, padding=4), transforms.RandomHorizontalFlip(), transforms.ToTensor(), *norm]
    )
    return train_tf, test


def _test_source(data: str | os.PathLike) -> str | os.PathLike:
    """The test data of ``data``: a folder named ``train`` with a sibling ``test`` gives the sibling."""
    p = Path(data)
    if p.is_dir() and p.name in ("train", "training") and (p.parent / "test").is_dir():
        return p.parent / "test"
    return data


def _load_pair(
    data: str | os.PathLike,
    test_data: str | os.PathLike | None,
    root: str | os.PathLike | None,
    download: bool,
    augment: bool,
) -> tuple[Dataset, Dataset]:
    from nas_sampler.data import load_dataset

    train_ds = load_dataset(data, root=root, train=True, download=download)
    test_src = test_data if test_data is not None else _test_source(data)
    test_ds = load_dataset(test_src, root=root, train=False, download=download)
    if isinstance(train_ds, datasets.ImageFolder) and isinstance(test_ds, datasets.ImageFolder):
        if Path(train_ds.root).resolve() == Path(test_ds.root).resolve():
            raise ConfigError(
                f"data {str(data)!r} is one ImageFolder folder with no test split; pass the folder holding "
                "train/ and test/, or test_data= the test folder"
            )
    train_tf, test_tf = cifar_transforms(train_ds, augment)
    train_ds.transform = train_tf  # type: ignore[attr-defined]
    test_ds.transform = test_tf  # type: ignore[attr-defined]
    return train_ds, test_ds


def _subset(ds: Dataset, n: int | None, seed: int, name: str) -> Dataset:
    if n is None:
        return ds
    _check_int(name, n, 1)
    if n >= len(ds):  # type: ignore[arg-type]
        return ds
    idx = np.sort(np.random.default_rng([seed, 0x5B]).choice(len(ds), size=n, replace=False))  # type: ignore[arg-type]
    return Subset(ds, idx.tolist())


# ----------------------------------------------------------------------------- the model


def _resolve_model(
    model: nn.Module | str | os.PathLike,
    space: Any,
    num_classes: int,
    in_channels: int,
    seed: int,
) -> tuple[nn.Module, dict[str, Any] | None, Path | None]:
    """(network, export record or None, export path or None)."""
    if isinstance(model, nn.Module):
        return model, None, None
    text = str(model)
    if text.endswith(".json") or Path(text).is_file():
        from nas_sampler.final import build_final_network, read_export

        record = read_export(text)
        if record["num_classes"] != num_classes:
            raise ConfigError(
                f"the exported network has {record['num_classes']} classes, the data {num_classes}; export it "
                f"again with num_classes={num_classes}"
            )
        return build_final_network(text), record, Path(text)
    if "~" in text and "|" in text:  # a genotype string
        from nas_sampler.space import SearchSpace, make_space

        sp = make_space(space) if isinstance(space, str) else space
        if not isinstance(sp, SearchSpace):
            raise ConfigError(f"model={text!r} is a genotype: pass space= (a SearchSpace, or 'cell' / 'nb201')")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = sp.final_network([sp.parse(text)], num_classes=num_classes, in_channels=in_channels)
        return net, None, None
    raise ConfigError(
        f"model={text!r} is neither an nn.Module, an export .json (from export_final) nor a genotype string"
    )


# ----------------------------------------------------------------------------- training


def evaluate(net: nn.Module, loader: DataLoader, device: torch.device, progress: bool = False) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) of ``net`` over ``loader``."""
    from tqdm.auto import tqdm

    net.eval()
    loss_sum, correct, seen = 0.0, 0, 0
    with torch.no_grad():
        for x, y in tqdm(loader, desc="test", disable=not progress, leave=False, dynamic_ncols=True):
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            out = net(x)
            loss_sum += float(F.cross_entropy(out, y, reduction="sum"))
            correct += int((out.argmax(1) == y).sum())
            seen += len(y)
    return loss_sum / max(seen, 1), correct / max(seen, 1)


def train(
    model: nn.Module | str | os.PathLike,
    data: str | os.PathLike | None = None,
    *,
    test_data: str | os.PathLike | None = None,
    epochs: int = 10,
    batch_size: int = 128,
    lr: float = 0.05,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    nesterov: bool = True,
    subset: int | None = None,
    test_subset: int | None = None,
    augment: bool = True,
    device: str | torch.device = "auto",
    seed: int = 0,
    out_dir: str | os.PathLike | None = None,
    num_workers: int | None = None,
    eval_every_epoch: bool = False,
    progress: bool = True,
    root: str | os.PathLike | None = None,
    download: bool = False,
    study: optuna.Study | str | None = None,
    storage: str | None = None,
    space: Any = None,
) -> TrainResult:
    """Train ``model`` on ``data`` and report test accuracy; write ``weights.pt`` and ``metrics.json``.

    ``model``: an ``nn.Module`` (trained in place), the ``.json`` of :func:`nas_sampler.export_final`,
    or a genotype string with ``space=`` (its final network, seeded by ``seed``). ``data``: a data set
    name or an ImageFolder folder (default: the data the export's study was scored on); its test split
    comes from the same name, the folder's ``test/``, a sibling ``test/`` of a ``train/`` folder, or
    ``test_data``. ``subset``/``test_subset``: seeded random subsets of that many images.
    ``out_dir``: default ``<export name>-trained/`` beside an export, else ``./nas-train``. ``study`` (or
    ``storage`` for the export's study): where to record the trained accuracy.
    """
    _check_int("epochs", epochs, 1)
    _check_int("batch_size", batch_size, 1)
    _check_positive_float("lr", lr)
    _check_positive_float("momentum", momentum, allow_zero=True)
    _check_positive_float("weight_decay", weight_decay, allow_zero=True)
    _check_int("seed", seed, 0)
    if num_workers is None:
        num_workers = min(4, (os.cpu_count() or 2) // 2)
    _check_int("num_workers", num_workers, 0)
    dev = resolve_device(device)
    record = None
    if data is None and not isinstance(model, nn.Module) and str(model).endswith(".json"):
        from nas_sampler.final import read_export

        data = read_export(model).get("data")
    if data is None:
        raise ConfigError("data=None: pass a data set name or an ImageFolder folder to train on")

    from nas_sampler.data import num_classes as _num_classes

    t_start = time.perf_counter()
    train_ds, test_ds = _load_pair(data, test_data, root, download, augment)
    k = _num_classes(train_ds)
    if k is None:
        raise DataError(f"cannot tell the number of classes of {str(data)!r}")
    in_channels = int(test_ds[0][0].shape[0])
    net, record, export_path = _resolve_model(model, space, k, in_channels, seed)
    if record is None and study is not None:
        raise ConfigError("study= records the accuracy of an exported network: pass the export .json as model")
    train_ds = _subset(train_ds, subset, seed, "subset")
    test_ds = _subset(test_ds, test_subset, seed + 1, "test_subset")

    if out_dir is None:
        out_dir = export_path.with_name(export_path.stem + "-trained") if export_path is not None else "nas-train"
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    loader_kwargs: dict[str, Any] = {"num_workers": num_workers, "pin_memory": dev.type == "cuda"}
    if num_workers > 0:
        loader_kwargs["persistent_workers"] = True
    gen = torch.Generator().manual_seed(seed)
    train_loader = DataLoader(train_ds, batch_size=batch_size, shuffle=True, generator=gen, **loader_kwargs)
    test_loader = DataLoader(test_ds, batch_size=max(batch_size, 256), shuffle=False, **loader_kwargs)

    from tqdm.auto import tqdm

    history: list[dict[str, float]] = []
    with torch.random.fork_rng(devices=[dev.index or 0] if dev.type == "cuda" else []):
        torch.manual_seed(seed)
        net.to(dev)
        opt = torch.optim.SGD(
            net.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov and momentum > 0
        )
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs * len(train_loader))
        logger.info(
            "training %d parameters on %d images (%d test) for %d epochs on %s",
            count_parameters(net),
            len(train_ds),  # type: ignore[arg-type]
            len(test_ds),  # type: ignore[arg-type]
            epochs,
            dev,
        )
        for epoch in range(epochs):
            t0 = time.perf_counter()
            net.train()
            loss_sum, correct, seen = 0.0, 0, 0
            bar = tqdm(
                train_loader, desc=f"epoch {epoch + 1}/{epochs}", disable=not progress, unit="batch", dynamic_ncols=True
            )
            for x, y in bar:
                x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
                opt.zero_grad(set_to_none=True)
                out_logits = net(x)
                loss = F.cross_entropy(out_logits, y)
                if not torch.isfinite(loss):
                    raise ConfigError(f"training loss became {float(loss)} in epoch {epoch + 1}; pass a smaller lr")
                loss.backward()
                opt.step()
                sched.step()
                loss_sum += float(loss.detach()) * len(y)
                correct += int((out_logits.detach().argmax(1) == y).sum())
                seen += len(y)
                bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.3f}", refresh=False)
            entry = {
                "epoch": epoch + 1,
                "train_loss": loss_sum / max(seen, 1),
                "train_accuracy": correct / max(seen, 1),
                "lr_end": float(sched.get_last_lr()[0]),
                "seconds": time.perf_counter() - t0,
            }
            if eval_every_epoch and epoch + 1 < epochs:
                entry["test_loss"], entry["test_accuracy"] = evaluate(net, test_loader, dev, progress)
            history.append(entry)
            logger.info("epoch %d/%d: %s", epoch + 1, epochs, entry)
        t_test = time.perf_counter()
        test_loss, test_acc = evaluate(net, test_loader, dev, progress)
        history[-1]["test_loss"], history[-1]["test_accuracy"] = test_loss, test_acc
        test_seconds = time.perf_counter() - t_test

    weights_path = out / "weights.pt"
    torch.save({k_: v.detach().cpu() for k_, v in net.state_dict().items()}, weights_path)
    program_path = save_program(
        net,
        out / "model.pt2",
        tuple(int(d) for d in test_ds[0][0].shape),
        test_accuracy=test_acc,  # type: ignore[index]
    )
    result = TrainResult(
        test_accuracy=test_acc,
        test_loss=test_loss,
        history=history,
        parameters=count_parameters(net),
        seconds=time.perf_counter() - t_start,
        device=str(dev),
        weights_path=str(weights_path),
        metrics_path=str(out / "metrics.json"),
        program_path=str(program_path),
    )
    metrics = {
        **result.to_dict(),
        "test_seconds": test_seconds,
        "train_images": len(train_ds),  # type: ignore[arg-type]
        "test_images": len(test_ds),  # type: ignore[arg-type]
        "settings": {
            "data": str(data),
            "test_data": None if test_data is None else str(test_data),
            "epochs": epochs,
            "batch_size": batch_size,
            "lr": lr,
            "momentum": momentum,
            "weight_decay": weight_decay,
            "nesterov": nesterov,
            "subset": subset,
            "test_subset": test_subset,
            "augment": augment,
            "seed": seed,
            "schedule": "cosine, per step",
        },
        "export": None
        if record is None
        else {
            "path": str(export_path),
            **{k_: record.get(k_) for k_ in ("study_name", "genotypes", "trials", "rule", "space")},
        },
    }
    Path(result.metrics_path).write_text(json.dumps(metrics, indent=2) + "\n")
    logger.info("test accuracy %.4f (%d images), %.1f s in all", test_acc, len(test_ds), result.seconds)  # type: ignore[arg-type]

    if record is not None and (study is not None or storage is not None):
        _record_in_study(study, storage, record, result, metrics)
    return result


def _record_in_study(
    study: optuna.Study | str | None,
    storage: str | None,
    record: dict[str, Any],
    result: TrainResult,
    metrics: dict[str, Any],
) -> None:
    if not isinstance(study, optuna.Study):
        name = study if isinstance(study, str) else record.get("study_name")
        if storage is None or name is None:
            raise ConfigError(
                "to record the trained accuracy pass study= (a Study) or storage= with the export's study"
            )
        study = optuna.load_study(study_name=name, storage=storage)
    if study.study_name != record.get("study_name"):
        raise ConfigError(
            f"the export comes from study {record.get('study_name')!r}, not {study.study_name!r}; pass that study"
        )
    accuracies = dict(study.user_attrs.get(TRAINED_ATTR) or {})
    for n in record["trials"]:
        accuracies[str(n)] = round(result.test_accuracy, 6)
    study.set_user_attr(TRAINED_ATTR, accuracies)
    runs = list(study.user_attrs.get(RUNS_ATTR) or [])
    runs.append(
        {
            "trials": record["trials"],
            "genotypes": record["genotypes"],
            "test_accuracy": round(result.test_accuracy, 6),
            "test_images": metrics["test_images"],
            "train_images": metrics["train_images"],
            "epochs": metrics["settings"]["epochs"],
            "seconds": round(result.seconds, 1),
            "metrics": result.metrics_path,
        }
    )
    study.set_user_attr(RUNS_ATTR, runs)

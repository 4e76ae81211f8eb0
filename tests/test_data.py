"""Data: loaders by name and folder, their errors, and the fixed scoring batch."""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch
from PIL import Image
from torch.utils.data import Dataset, Subset
from torchvision import datasets

from nas_sampler.data import (
    BuiltinShapes,
    data_spec,
    dataset_labels,
    load_dataset,
    num_classes,
    record_data_spec,
    recorded_data_spec,
    scoring_batch,
)
from nas_sampler.errors import ConfigError, DataError, SpaceMismatchError


def _image_folder(root: Path, classes: dict[str, int], size: int = 12, mode: str = "RGB") -> Path:
    """A tiny ImageFolder: class c's images are filled with a colour that depends on c."""
    rng = np.random.default_rng(0)
    for k, (name, count) in enumerate(classes.items()):
        (root / name).mkdir(parents=True)
        for i in range(count):
            shape = (size, size, 3) if mode == "RGB" else (size, size)
            arr = np.clip(rng.normal(40 * k + 20, 10, shape), 0, 255).astype(np.uint8)
            Image.fromarray(arr, mode=mode).save(root / name / f"{i:03d}.png")
    return root


class Counting(Dataset):
    """Wraps a data set and counts decoded items, forwarding the label attributes."""

    def __init__(self, base: Dataset):
        self.base = base
        self.targets = getattr(base, "targets", None)
        self.classes = getattr(base, "classes", None)
        self.calls = 0

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int):
        self.calls += 1
        return self.base[i]


# ---- loading ---------------------------------------------------------------------------------
def test_builtin_is_deterministic_balanced_and_label_dependent():
    a, b = BuiltinShapes(seed=3), BuiltinShapes(seed=3)
    assert len(a) == 5000 and len(BuiltinShapes(train=False)) == 1000
    x, y = a[17]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32
    assert torch.equal(x, b[17][0]) and y == b[17][1]
    assert not torch.equal(a[17][0], BuiltinShapes(seed=4)[17][0])
    assert np.bincount(a.targets).tolist() == [500] * 10
    # labels depend on the image: thumbnails of two classes are separable by their stripe direction
    h = torch.stack([a[i][0] for i in range(400) if a.targets[i] == 0][:20])
    v = torch.stack([a[i][0] for i in range(400) if a.targets[i] == 1][:20])

    def row_vs_col(x: torch.Tensor) -> torch.Tensor:  # horizontal stripes vary along rows only
        return x.diff(dim=2).abs().mean((1, 2, 3)) - x.diff(dim=3).abs().mean((1, 2, 3))

    assert (row_vs_col(h) > 0).all() and (row_vs_col(v) < 0).all()


def test_load_dataset_builtin_by_name():
    ds = load_dataset("builtin", train=False)
    assert isinstance(ds, BuiltinShapes) and len(ds) == 1000 and num_classes(ds) == 10


def test_image_folder_rgb_and_gray(tmp_path):
    rgb = load_dataset(_image_folder(tmp_path / "rgb", {"a": 3, "b": 2}))
    assert isinstance(rgb, datasets.ImageFolder) and rgb.classes == ["a", "b"] and len(rgb) == 5
    x, y = rgb[4]
    assert x.shape == (3, 12, 12) and y == 1
    gray = load_dataset(_image_folder(tmp_path / "gray", {"a": 2, "b": 2}, mode="L"))
    assert gray[0][0].shape == (1, 12, 12)  # one channel stays one channel
    # mean 0.5, std 0.5: a pixel of value v maps to (v/255 - 0.5)/0.5
    raw = np.asarray(Image.open(gray.samples[0][0]), dtype=np.float64) / 255
    assert np.allclose(gray[0][0][0].numpy(), (raw - 0.5) / 0.5, atol=1e-6)


def test_folder_with_train_and_test_splits(tmp_path):
    _image_folder(tmp_path / "d" / "train", {"a": 3, "b": 3})
    _image_folder(tmp_path / "d" / "test", {"a": 1, "b": 1})
    assert len(load_dataset(str(tmp_path / "d"))) == 6
    assert len(load_dataset(tmp_path / "d", train=False)) == 2


def test_folder_errors_say_what_to_pass(tmp_path):
    with pytest.raises(DataError, match=r"nowhere.*neither a data set name.*folder/<class>/<image>"):
        load_dataset(str(tmp_path / "nowhere"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"empty.*is empty.*one subfolder per class"):
        load_dataset(tmp_path / "empty")
    flat = tmp_path / "flat"
    flat.mkdir()
    for i in range(3):
        Image.new("RGB", (8, 8)).save(flat / f"{i}.png")
    with pytest.raises(DataError, match=r"holds 3 images but no class subfolders"):
        load_dataset(flat)
    (tmp_path / "noimg" / "cls").mkdir(parents=True)
    (tmp_path / "noimg" / "cls" / "notes.txt").write_text("x")
    with pytest.raises(DataError, match=r"noimg.*at least one image"):
        load_dataset(tmp_path / "noimg")
    _image_folder(tmp_path / "only" / "train", {"a": 1})
    with pytest.raises(DataError, match=r"no test/; pass train=True"):
        load_dataset(tmp_path / "only", train=False)
    (tmp_path / "file.png").write_bytes(b"")
    with pytest.raises(DataError, match="is a file"):
        load_dataset(tmp_path / "file.png")


@pytest.mark.parametrize("name", ["cifar10", "CIFAR-100", "mnist", "fashion-mnist", "svhn"])
def test_named_dataset_missing_asks_for_download_or_folder(tmp_path, name):
    with pytest.raises(DataError, match=r"is not in root=.*download=True.*ImageFolder folder.*'builtin'"):
        load_dataset(name, root=tmp_path)


def test_offline_download_is_one_clear_error(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no route to host")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(DataError, match=r"could not download cifar10 .*offline.*root=.*'builtin'"):
        load_dataset("cifar10", root=tmp_path, download=True)


def test_named_dataset_from_local_root(tmp_path):
    """A torchvision data set already in root loads with its normalisation (MNIST stays 1-channel)."""
    import gzip

    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    n = 5
    imgs = np.random.default_rng(0).integers(0, 256, (n, 28, 28), dtype=np.uint8)
    labels = np.arange(n, dtype=np.uint8)

    def idx(data: np.ndarray, magic: int) -> bytes:
        head = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in data.shape)
        return head + data.tobytes()

    for split in ("train", "t10k"):
        with gzip.open(raw / f"{split}-images-idx3-ubyte.gz", "wb") as f:
            f.write(idx(imgs, 2051))
        with gzip.open(raw / f"{split}-labels-idx1-ubyte.gz", "wb") as f:
            f.write(idx(labels, 2049))
        (raw / f"{split}-images-idx3-ubyte").write_bytes(idx(imgs, 2051))
        (raw / f"{split}-labels-idx1-ubyte").write_bytes(idx(labels, 2049))
    ds = load_dataset("MNIST", root=tmp_path)
    x, y = ds[3]
    assert x.shape == (1, 28, 28) and y == 3
    assert torch.allclose(x[0], (torch.from_numpy(imgs[3]).float() / 255 - 0.1307) / 0.3081, atol=1e-5)


def test_real_cifar10_image_folder(cifar10_root):
    train = load_dataset(cifar10_root / "train")
    test = load_dataset(cifar10_root, train=False)
    assert len(train) == 50000 and len(test) == 10000 and train.classes[0] == "airplane"
    counting = Counting(train)
    images, labels = scoring_batch(counting, batch_size=16, seed=1)
    assert images.shape == (16, 3, 32, 32) and counting.calls == 16  # no full decode
    assert abs(float(images.mean())) < 0.5  # normalised with CIFAR-10 statistics
    counting.calls = 0
    images, labels = scoring_batch(counting, batch_size=16, seed=1, strategy="class_focused", focus_class="cat")
    assert counting.calls <= 8 * 16 + 16 and (labels == 3).sum() == 8


# ---- the scoring batch -------------------------------------------------------------------------
def test_random_batch_is_deterministic_and_seeded():
    ds = BuiltinShapes(size=300)
    a, la = scoring_batch(ds, batch_size=16, seed=5)
    b, lb = scoring_batch(BuiltinShapes(size=300), batch_size=16, seed=5)
    c, _ = scoring_batch(ds, batch_size=16, seed=6)
    assert a.shape == (16, 3, 32, 32) and la.dtype == torch.long
    assert torch.equal(a, b) and torch.equal(la, lb) and not torch.equal(a, c)
    assert len({tuple(x.flatten()[:20].tolist()) for x in a}) == 16  # distinct images


def test_fakedata_batch_shape():
    ds = datasets.FakeData(size=40, image_size=(1, 10, 10), num_classes=4, transform=lambda im: torch.zeros(1, 10, 10))
    images, labels = scoring_batch(ds, batch_size=8, seed=0)
    assert images.shape == (8, 1, 10, 10) and labels.max() < 4 and num_classes(ds) == 4


def test_class_focused_batch_concentrates_on_a_class_and_its_neighbours():
    ds = Counting(BuiltinShapes(size=2000))
    images, labels = scoring_batch(ds, batch_size=16, seed=0, strategy="class_focused", focus_class=3)
    assert images.shape == (16, 3, 32, 32) and (labels[:8] == 3).all() and (labels[8:] != 3).all()
    assert ds.calls <= 8 * 16 + 16  # a bounded candidate pool, not the data set
    again = scoring_batch(ds, batch_size=16, seed=0, strategy="class_focused", focus_class="disk")
    assert torch.equal(images, again[0])
    # the other half are the pool's nearest images to the focus class's mean thumbnail
    pool_far = scoring_batch(ds, batch_size=16, seed=0, strategy="random")[0]
    centre = torch.nn.functional.adaptive_avg_pool2d(images[:8], 8).flatten(1).mean(0)

    def dist(x: torch.Tensor) -> float:
        return float((torch.nn.functional.adaptive_avg_pool2d(x, 8).flatten(1) - centre).pow(2).sum(1).mean())

    assert dist(images[8:]) < dist(pool_far)


def test_class_focused_weak_class_is_deterministic_without_labels():
    class NoLabels(Dataset):
        def __init__(self):
            self.base = BuiltinShapes(size=400)

        def __len__(self) -> int:
            return len(self.base)

        def __getitem__(self, i: int):
            return self.base[i]

    a = scoring_batch(NoLabels(), batch_size=8, seed=2, strategy="class_focused")
    b = scoring_batch(NoLabels(), batch_size=8, seed=2, strategy="class_focused", focus_class="weak")
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert (a[1][:4] == a[1][0]).all() and (a[1][4:] != a[1][0]).all()


def test_subset_labels_and_tiny_dataset_fill():
    ds = BuiltinShapes(size=100)
    sub = Subset(ds, list(range(10, 22)))
    assert dataset_labels(sub).tolist() == ds.targets[10:22]
    images, labels = scoring_batch(sub, batch_size=12, seed=0, strategy="class_focused", focus_class=0)
    assert images.shape[0] == 12 and sorted(labels.tolist()) == sorted(ds.targets[10:22])


def test_scoring_batch_errors():
    ds = BuiltinShapes(size=20)
    with pytest.raises(DataError, match="batch_size=64 is larger than the data set"):
        scoring_batch(ds, batch_size=64)
    with pytest.raises(ConfigError, match="strategy='nearest' is unknown"):
        scoring_batch(ds, batch_size=8, strategy="nearest")
    with pytest.raises(DataError, match="focus_class='dog' is not a class name"):
        scoring_batch(ds, batch_size=8, strategy="class_focused", focus_class="dog")
    with pytest.raises(DataError, match="focus_class=12 is out of range"):
        scoring_batch(ds, batch_size=8, strategy="class_focused", focus_class=12)
    pil = BuiltinShapes(size=20, transform=lambda im: im)
    with pytest.raises(DataError, match="not tensors.*ToTensor"):
        scoring_batch(pil, batch_size=4)


def test_mixed_image_sizes_ask_for_a_resize(tmp_path):
    for i, s in enumerate((8, 9, 8, 9)):
        (tmp_path / f"c{i % 2}").mkdir(exist_ok=True)
        Image.new("RGB", (s, s)).save(tmp_path / f"c{i % 2}" / f"{i}.png")
    with pytest.raises(DataError, match=r"mixes image shapes.*size=32"):
        scoring_batch(load_dataset(tmp_path), batch_size=4)


# ---- the recorded spec -------------------------------------------------------------------------
def test_data_spec_is_canonical_and_recorded(tmp_path, monkeypatch):
    folder = _image_folder(tmp_path / "f", {"a": 2})
    monkeypatch.chdir(tmp_path)
    assert data_spec("f")["data"] == data_spec(folder)["data"] == str(folder.resolve())
    assert data_spec("CIFAR-10")["data"] == "cifar10"
    study = optuna.create_study()
    spec = data_spec("builtin", batch_size=16, seed=1)
    assert recorded_data_spec(study) is None
    record_data_spec(study, spec)
    record_data_spec(study, dict(spec))  # the same spec again is fine
    assert recorded_data_spec(study) == spec
    with pytest.raises(SpaceMismatchError, match=r"seed: study has 1, given 2.*recorded_data_spec"):
        record_data_spec(study, data_spec("builtin", batch_size=16, seed=2))

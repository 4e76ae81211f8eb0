"""Data for scoring: torchvision data sets, ImageFolder folders, an offline built-in task, and the
study's fixed scoring batch.

(Over 450 lines: every way a user names data ends in the same spec, recorded in the study and
checked on resume, so the loaders and the spec stay side by side.)

``load_dataset`` accepts

* a torchvision data set name (``cifar10``, ``cifar100``, ``mnist``, ``fashion-mnist``, ``svhn``)
  read from ``root`` (default ``$NAS_SAMPLER_DATA`` or ``~/.cache/nas-sampler/data``) and downloaded
  there only with ``download=True`` on a machine that is online;
* any ImageFolder folder (``folder/<class>/<image>``), e.g. ``../shared/data/cifar10/train``; a folder
  holding ``train/`` and ``test/`` ImageFolder folders is split by ``train``;
* ``"builtin"``: :class:`BuiltinShapes`, a small synthetic task generated on the fly from a seed, so
  that the package runs with no download and no file (examples, tests, smoke runs). Its ten classes
  are procedurally drawn shapes and gratings in random colours with noise; a network can learn it,
  but it says little about real images: **real searches use real data.**

Default transforms are ``ToTensor`` and a per-data-set ``Normalize``. One-channel data (MNIST,
Fashion-MNIST, grayscale ImageFolder images) stays one-channel: the networks take any channel count.
ImageFolder folders get no statistics pass (that would decode every image): three-channel folders
are normalised with CIFAR-10's statistics, one-channel folders with mean 0.5, std 0.5.

The scoring batch (:func:`scoring_batch`) is drawn index-first, so only the chosen images are
decoded, and is deterministic for (data set, batch size, seed, strategy). :func:`data_spec`
describes it as a JSON-able dict that the objective records in the study, so every trial and every
resumed run scores on the same images (:func:`record_data_spec` refuses a different spec).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import urllib.error
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset, Subset
from torchvision import datasets, transforms

from nas_sampler import schema
from nas_sampler.errors import BadDataError, ConfigError, DataError, SpaceMismatchError

DATA_ATTR = schema.DATA
BUILTIN = "builtin"
STRATEGIES = ("random", "class_focused")

# (mean, std) per channel of each named data set's training split.
NORMALIZATION: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "mnist": ((0.1307,), (0.3081,)),
    "fashion-mnist": ((0.2860,), (0.3530,)),
    "svhn": ((0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970)),
    # measured on 2,000 images of BuiltinShapes(seed=0)
    BUILTIN: ((0.503, 0.500, 0.495), (0.290, 0.293, 0.290)),
    "gray": ((0.5,), (0.5,)),
}

_TORCHVISION: dict[str, Callable[..., Dataset]] = {
    "cifar10": datasets.CIFAR10,
    "cifar100": datasets.CIFAR100,
    "mnist": datasets.MNIST,
    "fashion-mnist": datasets.FashionMNIST,
    "svhn": datasets.SVHN,
}
_ALIASES = {
    "cifar-10": "cifar10",
    "cifar-100": "cifar100",
    "fashion_mnist": "fashion-mnist",
    "fashionmnist": "fashion-mnist",
}
NAMES = (*_TORCHVISION, BUILTIN)
_IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp"}
_SPLIT_DIRS = {"train", "test", "val", "valid", "validation"}


def default_root() -> Path:
    """Where named data sets live: ``$NAS_SAMPLER_DATA`` or ``~/.cache/nas-sampler/data``."""
    return Path(os.environ.get("NAS_SAMPLER_DATA", Path.home() / ".cache" / "nas-sampler" / "data")).expanduser()


def default_transform(kind: str = "cifar10", size: int | None = None) -> transforms.Compose:
    """``[Resize(size)] + ToTensor + Normalize`` with the statistics of ``kind`` (a key of
    :data:`NORMALIZATION`). ``size`` makes images of a folder with mixed sizes stackable."""
    if kind not in NORMALIZATION:
        raise ConfigError(f"no normalisation statistics for {kind!r}; known: {', '.join(NORMALIZATION)}")
    mean, std = NORMALIZATION[kind]
    steps: list[Callable[..., Any]] = [] if size is None else [transforms.Resize((size, size))]
    return transforms.Compose([*steps, transforms.ToTensor(), transforms.Normalize(mean, std)])


def canonical_name(name: str) -> str | None:
    """The canonical data set name of ``name`` (case and common spellings ignored), or None."""
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    return key if key in NAMES else None


# ---- the built-in synthetic task ------------------------------------------------------------
class BuiltinShapes(Dataset):
    """A deterministic synthetic image classification task that needs no file and no download.

    Ten classes, each a kind of procedurally drawn pattern: horizontal, vertical and diagonal
    stripes, a disk, a ring, a square, a cross, a triangle, a checkerboard, two dots. Position,
    size, period, phase and the two colours are random per image, Gaussian noise (std 0.08) is
    added, so the label depends on the shape only and a small network can learn it. Image ``i``
    is generated on demand from ``(seed, split, i)``, independent of access order; labels are a
    seeded balanced permutation, known without generating any image. Items are
    ``(transform(PIL image), label)`` like torchvision data sets (default: ToTensor + Normalize).
    """

    classes = [
        "horizontal_stripes",
        "vertical_stripes",
        "diagonal_stripes",
        "disk",
        "ring",
        "square",
        "cross",
        "triangle",
        "checkerboard",
        "two_dots",
    ]

    def __init__(
        self,
        train: bool = True,
        size: int | None = None,
        seed: int = 0,
        image_size: int = 32,
        transform: Callable[..., Any] | None = None,
    ):
        n = (5000 if train else 1000) if size is None else size
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ConfigError(f"size={size!r} is invalid: give a positive number of images")
        if not isinstance(image_size, int) or image_size < 8:
            raise ConfigError(f"image_size={image_size!r} is invalid: give an integer of at least 8 pixels")
        self.train = train
        self.seed = int(seed)
        self.image_size = image_size
        self._split = 0 if train else 1
        self.transform = default_transform(BUILTIN) if transform is None else transform
        rng = np.random.default_rng([self.seed, self._split, 0x7A6])
        self.targets: list[int] = rng.permutation(np.arange(n) % len(self.classes)).tolist()
        c = np.arange(image_size, dtype=np.float32) + 0.5
        self._yy, self._xx = np.meshgrid(c, c, indexing="ij")

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} images")
        index %= len(self)
        label = self.targets[index]
        img = self.render(label, np.random.default_rng([self.seed, self._split, index]))
        return self.transform(Image.fromarray(img, mode="RGB")), label

    def render(self, label: int, rng: np.random.Generator) -> np.ndarray:
        """One H x W x 3 uint8 image of class ``label``."""
        S = self.image_size
        yy, xx = self._yy, self._xx
        bg = rng.uniform(0, 1, 3)
        fg = rng.uniform(0, 1, 3)
        if np.abs(fg - bg).mean() < 0.3:  # keep the shape visible
            fg = 1.0 - bg
        cy, cx = rng.uniform(0.35 * S, 0.65 * S, 2)
        r = rng.uniform(0.16 * S, 0.3 * S)
        dy, dx = yy - cy, xx - cx
        period = rng.uniform(0.12 * S, 0.25 * S)
        phase = rng.uniform(0, 2 * np.pi)
        wave = 2 * np.pi / period
        if label == 0:
            m = np.sin(wave * yy + phase) > 0
        elif label == 1:
            m = np.sin(wave * xx + phase) > 0
        elif label == 2:
            sign = 1 if rng.random() < 0.5 else -1
            m = np.sin(wave * (xx + sign * yy) / np.sqrt(2) + phase) > 0
        elif label == 3:
            m = dx**2 + dy**2 <= r**2
        elif label == 4:
            d = np.sqrt(dx**2 + dy**2)
            m = (d <= r) & (d >= r - max(1.5, 0.3 * r))
        elif label == 5:
            h = 0.8 * r
            m = (np.abs(dx) <= h) & (np.abs(dy) <= h)
        elif label == 6:
            w = max(1.2, r / 4)
            m = ((np.abs(dx) <= w) & (np.abs(dy) <= r)) | ((np.abs(dy) <= w) & (np.abs(dx) <= r))
        elif label == 7:
            m = (dy >= -r) & (dy <= 0.6 * r) & (np.abs(dx) <= (dy + r) / 1.6)
        elif label == 8:
            p = max(2, int(round(period / 2)))
            oy, ox = rng.integers(0, p, 2)
            m = (((yy + oy) // p + (xx + ox) // p) % 2).astype(bool)
        else:
            rd = max(1.5, 0.12 * S)
            ang = rng.uniform(0, np.pi)
            off = rng.uniform(0.2 * S, 0.3 * S)
            y1, x1 = S / 2 + off * np.sin(ang), S / 2 + off * np.cos(ang)
            y2, x2 = S / 2 - off * np.sin(ang), S / 2 - off * np.cos(ang)
            m = ((yy - y1) ** 2 + (xx - x1) ** 2 <= rd**2) | ((yy - y2) ** 2 + (xx - x2) ** 2 <= rd**2)
        m = m.astype(np.float32)[..., None]
        img = bg * (1 - m) + fg * m + rng.normal(0, 0.08, (S, S, 3))
        return (np.clip(img, 0, 1) * 255).round().astype(np.uint8)


# ---- loading -----------------------------------------------------------------------------------
def load_dataset(
    name_or_folder: str | os.PathLike,
    root: str | Path | None = None,
    train: bool = True,
    download: bool = False,
    transform: Callable[..., Any] | None = None,
) -> Dataset:
    """A data set by name (``cifar10``, ``cifar100``, ``mnist``, ``fashion-mnist``, ``svhn``,
    ``builtin``) or an ImageFolder folder path (a name wins over a folder of the same name: write
    ``./cifar10`` for the folder). Missing files, a wrong layout or a failed download raise one
    :class:`DataError` that says what to pass."""
    name = canonical_name(str(name_or_folder)) if isinstance(name_or_folder, str) else None
    if name == BUILTIN:
        return BuiltinShapes(train=train, transform=transform)
    if name is not None:
        return _load_torchvision(name, root, train, download, transform)
    return _load_folder(Path(name_or_folder), train, transform)


def _load_torchvision(
    name: str, root: str | Path | None, train: bool, download: bool, transform: Callable[..., Any] | None
) -> Dataset:
    root_path = default_root() if root is None else Path(root).expanduser()
    tf = default_transform(name) if transform is None else transform
    cls = _TORCHVISION[name]
    split = {"split": "train" if train else "test"} if name == "svhn" else {"train": train}
    which = f"{name} ({'train' if train else 'test'} split)"
    alternatives = "or pass an ImageFolder folder, or data 'builtin' for the offline built-in task"
    try:
        return cls(str(root_path), transform=tf, download=download, **split)
    except ImportError as e:  # SVHN reads .mat files with scipy
        raise DataError(f"{which} needs a missing package: {e}; install it (pip install scipy)") from e
    except (urllib.error.URLError, OSError, RuntimeError) as e:
        if download:
            raise DataError(
                f"could not download {which} into {root_path}: {type(e).__name__}: {e}. "
                f"The machine may be offline: put the files in root={str(root_path)!r} on a machine that is "
                f"online (download=True) and copy them here, {alternatives}"
            ) from e
        raise DataError(
            f"{which} is not in root={str(root_path)!r} ({e}). Pass download=True (nas-sampler: --download) to "
            f"download it there (needs internet), root= (nas-sampler: $NAS_SAMPLER_DATA) the folder that already "
            f"holds it, {alternatives}"
        ) from e


def _load_folder(path: Path, train: bool, transform: Callable[..., Any] | None) -> Dataset:
    given = str(path)
    if not path.exists():
        raise BadDataError(
            f"data {given!r} is neither a data set name ({', '.join(NAMES)}) nor an existing folder "
            f"(resolved: {path.resolve()}); pass a name or an ImageFolder folder laid out as folder/<class>/<image>"
        )
    if not path.is_dir():
        raise BadDataError(
            f"data {given!r} is a file, not a folder; pass an ImageFolder folder (folder/<class>/<image>)"
        )
    subdirs = sorted(p.name for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    if subdirs and set(subdirs) <= _SPLIT_DIRS and {"train", "test"} & set(subdirs):
        want = "train" if train else "test"
        if want not in subdirs:
            raise BadDataError(
                f"folder {given!r} has the splits {subdirs} but no {want}/; pass train={not train} "
                f"or the ImageFolder folder itself (e.g. {str(path / subdirs[0])!r})"
            )
        path = path / want
        given = str(path)
        subdirs = sorted(p.name for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not subdirs:
        images = [p for p in path.iterdir() if p.suffix.lower() in _IMAGE_EXTENSIONS]
        what = f"holds {len(images)} images but no class subfolders" if images else "is empty"
        raise BadDataError(
            f"folder {given!r} {what}: an ImageFolder folder needs one subfolder per class "
            f"(folder/<class>/<image>); pass such a folder, or a data set name ({', '.join(NAMES)})"
        )
    try:
        ds = datasets.ImageFolder(str(path), loader=_rgb_loader)
    except FileNotFoundError as e:
        raise BadDataError(
            f"folder {given!r} is not a usable ImageFolder folder: {e}. Every class subfolder needs at least "
            "one image (folder/<class>/<image>)"
        ) from e
    gray = _is_gray(ds.samples[0][0])
    if gray:
        ds.loader = _gray_loader
    ds.transform = default_transform("gray" if gray else "cifar10") if transform is None else transform
    return ds


def _is_gray(file: str) -> bool:
    """Whether the folder's first image is one-channel (opens one header, decodes nothing)."""
    with _readable(file):
        with Image.open(file) as im:
            return im.mode in ("1", "L", "LA", "I", "I;16", "F")


@contextlib.contextmanager
def _readable(file: str) -> Iterator[None]:
    """A file with an image extension that PIL cannot read becomes one line naming it."""
    try:
        yield
    except (UnidentifiedImageError, OSError) as e:
        raise BadDataError(
            f"image {file!r} cannot be read ({e}); remove or replace it: every file with an image extension "
            "in an ImageFolder folder must be an image"
        ) from e


def _rgb_loader(file: str) -> Image.Image:
    with _readable(file), open(file, "rb") as f:
        return Image.open(f).convert("RGB")


def _gray_loader(file: str) -> Image.Image:
    with _readable(file), open(file, "rb") as f:
        return Image.open(f).convert("L")


# ---- the scoring batch -------------------------------------------------------------------------
def dataset_labels(dataset: Dataset) -> np.ndarray | None:
    """Every label of ``dataset`` without decoding an image (``targets``/``labels``), or None."""
    if isinstance(dataset, Subset):
        base = dataset_labels(dataset.dataset)
        return None if base is None else base[np.asarray(dataset.indices, dtype=np.int64)]
    for attr in ("targets", "labels"):
        v = getattr(dataset, attr, None)
        if v is None:
            continue
        arr = v.cpu().numpy() if isinstance(v, torch.Tensor) else np.asarray(v)
        if arr.ndim == 1 and len(arr) == len(dataset):
            return arr.astype(np.int64)
    return None


def num_classes(dataset: Dataset) -> int | None:
    """The number of classes a data set declares (``classes``, ``num_classes`` or its labels)."""
    if isinstance(dataset, Subset):
        return num_classes(dataset.dataset)
    classes = getattr(dataset, "classes", None)
    if classes is not None:
        return len(classes)
    n = getattr(dataset, "num_classes", None)
    if isinstance(n, int):
        return n
    labels = dataset_labels(dataset)
    return None if labels is None or not len(labels) else int(labels.max()) + 1


def class_names(dataset: Dataset) -> list[str] | None:
    if isinstance(dataset, Subset):
        return class_names(dataset.dataset)
    classes = getattr(dataset, "classes", None)
    return None if classes is None else [str(c) for c in classes]


def scoring_batch(
    dataset: Dataset,
    batch_size: int = 64,
    seed: int = 0,
    strategy: str = "random",
    focus_class: int | str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The fixed batch the heuristics score: ``(images B x C x H x W, labels B)``.

    Deterministic for (data set, ``batch_size``, ``seed``, ``strategy``, ``focus_class``). Indices are
    drawn first and only the chosen images (plus a bounded candidate pool for ``class_focused``) are
    decoded, never the whole data set.

    * ``random``: ``batch_size`` distinct images drawn uniformly.
    * ``class_focused``: a batch concentrated on one class and the images most easily confused with
      it. Half the batch (rounded up) are images of the focus class; the rest are the images of other
      classes, from a seeded candidate pool of about ``8 * batch_size`` images, whose 8 x 8 thumbnails
      lie nearest to the focus class's mean thumbnail (a data set without ``targets`` is read on in
      the seeded order, at most ``32 * batch_size`` images, to fill the focus half). ``focus_class``
      is a class index or name, or ``"weak"``/None: the class that leave-one-out 1-nearest-neighbour
      on the pool's thumbnails gets wrong most often (ties: the lowest index), a training-free
      stand-in for the class a network will find hardest.
    """
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 2:
        raise ConfigError(f"batch_size={batch_size!r} is invalid: give an integer of at least 2")
    if strategy not in STRATEGIES:
        raise ConfigError(f"strategy={strategy!r} is unknown; choose one of {', '.join(STRATEGIES)}")
    n = len(dataset)
    if batch_size > n:
        raise BadDataError(
            f"batch_size={batch_size} is larger than the data set ({n} images); pass a smaller batch_size"
        )
    if strategy == "random":
        rng = np.random.default_rng([int(seed), 0])
        idx = rng.choice(n, size=batch_size, replace=False)
        images, labels = decode(dataset, idx)
        return _stack(images), torch.as_tensor(labels, dtype=torch.long)
    return _class_focused(dataset, batch_size, int(seed), focus_class)


def decode(dataset: Dataset, indices: np.ndarray | list[int]) -> tuple[list[torch.Tensor], list[int]]:
    """The images and labels at ``indices`` (only those are decoded); images must be tensors."""
    images, labels = [], []
    for i in indices:
        img, label = dataset[int(i)]
        if not isinstance(img, torch.Tensor):
            raise DataError(
                f"the data set returns {type(img).__name__} images, not tensors; give it a transform that ends "
                "with ToTensor (e.g. nas_sampler.data.default_transform())"
            )
        images.append(img)
        labels.append(int(label))
    return images, labels


def _stack(images: list[torch.Tensor]) -> torch.Tensor:
    shapes = sorted({tuple(im.shape) for im in images})
    if len(shapes) > 1:
        raise DataError(
            f"the scoring batch mixes image shapes {shapes[:4]}; pass transform= with a fixed size, "
            "e.g. nas_sampler.data.default_transform('cifar10', size=32)"
        )
    return torch.stack(images).float()


def _class_focused(
    dataset: Dataset, batch_size: int, seed: int, focus_class: int | str | None
) -> tuple[torch.Tensor, torch.Tensor]:
    n = len(dataset)
    rng = np.random.default_rng([seed, 1])
    labels_all = dataset_labels(dataset)
    if labels_all is not None:  # a pool balanced over classes, drawn without decoding anything
        classes = np.unique(labels_all)
        per_class = min(batch_size, max(8, math.ceil(8 * batch_size / len(classes))))
        pool_idx = np.concatenate(
            [rng.permutation(np.flatnonzero(labels_all == c))[:per_class] for c in classes]
        ).astype(np.int64)
    else:  # labels unknown: a random pool, decoded to learn its labels
        scan = rng.permutation(n)
        pool_idx = scan[: 8 * batch_size].astype(np.int64)
    imgs, labs = decode(dataset, pool_idx)
    pool = _stack(imgs)
    pool_lab = np.asarray(labs, dtype=np.int64)
    feats = F.adaptive_avg_pool2d(pool, 8).flatten(1).double()

    focus = _focus_class(dataset, focus_class, feats, pool_lab)
    n_focus = math.ceil(batch_size / 2)
    # The focus half: the pool's focus images, topped up from the whole class when labels are known.
    in_pool = pool_idx[pool_lab == focus]
    chosen = list(in_pool[:n_focus])
    focus_imgs: list[torch.Tensor] = []
    if len(chosen) < n_focus and labels_all is not None:
        rest = np.setdiff1d(np.flatnonzero(labels_all == focus), in_pool)
        chosen += list(np.random.default_rng([seed, 2]).permutation(rest)[: n_focus - len(chosen)])
        focus_imgs, _ = decode(dataset, chosen[len(in_pool[:n_focus]) :])
    elif len(chosen) < n_focus:  # labels unknown: read on through the seeded order, at most 32 batches
        for i in scan[len(pool_idx) : 32 * batch_size]:
            img, lab = decode(dataset, [i])
            if lab[0] == focus:
                chosen.append(int(i))
                focus_imgs += img
                if len(chosen) == n_focus:
                    break
    if not chosen:
        raise DataError(f"class {focus} has no image in the data set; pass another focus_class")
    focus_batch = torch.cat([pool[pool_lab == focus][:n_focus], *([_stack(focus_imgs)] if focus_imgs else [])])
    # The other half: the other classes' images nearest to the focus class's mean thumbnail.
    centroid = F.adaptive_avg_pool2d(focus_batch, 8).flatten(1).double().mean(0)
    others = np.flatnonzero(pool_lab != focus)
    dist = (feats[others] - centroid).pow(2).sum(1).numpy()
    order = others[np.argsort(dist, kind="stable")][: batch_size - len(focus_batch)]
    images = torch.cat([focus_batch, pool[order]])
    labels = torch.cat([torch.full((len(focus_batch),), focus, dtype=torch.long), torch.as_tensor(pool_lab[order])])
    if len(images) < batch_size:  # a tiny data set: fill with images not yet chosen
        used = set(int(i) for i in chosen) | set(int(i) for i in pool_idx[order])
        fill = [i for i in np.random.default_rng([seed, 3]).permutation(n) if int(i) not in used]
        more, more_lab = decode(dataset, fill[: batch_size - len(images)])
        images = torch.cat([images, _stack(more)])
        labels = torch.cat([labels, torch.as_tensor(more_lab, dtype=torch.long)])
    return images, labels


def _focus_class(dataset: Dataset, focus_class: int | str | None, feats: torch.Tensor, labels: np.ndarray) -> int:
    if focus_class is None or focus_class == "weak":
        return weak_class(feats, labels)
    names = class_names(dataset)
    k = num_classes(dataset)
    if isinstance(focus_class, str):
        if names is None or focus_class not in names:
            raise DataError(
                f"focus_class={focus_class!r} is not a class name of the data set; choose one of "
                f"{names if names is not None else 'the class indices'} or 'weak'"
            )
        return names.index(focus_class)
    if isinstance(focus_class, (int, np.integer)) and not isinstance(focus_class, bool):
        if k is not None and not 0 <= focus_class < k:
            raise DataError(f"focus_class={focus_class} is out of range; give a class index 0 to {k - 1} or 'weak'")
        return int(focus_class)
    raise DataError(f"focus_class={focus_class!r} is invalid: give a class index, a class name or 'weak'")


def weak_class(features: torch.Tensor, labels: np.ndarray) -> int:
    """The class leave-one-out 1-nearest-neighbour gets wrong most often (ties: lowest label)."""
    d = torch.cdist(features, features)
    d.fill_diagonal_(float("inf"))
    pred = labels[d.argmin(1).numpy()]
    classes = np.unique(labels)
    acc = np.array([(pred[labels == c] == c).mean() for c in classes])
    return int(classes[int(np.argmin(acc))])


# ---- recording the spec in a study -------------------------------------------------------------
def data_spec(
    data: str | os.PathLike | Dataset,
    batch_size: int = 64,
    seed: int = 0,
    strategy: str = "random",
    focus_class: int | str | None = None,
    train: bool = True,
) -> dict[str, Any]:
    """A JSON-able description of a scoring batch: equal specs draw the same images.

    A name is stored canonically, a folder as its absolute path (so ``../x`` and ``/abs/x`` agree),
    a Dataset object by its class name and length (its content cannot be described, so a resumed
    run must bring an equal one).
    """
    if isinstance(data, Dataset):
        source: str = f"<{type(data).__name__} of {len(data)} images>"
    else:
        name = canonical_name(str(data)) if isinstance(data, str) else None
        source = name if name is not None else str(Path(data).expanduser().resolve())
    return {
        "data": source,
        "train": bool(train),
        "batch_size": int(batch_size),
        "seed": int(seed),
        "strategy": strategy,
        "focus_class": focus_class if focus_class is None or isinstance(focus_class, str) else int(focus_class),
    }


def batch_fingerprint(images: torch.Tensor) -> str:
    """A short hash of a batch's shape and its values rounded to 3 decimals (informational)."""
    h = hashlib.sha256(json.dumps(list(images.shape)).encode())
    h.update(np.round(images.detach().cpu().double().numpy(), 3).tobytes())
    return h.hexdigest()[:16]


def recorded_data_spec(study: optuna.Study) -> dict[str, Any] | None:
    """The data spec a study records, or None before its first scored trial."""
    return study.user_attrs.get(DATA_ATTR)


def record_data_spec(study: optuna.Study, spec: dict[str, Any]) -> None:
    """Record ``spec`` in ``study``; refuse (SpaceMismatchError) if it records a different one,
    because scores on different images are not comparable."""
    existing = recorded_data_spec(study)
    if existing is None:
        study.set_user_attr(DATA_ATTR, spec)
        return
    keys = ("data", "train", "batch_size", "seed", "strategy", "focus_class")
    diff = {k: (existing.get(k), spec.get(k)) for k in keys if existing.get(k) != spec.get(k)}
    if diff:
        what = "; ".join(f"{k}: study has {a!r}, given {b!r}" for k, (a, b) in diff.items())
        raise SpaceMismatchError(
            f"study {study.study_name!r} scores on another batch ({what}); pass the recorded values "
            f"(nas_sampler.data.recorded_data_spec(study) = {json.dumps(existing, sort_keys=True)}) "
            "or use a new study name"
        )

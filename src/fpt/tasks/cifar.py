"""cifar10 and cifar10-lra: CIFAR-10's 32x32 colour photos in 10 classes.

Data: the "CIFAR-10 python version" archive, fetched once into DATA_DIR/cifar10,
checked by size and sha256, extracted there by fpt.storage.archives (refusing links and paths
that leave the folder). Its batches are pickles, read by fpt.storage.archives' unpickler, which
rebuilds only dicts, lists, strings, numbers and numpy arrays: a file can never run code.
n_val training images are set aside by data_seed for validation; the official 10,000
test images are used in full.

cifar10:     4x4 RGB patches, 64 tokens of 48 values, normalised per channel as the
             official code. Training augmentation (augment=true, as the official code):
             random crop after 4 px black padding, horizontal flip, rotation up to 20 degrees.
cifar10-lra: Long Range Arena's image task: grayscale, one pixel a token, 1024 tokens
             of one value in [-1, 1]; needs 1024 positions (gpt2). No augmentation, as
             LRA (the official FPT code augmented: augment=true). patch_size=2: 256 tokens.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from fpt.storage.archives import safe_extract, safe_unpickle
from fpt.storage.downloads import Remote, fetch
from fpt.errors import FptError
from fpt.tasks.arrays import carve_validation
from fpt.tasks.base import TaskSpec, positive
from fpt.tasks.patches import ImageArrays, ImageTask, Tokenizer, augment_images

ARCHIVE = Remote("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz", "cifar-10-python.tar.gz",
                 "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce", 170498071)
FOLDER = "cifar-10-batches-py"
TRAIN_BATCHES = [f"data_batch_{i}" for i in range(1, 6)]
MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)  # the official code's normalisation


def load_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """images (N, 3, 32, 32) uint8 and labels (N,) of one pickled CIFAR-10 batch."""
    fix = f"delete the folder '{path.parent}' so that it is extracted again from the verified archive"
    if not path.is_file():
        raise FptError(f"'{path}' is missing; {fix}")
    # The real files are Python 2 pickles: encoding="bytes" keeps their str keys as bytes (b'data').
    batch = safe_unpickle(path, path, what="a CIFAR-10 batch", fix=fix, encoding="bytes")
    data = batch.get(b"data") if isinstance(batch, dict) else None
    labels = batch.get(b"labels") if isinstance(batch, dict) else None
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2 and data.shape[1] == 3072
            and isinstance(labels, list) and len(labels) == len(data)
            and all(isinstance(v, int) and 0 <= v < 10 for v in labels)):
        raise FptError(f"'{path}' does not hold b'data' (N, 3072) uint8 and N b'labels' 0-9; {fix}")
    return data.reshape(-1, 3, 32, 32), np.array(labels, dtype=np.int64)  # rows: 1024 red, green, blue


def load_cifar10(directory: Path) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """{'train': (images (50000, 3, 32, 32) uint8, labels), 'test': (10000 ...)}."""
    folder = directory / FOLDER
    if not folder.is_dir():  # extracted once, from the verified archive (which may then be deleted)
        safe_extract(fetch(ARCHIVE, directory), folder, keep=FOLDER, what="the CIFAR-10 python version")
    parts = [load_batch(folder / name) for name in TRAIN_BATCHES]
    train = (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))
    return {split: (torch.from_numpy(x), torch.from_numpy(y))
            for split, (x, y) in (("train", train), ("test", load_batch(folder / "test_batch")))}


@dataclass(frozen=True)
class Cifar10Options:
    augment: bool = True    # training only: random crop (4 px padding), horizontal flip, rotation up to 20 degrees
    patch_size: int = 4     # patches of patch_size x patch_size pixels
    n_val: int = 5000       # training images set aside for validation

    def __post_init__(self) -> None:
        positive(self, "patch_size", "n_val")
        if 32 % self.patch_size:
            raise ValueError(f"patch_size={self.patch_size} must divide the image side 32")


@dataclass(frozen=True)
class Cifar10LraOptions(Cifar10Options):
    augment: bool = False   # Long Range Arena: none (the official FPT code: crop, flip, rotation)
    patch_size: int = 1     # 1: one pixel a token, 1024 tokens (LRA); 2: 256 tokens


class Cifar10(ImageTask):
    name, gray = "cifar10", False

    @classmethod
    def make_spec(cls, o: Cifar10Options) -> TaskSpec:
        side, p = 32 // o.patch_size, o.patch_size
        tokens, values = side * side, p * p * (1 if cls.gray else 3)
        if cls.gray:
            text = (f"CIFAR-10 in grayscale, {p}x{p} pixels a token (LRA: 1 pixel, 1024 tokens); needs a backbone "
                    f"with >= {tokens} positions (gpt2: 1024, minilm: 512; patch_size=2 gives 256 tokens)")
        else:
            text = f"CIFAR-10 colour images, {p}x{p} RGB patches in row-major order, channels last"
        aug = ", train augmentation: crop, flip, rotation" if o.augment else ""
        return TaskSpec(name=cls.name, seq_len=tokens, token_dim=values, objective="classification",
                        n_outputs=10, description=text + aug, source="downloaded", image_patch=p)

    def __init__(self, options: Cifar10Options, data_seed: int, data_dir: Path):
        spec = self.make_spec(options)
        splits = load_cifar10(Path(data_dir) / "cifar10")
        train, val = carve_validation(ImageArrays.of(*splits["train"], spec.seq_len), options.n_val,
                                      data_seed, spec.name)
        test = ImageArrays.of(*splits["test"], spec.seq_len)
        tokens = Tokenizer(options.patch_size, (0.5,), (0.5,), gray=True) if self.gray \
            else Tokenizer(options.patch_size, MEAN, STD)
        super().__init__(spec, train, val, test, to_tokens=tokens,
                         augment=augment_images if options.augment else None)


class Cifar10Lra(Cifar10):
    name, gray = "cifar10-lra", True

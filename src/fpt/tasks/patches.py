"""Images as token sequences: storage, patches and training augmentation, shared by the image tasks.

Images stay in memory as uint8 (N, C, H, W) (CIFAR-10's 50,000 training images
take 150 MB instead of 600 MB as floats) and become floats in [0, 1] one batch
at a time. Augmentation works on those images; only then are they normalised
and cut into tokens:

    p x p patches in row-major order (left to right, then top to bottom), each
    flattened as (row, column, channel), channels last: token t = i * (W/p) + j
    holds image[:, i*p:(i+1)*p, j*p:(j+1)*p], feature (r * p + c) * C + ch.

This is the official FPT code's layout ('b c (h p1) (w p2) -> b (h w) (p1 p2 c)').
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor

from fpt.tasks.arrays import Arrays, ArrayTask, Augment
from fpt.tasks.base import Batch, TaskSpec

GRAY = (0.2989, 0.587, 0.114)  # ITU-R 601-2 luma, as torchvision's and TensorFlow's rgb_to_grayscale


def patchify(images: Tensor, patch: int) -> Tensor:
    """(B, C, H, W) -> (B, H/p * W/p, p * p * C) in the layout of the module docstring."""
    b, c, h, w = images.shape
    x = images.reshape(b, c, h // patch, patch, w // patch, patch)   # (B, C, i, r, j, c')
    x = x.permute(0, 2, 4, 3, 5, 1)                                    # (B, i, j, r, c', C)
    return x.reshape(b, (h // patch) * (w // patch), patch * patch * c)


@dataclass(frozen=True)
class Tokenizer:
    """Float images in [0, 1] -> normalised tokens: optional grayscale, (x - mean) / std, patches."""

    patch: int
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    gray: bool = False

    def __call__(self, images: Tensor) -> Tensor:                     # (B, C, H, W)
        if self.gray:
            images = torch.einsum("bchw,c->bhw", images, torch.tensor(GRAY)).unsqueeze(1)  # (B, 1, H, W)
        mean = torch.tensor(self.mean).view(1, -1, 1, 1)
        std = torch.tensor(self.std).view(1, -1, 1, 1)
        return patchify((images - mean) / std, self.patch)            # (B, L, p*p*C)


class ImageArrays(Arrays):
    """x: uint8 images (N, C, H, W); every example fills all `lengths` tokens. Batches hold float images."""

    @classmethod
    def of(cls, images: Tensor, labels: Tensor, tokens: int) -> "ImageArrays":
        return cls(images, labels, torch.full((len(images),), tokens, dtype=torch.long))

    def take(self, index: Tensor) -> "ImageArrays":
        return ImageArrays(self.x[index], self.y[index], self.lengths[index])

    def batch(self, index: Tensor) -> Batch:
        images = self.x[index].float() / 255                           # (B, C, H, W)
        tokens = int(self.lengths[0]) if len(self) else 0
        return Batch(images, self.y[index], torch.ones(len(index), tokens, dtype=torch.bool))


class ImageTask(ArrayTask):
    """An ArrayTask over ImageArrays: augment the images of a training batch, then make tokens."""

    def __init__(self, spec: TaskSpec, train: ImageArrays, val: ImageArrays, test: ImageArrays,
                 to_tokens: Callable[[Tensor], Tensor], augment: Augment | None = None):
        super().__init__(spec, train, val, test, augment)
        self.to_tokens = to_tokens

    def train_batch(self, step: int, batch_size: int, seed: int) -> Batch:
        batch = super().train_batch(step, batch_size, seed)          # augmented images
        batch.x = self.to_tokens(batch.x)
        return batch

    def eval_batches(self, split: str, batch_size: int) -> Iterator[Batch]:
        for batch in super().eval_batches(split, batch_size):
            batch.x = self.to_tokens(batch.x)
            yield batch


def rotate(images: Tensor, degrees: Tensor) -> Tensor:
    """Rotate square images (B, C, H, W) about their centre by degrees (B,); nearest pixel, zero fill."""
    angle = degrees * (math.pi / 180)
    cos, sin, zero = angle.cos(), angle.sin(), torch.zeros_like(angle)
    theta = torch.stack([torch.stack([cos, -sin, zero], -1), torch.stack([sin, cos, zero], -1)], 1)  # (B, 2, 3)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="nearest", padding_mode="zeros", align_corners=False)


def augment_images(images: Tensor, gen: torch.Generator, pad: int = 4, flip: bool = True,
                   degrees: float = 20.0) -> Tensor:
    """The official code's training augmentation for CIFAR-10, vectorised over a batch (B, C, H, W) in [0, 1]:
    a random H x W crop of the image padded with `pad` black pixels, a horizontal flip with p=0.5,
    a rotation by an angle uniform in [-degrees, degrees] (nearest pixel, black corners)."""
    b, _, h, w = images.shape
    if pad:
        padded = F.pad(images, (pad, pad, pad, pad))                   # (B, C, H+2p, W+2p)
        top = torch.randint(0, 2 * pad + 1, (b,), generator=gen)
        left = torch.randint(0, 2 * pad + 1, (b,), generator=gen)
        rows = (top[:, None] + torch.arange(h))[:, :, None]           # (B, H, 1)
        cols = (left[:, None] + torch.arange(w))[:, None, :]          # (B, 1, W)
        images = padded[torch.arange(b)[:, None, None], :, rows, cols].permute(0, 3, 1, 2)  # (B, C, H, W)
    if flip:
        flipped = torch.rand(b, generator=gen) < 0.5
        images = torch.where(flipped[:, None, None, None], images.flip(-1), images)
    if degrees:
        images = rotate(images, (torch.rand(b, generator=gen) * 2 - 1) * degrees)
    return images

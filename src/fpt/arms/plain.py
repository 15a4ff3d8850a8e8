"""Plain baselines on the flattened input: no backbone, and no input layer for float tokens
(integer ids go through fpt's embedding): one linear map (logistic regression for classes and
bits), a 256-unit ReLU MLP, or a small CNN, to every output."""

from __future__ import annotations

from typing import TYPE_CHECKING

import dataclasses
import math

import torch
from torch import Tensor, nn

from fpt.arms.base import ArmHooks, NoBackbone
from fpt.backbones import BackboneInfo
from fpt.errors import FptError
from fpt.options import ModelOptions
from fpt.tasks.base import TaskSpec

if TYPE_CHECKING:
    from fpt.model import FPTModel

MLP_HIDDEN = 256
CNN_HIDDEN = 128


class Plain(ArmHooks):
    """The flattened input itself, into `head`: float tokens as they are, ids through fpt's embedding."""

    def replace_backbone(self, backbone: nn.Module, info: BackboneInfo, spec: TaskSpec,
                         options: ModelOptions) -> tuple[nn.Module, BackboneInfo]:
        width = spec.token_dim or info.hidden_size
        info = dataclasses.replace(info, model_type=options.method, causal=False, layers=0, position="none",
                                   attention_impl="", hidden_size=width, input_size=width,
                                   max_positions=max(spec.seq_len, 1),
                                   description=f"{options.method} on the flattened input, no backbone")
        return NoBackbone(width), info

    def input_layer(self, spec: TaskSpec) -> bool:
        return spec.token_dim is None

    def input_dropout(self, options: ModelOptions) -> float:
        return 0.0

    def finish(self, model: "FPTModel", options: ModelOptions) -> None:
        spec = model.spec
        outputs = (spec.readout_tokens, spec.n_outputs) if spec.readout_tokens > 1 else (spec.n_outputs,)
        model.readout = "flatten"
        with torch.random.fork_rng(devices=[]):
            model.head = self.head(spec, model.info.hidden_size, outputs)

    def head(self, spec: TaskSpec, width: int, outputs: tuple[int, ...]) -> nn.Module:
        raise NotImplementedError


class Logistic(Plain):
    def head(self, spec: TaskSpec, width: int, outputs: tuple[int, ...]) -> nn.Module:
        return FlatHead(width * spec.seq_len, outputs)


class Mlp(Plain):
    def head(self, spec: TaskSpec, width: int, outputs: tuple[int, ...]) -> nn.Module:
        return FlatHead(width * spec.seq_len, outputs, MLP_HIDDEN)


class Cnn(Plain):
    def replace_backbone(self, backbone: nn.Module, info: BackboneInfo, spec: TaskSpec,
                         options: ModelOptions) -> tuple[nn.Module, BackboneInfo]:
        if spec.columns:
            raise FptError(f"--method cnn convolves over neighbouring tokens; task {spec.name} is a table, whose "
                           "columns have no order (try --method mlp or trees)")
        return super().replace_backbone(backbone, info, spec, options)

    def head(self, spec: TaskSpec, width: int, outputs: tuple[int, ...]) -> nn.Module:
        return ConvHead(spec.seq_len, width, outputs, spec.image_patch)


class FlatHead(nn.Module):
    """The plain baselines' head: flattened features (B, F) -> (B, *outputs), linear or MLP."""

    def __init__(self, features: int, outputs: tuple[int, ...], hidden: int = 0):
        super().__init__()
        size = math.prod(outputs)
        layers: list[nn.Module] = ([nn.Linear(features, hidden), nn.ReLU(), nn.Dropout(0.1), nn.Linear(hidden, size)]
                                   if hidden else [nn.Linear(features, size)])
        self.net = nn.Sequential(*layers)
        self.outputs = outputs

    def forward(self, features: Tensor) -> Tensor:
        return self.net(features).view(features.shape[0], *self.outputs)


class ConvHead(nn.Module):
    """The small-CNN baseline on flattened tokens (B, L * D) -> (B, *outputs).

    Image tasks (spec.image_patch = p): the tokens are put back into the (B, C, H, W) image
    (the inverse of fpt.tasks.patches.patchify), then two 3x3 convolutions of 32 and 64
    channels, each with ReLU and 2x2 max pooling. Other tasks: the same two convolutions in 1-D
    (kernel 3) over the L tokens of D features, without pooling (L may be 1). Then flattened,
    a 128-unit ReLU layer with dropout 0.1, and one linear map to every output: PyTorch's MNIST
    example network, give or take."""

    def __init__(self, tokens: int, width: int, outputs: tuple[int, ...], image_patch: int = 0):
        super().__init__()
        self.tokens, self.width, self.patch, self.outputs = tokens, width, image_patch, outputs
        self.side = math.isqrt(tokens)                                  # patches per image side
        if image_patch:
            if self.side * self.side != tokens or width % (image_patch * image_patch):
                raise FptError(f"--method cnn: {tokens} tokens of {width} values are not a square image of "
                               f"{image_patch}x{image_patch} patches")
            self.channels = width // (image_patch * image_patch)
            pixels = self.side * image_patch
            conv, pool, cells = nn.Conv2d, nn.MaxPool2d(2, ceil_mode=True), math.ceil(math.ceil(pixels / 2) / 2) ** 2
        else:
            self.channels, conv, pool, cells = width, nn.Conv1d, nn.Identity(), tokens
        self.net = nn.Sequential(conv(self.channels, 32, 3, padding=1), nn.ReLU(), pool,
                                 conv(32, 64, 3, padding=1), nn.ReLU(), pool, nn.Flatten(),
                                 nn.Linear(64 * cells, CNN_HIDDEN), nn.ReLU(), nn.Dropout(0.1),
                                 nn.Linear(CNN_HIDDEN, math.prod(outputs)))

    def forward(self, features: Tensor) -> Tensor:                      # (B, L * D)
        b = features.shape[0]
        x = features.view(b, self.tokens, self.width)                     # (B, L, D)
        if self.patch:
            g, p, c = self.side, self.patch, self.channels
            x = x.view(b, g, g, p, p, c).permute(0, 5, 1, 3, 2, 4).reshape(b, c, g * p, g * p)  # (B, C, H, W)
        else:
            x = x.transpose(1, 2)                                         # (B, D, L)
        return self.net(x).view(b, *self.outputs)

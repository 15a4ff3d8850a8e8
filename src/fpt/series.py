"""Time series into tokens, and forecasts back into values (One Fits All's front and back end).

A series task's examples are raw windows x (B, T, C): T time steps of C channels, right-padded
to T and masked (B, T). Before the input layer:

    instance normalisation   each example's channels minus their mean over the real steps,
                             divided by their std (One Fits All, RevIN without the affine part)
    patching                 pad `stride` copies of the last step on the right, then cut
                             patches of `patch_len` steps every `stride`: (B, P, patch_len * C)

so the backbone reads P = (T + stride - patch_len) // stride + 1 tokens. A forecast
(B, horizon) of a one-channel window is de-normalised with the same window's mean and std.
Padding follows the series' real length: a patch is real when its first step is.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

EPS = 1e-5  # added to the variance, as One Fits All does


def patch_count(steps: int, patch_len: int, stride: int, pad: bool = True) -> int:
    """Tokens a window of `steps` becomes (pad: `stride` copies of the last step appended)."""
    padded = steps + (stride if pad else 0)
    return max(0, (padded - patch_len) // stride + 1)


@dataclass
class Scale:
    """Each example's per-channel mean and std: mean, std (B, 1, C)."""

    mean: Tensor
    std: Tensor


class SeriesInput(nn.Module):
    """Raw windows (B, T, C) -> patch tokens (B, P, patch_len * C) and their mask (B, P).

    No parameters: what trains is the input layer after it."""

    def __init__(self, series_len: int, patch_len: int, stride: int, instance_norm: bool, pad: bool = True):
        super().__init__()
        self.series_len, self.patch_len, self.stride = series_len, patch_len, stride
        self.instance_norm, self.pad = instance_norm, pad

    def normalise(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Scale | None]:
        """x (B, T, C), mask (B, T) -> normalised x (padding set to 0) and the scale, if instance_norm."""
        weights = mask.unsqueeze(-1).to(x.dtype)                           # (B, T, 1)
        x = x * weights
        if not self.instance_norm:
            return x, None
        count = weights.sum(dim=1, keepdim=True).clamp(min=1)              # (B, 1, 1)
        mean = x.sum(dim=1, keepdim=True) / count                          # (B, 1, C)
        var = (((x - mean) * weights) ** 2).sum(dim=1, keepdim=True) / count
        std = torch.sqrt(var + EPS)
        return (x - mean) / std * weights, Scale(mean, std)

    def patches(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """x (B, T, C), mask (B, T) -> tokens (B, P, patch_len * C), token mask (B, P).
        A batch cut shorter than series_len (to its longest series) is padded back to it first."""
        short = self.series_len - x.shape[1]
        if short > 0:
            x = torch.nn.functional.pad(x, (0, 0, 0, short))
            mask = torch.nn.functional.pad(mask, (0, short))
        if self.pad:
            lengths = mask.sum(dim=1)                                      # (B,)
            last = x[torch.arange(x.shape[0], device=x.device), (lengths - 1).clamp(min=0)]  # (B, C)
            x = torch.cat([x, last.unsqueeze(1).expand(-1, self.stride, -1)], dim=1)  # (B, T + stride, C)
        windows = x.unfold(1, self.patch_len, self.stride)                 # (B, P, C, patch_len)
        tokens = windows.transpose(2, 3).flatten(2)                        # (B, P, patch_len * C), step-major
        starts = torch.arange(tokens.shape[1], device=x.device) * self.stride
        token_mask = starts[None, :] < mask.sum(dim=1, keepdim=True)       # (B, P)
        return tokens, token_mask


def denormalise(forecast: Tensor, scale: Scale | None) -> Tensor:
    """forecast (B, horizon) of one-channel windows -> in the windows' own scale."""
    if scale is None:
        return forecast
    return forecast * scale.std[:, :, 0] + scale.mean[:, :, 0]             # (B, horizon)

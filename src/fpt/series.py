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
        self.fill_gaps = True  # NaN points (gaps to impute) become 0; False: handed on as NaN

    def normalise(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Scale | None]:
        """x (B, T, C), mask (B, T) -> normalised x (padding and gaps set to 0) and the scale, if
        instance_norm. A gap is a NaN in x (a point to impute): the mean and std of each channel
        come from its observed points alone, as One Fits All's imputation normalises (a channel
        with none observed gets mean 0). fill_gaps=False (the gap-filling baselines) keeps the
        NaNs for the model to see."""
        mask = mask.bool()                                                 # a 0/1 attention mask too
        observed = mask.unsqueeze(-1) & ~torch.isnan(x)                     # (B, T, C)
        weights = observed.to(x.dtype)
        values = torch.where(observed, x, torch.zeros((), dtype=x.dtype, device=x.device))
        if not self.instance_norm:
            return (values if self.fill_gaps else torch.where(mask.unsqueeze(-1), x, 0)), None
        count = weights.sum(dim=1, keepdim=True).clamp(min=1)              # (B, 1, C)
        mean = values.sum(dim=1, keepdim=True) / count                     # (B, 1, C)
        var = (((values - mean) * weights) ** 2).sum(dim=1, keepdim=True) / count
        std = torch.sqrt(var + EPS)
        return (values - mean) / std * weights, Scale(mean, std)

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


def window_starts(rows: int, steps: int) -> list[int]:
    """Where windows of `steps` rows start to cover `rows` rows: back to back, and the last one ending
    at the last row (overlapping the one before when `steps` does not divide `rows`)."""
    starts = list(range(0, rows - steps + 1, steps))
    if starts and starts[-1] + steps < rows:
        starts.append(rows - steps)
    return starts


def denormalise(forecast: Tensor, scale: Scale | None) -> Tensor:
    """forecast (B, horizon) of one-channel windows, or a rebuilt window (B, T, C) -> in the
    windows' own scale."""
    if scale is None:
        return forecast
    if forecast.dim() == 3:
        return forecast * scale.std + scale.mean                           # (B, T, C)
    return forecast * scale.std[:, :, 0] + scale.mean[:, :, 0]             # (B, horizon)

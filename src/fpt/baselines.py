"""Series baselines that replace fpt's whole model: `--model linear`, `dlinear`, `repeat-last`,
`seasonal-naive` (forecasting), `interpolate`, `locf`, `channel-mean` (imputation).

Both are FPTModels with no backbone and no input layer, so the runner, checkpoints and
`fpt predict` treat them like any run. The window (series_len steps of one channel) is one
token and the head is the whole model:

    linear       instance normalisation -> Linear(seq_len, horizon) -> de-normalisation:
                 one linear map per window, shared by the channels (NLinear/DLinear style,
                 the linear model Tan et al. and the closed-form numbers in PAPER.md use)
    dlinear      DLinear (Zeng et al. 2023, "Are Transformers Effective for Time Series
                 Forecasting?"): the window split into its trend (a 25-step moving average, the
                 ends padded with the first and last values) and the remainder, a linear map
                 from each to the horizon, summed; shared by the channels, no normalisation
                 (their individual=False, as Time-Series-Library runs it)
    repeat-last  the window's last value, repeated over the horizon; nothing trains
    seasonal-naive  the window's last season repeated: step h of the forecast is the value one
                 period before it (period: the data's, from its date column, or seasonal-naive-N);
                 nothing trains

On an imputation or anomaly task (a window of every channel rebuilt) linear maps the whole
window, every channel, to itself (channels mixed: the strongest plain map), and dlinear rebuilds
each channel from its own trend and remainder (ChannelSharedMap, as Time-Series-Library's DLinear
imputes); the gap fillers are GapFill below.

The catalogue (fpt.catalog) names them; these are their hooks (fpt.arms.base).
"""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from fpt.arms.base import ArmHooks, NoBackbone
from fpt.backbones import BackboneInfo
from fpt.errors import FptError
from fpt.objectives import objective
from fpt.options import ModelOptions
from fpt.tasks.base import TaskSpec

if TYPE_CHECKING:
    from fpt.model import FPTModel


class WindowBaseline(ArmHooks):
    """The window as one token, read by the head alone: fp32, no input layer, no dropout."""

    whole_model = True
    normalise = False  # instance normalisation of each window (and de-normalisation of the forecast)

    def adapt_spec(self, spec: TaskSpec, options: ModelOptions) -> TaskSpec:
        kind = objective(spec.objective)
        if not (kind.horizon or kind.reconstructs):
            raise FptError(f"--model {options.model} is a series baseline (tasks forecast, impute, anomaly); task {spec.name} "
                           f"is {spec.objective}: use a backbone (see `fpt models`)")
        width = spec.series_len * spec.channels
        outputs = width if kind.reconstructs else spec.n_outputs  # a rebuilt window: every value, step-major
        return dataclasses.replace(spec, seq_len=1, token_dim=width, patch_len=spec.series_len,
                                   patch_stride=spec.series_len, patch_pad=False, readout_tokens=1, n_outputs=outputs,
                                   instance_norm=spec.instance_norm and self.normalise)

    def replace_backbone(self, backbone: Any, info: Any, spec: TaskSpec,
                         options: ModelOptions) -> tuple[nn.Module, BackboneInfo]:
        width = spec.token_dim or 0
        info = BackboneInfo(name=options.model, source="fpt.baselines", init="random", model_type=options.model,
                            hidden_size=width, max_positions=1, causal=False, family="baseline", position="none",
                            layers=0, attention_impl="", input_size=width)
        return NoBackbone(width), info

    def input_layer(self, spec: TaskSpec) -> bool:
        return False

    def input_dropout(self, options: ModelOptions) -> float:
        return 0.0


class LinearBaseline(WindowBaseline):
    normalise = True


class Decomposition(NoBackbone):
    """DLinear's series decomposition as a parameter-free backbone: the window token (B, 1, T * C),
    step-major, becomes its remainder and its trend side by side (B, 1, 2 * T * C), so that the head
    (one Linear) is DLinear's two linear maps and their sum."""

    def __init__(self, steps: int, channels: int, kernel: int = 25):
        super().__init__(2 * steps * channels)
        self.steps, self.channels, self.kernel = steps, channels, kernel

    def forward(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor | None = None,
                **_: object) -> SimpleNamespace:
        x = inputs_embeds.reshape(-1, self.steps, self.channels)               # (B, T, C)
        side = (self.kernel - 1) // 2
        padded = torch.cat([x[:, :1].expand(-1, side, -1), x, x[:, -1:].expand(-1, side, -1)], dim=1)
        trend = padded.unfold(1, self.kernel, 1).mean(dim=-1)                 # (B, T, C): moving average
        features = torch.cat([(x - trend).flatten(1), trend.flatten(1)], dim=1)  # (B, 2 * T * C)
        return SimpleNamespace(last_hidden_state=features.unsqueeze(1))      # (B, 1, 2 * T * C)


class ChannelSharedMap(nn.Module):
    """DLinear's rebuilt window (Time-Series-Library's DLinear.imputation, individual=False): one
    Linear(T, T) each from every channel's remainder and trend, summed, shared by the channels.
    Features (B, 2 * T * C) as Decomposition lays them out (remainder, then trend, each step-major)
    -> the window rebuilt (B, T * C), step-major."""

    def __init__(self, steps: int, channels: int):
        super().__init__()
        self.steps, self.channels = steps, channels
        self.linear = nn.Linear(2 * steps, steps)  # remainder and trend maps side by side; their biases summed

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        parts = features.reshape(-1, 2, self.steps, self.channels)            # (B, 2, T, C)
        per_channel = parts.permute(0, 3, 1, 2).flatten(2)                   # (B, C, 2 * T)
        rebuilt = self.linear(per_channel)                                   # (B, C, T)
        return rebuilt.transpose(1, 2).flatten(1)                            # (B, T * C), step-major


class DLinear(WindowBaseline):
    def replace_backbone(self, backbone: Any, info: Any, spec: TaskSpec,
                         options: ModelOptions) -> tuple[nn.Module, BackboneInfo]:
        decomposition = Decomposition(spec.series_len, spec.channels)  # any window: the padding fills the kernel
        _, info = super().replace_backbone(backbone, info, spec, options)
        return decomposition, dataclasses.replace(info, hidden_size=decomposition.hidden_size)

    def finish(self, model: "FPTModel", options: ModelOptions) -> None:
        """A rebuilt window (imputation, anomaly) comes from each channel alone, as DLinear rebuilds it;
        a forecast's window is one channel already, so fpt's head is DLinear's map as it stands."""
        if objective(model.spec.objective).reconstructs:
            model.head = ChannelSharedMap(model.spec.series_len, model.spec.channels)


class ForecastOnly(WindowBaseline):
    def adapt_spec(self, spec: TaskSpec, options: ModelOptions) -> TaskSpec:
        if not objective(spec.objective).horizon:
            raise FptError(f"--model {options.model} forecasts (task forecast); task {spec.name} is {spec.objective}")
        return super().adapt_spec(spec, options)


class RepeatLast(ForecastOnly):
    @torch.no_grad()
    def finish(self, model: "FPTModel", options: ModelOptions) -> None:
        """Make the head (window -> horizon) copy the window's last value to every step."""
        model.head.weight.zero_()
        model.head.weight[:, -1] = 1
        model.head.bias.zero_()


class SeasonalNaive(ForecastOnly):
    """y[T + h] = x[T + h - period * ceil((h + 1) / period)]: the last whole season, repeated."""

    def adapt_spec(self, spec: TaskSpec, options: ModelOptions) -> TaskSpec:
        adapted = super().adapt_spec(spec, options)
        given = options.model.rpartition("-")[2]
        self.period = int(given) if given.isdigit() else spec.period
        if self.period <= 0:
            raise FptError(f"--model seasonal-naive: task {spec.name}'s dates do not give a seasonal period; name "
                           "it: --model seasonal-naive-24 (hourly data with a daily cycle)")
        if self.period > spec.series_len:
            raise FptError(f"--model {options.model}: the period {self.period} is longer than the input window "
                           f"({spec.series_len} steps); use a longer --task-opt seq_len or a shorter period")
        return adapted

    @torch.no_grad()
    def finish(self, model: "FPTModel", options: ModelOptions) -> None:
        """Make the head (window -> horizon) copy each step's value one season earlier."""
        window, horizon = model.head.weight.shape[1], model.head.weight.shape[0]
        model.head.weight.zero_()
        for h in range(horizon):
            model.head.weight[h, window - self.period + h % self.period] = 1
        model.head.bias.zero_()


class GapFill(NoBackbone):
    """A window's gaps (NaN) filled by a rule, as a parameter-free backbone: the window token
    (B, 1, T * C), step-major, in and out; what was observed passes through unchanged.

        interpolate   linear interpolation in time between the nearest observed points of the
                      channel; before the first and after the last, the nearest observed value
        locf          the last observed value carried forward; before the first, the next one
        channel-mean  the mean of the channel's observed points in the window

    A channel with nothing observed in the window gets 0, its training mean (the task
    standardises every channel with its training rows' statistics)."""

    RULES = ("interpolate", "locf", "channel-mean")

    def __init__(self, steps: int, channels: int, rule: str):
        super().__init__(steps * channels)
        self.steps, self.channels, self.rule = steps, channels, rule

    def forward(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor | None = None,
                **_: object) -> SimpleNamespace:
        x = inputs_embeds.reshape(-1, self.steps, self.channels)               # (B, T, C), NaN: a gap
        seen = ~torch.isnan(x)
        values = torch.where(seen, x, 0.0)
        if self.rule == "channel-mean":
            count = seen.sum(dim=1, keepdim=True)                              # (B, 1, C)
            fill = (values.sum(dim=1, keepdim=True) / count.clamp(min=1)).expand_as(x)
        else:
            fill = self._from_neighbours(values, seen)
        filled = torch.where(seen, x, fill)
        return SimpleNamespace(last_hidden_state=filled.reshape(-1, 1, self.steps * self.channels))

    def _from_neighbours(self, values: torch.Tensor, seen: torch.Tensor) -> torch.Tensor:
        """The previous and next observed point of every step (B, T, C), combined by the rule."""
        steps = torch.arange(self.steps, device=values.device).view(1, -1, 1).expand_as(values)
        before = torch.where(seen, steps, -1).cummax(dim=1).values             # last observed step <= t, or -1
        after = torch.where(seen, steps, self.steps).flip(1).cummin(dim=1).values.flip(1)  # first >= t, or T
        has_before, has_after = before >= 0, after < self.steps
        previous = values.gather(1, before.clamp(min=0))
        following = values.gather(1, after.clamp(max=self.steps - 1))
        carried = torch.where(has_before, previous, torch.where(has_after, following, 0.0))  # locf, then nocb
        if self.rule == "locf":
            return carried
        span = (after - before).clamp(min=1).to(values.dtype)
        blend = previous + (following - previous) * (steps - before).to(values.dtype) / span
        return torch.where(has_before & has_after, blend, carried)


class GapFiller(WindowBaseline):
    """`--model interpolate | locf | channel-mean`: the imputation user's first checks; nothing trains."""

    def adapt_spec(self, spec: TaskSpec, options: ModelOptions) -> TaskSpec:
        if spec.objective != "imputation":
            raise FptError(f"--model {options.model} fills gaps (task impute); task {spec.name} is {spec.objective}")
        return super().adapt_spec(spec, options)

    def replace_backbone(self, backbone: Any, info: Any, spec: TaskSpec,
                         options: ModelOptions) -> tuple[nn.Module, BackboneInfo]:
        _, info = super().replace_backbone(backbone, info, spec, options)
        return GapFill(spec.series_len, spec.channels, options.model), info

    @torch.no_grad()
    def finish(self, model: "FPTModel", options: ModelOptions) -> None:
        """The head hands the filled window on (identity); the gaps reach the backbone as NaN."""
        nn.init.eye_(model.head.weight)
        model.head.bias.zero_()
        assert model.series is not None
        model.series.fill_gaps = False

"""Time-series foundation models as arms: Chronos-Bolt (Ansari et al. 2024, amazon-science/chronos-forecasting).

    fpt train --task forecast --task-opt path=etth1 --model chronos-bolt-small     zero-shot: nothing trains
    ... --model chronos-bolt-small --train all                                     fine-tuned, every weight
    ... --model chronos-bolt-small --train input,output,layernorm,position         the FPT recipe on a model
                                                                                   pretrained on series, not language
    ... --model chronos-bolt-small --init random --train input,output,layernorm,position   its random-init twin
    ... --model ./my-chronos-bolt                                                  a local checkpoint directory

The model replaces fpt's whole model, as the series baselines do (fpt.baselines): each channel's
window is handed to Chronos-Bolt as its context (Chronos scales each context itself, so fpt adds no
instance normalisation), and the forecast is the median of its quantiles. Horizons beyond the
model's own prediction length (64 steps for the released models) are unrolled as
`ChronosBoltPipeline.predict` does: every quantile path of the first block is appended to the
context, and the quantiles of the 9 x 9 continuations are taken; fpt computes it with gradients, so
that fine-tuning reaches every step of the horizon. The windows, standardisation and metrics are
the forecasting task's, the same as every other arm's. Fine-tuning uses fpt's forecast loss (the
MSE of the median), not Chronos' quantile loss.

Parameter groups (for --train): Chronos' input patch embedding (and the decoder's start-token
embedding) are `input`, its output patch embedding and fpt's head (the identity at the start) are
`output`, T5's layer norms `layernorm`, attention and feed-forward as in T5; T5's relative position
bias sits inside attention, as fpt groups every T5 (so `position` has nothing to train).

Needs the optional package: pip install 'fpt[tsfm]' (chronos-forecasting). Weights come from the
Hugging Face hub (amazon/chronos-bolt-tiny, -mini, -small, -base) or a local directory saved by
`save_pretrained` (its config.json holds `chronos_config`).
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import torch
from torch import Tensor, nn

from fpt.backbones import BackboneInfo
from fpt.baselines import ForecastOnly
from fpt.errors import FptError
from fpt.options import ModelOptions
from fpt.tasks.base import TaskSpec

INSTALL = "pip install 'fpt[tsfm]' (or pip install chronos-forecasting)"


def load_chronos_bolt(source: str, init: str, seed: int) -> nn.Module:
    """The ChronosBoltModelForForecasting at `source` (a hub name or a local directory); init=random
    builds the same architecture with fresh weights (its random-init twin)."""
    try:
        from chronos.chronos_bolt import ChronosBoltModelForForecasting
        from transformers import AutoConfig
    except ImportError:
        raise FptError(f"--model {source}: Chronos-Bolt needs the chronos-forecasting package: {INSTALL}") from None
    try:
        config = AutoConfig.from_pretrained(source)
    except (OSError, ValueError) as err:
        raise FptError(f"--model {source}: cannot load its config ({str(err).splitlines()[0]}); on a machine with "
                       "network access the hub name downloads once, or give a local directory saved with "
                       "save_pretrained") from None
    if not hasattr(config, "chronos_config"):
        raise FptError(f"--model {source}: its config.json has no chronos_config; not a Chronos-Bolt checkpoint")
    if init == "random":
        torch.manual_seed(seed)
        model = ChronosBoltModelForForecasting(config)
    else:
        try:
            model = ChronosBoltModelForForecasting.from_pretrained(source)
        except (OSError, ValueError) as err:
            raise FptError(f"--model {source}: cannot load its weights ({str(err).splitlines()[0]})") from None
    return model.float()


class ChronosForecaster(nn.Module):
    """Stands where the backbone was: the window token (B, 1, T) in, the median forecast (B, 1, H) out."""

    def __init__(self, model: nn.Module, horizon: int):
        super().__init__()
        self.model = model
        self.horizon = self.hidden_size = horizon
        levels = list(model.chronos_config.quantiles)
        if 0.5 not in levels:
            raise FptError(f"this Chronos-Bolt checkpoint has no median among its quantiles {levels}")
        self.levels = [float(q) for q in levels]
        self.median = levels.index(0.5)
        self.block = model.chronos_config.prediction_length
        self.context_length = model.chronos_config.context_length

    def get_input_embeddings(self) -> None:
        return None

    def forward(self, inputs_embeds: Tensor, attention_mask: Tensor | None = None, **_: object) -> SimpleNamespace:
        context = inputs_embeds.reshape(inputs_embeds.shape[0], -1).float()        # (B, T)
        return SimpleNamespace(last_hidden_state=self.quantile_forecast(context)[:, self.median, None])  # (B, 1, H)

    def quantile_forecast(self, context: Tensor) -> Tensor:
        """(B, Q, H) quantile forecasts, unrolled past the model's block length as ChronosBoltPipeline.predict
        unrolls them (with gradients here)."""
        quantiles = self.model(context=context[..., -self.context_length:]).quantile_preds  # (B, Q, P)
        blocks, remaining = [quantiles], self.horizon - quantiles.shape[-1]
        levels = self.model.quantiles.to(context)
        paths = context.unsqueeze(1).expand(-1, quantiles.shape[1], -1)            # (B, Q, T)
        while remaining > 0:
            paths = torch.cat([paths, quantiles], dim=-1)[..., -self.context_length:]
            b, q, t = paths.shape
            nested = self.model(context=paths.reshape(b * q, t)).quantile_preds.reshape(b, q * q, -1)
            quantiles = torch.quantile(nested, q=levels, dim=1).transpose(0, 1)    # (B, Q, P)
            blocks.append(quantiles)
            remaining -= quantiles.shape[-1]
        return torch.cat(blocks, dim=-1)[..., :self.horizon]

    def parameter_groups(self) -> dict[str, str]:
        """Chronos' own embeddings as input/output; the T5 stacks by fpt's rules (fpt.groups)."""
        from fpt.groups import backbone_groups

        own = {"input_patch_embedding": "input", "shared": "input", "output_patch_embedding": "output"}
        stacks = {f"model.{part}.{name}": group for part in ("encoder", "decoder")
                  for name, group in backbone_groups(getattr(self.model, part)).items()}
        groups = {}
        for name, _ in self.named_parameters():
            top = name.split(".")[1]
            group = own.get(top) or stacks.get(name)
            if group is None:
                raise FptError(f"fpt does not know the role of Chronos-Bolt parameter '{name}'")
            groups[name] = group
        return groups


class ChronosBolt(ForecastOnly):
    """`--model chronos-bolt-*` or a Chronos-Bolt directory: the hooks that put it in fpt's model."""

    def adapt_spec(self, spec: TaskSpec, options: ModelOptions) -> TaskSpec:
        if options.layers:
            raise FptError(f"--layers {options.layers}: Chronos-Bolt runs whole (its encoder and decoder); drop --layers")
        return super().adapt_spec(spec, options)

    def replace_backbone(self, backbone: Any, info: Any, spec: TaskSpec,
                         options: ModelOptions) -> tuple[nn.Module, BackboneInfo]:
        from fpt.catalog import lookup

        named = lookup(options.model)
        source = named.source if named is not None else options.model
        model = load_chronos_bolt(source, options.init, options.seed)
        forecaster = ChronosForecaster(model, spec.n_outputs)
        config = model.config
        info = BackboneInfo(name=options.model, source=source, init=options.init, model_type="chronos-bolt",
                            hidden_size=spec.n_outputs, max_positions=forecaster.context_length, causal=False,
                            family="chronos-bolt", position="relative", layers=config.num_layers,
                            attention_impl="", input_size=spec.token_dim or 0)
        return forecaster, info

    @torch.no_grad()
    def finish(self, model: Any, options: ModelOptions) -> None:
        """The head hands the median forecast on (the identity), trained only with group output; gaps
        (NaN: before a short series' start) reach Chronos as NaN, which it reads as missing."""
        nn.init.eye_(model.head.weight)
        model.head.bias.zero_()
        assert model.series is not None
        model.series.fill_gaps = False

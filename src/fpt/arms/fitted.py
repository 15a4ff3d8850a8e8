"""Baselines fitted in one go, not by gradient steps: gradient-boosted trees and MiniRocket.

    trees       scikit-learn's HistGradientBoostingClassifier / -Regressor on the flattened
                input, one model per output (a bit, a target, a forecast step; one for all
                classes), with its own early stopping on 10% of the training set
    minirocket  sktime's MiniRocketMultivariate features (about 10,000 per series) -> a scaler
                -> RidgeClassifierCV over 10 alphas: Dempster et al.'s recipe, the baseline that
                beats One Fits All's GPT-2 on 3 of 7 UEA sets; classification of float sequences

Each is an FPTModel like any run's (fpt's runner, metrics and reports treat it as one): no
backbone, the flattened input read out (`flatten`), and a `FittedHead` without parameters in
the head's place. `fpt train` fits it once on the training set (`fit`), then validates and tests
it as built; nothing trains, so a run takes one fit per seed.

Integer tokens are handed over as their ids (trees split on them like any ordinal feature).
The fitted estimator lives in memory only: a run's result files keep its scores, and `fpt
predict` on such a run says so (fpt saves tensors, never pickles).
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import torch
from torch import Tensor, nn

from fpt.arms.base import ArmHooks, NoBackbone
from fpt.backbones import BackboneInfo
from fpt.errors import FptError
from fpt.objectives import objective
from fpt.options import ModelOptions
from fpt.tasks.base import TaskSpec

if TYPE_CHECKING:
    from fpt.model import FPTModel
    from fpt.tasks.base import Task

GENERATED_EXAMPLES = 20_000  # training examples drawn for a task that generates them (bits)
TREE_ITERATIONS = 500        # boosting rounds at most; sklearn's early stopping ends most sooner
MIN_MINIROCKET_LENGTH = 9    # MiniRocket's kernels have length 9
PROBABILITY_FLOOR = 1e-6     # log-probabilities of classes a model gives no mass (or never saw)


class Fitted(ArmHooks):
    """No backbone, no input layer: the input flattened into a FittedHead."""

    whole_model = True
    name = ""

    def check(self, spec: TaskSpec) -> None:
        """Raise FptError when this estimator cannot fit a task of this spec."""

    def adapt_spec(self, spec: TaskSpec, options: ModelOptions) -> TaskSpec:
        if objective(spec.objective).reconstructs:
            raise FptError(f"--method {options.method} fits one estimator per output; task {spec.name} rebuilds whole "
                           "windows (imputation, anomaly detection): use --model linear, dlinear or interpolate")
        self.check(spec)
        if spec.series_len:  # a window of raw steps: one token of all its values (time-major)
            # without instance normalisation: fitted on the values as the task scales them
            return dataclasses.replace(spec, seq_len=1, token_dim=spec.series_len * spec.channels,
                                       patch_len=spec.series_len, patch_stride=spec.series_len, patch_pad=False,
                                       instance_norm=False)
        return spec

    def replace_backbone(self, backbone: Any, info: Any, spec: TaskSpec,
                         options: ModelOptions) -> tuple[nn.Module, BackboneInfo]:
        width = spec.token_dim or 1  # integer ids arrive as one value each
        info = BackboneInfo(name=options.method, source="fpt.arms.fitted", init="fitted", model_type=options.method,
                            hidden_size=width, max_positions=max(spec.seq_len, 1), causal=False, family="fitted",
                            position="none", layers=0, attention_impl="", input_size=width,
                            description=f"{options.method} fitted on the flattened input, no backbone")
        return NoBackbone(width), info

    def input_layer(self, spec: TaskSpec) -> bool:
        return False

    def input_dropout(self, options: ModelOptions) -> float:
        return 0.0

    def finish(self, model: "FPTModel", options: ModelOptions) -> None:
        spec = model.spec
        model.readout = "flatten"
        length, channels = ((spec.series_len, spec.channels) if spec.series_len
                            else (spec.seq_len, spec.token_dim or 1))
        model.head = FittedHead(self.name, self.estimator, spec, (length, channels), options.seed)

    def estimator(self, kind: str, seed: int) -> Any:
        """A fresh scikit-learn estimator for one output: kind 'classifier' or 'regressor'."""
        raise NotImplementedError


class Trees(Fitted):
    name = "trees"

    def estimator(self, kind: str, seed: int) -> Any:
        from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

        cls = HistGradientBoostingClassifier if kind == "classifier" else HistGradientBoostingRegressor
        return cls(max_iter=TREE_ITERATIONS, early_stopping=True, validation_fraction=0.1, n_iter_no_change=10,
                   random_state=seed)


class MiniRocket(Fitted):
    name = "minirocket"

    def check(self, spec: TaskSpec) -> None:
        if spec.objective != "classification":
            raise FptError(f"--method minirocket classifies series; task {spec.name} is {spec.objective}")
        if spec.token_dim is None:
            raise FptError(f"--method minirocket needs real-valued series; task {spec.name}'s tokens are integer ids")
        if spec.image_patch or spec.columns:
            kind, other = ("an image", "cnn") if spec.image_patch else ("a table", "trees")
            raise FptError(f"--method minirocket is for series; task {spec.name} is {kind} (try --method {other})")
        length = spec.series_len or spec.seq_len
        if length < MIN_MINIROCKET_LENGTH:
            raise FptError(f"--method minirocket needs series of {MIN_MINIROCKET_LENGTH} steps at least (its kernels' "
                           f"length); task {spec.name} has {length}")
        try:
            import numba  # noqa: F401  (sktime's MiniRocket is compiled by numba)
            from sktime.transformations.panel.rocket import MiniRocketMultivariate  # noqa: F401
        except ImportError:
            raise FptError("--method minirocket needs sktime and numba: pip install 'fpt[timeseries]'") from None

    def estimator(self, kind: str, seed: int) -> Any:
        return MiniRocketClassifier(seed)


class MiniRocketClassifier:
    """Flattened series (N, length * channels) -> sktime's panel (N, channels, length) ->
    MiniRocketMultivariate -> StandardScaler(with_mean=False) -> RidgeClassifierCV (alphas 1e-3..1e3).
    Steps called one by one: sktime's transformers do not sit inside scikit-learn 1.9's Pipeline."""

    def __init__(self, seed: int):
        from sklearn.linear_model import RidgeClassifierCV
        from sklearn.preprocessing import StandardScaler
        from sktime.transformations.panel.rocket import MiniRocketMultivariate

        self.shape = (0, 0)  # (length, channels), set by FittedHead before fit
        self.features = MiniRocketMultivariate(random_state=seed)
        self.scaler = StandardScaler(with_mean=False)
        self.ridge = RidgeClassifierCV(alphas=np.logspace(-3, 3, 10))

    def _panel(self, x: np.ndarray) -> np.ndarray:
        length, channels = self.shape
        return x.reshape(len(x), length, channels).transpose(0, 2, 1).astype(np.float64)  # (N, C, L)

    def fit(self, x: np.ndarray, y: np.ndarray) -> "MiniRocketClassifier":
        features = np.asarray(self.features.fit_transform(self._panel(x)))  # (N, ~10,000)
        self.ridge.fit(self.scaler.fit_transform(features), y)
        return self

    @property
    def classes_(self) -> np.ndarray:
        return self.ridge.classes_

    def decision_function(self, x: np.ndarray) -> np.ndarray:
        features = np.asarray(self.features.transform(self._panel(x)))
        return self.ridge.decision_function(self.scaler.transform(features))


class FittedHead(nn.Module):
    """Flattened features (B, F) -> the objective's outputs from fitted scikit-learn estimators:
    class log-probabilities (B, C) (a ridge classifier's decision values), bit logits (B, k, n),
    values (B, K) or a forecast (B, horizon). No parameters: nothing here trains by gradient."""

    def __init__(self, name: str, make: Callable[[str, int], Any], spec: TaskSpec, shape: tuple[int, int],
                 seed: int):
        super().__init__()
        self.name, self.make, self.spec, self.shape, self.seed = name, make, spec, shape, seed
        self.models: list[Any] = []      # one per output column (one for all classes)
        self.columns: list[Any] = []     # per model: the constant it predicts when its column never varies

    @property
    def fitted(self) -> bool:
        return bool(self.models)

    def fit(self, features: np.ndarray, y: np.ndarray) -> None:
        """features (N, F); y (N,) classes, (N, k, n) bits, (N, K) targets or (N, horizon) values."""
        kind = objective(self.spec.objective)
        targets = y.reshape(len(y), -1) if y.ndim > 1 else y[:, None]           # (N, outputs)
        classes = kind.probabilities
        self.models, self.columns = [], []
        for column in targets.T:
            if len(np.unique(column)) == 1:  # a bit that never flips, a constant target: nothing to learn
                self.models.append(None)
                self.columns.append(column[0])
                continue
            model = self.make("classifier" if classes else "regressor", self.seed)
            if isinstance(model, MiniRocketClassifier):
                model.shape = self.shape
            model.fit(features, column.astype(np.int64) if classes else column)
            self.models.append(model)
            self.columns.append(None)

    def forward(self, features: Tensor) -> Tensor:                        # (B, F)
        if not self.fitted:
            raise FptError(f"this {self.name} model has not been fitted: fpt fits it in `fpt train` (its fitted "
                           "estimator is not saved; a run keeps its scores only). Refit it with fpt train")
        x = features.detach().cpu().double().numpy()
        kind = objective(self.spec.objective)
        if self.spec.objective == "classification":
            out = self._class_scores(self.models[0], x, self.columns[0])   # (B, C)
        else:
            columns = [self._column(m, c, x) for m, c in zip(self.models, self.columns)]
            out = np.stack(columns, axis=1)                                # (B, outputs)
            if kind.name == "bits":
                out = out.reshape(len(x), self.spec.readout_tokens, self.spec.n_outputs)
        return torch.from_numpy(np.ascontiguousarray(out)).float().to(features.device)

    def _class_scores(self, model: Any, x: np.ndarray, constant: Any) -> np.ndarray:
        scores = np.full((len(x), self.spec.n_outputs), math.log(PROBABILITY_FLOOR))
        if model is None:
            scores[:, int(constant)] = 0.0
            return scores
        known = np.asarray(model.classes_, dtype=np.int64)
        if hasattr(model, "predict_proba"):
            scores[:, known] = np.log(np.clip(model.predict_proba(x), PROBABILITY_FLOOR, None))
        else:  # a ridge classifier: decision values, one column (the second class's) when there are two
            decision = model.decision_function(x)
            scores[:, known] = np.stack([-decision, decision], 1) if decision.ndim == 1 else decision
        return scores

    def _column(self, model: Any, constant: Any, x: np.ndarray) -> np.ndarray:
        bits = self.spec.objective == "bits"
        if model is None:
            value = float(constant)
            return np.full(len(x), (1.0 if value > 0.5 else -1.0) * 10 if bits else value)
        if bits:  # the logit of the probability of a 1
            p = np.clip(model.predict_proba(x)[:, list(model.classes_).index(1)], PROBABILITY_FLOOR,
                        1 - PROBABILITY_FLOOR)
            return np.log(p / (1 - p))
        return model.predict(x)


def fitted_head(model: nn.Module) -> FittedHead | None:
    head = getattr(model, "head", None)
    return head if isinstance(head, FittedHead) else None


@torch.no_grad()
def fit(model: "FPTModel", task: "Task", seed: int, batch_size: int, progress: bool = True) -> float:
    """Fit `model`'s FittedHead on the task's training set (a generated task: GENERATED_EXAMPLES
    drawn from its training stream for `seed`); returns the seconds it took."""
    head = fitted_head(model)
    assert head is not None, "fit() is for the fitted arms' models"
    started = time.perf_counter()
    model.eval()
    features, targets = [], []
    for batch in task.fit_batches(batch_size, seed, GENERATED_EXAMPLES):
        features.append(model.features(batch.x, batch.mask).cpu())        # (B, F)
        targets.append(batch.y)
    x, y = torch.cat(features).double().numpy(), torch.cat(targets).numpy()
    if not np.isfinite(x).all():
        raise FptError(f"--method {head.name}: the training inputs hold NaN or inf; clean the data first")
    if progress:
        print(f"{head.name}: fitting on {len(x):,} training examples of {x.shape[1]:,} features", file=sys.stderr)
    head.fit(x, y)
    return time.perf_counter() - started

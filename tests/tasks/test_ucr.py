"""UCR/UEA classification: .ts files read by sktime's loader, variable lengths masked, channels standardised."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from fpt.errors import FptError
from fpt.tasks import build_task

pytest.importorskip("sktime", reason="the .ts loader is sktime's (pip install sktime)")


def write_ts(path: Path, series: list[np.ndarray], labels: list[str]) -> None:
    """A multivariate, unequal-length .ts file: series[i] is (T_i, C)."""
    header = ["@problemName tiny", "@timeStamps false", "@missing false", "@univariate false",
              f"@dimensions {series[0].shape[1]}", "@equalLength false",
              f"@classLabel true {' '.join(sorted(set(labels)))}", "@data"]
    rows = [":".join(",".join(f"{v:.4f}" for v in s[:, c]) for c in range(s.shape[1])) + f":{label}"
            for s, label in zip(series, labels)]
    path.write_text("\n".join(header + rows) + "\n")


@pytest.fixture(scope="module")
def ts_pair(tmp_path_factory) -> Path:
    rng = np.random.default_rng(0)
    folder = tmp_path_factory.mktemp("ucr")

    def make(n: int) -> tuple[list[np.ndarray], list[str]]:
        labels = [("up", "down")[i % 2] for i in range(n)]
        series = [np.cumsum(rng.standard_normal((int(rng.integers(20, 41)), 2)) + (0.5 if lab == "up" else -0.5), 0)
                  for lab in labels]
        return series, labels

    write_ts(folder / "Tiny_TRAIN.ts", *make(40))
    write_ts(folder / "Tiny_TEST.ts", *make(20))
    return folder / "Tiny_TRAIN.ts"


def test_ts_files_become_masked_patch_tasks(ts_pair):
    task = build_task("ucr", {"path": str(ts_pair), "patch_len": 8, "stride": 4}, 0)
    spec = task.spec
    assert spec.objective == "classification" and spec.n_outputs == 2 and spec.channels == 2
    assert spec.token_dim == 16 and spec.series_len <= 40 and spec.seq_len == (spec.series_len + 4 - 8) // 4 + 1
    assert [len(task.splits[s]) for s in ("train", "val", "test")] == [36, 4, 20]
    lengths = task.splits["train"].lengths
    assert int(lengths.min()) >= 20 and bool((lengths != lengths[0]).any())
    # channels standardised with the training series' statistics
    train_values = torch.cat([task.splits[s].x[i, :task.splits[s].lengths[i]]
                              for s in ("train", "val") for i in range(len(task.splits[s]))])
    assert torch.allclose(train_values.mean(0), torch.zeros(2), atol=1e-4)
    batch = task.train_batch(0, 8, 0)
    assert batch.x.shape[2] == 2 and batch.mask.shape == batch.x.shape[:2]


def test_bundled_set_and_errors(ts_pair, tmp_path):
    task = build_task("ucr", {"name": "JapaneseVowels"}, 0)  # ships inside the sktime wheel
    assert task.spec.channels == 12 and task.spec.n_outputs == 9 and len(task.splits["test"]) == 370
    with pytest.raises(FptError, match="no such bundled UCR/UEA set"):
        build_task("ucr", {"name": "Nope"}, 0)
    with pytest.raises(FptError, match="NAME_TRAIN.ts"):
        build_task("ucr", {"path": str(tmp_path / "x.ts")}, 0)
    with pytest.raises(FptError, match="needs a data set"):
        build_task("ucr", {}, 0)
    lonely = tmp_path / "Lonely_TRAIN.ts"
    lonely.write_text(ts_pair.read_text())
    with pytest.raises(FptError, match="Lonely_TEST.ts"):
        build_task("ucr", {"path": str(lonely)}, 0)
    broken = tmp_path / "Broken_TRAIN.ts"
    broken.write_text("@data\nnot a ts file\n")
    (tmp_path / "Broken_TEST.ts").write_text("@data\n")
    with pytest.raises(FptError, match="cannot read"):
        build_task("ucr", {"path": str(broken)}, 0)

"""Anomaly detection: the metrics under both protocols, every reader on fixtures written here,
and a run that records the model's and the baselines' detection metrics."""

from __future__ import annotations

import numpy as np
import pytest

from fpt.detection import detection_metrics, point_adjust, precision_recall_f1, random_baseline
from fpt.errors import FptError
from fpt.run.config import build_config
from fpt.run.predict import predict
from fpt.run.train import train
from fpt.series import window_starts
from fpt.tasks import build_task
from fpt.tasks.anomaly import AnomalyOptions, read_anomaly_data

QUICK = {"steps": 8, "eval_every": 4, "batch_size": 16, "progress": False, "precision": "fp32"}


def test_point_adjustment_credits_a_whole_segment_for_one_flagged_point():
    labels = np.array([0, 1, 1, 1, 0, 0, 1, 1, 0, 1])
    flagged = np.array([0, 0, 1, 0, 0, 1, 0, 0, 0, 0], dtype=bool)
    assert point_adjust(flagged, labels).astype(int).tolist() == [0, 1, 1, 1, 0, 1, 0, 0, 0, 0]
    assert precision_recall_f1(flagged, labels) == pytest.approx((0.5, 1 / 6, 0.25))
    p, r, f1 = precision_recall_f1(point_adjust(flagged, labels), labels)
    assert (p, r) == pytest.approx((0.75, 0.5)) and f1 == pytest.approx(0.6)
    assert precision_recall_f1(np.zeros(4, bool), np.zeros(4)) == (0.0, 0.0, 0.0)


def test_the_published_threshold_looks_at_the_test_scores_and_the_honest_one_does_not():
    fit = train = np.linspace(0, 1, 100)                                  # training scores: 0 .. 1
    test = np.full(100, 5.0)                                               # the test scores all sit far above
    test[:10] = 50.0
    labels = np.zeros(100)
    labels[:10] = 1
    m = detection_metrics(fit, train, test, labels, ratio=10)
    assert m["threshold"] == pytest.approx(np.percentile(train, 90))      # every test point is above it
    assert m["f1"] == pytest.approx(2 * 0.1 / 1.1) and m["flagged_share"] == 1.0
    assert m["threshold_published"] == pytest.approx(5.0)                # pooled with the test: only the 50s pass
    assert m["f1_published"] == pytest.approx(1.0) and m["f1_pa_published"] == pytest.approx(1.0)
    assert m["auc_pr"] == pytest.approx(1.0)


def test_random_scores_reach_a_high_f1_only_with_point_adjustment():
    labels = np.zeros(5000)
    for start in range(200, 5000, 1000):
        labels[start:start + 200] = 1                                     # 5 long segments: 20% anomalous
    m = random_baseline(4000, 3000, labels, ratio=1.0, seed=0)
    assert m["f1"] < 0.05 and m["f1_pa_published"] > 0.5                 # the protocol, not the scores
    assert m["auc_pr"] == pytest.approx(0.2, abs=0.03)


def test_window_starts_cover_every_row():
    assert window_starts(10, 4) == [0, 4, 6] and window_starts(8, 4) == [0, 4] and window_starts(3, 4) == []


def _labelled(rows: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    t = np.arange(rows)[:, None]
    values = np.sin(2 * np.pi * t / 20 + np.arange(2)) + 0.05 * rng.standard_normal((rows, 2))
    labels = np.zeros(rows, dtype=int)
    for start in (int(rows * 0.7), int(rows * 0.85)):
        values[start:start + 8] += 4.0                                    # two obvious bumps in the test rows
        labels[start:start + 8] = 1
    return values, labels


def write_labelled_csv(path, rows: int = 600) -> np.ndarray:
    values, labels = _labelled(rows)
    lines = ["timestamp,a,b,is_anomaly"] + [f"{i},{v[0]:.5f},{v[1]:.5f},{lab}" for i, (v, lab) in
                                            enumerate(zip(values, labels))]
    path.write_text("\n".join(lines) + "\n")
    return labels


def test_readers_of_every_layout(tmp_path):
    labels = write_labelled_csv(tmp_path / "series.csv")
    data = read_anomaly_data(AnomalyOptions(path=str(tmp_path / "series.csv")))
    assert data.names == ["a", "b"] and data.train.shape == (300, 2) and data.val.shape == (60, 2)
    assert data.test.shape == (240, 2) and data.labels.tolist() == labels[360:].tolist()
    # the UCR anomaly archive: training end and the anomaly in the name
    series = np.sin(np.arange(500) / 5)
    (tmp_path / "007_UCR_Anomaly_Toy_200_310_320.txt").write_text("\n".join(f"{v:.5f}" for v in series))
    ucr = read_anomaly_data(AnomalyOptions(path=str(tmp_path / "007_UCR_Anomaly_Toy_200_310_320.txt")))
    assert ucr.train.shape == (200, 1) and ucr.test.shape == (300, 1)
    assert np.flatnonzero(ucr.labels).tolist() == list(range(110, 120))
    # aeon's copy: a TRAIN/TEST pair, TEST the whole series
    head = "timestamp,value,is_anomaly"
    (tmp_path / "Toy_TRAIN.csv").write_text("\n".join([head] + [f"{i},{v:.5f},0" for i, v in enumerate(series[:200])]))
    (tmp_path / "Toy_TEST.csv").write_text("\n".join([head] + [f"{i},{v:.5f},{int(310 <= i < 320)}"
                                                               for i, v in enumerate(series)]))
    pair = read_anomaly_data(AnomalyOptions(path=str(tmp_path / "Toy_TEST.csv")))
    assert pair.train.shape == (200, 1) and pair.test.shape == (300, 1) and pair.labels.sum() == 10
    # SMD-style .npy files, PSM and SWaT CSVs, as the public release lays them out
    smd = tmp_path / "smd"
    smd.mkdir()
    np.save(smd / "SMD_train.npy", np.ones((300, 3)))
    np.save(smd / "SMD_test.npy", np.zeros((200, 3)))
    np.save(smd / "SMD_test_label.npy", np.r_[np.zeros(150), np.ones(50)])
    got = read_anomaly_data(AnomalyOptions(path=str(smd)))
    assert (got.benchmark, got.train.shape, got.labels.sum()) == ("smd", (300, 3), 50)
    task = build_task("anomaly", {"path": str(smd), "win_size": 20}, 0)   # One Fits All's ratio for SMD: 0.5%
    assert task.protocol() == {"name": "anomaly detection (One Fits All, Table 2)", "published": False,  # win 20
                               "anomaly_ratio": 0.5, "benchmark": "smd"}
    psm = tmp_path / "psm"
    psm.mkdir()
    (psm / "train.csv").write_text("timestamp_(min),f0,f1\n" + "".join(f"{i},{i},\n" for i in range(150)))  # a NaN: 0
    (psm / "test.csv").write_text("timestamp_(min),f0,f1\n" + "".join(f"{i},{i},1\n" for i in range(120)))
    (psm / "test_label.csv").write_text("timestamp_(min),label\n" + "".join(f"{i},{int(i > 100)}\n" for i in range(120)))
    got = read_anomaly_data(AnomalyOptions(path=str(psm)))
    assert (got.benchmark, got.train.shape, int(got.labels.sum())) == ("psm", (150, 2), 19)
    assert np.isfinite(got.train).all()
    swat = tmp_path / "swat"
    swat.mkdir()
    (swat / "swat_train2.csv").write_text("x,y,label\n" + "".join(f"{i},1,0\n" for i in range(150)))
    (swat / "swat2.csv").write_text("x,y,label\n" + "".join(f"{i},1,{int(i % 50 == 0)}\n" for i in range(120)))
    got = read_anomaly_data(AnomalyOptions(path=str(swat)))
    assert (got.benchmark, got.test.shape, int(got.labels.sum())) == ("swat", (120, 2), 3)


def test_missing_files_and_bad_labels_are_named(tmp_path):
    msl = tmp_path / "msl"
    msl.mkdir()
    np.save(msl / "MSL_train.npy", np.ones((10, 2)))
    with pytest.raises(FptError, match="looks like MSL but lacks MSL_test.npy, MSL_test_label.npy; the files come from"):
        read_anomaly_data(AnomalyOptions(path=str(msl)))
    with pytest.raises(FptError, match="holds none of the benchmarks' layouts"):
        read_anomaly_data(AnomalyOptions(path=str(tmp_path)))
    (tmp_path / "x.csv").write_text("a,b\n1,2\n3,4\n")
    with pytest.raises(FptError, match="has no label column"):
        read_anomaly_data(AnomalyOptions(path=str(tmp_path / "x.csv")))
    (tmp_path / "y.csv").write_text("a,label\n1,2\n3,0\n")
    with pytest.raises(FptError, match="must hold 0 \\(normal\\) or 1"):
        read_anomaly_data(AnomalyOptions(path=str(tmp_path / "y.csv")))
    with pytest.raises(FptError, match="anomaly_ratio is a percentage"):
        build_task("anomaly", {"path": "x", "anomaly_ratio": 60}, 0)
    with pytest.raises(FptError, match="fewer than win_size = 100"):
        write_labelled_csv(tmp_path / "short.csv", rows=150)
        build_task("anomaly", {"path": str(tmp_path / "short.csv")}, 0)


def test_a_run_records_every_metric_for_the_model_and_the_baselines(tmp_path, tiny_bert):
    write_labelled_csv(tmp_path / "series.csv", rows=800)
    options = {"path": str(tmp_path / "series.csv"), "win_size": 20, "anomaly_ratio": 5}
    task = build_task("anomaly", options, 0)
    assert task.spec.objective == "reconstruction" and task.spec.series_len == 20 and task.spec.channels == 2
    batch = task.train_batch(0, 4, 0)
    assert batch.x.shape == (4, 20, 2) and bool(batch.y[..., 1].eq(1).all())  # nothing hidden: every point scored
    for name, flags in (("fpt", {"model": str(tiny_bert)}), ("linear", {"model": "linear"})):
        result = train(build_config({**QUICK, "task": "anomaly", "task_options": options, "out": str(tmp_path / name),
                                     **flags}))
        with pytest.raises(FptError, match="anomaly detection run's scores and metrics come from its training"):
            predict(tmp_path / name, np.zeros((1, 20, 2)))
        detection = result["detection"]
        assert (detection["anomalies"], detection["segments"], detection["anomaly_ratio"]) == (16, 2, 5)
        for arm in ("model", "random", "isolation-forest", "pca"):
            assert {"f1", "f1_pa", "f1_published", "f1_pa_published", "auc_pr"} <= set(detection[arm]), arm
    # bumps of 4 (the sinusoids' std is 0.7): the PCA reconstruction ranks them far above random scores,
    # whose average precision is the share of anomalous points (16 of 320)
    assert detection["random"]["auc_pr"] == pytest.approx(16 / 320, abs=0.02)
    assert detection["pca"]["auc_pr"] > 4 * detection["random"]["auc_pr"]


def test_bundled_series_by_name(tmp_path):
    pytest.importorskip("sktime")
    data = read_anomaly_data(AnomalyOptions(path="yahoo"))                  # sktime's wheel: 1,000 labelled points
    assert (len(data.train), len(data.val), len(data.test), int(data.labels.sum())) == (500, 100, 400, 5)
    calm = tmp_path / "calm.csv"
    calm.write_text("a,label\n" + "".join(f"{i % 7},0\n" for i in range(600)))
    with pytest.raises(FptError, match="no labelled anomaly"):
        build_task("anomaly", {"path": str(calm)}, 0)

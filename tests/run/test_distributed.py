"""Two processes under torchrun (gloo, CPU) train the same weights as one process, and write once."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from fpt.run.distributed import World, launched_world, merge_metrics
from fpt.metrics import Metrics
from fpt.objectives import objective
from fpt.tasks.base import Batch

SETTINGS = ["--task", "bit-xor", "--steps", "12", "--eval-every", "4", "--batch-size", "8", "--dropout", "0",
            "--precision", "fp32", "--no-progress"]


def fpt_train(tmp_path, name: str, model, processes: int, *extra: str) -> subprocess.CompletedProcess:
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(processes),
                "--master-port", str(29500 + os.getpid() % 1000)] if processes > 1 else [sys.executable]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([*launcher, "-m", "fpt", "train", "--model", str(model), "--out", str(tmp_path / name),
                           *SETTINGS, *extra], capture_output=True, text=True, env=env, timeout=300)


def test_two_processes_train_what_one_process_trains(tmp_path, tiny_gpt2):
    one = fpt_train(tmp_path, "one", tiny_gpt2, 1)
    two = fpt_train(tmp_path, "two", tiny_gpt2, 2)
    assert one.returncode == 0, one.stderr[-2000:]
    assert two.returncode == 0, two.stderr[-2000:]
    a, b = load_file(tmp_path / "one" / "last.safetensors"), load_file(tmp_path / "two" / "last.safetensors")
    params = [k for k in a if k.startswith("param/")]
    assert params and set(a) == set(b)
    for key in params:
        torch.testing.assert_close(a[key], b[key], atol=2e-5, rtol=1e-4)

    # Written once: one JSON line on stdout, one metrics line per evaluation, one result.
    assert len([line for line in two.stdout.splitlines() if line.startswith("{")]) == 1
    assert two.stderr.count("test loss") == 1
    metrics = (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in metrics] == [4, 8, 12]
    r1 = json.loads((tmp_path / "one" / "result.json").read_text())
    r2 = json.loads((tmp_path / "two" / "result.json").read_text())
    assert r1["test"]["accuracy"] == r2["test"]["accuracy"]  # evaluation sharded, counts summed
    assert r1["test"]["loss"] == pytest.approx(r2["test"]["loss"], rel=1e-4)


def test_a_batch_that_does_not_split_over_the_processes_is_refused(tmp_path, tiny_gpt2):
    run = fpt_train(tmp_path, "odd", tiny_gpt2, 2, "--batch-size", "7")
    assert run.returncode != 0
    assert "--batch-size 7 does not split evenly into 2 processes" in run.stderr
    assert not (tmp_path / "odd").exists()
    run = fpt_train(tmp_path, "gpu", tiny_gpt2, 2, "--device", "cuda")  # no GPU here
    assert run.returncode != 0 and "fpt train: error: --device cuda under torchrun: process" in run.stderr
    assert not (tmp_path / "gpu").exists()


def test_world_from_the_launcher_environment(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("LOCAL_RANK", "1")
    world = launched_world()
    assert (world.size, world.rank, world.local_rank, world.is_main, world.parallel) == (4, 3, 1, False, True)
    shard = Batch(torch.arange(16), torch.arange(16), torch.ones(16, dtype=torch.bool)).split(world.size)[world.rank]
    assert shard.x.tolist() == list(range(12, 16))  # rank 3's slice of a global batch of 16, as fit takes it
    monkeypatch.delenv("WORLD_SIZE")
    monkeypatch.delenv("RANK")
    monkeypatch.delenv("LOCAL_RANK")
    assert launched_world() == World()


def test_metrics_of_one_process_are_left_alone():
    metrics = Metrics(objective("classification"))
    metrics.update(torch.tensor([[2.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 0]))
    assert merge_metrics(metrics, World(), torch.device("cpu"), 2).compute()["accuracy"] == 0.5


def test_a_sweep_under_torchrun_spreads_its_runs_over_the_ranks(tmp_path, tiny_gpt2):
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"base: {{task: bit-xor, model: {tiny_gpt2}, steps: 2, eval_every: 2, precision: fp32}}\n"
                    "grid: {seed: [0, 1, 2]}\n")
    out = tmp_path / "sweep"
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                          "--master-port", str(30500 + os.getpid() % 1000), "-m", "fpt", "sweep", str(spec),
                          "--out", str(out), "--no-progress"],
                         capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "2 of them on rank 0 of 2" in run.stderr and "1 of them on rank 1 of 2" in run.stderr
    results = sorted(out.glob("runs/*/result.json"))
    assert len(results) == 3
    for path in results:  # each run was a single-process run of its own
        assert "processes" not in (out / "logs" / f"{path.parent.name}.log").read_text()


def test_a_comparison_under_torchrun_spreads_its_runs_and_rank_0_writes_the_card(tmp_path, tiny_gpt2):
    out = tmp_path / "compare"
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                          "--master-port", str(31500 + os.getpid() % 1000), "-m", "fpt", "compare", "--task", "bit-xor",
                          "--task-opt", "n_val=16", "--task-opt", "n_test=16", "--model", str(tiny_gpt2),
                          "--arms", "fpt,logistic", "--seeds", "2", "--lrs", "1e-3", "--steps", "2",
                          "--set", "eval_every=2", "--out", str(out), "--no-progress"],
                         capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "of them on rank 0 of 2" in run.stderr and "of them on rank 1 of 2" in run.stderr
    assert run.stderr.count("compare: 2 contenders") == 1  # the plan, from rank 0 alone
    assert len(list(out.glob("runs/*/result.json"))) == 4
    report = (out / "report" / "REPORT.md").read_text()
    assert report.startswith("## Verdict") and report.count("## Verdict") == 1


def test_fsdp_shards_the_frozen_weights_and_trains_what_one_process_trains(tmp_path, tiny_bert):
    one = fpt_train(tmp_path, "one", tiny_bert, 1, "--precision", "bf16")
    two = fpt_train(tmp_path, "fsdp", tiny_bert, 2, "--precision", "bf16", "--parallel", "fsdp", "--grad-accum", "2")
    assert one.returncode == 0, one.stderr[-2000:]
    assert two.returncode == 0, two.stderr[-2000:]
    a, b = load_file(tmp_path / "one" / "last.safetensors"), load_file(tmp_path / "fsdp" / "last.safetensors")
    assert set(a) == set(b)
    for key in (k for k in a if k.startswith("param/")):  # bf16 products: looser than fp32
        torch.testing.assert_close(a[key], b[key], atol=2e-3, rtol=1e-2)
    r1 = json.loads((tmp_path / "one" / "result.json").read_text())
    r2 = json.loads((tmp_path / "fsdp" / "result.json").read_text())
    assert r2["config"]["parallel"] == "fsdp"
    assert abs(r1["test"]["accuracy"] - r2["test"]["accuracy"]) <= 0.02


def test_fsdp_splits_every_frozen_weight_and_leaves_trained_ones_whole(tmp_path, tiny_gpt2):
    script = tmp_path / "shard.py"
    script.write_text(f"""
import torch, torch.distributed as dist
from torch.distributed.tensor import DTensor
from fpt.run.config import build_config
from fpt.run.distributed import shard_frozen_weights
from fpt.run.setup import setup
dist.init_process_group("gloo")
built = setup(build_config({{"task": "bit-xor", "model": "{tiny_gpt2}", "precision": "fp32"}}), on_device=False)
shard_frozen_weights(built.model, built.device)
for name, p in built.model.named_parameters():
    assert isinstance(p, DTensor) != p.requires_grad, name
    if isinstance(p, DTensor) and p.dim() == 2:
        assert p.to_local().shape[0] == p.shape[0] // 2, name
print("sharded ok")
dist.destroy_process_group()
""")
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                          "--master-port", str(31500 + os.getpid() % 1000), str(script)],
                         capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
    assert run.returncode == 0 and run.stdout.count("sharded ok") == 2, run.stderr[-2000:]

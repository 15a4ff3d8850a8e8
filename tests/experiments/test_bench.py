"""fpt bench runs end to end on a tiny backbone and reports every number it promises."""

from __future__ import annotations

import math

import torch

from fpt.experiments import bench
from fpt.experiments.bench import markdown, padding_before_after, run_bench
from fpt.experiments.bench_variants import VARIANTS, build, one_variant, step_flops


def test_flops_count_only_what_fpt_computes(tiny_gpt2):
    assert step_flops(str(tiny_gpt2), batch=2, tokens=8, dim=4) > 0


def test_each_variant_times_a_step(tiny_gpt2):
    for variant in ("plain", "naive", "full", "bf16", "fpt", "fpt-fp32", "fpt-torchmasks", "full-fpt"):
        result = one_variant(variant, str(tiny_gpt2), 2, 8, 4, 1, "cpu", profile=variant == "fpt")
        assert result["seconds_per_step"] > 0 and result["peak_memory_mb"] > 0, variant
    assert result["precision"] in ("fp32", "bf16")
    profile = one_variant("fpt", str(tiny_gpt2), 2, 8, 4, 1, "cpu", profile=True)["profile"]
    assert profile and all(p["ms"] >= 0 for p in profile)


def test_the_arms_time_a_step_on_fpts_path(tiny_gpt2):
    from fpt.experiments.bench import ARM_VARIANTS

    for variant in ARM_VARIANTS:
        result = one_variant(variant, str(tiny_gpt2), 2, 8, 4, 1, "cpu")
        assert result["seconds_per_step"] > 0, variant


def test_plain_is_the_model_as_transformers_builds_it_and_fpt_its_own_path(tiny_gpt2):
    from transformers.activations import NewGELUActivation

    plain = build(str(tiny_gpt2), 8, 4, 10, VARIANTS["plain"], torch.device("cpu"))
    fpt = build(str(tiny_gpt2), 8, 4, 10, VARIANTS["fpt"], torch.device("cpu"))
    assert isinstance(plain.backbone.h[0].mlp.act, NewGELUActivation) and plain.precision == "fp32"
    assert not plain.fast_dropout  # PyTorch's own masks: the loop a user writes
    assert not isinstance(fpt.backbone.h[0].mlp.act, NewGELUActivation) and fpt.fast_dropout
    assert build(str(tiny_gpt2), 8, 4, 10, VARIANTS["fpt-fp32"], torch.device("cpu")).precision == "fp32"
    assert not build(str(tiny_gpt2), 8, 4, 10, VARIANTS["fpt-torchmasks"], torch.device("cpu")).fast_dropout


def test_bench_record_and_table(tiny_gpt2, monkeypatch):
    monkeypatch.setattr(bench, "native_bf16", lambda device: True)  # time bf16 whatever this CPU does
    record = run_bench(str(tiny_gpt2), batch=2, tokens=8, dim=4, steps=1, variants=("plain", "bf16", "fpt"),
                       threshold_seeds=0, padding=False)
    assert [v["variant"] for v in record["variants"]] == ["plain", "bf16", "fpt"]
    assert all(math.isfinite(v["seconds_per_step"]) for v in record["variants"])
    assert record["output_only"]["speedup"] > 1
    text = markdown(record, "fpt bench")
    assert "| plain | fp32 |" in text and "| bf16 | bf16 |" in text and "GFLOP/s" in text
    assert "Where the fpt step's time goes" in text


def test_without_native_bf16_the_forced_bf16_variant_is_skipped_and_said(tiny_gpt2, monkeypatch):
    """On an AVX2-only host the bf16 variant alone ran over 9 minutes, timing emulated bf16."""
    monkeypatch.setattr(bench, "native_bf16", lambda device: False)
    record = run_bench(str(tiny_gpt2), batch=2, tokens=8, dim=4, steps=1, variants=("plain", "bf16", "fpt"),
                       threshold_seeds=0, padding=False)
    by_name = {v["variant"]: v for v in record["variants"]}
    assert "no native bf16" in by_name["bf16"]["error"] and math.isnan(by_name["bf16"]["seconds_per_step"])
    assert math.isfinite(by_name["fpt"]["seconds_per_step"]) and math.isfinite(by_name["plain"]["seconds_per_step"])
    assert "| bf16 | skipped: this device has no native bf16" in markdown(record, "fpt bench")


def test_padding_is_measured_before_and_after_bucketing():
    rows = padding_before_after(batch=16, steps=60)
    short = next(r for r in rows if "short" in r["task"])
    assert short["before"] > 0.2 and short["after"] < 0.1
    assert any("remote-homology" in r["task"] for r in rows)


def test_bench_says_plainly_when_fpt_is_slower_than_a_plain_loop():
    from fpt.experiments.bench import against_plain

    def record(**steps):
        return {"variants": [{"variant": k, "seconds_per_step": v} for k, v in steps.items()]}

    slower = against_plain(record(plain=6.6, bf16=3.1, fpt=3.4))
    assert "slower than the plain `bf16` loop" in slower and "10% slower" in slower
    faster = against_plain(record(plain=6.6, bf16=3.3, fpt=3.0))
    assert "is 10% faster than the plain `bf16` loop" in faster and "**" not in faster
    assert against_plain(record(plain=1.0)) == ""
    fp32 = against_plain(record(plain=4.4, **{"fpt-fp32": 4.84}))
    assert fp32.startswith("**fpt's fp32 path") and "slower than the plain fp32 loop" in fp32 and "10% slower" in fp32
    assert "faster than the plain fp32 loop" in against_plain(record(plain=4.4, **{"fpt-fp32": 4.0}))


def test_rounds_interleave_the_variants_and_report_each_ones_median():
    from fpt.experiments.bench import timed_rounds

    order, times = [], {"a": iter([3.0, 1.0, 2.0]), "b": iter([5.0, 4.0, 6.0])}

    def run(variant, first):
        order.append((variant, first))
        return {"variant": variant, "seconds_per_step": next(times[variant]), "peak_memory_mb": 10.0}

    merged = timed_rounds(("a", "b"), 3, run)
    assert order == [("a", True), ("b", True), ("a", False), ("b", False), ("a", False), ("b", False)]
    assert [m["seconds_per_step"] for m in merged] == [2.0, 5.0] and merged[0]["rounds"] == [3.0, 1.0, 2.0]
    failing = timed_rounds(("a",), 2, lambda v, first: {"variant": v, "error": "boom", "seconds_per_step": float("nan")})
    assert failing[0]["error"] == "boom"


def test_bench_times_only_the_variants_asked_for_and_refuses_unknown_ones(tiny_gpt2, capsys):
    from fpt.cli import main

    assert main(["bench", "--model", str(tiny_gpt2), "--batch-size", "2", "--tokens", "8", "--dim", "4",
                 "--steps", "1", "--variants", "fpt,fpt-torchmasks", "--rounds", "2", "--threshold-seeds", "0",
                 "--no-padding"]) == 0
    out = capsys.readouterr().out
    assert "| fpt | " in out and "| fpt-torchmasks | " in out and "| plain |" not in out
    assert "for 2 rounds" in out and "- fpt-torchmasks: " in out
    assert main(["bench", "--variants", "fpt,turbo"]) != 0
    assert "--variants: unknown 'turbo'; choose from plain" in capsys.readouterr().err

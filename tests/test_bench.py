"""fpt bench runs end to end on a tiny backbone and reports every number it promises."""

from __future__ import annotations

import math

from fpt.experiments.bench import fpt_step_flops, markdown, one_variant, run_bench


def test_flops_count_only_what_fpt_computes(tiny_gpt2):
    fpt = fpt_step_flops(str(tiny_gpt2), batch=2, tokens=8, dim=4)
    assert fpt > 0


def test_each_variant_times_a_step(tiny_gpt2):
    for variant in ("plain", "naive", "full"):
        result = one_variant(variant, str(tiny_gpt2), 2, 8, 4, 1, "cpu")
        assert result["seconds_per_step"] > 0 and result["peak_memory_mb"] > 0


def test_bench_record_and_table(tiny_gpt2):
    record = run_bench(str(tiny_gpt2), batch=2, tokens=8, dim=4, steps=1, variants=("plain", "bf16"))
    assert [v["variant"] for v in record["variants"]] == ["plain", "bf16"]
    assert all(math.isfinite(v["seconds_per_step"]) for v in record["variants"])
    assert record["output_only"]["speedup"] > 1
    text = markdown(record, "fpt bench")
    assert "| plain |" in text and "| bf16 |" in text and "GFLOP/s" in text

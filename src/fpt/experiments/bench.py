"""`fpt bench`: where a training step's time and memory go on this machine, side by side in one run.

1. Step variants (experiments/bench_variants.py), each in its own process, on one shape (default: the
   GPT-2 small architecture with random weights, batch 32 x 64 tokens of 48 values, CIFAR-10's
   shape): plain / naive / full / bf16 / fpt / fpt-fp32 / fpt-nodrop / fpt-torchmasks / full-fpt (/ compile). Throughput, peak memory
   of training, achieved FLOP/s against the matmul peak measured in the same run, and a
   profile of the fpt step.
2. Time to 99% validation on bit-xor with the bundled backbone: `fpt train --precision fp32`
   (fp32 with frozen weights off autograd: the plain loop's numerics; MiniLM has no GELU to
   swap and bit-xor no padding, so precision is the only difference) vs `fpt train` (its
   defaults), same seeds and batches, evaluation included, from the times in metrics.jsonl.
3. Output-only training: an epoch on cached features vs recomputing them.
4. Padding on variable-length tasks, with and without length bucketing.
5. Time producing a batch vs a plain step.
"""

from __future__ import annotations

import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch

from fpt.experiments.bench_variants import VARIANTS, build, in_subprocess, matmul_peak, step_flops
from fpt.precision import native_bf16
from fpt.provenance import machine

DEFAULT_VARIANTS = ("plain", "naive", "full", "bf16", "fpt", "fpt-fp32", "fpt-nodrop", "fpt-torchmasks", "full-fpt")
# The arena's arms (--method) on fpt's path, with `fpt bench --arms`: each step against fpt's.
ARM_VARIANTS = ("arm-lora", "arm-ia3", "arm-ln-tuning", "arm-bitfit", "arm-no-lm", "arm-attention-1", "arm-block-1")
# Variants that force bf16 whatever the hardware: on a CPU without native bf16 (AVX2 only) they run
# emulated, many times slower than fp32 (one such step ran for over 9 minutes), and measure nothing a
# user of that machine would run: fpt's own path is fp32 there (--precision auto).
EMULATED_ONLY = ("bf16",)


def skipped(variant: str) -> dict[str, Any]:
    return {"variant": variant, "seconds_per_step": float("nan"),
            "error": "skipped: this device has no native bf16, so it would time emulated bf16 "
                     "(fpt's default path runs fp32 here)"}


def run_bench(model_name: str = "gpt2", batch: int = 32, tokens: int = 64, dim: int = 48, steps: int = 5,
              variants: tuple[str, ...] = DEFAULT_VARIANTS, device: str = "cpu", threshold_seeds: int = 3,
              padding: bool = True, rounds: int = 1) -> dict[str, Any]:
    dev = torch.device(device)
    record: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d"), "machine": machine(),  # with the CPU's native bf16, or not
        "device": device if dev.type == "cpu" else torch.cuda.get_device_name(dev),
        "torch": torch.__version__, "threads": torch.get_num_threads(),
        "shape": {"model": model_name, "batch": batch, "tokens": tokens, "dim": dim},
        "peak_flops": {"fp32": matmul_peak(torch.float32, dev), "bf16": matmul_peak(torch.bfloat16, dev)},
        "fpt_step_flops": step_flops(model_name, batch, tokens, dim),
    }
    record["rounds"] = rounds
    record["variants"] = timed_rounds(variants, rounds, lambda v, first: (
        skipped(v) if v in EMULATED_ONLY and not native_bf16(dev) else
        in_subprocess(v, model_name, batch, tokens, dim, steps, device, profile=first and v == "fpt")))
    plain = next((v["seconds_per_step"] for v in record["variants"] if v["variant"] == "plain"), float("nan"))
    fpt_step = next((v["seconds_per_step"] for v in record["variants"] if v["variant"] == "fpt"), float("nan"))
    for v in record["variants"]:
        v["vs_fpt"] = v["seconds_per_step"] / fpt_step
        v["samples_per_s"] = batch / v["seconds_per_step"]
        v["tokens_per_s"] = batch * tokens / v["seconds_per_step"]
        v["speedup_vs_plain"] = plain / v["seconds_per_step"]
        peak = record["peak_flops"][v.get("precision", "fp32")]
        v["fraction_of_peak"] = record["fpt_step_flops"] / v["seconds_per_step"] / peak
    if threshold_seeds:
        record["time_to_threshold"] = time_to_threshold(threshold_seeds, device)
    record["output_only"] = cached_vs_recomputed(model_name, 256, tokens, dim, batch)
    if padding:
        record["padding"] = padding_before_after()
    data = data_time(batch)
    record["data_seconds_per_batch"] = data
    reference, step = ("fpt", fpt_step) if math.isnan(plain) else ("plain", plain)  # plain where it was timed
    record["data_step_variant"] = reference
    record["data_fraction_of_step"] = {k: v / step for k, v in data.items()}
    return record


def timed_rounds(variants: tuple[str, ...], rounds: int, run: Callable[[str, bool], dict[str, Any]]) -> list[dict[str, Any]]:
    """Each variant once per round, in order, round after round, so that a slow spell of a noisy host
    falls on every variant alike; a variant's s/step is the median of its rounds (each the median of
    its steps), the rounds' values kept beside it. `run(variant, first_round)` times one."""
    runs: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
    for r in range(rounds):
        for v in variants:
            runs[v].append(run(v, r == 0))
    merged = []
    for v, results in runs.items():
        failed = next((x for x in results if "error" in x), None)
        if failed is not None or rounds == 1:
            merged.append(failed or results[0])
            continue
        times = [x["seconds_per_step"] for x in results]
        merged.append({**results[0], "seconds_per_step": statistics.median(times), "rounds": times,
                       "peak_memory_mb": max(x["peak_memory_mb"] for x in results)})
    return merged


def time_to_threshold(seeds: int, device: str, steps: int = 400, eval_every: int = 10) -> list[dict[str, Any]]:
    """bit-xor on the bundled backbone: wall-clock seconds to 99% validation, fp32 vs fpt's defaults.

    Validation every 10 steps (128 examples, its time included) so the step that crosses 99% is
    found to within 10 steps rather than fpt train's default 50."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(seeds):
            row: dict[str, Any] = {"seed": seed}
            for label, precision in (("plain", "fp32"), ("fpt", "auto")):
                out = Path(tmp) / f"{label}-{seed}"
                subprocess.run([sys.executable, "-m", "fpt", "train", "--task", "bit-xor", "--steps", str(steps),
                                "--eval-every", str(eval_every), "--seed", str(seed), "--precision", precision, "--device", device, "--out", str(out),
                                "--no-progress"], capture_output=True, check=True)
                reached = [r for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines())
                           if r["val"]["score"] >= 0.99]
                row[label] = {"step": reached[0]["step"], "seconds": reached[0]["wall_seconds"]} if reached else None
                row[f"{label}_precision"] = json.loads((out / "result.json").read_text())["precision"]
            if row["plain"] and row["fpt"]:
                row["speedup"] = row["plain"]["seconds"] / row["fpt"]["seconds"]
            rows.append(row)
    return rows


def cached_vs_recomputed(model_name: str, examples: int, tokens: int, dim: int, batch: int) -> dict[str, float]:
    """Seconds per epoch of head-only training: features cached once vs recomputed every batch."""
    model = build(model_name, tokens, dim, 10, VARIANTS["fpt"], torch.device("cpu"))
    model.eval()
    x, y = torch.randn(examples, tokens, dim), torch.randint(0, 10, (examples,))
    mask = torch.ones(examples, tokens, dtype=torch.bool)
    head = model.head
    optimizer = torch.optim.Adam(head.parameters(), lr=1e-3)

    def epoch(features_of) -> float:
        started = time.perf_counter()
        for i in range(0, examples, batch):
            optimizer.zero_grad(set_to_none=True)
            loss = torch.nn.functional.cross_entropy(head(features_of(i)), y[i:i + batch])
            loss.backward()
            optimizer.step()
        return time.perf_counter() - started

    with torch.no_grad():
        started = time.perf_counter()
        cache = torch.cat([model.features(x[i:i + batch], mask[i:i + batch]) for i in range(0, examples, batch)])
        caching = time.perf_counter() - started

    def recompute(i: int) -> torch.Tensor:
        with torch.no_grad():
            return model.features(x[i:i + batch], mask[i:i + batch])

    recomputed = epoch(recompute)
    cached = min(epoch(lambda i: cache[i:i + batch]) for _ in range(3))
    return {"recompute_epoch_s": recomputed, "cached_epoch_s": cached, "caching_once_s": caching,
            "speedup": recomputed / cached}


def padding_before_after(batch: int = 16, steps: int = 200) -> list[dict[str, Any]]:
    """Share of processed tokens that are padding, without and with length bucketing."""
    from fpt.storage.downloads import default_data_dir
    from fpt.tasks import build_task
    from fpt.tasks.lra_listops import generate_listops

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, lengths in (("listops (LRA lengths 500-2000, cut to 512)", (500, 2000)),
                               ("listops, short variant (lengths 20-100)", (20, 100))):
            folder = Path(tmp) / label.split()[0] / str(lengths[0])
            generate_listops(folder, n_train=2000, n_val=10, n_test=10, min_length=lengths[0],
                             max_length=lengths[1], max_depth=10 if lengths[0] >= 500 else 4, progress=False)
            task = build_task("listops", {"data": str(folder)}, 0)
            rows.append({"task": label, **_padding(task, batch, steps)})
    if (default_data_dir() / "remote_homology" / "lmdb").is_dir():  # measured where it is already downloaded
        task = build_task("remote-homology", {}, 0, default_data_dir())
        rows.append({"task": "remote-homology (TAPE, cut to 1024)", **_padding(task, batch, steps)})
    else:
        rows.append({"task": "remote-homology", "note": "TAPE data not downloaded on this machine; not measured "
                                                        "(tests/test_bucketing.py covers the mechanism)"})
    return rows


def _padding(task, batch: int, steps: int) -> dict[str, float]:
    shares = {}
    for label, bucketing in (("before", False), ("after", True)):
        task.bucketing = bucketing
        masks = [task.train_batch(step, batch, seed=0).mask for step in range(steps)]
        shares[label] = float(sum(int((~m).sum()) for m in masks) / sum(m.numel() for m in masks))
    return shares


def data_time(batch: int) -> dict[str, float]:
    """Seconds to produce one training batch, per generated task, and of forecasting windows from a
    CSV of ETTh1's size (17,420 rows x 7 channels, random values) at seq_len 336, horizon 96."""
    import numpy as np

    from fpt.tasks import build_task

    tasks = {name: build_task(name, {}, data_seed=0) for name in ("bit-xor", "bit-memory")}
    with tempfile.TemporaryDirectory() as tmp:
        csv = Path(tmp) / "series.csv"
        values = np.random.default_rng(0).standard_normal((17420, 7))
        csv.write_text("date," + ",".join(f"c{j}" for j in range(7)) + "\n" +
                       "".join(f"{i}," + ",".join(f"{v:.3f}" for v in row) + "\n" for i, row in enumerate(values)))
        tasks["forecast (ETTh1-sized CSV)"] = build_task("forecast", {"path": str(csv), "split": "ett-hour"}, 0)
    result = {}
    for name, task in tasks.items():
        task.train_batch(0, batch, seed=0)
        started = time.perf_counter()
        for step in range(20):
            task.train_batch(step, batch, seed=0)
        result[name] = (time.perf_counter() - started) / 20
    return result


def markdown(record: dict[str, Any], command: str) -> str:
    shape, peak = record["shape"], record["peak_flops"]
    lines = [
        "# fpt bench", "",
        f"- command: `{command}`",
        f"- machine: {record['machine']}; device {record['device']}; torch {record['torch']}, "
        f"{record['threads']} threads; date {record['date']}",
        f"- shape: {shape['model']} architecture, batch {shape['batch']} x {shape['tokens']} tokens x "
        f"{shape['dim']} values; FPT step = {record['fpt_step_flops'] / 1e9:.1f} GFLOP (counted by torch)",
        f"- matmul peak measured in the same run (the best of three 1-second windows of square products): fp32 {peak['fp32'] / 1e9:.0f} GFLOP/s, "
        f"bf16 {peak['bf16'] / 1e9:.0f} GFLOP/s",
        "- peak memory: the process's peak resident memory during the training steps (CPU), or "
        "torch's peak allocation (CUDA)", "",
        "| variant | precision | s/step | samples/s | tokens/s | vs plain | step / fpt step | FPT FLOPs / peak | "
        "peak memory MB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for v in record["variants"]:
        if "error" in v:
            lines.append(f"| {v['variant']} | {v['error'] if v['error'].startswith('skipped') else 'failed: ' + v['error']} | | | | | | | |")
            continue
        lines.append(f"| {v['variant']} | {v['precision']} | {v['seconds_per_step']:.3f} | {v['samples_per_s']:.1f} | "
                     f"{v['tokens_per_s']:.0f} | {_times(v['speedup_vs_plain'])} | {_times(v['vs_fpt'])} | "
                     f"{v['fraction_of_peak']:.0%} | "
                     f"{v['peak_memory_mb']:.0f} |")
    if record.get("rounds", 1) > 1:
        lines += ["", f"Each variant ran once per round, in turn, for {record['rounds']} rounds; s/step is the median "
                  "over rounds of each round's median step. Per round:", ""]
        lines += [f"- {v['variant']}: " + ", ".join(f"{t:.3f}" for t in v["rounds"]) for v in record["variants"]
                  if "rounds" in v]
    lines += _against_plain(record) + _memory_ratios(record) + _profile(record) + _time_to_threshold(record)
    o = record["output_only"]
    lines += ["", f"Output-only training, one epoch of 256 examples: recomputing features {o['recompute_epoch_s']:.3f} s, "
              f"cached {o['cached_epoch_s']:.5f} s ({o['speedup']:.0f}x faster per epoch; caching once costs "
              f"{o['caching_once_s']:.3f} s)."]
    lines += _padding_table(record) + [""]
    for name, seconds in record["data_seconds_per_batch"].items():
        share = record.get("data_fraction_of_step", record.get("data_fraction_of_plain_step", {}))[name]
        lines.append(f"- producing a {name} batch of {shape['batch']}: {seconds * 1e3:.2f} ms "
                     f"({share:.1%} of a{'n' if record.get('data_step_variant') == 'fpt' else ''} "
                     f"{record.get('data_step_variant', 'plain')} step)")
    return "\n".join(lines) + "\n"


def _times(ratio: float) -> str:
    return f"{ratio:.2f}x" if ratio == ratio else "-"  # NaN: that variant was not run


PLAIN_VARIANTS = ("plain", "bf16")  # a plain training loop (fp32, or under bf16 autocast), frozen weights off autograd


def against_plain(record: dict[str, Any]) -> str:
    """Whether fpt's default step was slower than a plain variant of this very run, and whether fpt's
    fp32 path (what a host without native bf16 runs) was slower than the plain fp32 loop."""
    timed = {v["variant"]: v["seconds_per_step"] for v in record["variants"] if "error" not in v}
    plain = {name: timed[name] for name in PLAIN_VARIANTS if name in timed}
    sentences = []
    if "fpt" in timed and plain:
        fastest = min(plain, key=plain.get)
        sentences.append(_versus("fpt's default path", timed["fpt"], f"the plain `{fastest}` loop", plain[fastest]))
    if "fpt-fp32" in timed and "plain" in timed:
        sentences.append(_versus("fpt's fp32 path (`fpt-fp32`, the default without native bf16)", timed["fpt-fp32"],
                                 "the plain fp32 loop", timed["plain"]))
    return " ".join(sentences)


def _versus(ours: str, seconds: float, theirs: str, their_seconds: float) -> str:
    ratio = seconds / their_seconds
    if ratio > 1:
        return (f"**{ours} is slower than {theirs} in this run: {seconds:.3f} against {their_seconds:.3f} s a step "
                f"({ratio - 1:.0%} slower).** The profile below shows where fpt's time goes.")
    return f"{ours} is {1 / ratio - 1:.0%} faster than {theirs} in this run: {seconds:.3f} against {their_seconds:.3f} s a step."


def _against_plain(record: dict[str, Any]) -> list[str]:
    sentence = against_plain(record)
    return ["", sentence] if sentence else []


def _memory_ratios(record: dict[str, Any]) -> list[str]:
    by_name = {v["variant"]: v for v in record["variants"] if "error" not in v}
    pairs = [("fpt", "full"), ("fpt", "full-fpt"), ("plain", "full")]
    said = [f"{a} / {b} {by_name[a]['peak_memory_mb'] / by_name[b]['peak_memory_mb']:.0%}"
            for a, b in pairs if a in by_name and b in by_name]
    return ["", "Peak memory ratios: " + ", ".join(said) + "."] if said else []


def _profile(record: dict[str, Any]) -> list[str]:
    fpt = next((v for v in record["variants"] if v["variant"] == "fpt" and "profile" in v), None)
    if fpt is None:
        return []
    lines = ["", "Where the fpt step's time goes (one profiled step, operators by self time):", "",
             "| operator | ms | share | calls |", "|---|---|---|---|"]
    lines += [f"| {p['op']} | {p['ms']:.1f} | {p['share']:.0%} | {p['calls']} |" for p in fpt["profile"]]
    return lines


def _time_to_threshold(record: dict[str, Any]) -> list[str]:
    rows = record.get("time_to_threshold")
    if not rows:
        return []
    lines = ["", "Wall-clock time to 99% validation on bit-xor, bundled MiniLM, batch 16, validation every 10 steps "
             "(its time included); `fpt train --precision fp32` (the plain loop's fp32 numerics) vs `fpt train`'s "
             "defaults:",
             "",
             "| seed | plain: step, s | fpt: step, s | fpt precision | speedup |", "|---|---|---|---|---|"]
    for r in rows:
        cell = lambda x: f"{x['step']}, {x['seconds']:.1f}" if x else "not reached"  # noqa: E731
        speed = f"{r['speedup']:.2f}x" if "speedup" in r else "-"
        lines.append(f"| {r['seed']} | {cell(r['plain'])} | {cell(r['fpt'])} | {r['fpt_precision']} | {speed} |")
    both = [r for r in rows if "speedup" in r]
    if both:
        plain, fpt = sum(r["plain"]["seconds"] for r in both), sum(r["fpt"]["seconds"] for r in both)
        lines.append(f"| all | {plain:.1f} s | {fpt:.1f} s | | {plain / fpt:.2f}x |")
    return lines


def _padding_table(record: dict[str, Any]) -> list[str]:
    rows = record.get("padding")
    if not rows:
        return []
    lines = ["", "Padding, share of the tokens in 200 training batches of 16:", "",
             "| task | without bucketing | with length bucketing (default) |", "|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['task']} | {r['before']:.1%} | {r['after']:.1%} |" if "before" in r
                     else f"| {r['task']} | {r['note']} | |")
    return lines

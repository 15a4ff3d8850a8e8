"""fpt report builds tables and figures from result files alone."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from fpt.cli import main
from fpt.errors import FptError
from fpt.experiments.report import mean_se, report


def test_mean_and_standard_error():
    mean, se = mean_se([1.0, 2.0, 3.0])
    assert mean == 2.0 and se == pytest.approx(1.0 / 3 ** 0.5)


def tiny_sweep(tmp_path, tiny_gpt2, description: str, rest: str):
    """Run a 4-step bit-xor sweep on the tiny GPT-2 from spec lines after `base`; return its directory."""
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"description: |\n  {description}\n  Command: fpt sweep spec.yaml\n"
                    f"base: {{task: bit-xor, model: {tiny_gpt2}, steps: 4, eval_every: 2}}\n" + rest)
    out = tmp_path / "sweep"
    assert main(["sweep", str(spec), "--out", str(out), "--no-progress"]) == 0
    return out


def test_report_from_a_small_sweep(tmp_path, tiny_gpt2):
    out = tiny_sweep(tmp_path, tiny_gpt2, "tiny report test", "grid: {seed: [0, 1]}\n"
                     "variants: {fpt: {}, random: {init: random}}\n"
                     "paper: {table: table2, rows: {fpt: language (FPT), random: random}}\n")
    path = report(out)
    text = path.read_text()
    assert "> tiny report test" in text and "| fpt | bit-xor | 2 |" in text and "| random | bit-xor | 2 |" in text
    assert "does not reproduce" in text  # 4 steps do not reach the paper's 100%
    rows = list(csv.reader((path.parent / "results.csv").open()))
    assert rows[0][:2] == ["variant", "task"] and len(rows) == 3
    for figure in ("curves-bit-xor.png", "bit-xor-attention.png"):
        assert (path.parent / figure).stat().st_size > 1000
    # rebuilt from the result files kept beside the report (no checkpoints): the same table, and the
    # attention figure from the attention maps the run saved, no model loaded
    again = report(path.parent, tmp_path / "again")
    assert list(csv.reader((again.parent / "results.csv").open())) == rows
    assert (again.parent / "bit-xor-attention.png").stat().st_size > 1000
    assert not list((path.parent / "runs").glob("*/model.safetensors"))
    for run in (path.parent / "runs").iterdir():
        (run / "attention.npy").unlink()  # a run from before attention maps were saved: no figure, a message
    assert not (report(path.parent, tmp_path / "older").parent / "bit-xor-attention.png").exists()


def test_report_of_a_wrong_directory_is_one_error(tmp_path):
    with pytest.raises(FptError, match="not a sweep directory"):
        report(tmp_path / "typo")
    assert not (tmp_path / "typo").exists()


def fake_sweep(root, arms: dict[str, dict[float, list[tuple[float, float]]]], arena: bool = True):
    """A sweep directory of result files alone: arm -> lr -> per seed (val score, test score)."""
    import json

    index = {}
    for arm, by_lr in arms.items():
        for lr, seeds in by_lr.items():
            for seed, (val, test) in enumerate(seeds):
                name = f"{arm}__lr={lr}__seed={seed}"
                index[name] = {"variant": arm, "values": {"task": "toy", "lr": lr, "seed": seed}}
                run = root / "runs" / name
                run.mkdir(parents=True)
                result = {"task_spec": {"name": "toy", "objective": "bits", "n_outputs": 1}, "seed": seed,
                          "test": {"accuracy": test, "score": test}, "best_val": {"accuracy": val, "score": val, "step": 4},
                          "steps": 4, "steps_run": 4, "wall_seconds": 1.0, "trainable_params": 10,
                          "steps_to_threshold": None, "config": {"lr": lr}, "train_flops": {"per_step": 1e9, "total": 4e9},
                          "versions": {"torch": "x", "transformers": "y", "fpt": "z"}}
                (run / "result.json").write_text(json.dumps(result))
                (run / "metrics.jsonl").write_text("".join(
                    json.dumps({"step": s, "val": {"score": val * s / 4}, "wall_seconds": s}) + "\n" for s in (2, 4)))
    (root / "index.json").write_text(json.dumps(index))
    (root / "sweep.yaml").write_text("description: arena test\n" + ("arena: {reference: fpt}\n" if arena else ""))


def test_arena_chooses_each_arms_lr_on_validation_and_pairs_seeds(tmp_path):
    fpt = [(0.80, 0.50), (0.80, 0.60), (0.80, 0.70)]
    fake_sweep(tmp_path, {
        "fpt": {0.001: fpt, 0.01: [(0.1, 0.99)] * 3},                       # test never chooses: 0.001 it is
        "better": {0.001: [(0.9, t + 0.1) for _, t in fpt]},                   # +10 points at every seed
        "noisy": {0.001: [(0.9, t + d) for (_, t), d in zip(fpt, (0.05, -0.05, 0.01))]},
        "worse": {0.01: [(0.7, t - 0.2) for _, t in fpt], 0.001: [(0.5, 0.99)] * 3},
    })
    text = report(tmp_path).read_text()
    assert "| toy | - | better | 70.0% | 60.0% | 3 of 4 | 10.0 pts |" in text  # best arm, FPT's score, rank, margin
    lines = {line.split(" | ")[2]: line for line in text.splitlines() if line.startswith("| toy | - | ")
             and line.count("|") > 10}
    assert "| 0.001 | 2 |" in lines["fpt"] and "reference" in lines["fpt"]
    assert lines["better"].endswith("| +10.0 pts [+10.0, +10.0] (n=3) | 0.000 | wins |")
    # 3 seeds at +5, -5 and +1 points: the 95% t interval straddles zero
    assert lines["noisy"].endswith("| tie |")
    assert "| 0.01 | 2 |" in lines["worse"] and lines["worse"].endswith("| loses |")
    assert (tmp_path / "report").glob("compute-toy-*.png")
    assert next((tmp_path / "report").glob("compute-toy-*.png")).stat().st_size > 1000


def test_arena_chooses_on_the_seeds_every_lr_ran_with(tmp_path):
    # lr_seeds: [0]: the other seeds ran only at the chosen lr; their (worse) val must not unchoose it
    fake_sweep(tmp_path, {
        "fpt": {0.001: [(0.8, 0.5), (0.6, 0.6), (0.6, 0.7)], 0.01: [(0.7, 0.9)]},
        "other": {0.001: [(0.8, 0.5), (0.8, 0.6), (0.8, 0.7)]},
    })
    text = report(tmp_path).read_text()
    fpt_line = next(line for line in text.splitlines() if line.startswith("| toy | - | fpt |") and line.count("|") > 10)
    assert "| 0.001 | 2 |" in fpt_line


def test_sweep_with_lr_seeds_runs_other_seeds_only_at_the_chosen_lr(tmp_path, tiny_gpt2):
    import json

    out = tiny_sweep(tmp_path, tiny_gpt2, "two-stage lr choice", "grid: {lr: [1.0e-5, 3.0e-2], seed: [0, 1]}\n"
                     "variants: {fpt: {}}\narena: {reference: fpt, lr_seeds: [0]}\n")
    spec = tmp_path / "spec.yaml"
    finished = sorted(p.parent.name for p in (out / "runs").glob("*/result.json"))
    val = {lr: json.loads((out / "runs" / f"fpt__lr={lr}__seed=0" / "result.json").read_text())["best_val"]["score"]
           for lr in ("1e-05", "0.03")}
    assert len(finished) == 3 and "fpt__lr=1e-05__seed=0" in finished and "fpt__lr=0.03__seed=0" in finished
    seed1 = next(name for name in finished if name.endswith("seed=1"))
    best = max(val, key=lambda lr: val[lr])
    assert seed1 == f"fpt__lr={best}__seed=1" or val["1e-05"] == val["0.03"]
    assert main(["sweep", str(spec), "--out", str(out), "--no-progress"]) == 0  # resumes: nothing new runs
    assert len(list((out / "runs").glob("*/result.json"))) == 3
    assert "bit-xor" in report(out).read_text()  # the report builds from the three runs


@pytest.mark.parametrize("arena, error", [
    ("{reference: nope}", "arena.reference 'nope' is not a variant"),
    ("{reference: fpt, lr_seeds: [5]}", "must be seeds of grid.seed"),
    ("{reference: fpt, lr_seed: [0]}", "unknown arena key"),
])
def test_bad_arena_keys_are_one_error(tmp_path, arena, error):
    from fpt.experiments.sweep import load_spec

    spec = tmp_path / "spec.yaml"
    spec.write_text("description: x\nbase: {task: bit-xor}\ngrid: {lr: [0.001], seed: [0, 1]}\n"
                    f"variants: {{fpt: {{}}}}\narena: {arena}\n")
    with pytest.raises(FptError, match=error):
        load_spec(spec)


def test_published_forecasting_numbers_stand_only_beside_runs_on_their_setting():
    from fpt.experiments.report import on_published_protocol

    def result(task_options: dict, **config) -> dict:
        return {"config": {"task_options": {"path": "etth1", **task_options}, **config}}

    assert on_published_protocol(result({"split": "ett-hour", "horizon": 192}))
    assert on_published_protocol(result({}))  # the defaults are the published setting
    assert not on_published_protocol(result({"features": "OT"}))  # univariate: another benchmark
    assert not on_published_protocol(result({"seq_len": 96}))
    assert not on_published_protocol(result({"split": "0.7,0.1,0.2"}))
    assert not on_published_protocol(result({"train_fraction": 0.1}))
    assert not on_published_protocol(result({}, train_fraction=0.1))


def test_a_variant_may_have_its_own_grid_values(tmp_path):
    from fpt.experiments.sweep import load_spec

    spec = tmp_path / "spec.yaml"
    spec.write_text("description: x\nbase: {task: bit-xor}\ngrid: {lr: [0.001, 0.01], seed: [0, 1]}\n"
                    "variants: {fpt: {}, full: {method: full, grid: {lr: [1.0e-5]}}}\n")
    runs = load_spec(spec).runs()
    assert sorted(r.name for r in runs if r.variant == "full") == ["full__lr=1e-05__seed=0", "full__lr=1e-05__seed=1"]
    assert len([r for r in runs if r.variant == "fpt"]) == 4
    assert all(r.config["method"] == "full" and "grid" not in r.config for r in runs if r.variant == "full")
    spec.write_text("description: x\nbase: {task: bit-xor}\ngrid: {lr: [0.001]}\n"
                    "variants: {full: {method: full, grid: {steps: [5]}}}\n")
    with pytest.raises(FptError, match="variants.full.grid must map keys of the spec's grid"):
        load_spec(spec)


def test_a_spec_may_exclude_grid_points(tmp_path):
    from fpt.experiments.sweep import load_spec

    spec = tmp_path / "spec.yaml"
    spec.write_text("description: x\nbase: {task: forecast}\n"
                    "grid: {task_options.train_fraction: [0.05, 0.1], task_options.horizon: [96, 720], seed: [0, 1]}\n"
                    "exclude: [{task_options.train_fraction: 0.05, task_options.horizon: 720}]\n"
                    "variants: {linear: {model: linear}}\n")
    names = [r.name for r in load_spec(spec).runs()]
    assert len(names) == 6 and not any("train_fraction=0.05__horizon=720" in n for n in names)
    assert "linear__train_fraction=0.1__horizon=720__seed=1" in names
    spec.write_text("description: x\nbase: {task: bit-xor}\ngrid: {seed: [0]}\nexclude: [{steps: 5}]\n")
    with pytest.raises(FptError, match="exclude must be a list of mappings from keys of the spec's grid"):
        load_spec(spec)


def test_steps_to_threshold_beside_the_papers_ratio_with_a_lower_bound_when_not_reached():
    from fpt.experiments.report import paper_steps_lines
    from fpt.experiments.results import Row

    def row(variant, reached):
        results = [{"steps_to_threshold": s, "steps": 2000} for s in reached]
        return Row(variant, "bit-xor", {}, results, [], [])

    spec = {"paper": {"table": "steps", "rows": {"pre": "FPT", "rand": "random init"}}}
    lines = paper_steps_lines([row("pre", [400, 500, 600]), row("rand", [1500, None, None])], spec)
    # seeds that never reached count at the 2,000-step budget: (1500 + 2000 + 2000) / 3 / 500 = 3.7
    assert lines == [("- bit-xor: rand (random init) reached the threshold in 1 of 3 seeds within 2000 steps, "
                      "pre (FPT) in 500 on average: at least 3.7x the steps (paper, GPT-2: 20000 vs 500 steps, 40x)")]
    lines = paper_steps_lines([row("pre", [400, 500, 600]), row("rand", [4000, 5000, 6000])], spec)
    assert lines == [("- bit-xor: rand (random init) needs 10.0x the steps of pre (FPT): 5000 vs 500, mean over "
                      "seeds (paper, GPT-2: 20000 vs 500 steps, 40x)")]
    assert paper_steps_lines([row("pre", [400, None, 600]), row("rand", [1500])], spec) == []  # FPT must reach
    assert paper_steps_lines([row("pre", [400])], {"paper": {"table": "table2"}}) == []


def test_forecasts_at_several_horizons_are_pivoted_one_column_per_horizon():
    from fpt.experiments.report import horizon_table
    from fpt.experiments.results import Row

    def row(variant: str, horizon: int, mses: list[float], **options) -> Row:
        results = [{"task_spec": {"n_outputs": horizon}, "test": {"mse": m, "mae": m / 2},
                    "config": {"task_options": {"split": "ett-hour", "horizon": horizon, **options}}} for m in mses]
        return Row(variant, "ETTh1", {"task_options.horizon": horizon}, results, [], [])

    rows = [row("linear", 96, [0.38, 0.40]), row("linear", 192, [0.41, 0.43]), row("fpt", 96, [0.39])]
    table = horizon_table(rows, {"variants": {"fpt": {}, "linear": {}}})
    lines = table.splitlines()
    assert lines[0] == "| arm | ETTh1 96 | ETTh1 192 |"
    assert lines[2] == "| fpt | 0.390 / 0.195 (1 of 2 seeds) | not run |"  # the spec's order; a missing horizon said
    assert lines[3] == "| linear | 0.390 ± 0.010 / 0.195 | 0.420 ± 0.010 / 0.210 |"
    assert "| published: One Fits All (GPT-2, 6 blocks) | 0.376 / 0.397 | 0.416 / 0.418 |" in lines
    assert "| published: DLinear | 0.386 / 0.400 | - |" in lines  # published at 96 only
    # off the published setting (one target channel) nothing published stands beside the runs
    univariate = [row("linear", h, [0.05], features="OT") for h in (96, 192)]
    assert "published" not in horizon_table(univariate, {})
    assert horizon_table([row("linear", 96, [0.38])], {}) == ""  # one horizon: the main table says it all
    # all four benchmark horizons: an average column, as the papers' tables have (PatchTST published only so)
    full = [row("linear", h, [m, m + 0.02]) for h, m in zip((96, 192, 336, 720), (0.38, 0.41, 0.44, 0.45))]
    lines = horizon_table(full + [row("fpt", 96, [0.39, 0.40])], {}).splitlines()
    assert lines[0] == "| arm | ETTh1 96 | ETTh1 192 | ETTh1 336 | ETTh1 720 | ETTh1 average |"
    se = (4 * 0.01 ** 2) ** 0.5 / 4  # each horizon's SE is 0.010; four independent runs
    assert lines[2].startswith("| fpt | 0.395 ± 0.005 / 0.198 |") and lines[2].endswith("| not run | - |")
    assert lines[3].endswith(f"| 0.430 ± {se:.3f} / 0.215 |") and lines[3].startswith("| linear |")
    assert "| published: PatchTST | - | - | - | - | 0.413 / 0.430 |" in lines
    assert "| published: One Fits All (GPT-2, 6 blocks) | 0.376 / 0.397 | 0.416 / 0.418 | 0.442 / 0.433 | 0.477 / 0.456 | 0.427 / 0.426 |" in lines
    assert "| published: closed-form linear | 0.370 / 0.392 | 0.403 / 0.411 | 0.428 / 0.426 | 0.434 / 0.450 | 0.409 / 0.420 |" in lines
    # One Fits All's few-shot cut (recorded in the protocol): its Table 5 average, not the full-data numbers
    def few(variant: str, horizon: int, mse: float) -> Row:
        r = row(variant, horizon, [mse], train_fraction=0.1)
        for x in r.results:
            x["protocol"] = {"published": False, "few_shot": 0.1}
        return r
    lines = horizon_table([few("fpt", h, 0.5) for h in (96, 192, 336, 720)], {}).splitlines()
    assert "| published, 10% of rows: One Fits All (GPT-2, 6 blocks) | - | - | - | - | 0.590 / 0.524 |" in lines
    assert "| published, 10% of rows: DLinear | - | - | - | - | 0.691 / 0.599 |" in lines
    assert not any(line.startswith("| published: ") for line in lines)
    # grid settings name a line only where they vary within the data set (the file's path does not)
    rows = [row("fpt", h, [0.5]) for h in (96, 192)] + [row("fpt", h, [0.6]) for h in (96, 192)]
    for r, fraction in zip(rows, (0.1, 0.1, 0.05, 0.05)):
        r.setting.update({"task_options.path": "data/ETTh1.csv", "task_options.train_fraction": fraction})
    names = [line.split(" | ")[0] for line in horizon_table(rows, {}).splitlines()[2:4]]
    assert names == ["| fpt (train_fraction=0.05)", "| fpt (train_fraction=0.1)"]
    rows.append(row("fpt", 336, [0.7]))
    rows[-1].setting.update({"task_options.path": "data/ETTh1.csv", "task_options.train_fraction": 0.1})
    spec = {"exclude": [{"task_options.train_fraction": 0.05, "task_options.horizon": 336}]}
    lines = horizon_table(rows, spec).splitlines()
    assert lines[2].endswith("| excluded by the spec |") and lines[3].endswith("| 0.700 / 0.350 |")
    # with all four benchmark horizons, a line the spec cuts short is averaged over what it ran, and says so
    for h, mse in ((96, 0.4), (192, 0.6), (336, 0.8), (720, 1.0)):
        for fraction in (0.05, 0.1):
            if not (fraction == 0.05 and h == 720):
                rows.append(row("dlinear", h, [mse, mse]))
                rows[-1].setting.update({"task_options.path": "data/ETTh1.csv", "task_options.train_fraction": fraction})
    spec = {"exclude": [{"task_options.train_fraction": 0.05, "task_options.horizon": 720}]}
    lines = horizon_table(rows, spec).splitlines()
    short = next(line for line in lines if line.startswith("| dlinear (train_fraction=0.05)"))
    full = next(line for line in lines if line.startswith("| dlinear (train_fraction=0.1)"))
    assert short.endswith("| excluded by the spec | 0.600 ± 0.000 / 0.300 (over 96, 192, 336; 720 excluded) |")
    assert full.endswith("| 1.000 ± 0.000 / 0.500 | 0.700 ± 0.000 / 0.350 |")
    assert next(line for line in lines if line.startswith("| fpt (train_fraction=0.05)")).endswith("| - |")  # 336 not run


def test_a_report_keeps_its_result_files_so_it_can_be_rebuilt_and_merged_without_the_sweep(tmp_path):
    fake_sweep(tmp_path / "old", {"fpt": {1e-3: [(0.8, 0.7), (0.9, 0.8)]}, "lstm": {1e-3: [(0.6, 0.5), (0.7, 0.6)]}})
    published = tmp_path / "docs"
    report(tmp_path / "old", published)
    archived = sorted(p.relative_to(published / "runs").as_posix() for p in (published / "runs").rglob("*") if p.is_file())
    assert archived == [f"{arm}__lr=0.001__seed={s}/{f}" for arm in ("fpt", "lstm") for s in (0, 1)
                        for f in ("metrics.jsonl", "result.json")]
    table = (published / "results.csv").read_text()
    # the sweep is gone (a fresh clone): the report's own directory rebuilds the same table
    import shutil
    shutil.rmtree(tmp_path / "old")
    report(published, published)
    assert (published / "results.csv").read_text() == table
    # new runs join the archived ones; the archive then holds both
    fake_sweep(tmp_path / "new", {"mlp": {1e-3: [(0.5, 0.4), (0.6, 0.5)]}})
    assert main(["report", str(published), str(tmp_path / "new"), "--out", str(published)]) == 0
    merged = list(csv.reader((published / "results.csv").open()))
    assert [r[0] for r in merged[1:]] == ["fpt", "lstm", "mlp"]
    assert len(list((published / "runs").iterdir())) == 6
    assert "fpt report" in (published / "REPORT.md").read_text()
    # reporting fewer runs into it drops the archived runs it no longer shows
    report(tmp_path / "new", published)
    assert sorted(p.name for p in (published / "runs").iterdir()) == ["mlp__lr=0.001__seed=0", "mlp__lr=0.001__seed=1"]


def test_a_run_finished_in_two_merged_directories_is_one_error(tmp_path):
    for where in ("a", "b"):
        fake_sweep(tmp_path / where, {"fpt": {1e-3: [(0.8, 0.7)]}})
    with pytest.raises(FptError, match=r"run 'fpt__lr=0.001__seed=0' is finished in both .*a' and .*b'"):
        report([tmp_path / "a", tmp_path / "b"], tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_report_written_into_a_live_sweep_directory_leaves_its_index_alone(tmp_path):
    fake_sweep(tmp_path, {"fpt": {1e-3: [(0.8, 0.7)]}})
    (tmp_path / "logs").mkdir()  # what `fpt sweep` writes beside runs/
    index = (tmp_path / "index.json").read_text()
    report(tmp_path, tmp_path)
    assert (tmp_path / "index.json").read_text() == index and (tmp_path / "REPORT.md").exists()


def test_a_recorded_protocol_decides_and_older_result_files_are_judged_from_their_config():
    from fpt.experiments.report import on_published_protocol

    # runs since 2026-12-03 record it: the report imports no task to decide
    assert on_published_protocol({"protocol": {"published": True}, "config": {"task_options": {"seq_len": 96}}})
    assert not on_published_protocol({"protocol": {"published": False}, "config": {"task_options": {}}})
    assert not on_published_protocol({"protocol": {}, "config": {"task_options": {}}})  # a task without one


def test_the_forecasting_task_records_its_protocol(tmp_path):
    from fpt.tasks.forecast import Forecast, ForecastOptions

    def protocol(**options) -> dict:
        task = Forecast.__new__(Forecast)  # the protocol is a function of the options alone
        task.options = ForecastOptions(**options)
        return task.protocol()

    assert protocol(path="etth1")["published"]
    assert protocol(path="ETTm2.csv", horizon=720)["published"]
    assert not protocol(path="etth1", seq_len=96)["published"]
    assert not protocol(path="etth1", features="OT")["published"]
    assert not protocol(path="etth1", train_fraction=0.1)["published"]
    assert protocol(path="data/ETT-small/ETTh1.csv")["published"]  # the file's name decides, not its folders
    assert not protocol(path="data/ETT-small/ETTh1.csv", split="0.7,0.1,0.2")["published"]
    assert not protocol(path="ETTm2.csv", seq_len=336)["published"]  # ETTm's window is 512
    assert protocol(path="weather.csv")["published"] and protocol(path="weather.csv")["seq_len"] == 512
    assert not protocol(path="sales.csv")["published"]  # no benchmark of that name


def test_every_committed_report_with_result_files_rebuilds_to_identical_tables(tmp_path):
    """docs/results/*/* reports that keep their runs' result files come out of `fpt report` with the
    same tables and CSV files as committed: the code that reads result files has not drifted."""
    root = Path(__file__).resolve().parents[2] / "docs" / "results"
    archives = sorted(p.parent for p in root.glob("*/*/index.json"))
    assert archives, "no committed report keeps its result files"
    for committed in archives:
        out = tmp_path / committed.name
        report([committed], out)
        text = (committed / "REPORT.md").read_text()
        text = text[text.index("\n# "):] if text.startswith("## Verdict") else text  # fpt compare's card on top
        tables = [line for line in text.splitlines() if line.startswith("|")]
        assert tables == [line for line in (out / "REPORT.md").read_text().splitlines() if line.startswith("|")]
        for name in ("results.csv", "forecasts.csv"):
            if (committed / name).exists():
                assert (out / name).read_bytes() == (committed / name).read_bytes(), f"{committed.name}/{name}"


def test_a_learning_rate_whose_validation_score_is_nan_is_never_chosen():
    from fpt.experiments.results import Row, best_by_validation

    def row(lr, scores):
        return Row("fpt", "t", {"lr": lr}, [{"seed": s, "best_val": {"score": v}} for s, v in enumerate(scores)], [], [])

    diverged, good = row(0.1, [float("nan"), 0.9]), row(0.001, [0.5, 0.6])
    assert best_by_validation([diverged, good]) is good
    assert best_by_validation([good, diverged]) is good


def test_a_pruning_lr_search_starts_each_arms_middle_lr_first_and_prunes_against_its_siblings(tmp_path, tiny_gpt2):
    import json

    import yaml

    out = tiny_sweep(tmp_path, tiny_gpt2, "pruned lr search", "grid: {lr: [1.0e-4, 1.0e-3, 1.0e-2], seed: [0, 1]}\n"
                     "variants: {fpt: {}, random: {init: random}}\n"
                     "arena: {reference: fpt, lr_seeds: [0], prune: true}\n")
    results = {p.parent.name: json.loads(p.read_text()) for p in (out / "runs").glob("*/result.json")}
    assert len(results) == 8 and all("pruned" in r for r in results.values())  # 6 lr runs, 2 at the chosen lr
    config = yaml.safe_load((out / "configs" / "fpt__lr=0.0001__seed=0.yaml").read_text())
    assert sorted(config["prune_against"].split(",")) == [str(out / "runs" / f"fpt__lr={lr}__seed=0")
                                                          for lr in ("0.001", "0.01")]
    seed1 = next(n for n in results if n.startswith("fpt") and n.endswith("seed=1"))
    assert "prune_against" not in yaml.safe_load((out / "configs" / f"{seed1}.yaml").read_text())  # a final run
    assert not results[seed1]["pruned"]


def test_the_queue_starts_middle_lrs_first_and_keeps_siblings_apart():
    from fpt.experiments.sweep import Run, _middle_lr_first, _next

    def make(variant, lr, seed=0):
        return Run(f"{variant}__lr={lr}__seed={seed}", variant, {"lr": lr, "seed": seed}, {})

    runs = [make(v, lr) for v in ("a", "b") for lr in (1e-4, 1e-3, 1e-2)] + [make("c", 1e-5), make("c", 1e-4)]
    ordered = _middle_lr_first(runs)
    assert [r.name for r in ordered[:3]] == ["a__lr=0.001__seed=0", "b__lr=0.001__seed=0", "c__lr=0.0001__seed=0"]
    queue = [make("a", 1e-4), make("a", 1e-2), make("b", 1e-4)]
    assert _next(queue, running=[make("a", 1e-3)]).name == "b__lr=0.0001__seed=0"  # a's sibling is training
    assert _next(queue, running=[make("a", 1e-3)]).name == "a__lr=0.0001__seed=0"  # nothing else: the first


def test_arena_prune_must_be_a_boolean(tmp_path):
    from fpt.experiments.sweep import load_spec

    spec = tmp_path / "spec.yaml"
    spec.write_text("description: x\nbase: {task: bit-xor}\ngrid: {lr: [0.001], seed: [0, 1]}\n"
                    "variants: {fpt: {}}\narena: {reference: fpt, lr_seeds: [0], prune: maybe}\n")
    with pytest.raises(FptError, match="arena.prune must be true or false"):
        load_spec(spec)


def test_mase_columns_appear_only_for_runs_that_asked_for_it():
    from fpt.experiments.report import forecast_table
    from fpt.experiments.results import Row

    def row(variant: str, mase: list[float] | None) -> Row:
        results = [{"task_spec": {"n_outputs": 96}, "test": {"mse": 0.4, "mae": 0.2}, "best_val": {"mse": 0.5},
                    "wall_seconds": 1.0, "trainable_params": 10, "config": {"task_options": {"path": "x.csv"}},
                    **({"mase": {"model": m, "relative": m / 2}} if mase else {})} for m in (mase or [0.0, 0.0])]
        return Row(variant, "x", {}, results, [], [])

    plain, _ = forecast_table([row("linear", None)])
    assert "MASE" not in plain
    table, rows = forecast_table([row("linear", [0.8, 1.0]), row("fpt", None)])
    header = rows[0]
    assert header[header.index("test MAE") + 1:header.index("test MAE") + 3] == ["MASE", "MASE / seasonal naive"]
    by_variant = {r[0]: r for r in rows[1:]}
    assert by_variant["linear"][header.index("MASE")] == "0.900 ± 0.100"
    assert by_variant["linear"][header.index("MASE / seasonal naive")] == "0.450 ± 0.050"
    assert by_variant["fpt"][header.index("MASE")] == "-"  # a run without it says so
    both, rows = forecast_table([row("linear", [0.8, 1.0])] + [
        Row("chronos", "x", {}, [{**r, "wql": {"model": 0.3, "relative": 0.6}} for r in row("c", [0.5]).results], [], [])])
    header = rows[0]
    assert header[header.index("test MAE") + 1:header.index("test MAE") + 5] == [
        "MASE", "MASE / seasonal naive", "WQL", "WQL / seasonal naive"]
    by_variant = {r[0]: r for r in rows[1:]}
    assert by_variant["chronos"][header.index("WQL / seasonal naive")] == "0.600"
    assert by_variant["linear"][header.index("WQL")] == "-"


def test_short_term_runs_are_tabled_by_m4_measures_beside_naive2():
    from fpt.experiments.report import short_term_table
    from fpt.experiments.results import Row

    def row(variant: str, smapes: list[float]) -> Row:
        results = [{"short_term": {"smape": s, "mase": s / 5, "owa": s / 20, "naive2_smape": 20.0, "naive2_mase": 4.0},
                    "wall_seconds": 2.0, "trainable_params": 1, "stopped_early": True, "best_val": {"step": 100},
                    "steps_run": 100} for s in smapes]
        return Row(variant, "m1-yearly", {}, results, [], [])

    lines = short_term_table([row("linear", [16.0, 18.0]), row("fpt", [15.0, 17.0])]).splitlines()
    assert lines[0] == "| variant | data | seeds | converged | sMAPE | MASE | OWA | train seconds |"
    assert lines[2] == "| fpt | m1-yearly | 2 | 2 of 2 | 16.000 ± 1.000 | 3.200 ± 0.200 | 0.800 ± 0.050 | 2 ± 0 |"
    assert lines[4] == "| (Naive2) | m1-yearly |  |  | 20.000 | 4.000 | 1.000 |  |"


def test_transfer_runs_stand_beside_the_same_arm_trained_on_the_target():
    from fpt.experiments.report import transfer_table
    from fpt.experiments.results import Row

    def row(variant: str, source: str, target: str, mses: list[float], fpt: bool = False) -> Row:
        results = [{"seed": seed, "test": {"mse": m, "mae": m / 2}, "init": "pretrained" if fpt else "random",
                    "train_groups": ["input", "output"], "protocol": {"test_path": f"data/{target}.csv"},
                    "config": {"method": "fpt", "task_options": {"path": f"data/{source}.csv",
                                                                 "test_path": f"data/{target}.csv"}}}
                   for seed, m in enumerate(mses)]
        return Row(variant, source, {}, results, [], [])

    rows = [row("fpt", "ETTh1", "ETTh2", [0.40, 0.42, 0.41], fpt=True), row("fpt", "ETTh2", "ETTh2", [0.30, 0.31, 0.32], fpt=True),
            row("linear", "ETTh1", "ETTh2", [0.35, 0.36, 0.37]), row("linear", "ETTh2", "ETTh2", [0.29, 0.29, 0.29]),
            row("dlinear", "ETTh1", "ETTh2", [0.41, 0.40, 0.43])]
    lines = transfer_table(rows).splitlines()
    assert lines[0].startswith("| arm | trained on | tested on | seeds | test MSE / MAE | trained on the target")
    by_arm = {line.split(" | ")[0].strip("| "): line for line in lines[2:]}
    assert "| 0.410 ± 0.006 / 0.205 | 0.310 ± 0.006 / 0.155 | 1.32x | (the FPT arm) |" in by_arm["fpt"]
    # linear is 0.04-0.06 lower on each seed: the interval excludes zero; dlinear's differences straddle it
    assert "| wins: +0.050 [+0.025, +0.075], p = 0.013 |" in by_arm["linear"]
    assert by_arm["dlinear"].endswith("| not run | - | tie: -0.003 [-0.055, +0.048], p = 0.808 |")
    assert transfer_table([row("fpt", "ETTh2", "ETTh2", [0.3, 0.3], fpt=True)]) == ""  # no transfer, no table


def test_forecasting_arms_are_judged_against_the_fpt_arm_paired_by_seed():
    from fpt.experiments.report import forecast_verdicts
    from fpt.experiments.results import Row

    def row(variant: str, horizon: int, mses: list[float], fpt: bool = False, lr: float = 1e-3, val: float = 0.5) -> Row:
        results = [{"seed": seed, "test": {"mse": m, "score": -m}, "best_val": {"mse": val, "score": -val},  # as result.json
                    "task_spec": {"n_outputs": horizon}, "config": {"method": "fpt", "lr": lr},
                    "init": "pretrained" if fpt else "random", "train_groups": ["input", "output", "layernorm"]}
                   for seed, m in enumerate(mses)]
        return Row(variant, "ETTh2", {"task_options.horizon": horizon, "lr": lr}, results, [], [])

    rows = [row("fpt-minilm", 96, [0.30, 0.31, 0.32], fpt=True), row("linear", 96, [0.28, 0.285, 0.29]),
            row("linear", 96, [0.2, 0.2, 0.2], lr=1e-2, val=0.6),  # better on test, worse on validation: not chosen
            row("random-minilm", 96, [0.35, 0.30, 0.36]), row("linear", 192, [0.4, 0.4])]
    lines = forecast_verdicts(rows).splitlines()
    assert lines[0] == ("| data | horizon | setting | arm | paired seeds | FPT (fpt-minilm) MSE | arm MSE | "
                        "FPT minus arm [95% interval] | p | the arm |")
    assert lines[2] == "| ETTh2 | 96 | - | linear | 3 | 0.310 | 0.285 | +0.025 [+0.013, +0.037] | 0.013 | wins |"
    assert lines[3].startswith("| ETTh2 | 96 | - | random-minilm | 3 |") and lines[3].endswith("| tie |")
    assert len(lines) == 4  # horizon 192 has no FPT arm to stand against


def test_imputation_table_gives_a_gap_filler_one_line_and_averages_each_ratios_own_model():
    from fpt.experiments.report import imputation_table
    from fpt.experiments.results import Row

    def run(ratio: float, trainable: int, mses: dict[float, float], seed: int = 0) -> dict:
        return {"trainable_params": trainable, "wall_seconds": 1.0, "seed": seed, "config": {}, "steps_run": 100,
                "best_val": {"step": 100 if seed == 2 else 60},  # seed 2 still improving at the cap
                "init": "pretrained" if trainable else "random",  # as a gap filler's result.json says
                "train_groups": ["input", "output", "layernorm", "position"] if trainable else [],
                "protocol": {"mask_ratio": ratio, "published": True, "benchmark": "etth1"},
                "test_variants": {f"test@{r:g}": {"mse": m, "mae": m * 2} for r, m in mses.items()}}

    ratios = (0.125, 0.25, 0.375, 0.5)
    filler = {r: 0.1 + r for r in ratios}  # a gap filler scores the same whatever ratio its run was named for
    rows = [Row("interpolate", "ETTh1-impute", {"task_options.mask_ratio": r}, [run(r, 0, filler)], [], [])
            for r in ratios]
    rows += [Row("fpt", "ETTh1-impute", {"task_options.mask_ratio": r},
                 [run(r, 10, {q: r + s / 100 for q in ratios}, s) for s in (0, 1, 2)], [], []) for r in ratios]
    table = imputation_table(rows)
    lines = [line for line in table.splitlines() if line.startswith("| ")]
    assert sum(line.startswith("| interpolate | ETTh1-impute | nothing trains |") for line in lines) == 1
    assert sum(line.startswith("| fpt | ETTh1-impute |") for line in lines) == 4  # a line per ratio trained at
    assert all("| 3 | 2 of 3 |" in line for line in lines if line.startswith("| fpt | ETTh1-impute |"))
    assert "| 1 | - |" in next(line for line in lines if line.startswith("| interpolate | ETTh1-impute |"))
    # the published protocol's average: each ratio's model at its own ratio, (0.13 + 0.255 + 0.38 + 0.505) / 4
    average = next(line for line in lines if line.startswith("| fpt | etth1 |"))
    assert "0.323" in average and "0.069 / 0.173" in average  # 0.3125 + the mean seed's 0.01
    # interpolation's 0.4125 against FPT's 0.3125, 0.3225, 0.3325 by seed: FPT 0.09 lower, every seed
    interpolate = next(line for line in lines if line.startswith("| interpolate | etth1 |"))
    assert "0.412" in interpolate and "| -0.090 [-0.115, -0.065] | loses |" in interpolate


def test_reports_name_the_hosts_and_precisions_the_runs_recorded_not_the_one_building_the_report():
    from fpt.experiments.report import provenance_lines
    from fpt.experiments.results import Row

    versions = {"torch": "2.13.0+cpu", "transformers": "5.25.0", "fpt": "0.1.0"}
    fast, slow = "x86_64, EPYC, 2 cores, native bf16 (avx512_bf16)", "x86_64, EPYC, 2 cores, no native bf16 (fp32 by default)"

    def row(variant, *runs):
        return Row(variant, "t", {}, [{"versions": versions, "precision": p, **({"machine": m} if m else {})}
                                      for m, p in runs], [], [])

    one = provenance_lines([row("fpt", (fast, "bf16"), (fast, "bf16")), row("linear", (fast, "fp32"))])
    assert one == [f"- machine: {fast}; torch 2.13.0+cpu, transformers 5.25.0, fpt 0.1.0",
                   "- precision: bf16 (2 runs), fp32 (1 run)"]
    moved = provenance_lines([row("fpt", ("", "bf16"), (slow, "fp32"), (slow, "fp32")), row("linear", ("", "fp32"))])
    assert moved[0].startswith(f"- machines: {slow}: 2 runs; not recorded (fpt before 2026-12-07")
    assert moved[0].endswith(": 2 runs; torch 2.13.0+cpu, transformers 5.25.0, fpt 0.1.0")
    assert moved[1].endswith("seeds of one row trained in different precisions (not comparable as one sample): fpt (t)")


def test_a_sweep_resumed_on_another_host_says_so_before_it_runs(tmp_path, monkeypatch):
    import json

    import fpt.precision
    import fpt.provenance
    from fpt.experiments.sweep import Run, host_changes

    here = "x86_64, EPYC, 2 cores, no native bf16 (fp32 by default)"
    monkeypatch.setattr(fpt.provenance, "machine", lambda: here)
    monkeypatch.setattr(fpt.precision, "native_bf16", lambda device: False)
    runs = [Run(f"fpt__seed={s}", "fpt", {"seed": s}, {"task": "bit-xor"}) for s in range(3)]
    for name, host, precision in (("fpt__seed=0", "x86_64, Xeon, 2 cores, native bf16 (amx_bf16)", "bf16"),
                                  ("fpt__seed=1", here, "fp32")):
        (tmp_path / "runs" / name).mkdir(parents=True)
        (tmp_path / "runs" / name / "result.json").write_text(json.dumps(
            {"machine": host, "precision": precision, "config": {"precision": "auto"}}))
    lines = host_changes(tmp_path, runs, runs[2:])
    assert len(lines) == 2 and lines[0].startswith("1 finished run(s) trained on x86_64, Xeon")
    assert "1 finished run(s) at precision auto trained in bf16" in lines[1] and "pin the precision" in lines[1]
    baseline = [Run("dlinear__seed=0", "dlinear", {"seed": 0}, {"task": "forecast", "model": "dlinear"})]
    assert len(host_changes(tmp_path, runs, baseline)) == 1  # fp32 on any host: only the timings differ
    monkeypatch.setattr(fpt.precision, "native_bf16", lambda device: True)
    assert len(host_changes(tmp_path, runs, runs[2:])) == 1  # a bf16 host finishes them in bf16

"""The `fpt` command: train | tasks | models | arms | compare | predict | sweep | report | data | bench.

Train flags are generated from `TrainConfig`, so the dataclass is the one
schema for flags and YAML alike. A user error prints one line and exits 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from typing import Any, Callable, Sequence

from fpt.run.config import TrainConfig, build_config
from fpt.errors import FptError

EXIT_USER_ERROR = 2


class Parser(argparse.ArgumentParser):
    """argparse that reports a bad flag in one line instead of usage + error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USER_ERROR, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _task_option(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key.strip(), value.strip()


def add_train_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per TrainConfig field; only flags given on the command line override."""
    parser.add_argument("--config", metavar="FILE.yaml", help="YAML file with any of the keys below")
    first = ("task", "task_options")  # what a run is about, then the model's options, then the run's
    for f in sorted(dataclasses.fields(TrainConfig), key=lambda f: f.name not in first):
        meta = f.metadata
        flag = meta.get("flag") or "--" + f.name.replace("_", "-")
        common: dict[str, Any] = {"dest": f.name, "help": meta["help"], "default": argparse.SUPPRESS}
        if f.name == "task_options":
            parser.add_argument(flag, action="append", type=_task_option, metavar="KEY=VALUE", **common)
        elif isinstance(f.default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, **common)
        else:
            default = f.default
            common["help"] += f" (default: {default})" if default != "" else ""
            parser.add_argument(flag, type=type(default), choices=meta.get("choices"), **common)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    overrides = {k: v for k, v in vars(args).items() if k not in ("command", "config", "func", "parser")}
    if "task_options" in overrides:
        overrides["task_options"] = dict(overrides["task_options"])
    return build_config(overrides, args.config)


def cmd_train(args: argparse.Namespace) -> int:
    from fpt.run import distributed
    from fpt.run.train import train

    try:
        result = train(config_from_args(args))
    finally:
        distributed.shutdown()
    if distributed.launched_world().is_main:
        print(json.dumps({k: result[k] for k in ("task", "model", "init", "test", "steps_to_threshold",
                                                  "trainable_params", "wall_seconds")}))
    return 0


def cmd_tasks(args: argparse.Namespace) -> int:
    from fpt.objectives import objective
    from fpt.tasks import REGISTRY, describe_task, option_help
    from fpt.tasks.table import TableOptions

    print(f"{'task':<17}{'tokens x dim':<32}{'outputs':<22}{'metric':<20}data")
    for name in REGISTRY:
        spec = describe_task(name)
        outputs = objective(spec.objective).describe_outputs(spec.n_outputs, spec.readout_tokens)
        print(f"{name:<17}{spec.shape:<32}{outputs:<22}{spec.metric:<20}{spec.source}")
        print(f"{'':<17}{spec.description}; options: {option_help(name)}")
    print(f"{'PATH.npz':<17}{'x (N, L, D) or ids (N, L)':<32}{'classes or K targets':<22}"
          f"{'accuracy | RMSE, R^2':<22}your file")
    print(f"{'':<17}your own data: x_train, y_train, x_test, y_test (+ x_val, y_val, pad_id); "
          "options: n_val (see README)")
    print(f"{'PATH.csv':<17}{'one token per column':<32}{'classes or 1 target':<22}"
          f"{'accuracy | RMSE, R^2':<22}your file (.csv, .parquet)")
    print(f"{'':<17}a table of numeric and categorical columns; options: "
          f"{', '.join(f'{f.name}={f.default}' for f in dataclasses.fields(TableOptions))} (target= is required)")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from fpt.catalog import CATALOG

    print(f"{'model':<19}{'family':<10}{'layers':>7}{'width':>7}{'params':>9}{'positions':>11}  {'kind':<9}source")
    for b in CATALOG.values():
        print(f"{b.name:<19}{b.family:<10}{b.layers:>7}{b.width:>7}{b.params_m:>8.1f}M{b.positions:>11}  "
              f"{b.position:<9}{b.source}{'  - ' + b.note if b.note else ''}")
    from fpt.families import supported_names
    print(f"Any other hub name, local directory with config.json or .gguf file of these families works too: "
          f"{supported_names()}.")
    return 0


def cmd_arms(args: argparse.Namespace) -> int:
    from fpt.arms import ARMS, markdown_table

    if args.markdown:
        print(markdown_table())
        return 0
    print(f"{'arm':<13}{'family':<13}{'trains by default':<36}what it is")
    for a in ARMS.values():
        print(f"{a.name:<13}{a.family:<13}{a.default_train or 'input,output,layernorm,position':<36}{a.summary}")
    print("Choose one with --method ARM (fpt train, sweeps' variants); --train overrides what trains.")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from fpt.run.predict import predict_cli

    return predict_cli(args.run, args.input, args.out, batch_size=args.batch_size, device=args.device,
                       probs=args.probs)


def _yaml_values(pairs: list[tuple[str, str]] | None, flag: str) -> dict[str, Any]:
    import yaml

    try:
        return {k: yaml.safe_load(v) for k, v in (pairs or [])}
    except yaml.YAMLError:
        raise FptError(f"{flag}: cannot read the values {pairs} as YAML scalars") from None


def cmd_compare(args: argparse.Namespace) -> int:
    from fpt.experiments.compare import compare

    result = compare(args.task, dict(args.task_opt or []), model=args.model, arms=args.arms, seeds=args.seeds,
                     out=args.out, workers=args.workers, steps=args.steps, patience=args.patience,
                     time_budget=args.time_budget, extra=_yaml_values(args.set, "--set"), lrs=args.lrs,
                     progress=not args.no_progress, dry_run=args.dry_run)
    if result is None:  # --dry-run: the plan and the estimate only
        return 0
    print("\n".join(result.verdict))
    print(f"report: {result.report}")
    return 1 if result.failed else 0


def cmd_sweep(args: argparse.Namespace) -> int:

    from fpt.experiments.sweep import sweep

    overrides = _yaml_values(args.set, "--set")
    failed = sweep(args.spec, args.out, workers=args.workers, tiny=args.tiny, overrides=overrides,
                   limit=args.limit, progress=not args.no_progress, only=args.only)
    from fpt.run.distributed import launched_world
    said_once = launched_world().is_main  # under torchrun every rank returns the same outcome
    if failed:
        if said_once:
            print(f"fpt sweep: {len(failed)} run(s) failed: {', '.join(failed)}; fix the cause and run the same "
                  "command again (finished runs are skipped)", file=sys.stderr)
        return 1
    if said_once:
        print(f"fpt sweep: all runs finished in {args.out}; next: fpt report {args.out}", file=sys.stderr)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from fpt.experiments.report import report

    command = " ".join(["fpt report", *args.dir, *(["--out", args.out] if args.out else [])])
    print(report(args.dir, args.out, command=command))
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    from fpt.storage.downloads import default_data_dir
    from fpt.tasks.lra_listops import generate_listops

    out = args.out or default_data_dir() / "listops"
    paths = generate_listops(out, n_train=args.n_train, n_val=args.n_val, n_test=args.n_test,
                             min_length=args.min_length, max_length=args.max_length, max_depth=args.max_depth,
                             max_args=args.max_args, leaf_prob=args.leaf_prob, seed=args.seed,
                             progress=args.progress)
    for split, path in paths.items():
        print(f"{split}: {path}")
    if args.out:
        print(f"train on it with: fpt train --task listops --task-opt data={out}", file=sys.stderr)
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from pathlib import Path

    from fpt.storage.files import atomic_write, atomic_write_json
    from fpt.experiments.bench import ARM_VARIANTS, DEFAULT_VARIANTS, against_plain, markdown, run_bench
    from fpt.experiments.bench_variants import VARIANTS

    variants = DEFAULT_VARIANTS + (("compile",) if args.compile else ()) + (ARM_VARIANTS if args.arms else ())
    if args.variants:
        variants = tuple(args.variants.split(","))
        known = tuple(VARIANTS) + ARM_VARIANTS
        unknown = [v for v in variants if v not in known]
        if unknown:
            raise FptError(f"--variants: unknown {', '.join(map(repr, unknown))}; choose from {', '.join(known)}")
    record = run_bench(args.model, args.batch_size, args.tokens, args.dim, args.steps, variants, args.device,
                       threshold_seeds=args.threshold_seeds, padding=args.padding, rounds=args.rounds)
    command = "fpt bench " + " ".join(sys.argv[2:]) if sys.argv[1:2] == ["bench"] else "fpt bench"
    record["against_plain"] = against_plain(record)
    text = markdown(record, command)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        atomic_write(Path(args.out), text.encode())
        atomic_write_json(Path(args.out).with_suffix(".json"), record)
    return 0


def build_parser() -> Parser:
    parser = Parser(prog="fpt", description="Frozen pretrained transformers on non-language tasks.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    commands: list[tuple[str, Callable[[argparse.Namespace], int], str]] = [
        ("train", cmd_train, "train a frozen pretrained transformer on a task"),
        ("tasks", cmd_tasks, "list the tasks, their token shapes and options"),
        ("models", cmd_models, "list the named backbones"),
        ("arms", cmd_arms, "list the arms (--method): what trains, or what replaces the backbone"),
        ("predict", cmd_predict, "apply a trained run to new inputs (.npz or .npy)"),
        ("compare", cmd_compare, "does a frozen LM help on this data? every fair alternative, seeds, a verdict"),
        ("sweep", cmd_sweep, "run a grid of trainings from a YAML spec (resumable, several workers)"),
        ("report", cmd_report, "tables and figures from a sweep directory's result files"),
        ("data", cmd_data, "generate a dataset: fpt data listops --out DIR"),
        ("bench", cmd_bench, "time a training step: fpt's path vs a plain loop, naive freezing, full fine-tuning"),
    ]
    parsers = {}
    for name, func, help_text in commands:
        parsers[name] = p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(func=func, parser=p)
    add_train_flags(parsers["train"])
    parsers["arms"].add_argument("--markdown", action="store_true", help="print the table docs/ARMS.md holds")
    from fpt.run.predict import add_predict_flags
    add_predict_flags(parsers["predict"])
    p = parsers["sweep"]
    p.add_argument("spec", help="sweep spec (YAML); see configs/")
    p.add_argument("--out", required=True, help="sweep directory; run the same command again to resume")
    p.add_argument("--workers", type=_positive_int, help="parallel training processes (default: the spec's)")
    p.add_argument("--tiny", action="store_true", help="apply the spec's `tiny` overrides: a smoke test")
    p.add_argument("--set", action="append", type=_task_option, metavar="KEY=VALUE",
                   help="override a TrainConfig key in every run, e.g. --set steps=100")
    p.add_argument("--limit", type=_positive_int, help="run only the first N runs of the grid")
    p.add_argument("--only", action="append", metavar="PATTERN",
                   help="run only the runs whose name matches this shell pattern, e.g. 'linear__*' (repeatable)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    data = parsers["data"].add_subparsers(dest="dataset", required=True, parser_class=Parser)
    p = data.add_parser("listops", help="Long Range Arena ListOps, generated by LRA's procedure",
                        description="Write basic_{train,val,test}.tsv in LRA's format (interchangeable with "
                                    "LRA's release). Defaults are LRA's.")
    p.add_argument("--out", help="output directory (default: the data cache's listops/, where "
                                 "`fpt train --task listops` looks)")
    for flag, kind, default, help_text in [
            ("--n-train", _positive_int, 96_000, "training examples"), ("--n-val", _positive_int, 2_000,
            "validation examples"), ("--n-test", _positive_int, 2_000, "test examples"),
            ("--min-length", int, 500, "keep trees longer than this (values, operators, closing brackets)"),
            ("--max-length", _positive_int, 2000, "keep trees shorter than this"),
            ("--max-depth", _positive_int, 10, "maximum tree depth"),
            ("--max-args", _positive_int, 10, "maximum arguments of an operator"),
            ("--leaf-prob", float, 0.75, "probability that a node is a leaf"), ("--seed", int, 0, "random seed")]:
        p.add_argument(flag, type=kind, default=default, help=f"{help_text} (default: {default})")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True, help="progress bar")
    p = parsers["bench"]
    p.add_argument("--model", default="gpt2", help="architecture (random weights unless bundled; default gpt2)")
    p.add_argument("--batch-size", type=_positive_int, default=32, help="examples per step (default 32)")
    p.add_argument("--tokens", type=_positive_int, default=64, help="tokens per example (default 64)")
    p.add_argument("--dim", type=_positive_int, default=48, help="values per token (default 48)")
    p.add_argument("--steps", type=_positive_int, default=5, help="timed steps per variant (default 5)")
    p.add_argument("--compile", action="store_true", help="also time torch.compile (slow to compile on CPU)")
    p.add_argument("--arms", action="store_true",
                   help="also time the arena's arms (--method lora, ia3, ln-tuning, bitfit, no-lm, attention-1, "
                        "block-1), each against the fpt step")
    p.add_argument("--variants", help="comma-separated variants to time instead of the default set: "
                   "plain, naive, full, bf16, fpt, fpt-fp32, fpt-nodrop, fpt-torchmasks, full-fpt, compile, arm-NAME")
    p.add_argument("--rounds", type=_positive_int, default=1,
                   help="time every variant once per round, in turn, this many rounds; report the median "
                        "(default 1; 3 or more on a noisy host)")
    p.add_argument("--threshold-seeds", type=int, default=5,
                   help="seeds of the bit-xor time-to-99%% comparison (default 5; 0 skips it)")
    p.add_argument("--padding", action=argparse.BooleanOptionalAction, default=True,
                   help="measure padding with and without length bucketing (default on)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--out", help="write the Markdown table here (and the JSON beside it)")
    add_compare_flags(parsers["compare"])
    p = parsers["report"]
    p.add_argument("dir", nargs="+", help="a sweep directory (written by fpt sweep, or a report's own "
                   "directory: it keeps the result files); several are merged into one report")
    p.add_argument("--out", help="where to write REPORT.md, results.csv, PNGs and the result files' archive "
                   "(default: the first DIR/report)")
    return parser


def add_compare_flags(p: argparse.ArgumentParser) -> None:
    from fpt.experiments.compare import CONTENDERS, DEFAULTS, KIND_NAMES

    p.add_argument("--task", required=True, help="what fpt train takes: a task name (fpt tasks), an .npz, ...")
    p.add_argument("--task-opt", action="append", type=_task_option, metavar="KEY=VALUE", help="a task option")
    p.add_argument("--model", default="minilm", help="the backbone of the FPT arm and its twins (default: minilm)")
    p.add_argument("--arms", default="default", help="default, all, or a comma-separated list of: "
                   + ", ".join(CONTENDERS) + ". Defaults: " + "; ".join(f"{KIND_NAMES[kind]}: {', '.join(names)}"
                                                             for kind, names in DEFAULTS.items()))
    p.add_argument("--seeds", type=_positive_int, default=5, help="seeds per contender (default: 5)")
    p.add_argument("--out", help="the comparison's directory (default: runs/compare/TASK-MODEL); the same "
                   "command again resumes it")
    p.add_argument("--dry-run", action="store_true", help="print the plan (contenders, skips, runs) and the time "
                   "estimate, then stop: nothing runs or is written")
    p.add_argument("--workers", type=_positive_int, help="runs side by side (default: one per CPU core up to 4, "
                   "each on its share of the cores; 1 where a GPU trains)")
    p.add_argument("--steps", type=_positive_int, help="step cap of every run (default: fpt train's, per task)")
    p.add_argument("--patience", type=int, default=5,
                   help="stop a run after this many evaluations without a better validation score (default: 5)")
    p.add_argument("--time-budget", type=float, default=0.0,
                   help="seconds of training per run, the same for every contender (0: the step cap alone)")
    p.add_argument("--set", action="append", type=_task_option, metavar="KEY=VALUE",
                   help="any other fpt train key for every run, e.g. --set eval_every=25")
    p.add_argument("--lrs", type=_learning_rates, help="one lr grid for every contender, e.g. 1e-3 or "
                   "1e-4,1e-3 (default: each contender's own grid, see the docs)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _learning_rates(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected learning rates like 1e-4,1e-3, got {text!r}") from None
    if not values or any(not 0 < v < float("inf") for v in values):
        raise argparse.ArgumentTypeError(f"expected positive learning rates like 1e-4,1e-3, got {text!r}")
    return values


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    args, unknown = build_parser().parse_known_args(argv)
    if unknown:  # report it from the subcommand's parser, whose --help lists the flags it has
        args.parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    try:
        return args.func(args)
    except FptError as err:
        print(f"fpt {args.command}: error: {err}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print(f"fpt {args.command}: interrupted; run the same command with --resume to continue",
              file=sys.stderr)
        return 130

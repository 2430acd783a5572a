"""`python -m lift_core`: the engine from the command line.

Every user mistake ends as one line on stderr and a non-zero exit; set LIFT_DEBUG=1 for tracebacks.
"""

import argparse
import logging
import os
import sys
import warnings
from dataclasses import fields
from pathlib import Path

from lift_core.errors import LiftError

EXIT_USER_ERROR = 2
EXIT_INTERNAL_ERROR = 1


def _progress_bar(description: str):
    from tqdm import tqdm

    bar = tqdm(total=0, desc=description, unit="row", disable=None)

    def update(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()
        if done >= total:
            bar.close()

    return update


def cmd_synth(args) -> None:
    from lift_core import synthetic

    if args.kind in synthetic.CLASSIFICATION_KINDS:
        frame = synthetic.make_classification(args.kind, args.n, args.noise, args.seed)
    elif args.kind in synthetic.REGRESSION_KINDS:
        frame, test = synthetic.make_regression(args.kind, args.n, args.p, args.noise, args.seed)
        if args.test_out:
            _write_table(test, args.test_out)
    else:
        kinds = synthetic.CLASSIFICATION_KINDS + synthetic.REGRESSION_KINDS
        raise LiftError(f"Unknown synthetic kind '{args.kind}'. Choose one of: {', '.join(kinds)}.")
    _write_table(frame, args.out)
    print(f"wrote {len(frame)} rows to {args.out}")


def _write_table(frame, path) -> None:
    suffix = Path(path).suffix.lower()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".parquet":
        frame.to_parquet(path, index=False)
    elif suffix == ".jsonl":
        frame.to_json(path, orient="records", lines=True)
    elif suffix == ".tsv":
        frame.to_csv(path, sep="\t", index=False)
    elif suffix == ".xlsx":
        frame.to_excel(path, index=False)
    else:
        frame.to_csv(path, index=False)


def _train_config(args):
    from lift_core.training import TrainConfig

    values = {f.name: getattr(args, f.name) for f in fields(TrainConfig) if getattr(args, f.name, None) is not None}
    if isinstance(values.get("features"), str):
        values["features"] = [name.strip() for name in values["features"].split(",") if name.strip()]
    if values.get("template_text") and "template" not in values:
        values["template"] = "custom"
    values["data"] = os.path.abspath(args.data)
    if values.get("test_data"):
        values["test_data"] = os.path.abspath(values["test_data"])
    return TrainConfig(**values)


def train_command(config, out_dir) -> list[str]:
    """The `python -m lift_core train` command line that reproduces `config` (a TrainConfig)."""
    from lift_core.training import TrainConfig

    defaults = TrainConfig()
    command = [sys.executable, "-m", "lift_core", "train", "--data", config.data, "--target", config.target]
    for flag, field_name, options in _train_options():
        value = getattr(config, field_name)
        if value is None or value == getattr(defaults, field_name):
            continue
        if options.get("action") == "store_true":
            command.append(flag)
        else:
            command += [flag, ",".join(value) if isinstance(value, list) else str(value)]
    return command + ["--out", str(out_dir)]


def _train_options() -> list[tuple[str, str, dict]]:
    """(flag, TrainConfig field, argparse options) for every optional `train` setting."""
    from lift_core.models import QUANT_MODES
    from lift_core.prompts import TEMPLATE_KINDS

    return [
        ("--features", "features", {"help": "comma-separated; default: every other column"}),
        ("--task", "task", {"choices": ("classification", "regression")}),
        ("--test-data", "test_data", {"help": "a separate test table"}),
        ("--template", "template", {"choices": TEMPLATE_KINDS}),
        ("--template-text", "template_text", {"help": "custom template with {column} fields"}),
        ("--decimals", "decimals", {"type": int}),
        ("--model", "model", {"help": "an alias (see `models`), a hub id or a local folder"}),
        ("--quant", "quant", {"choices": QUANT_MODES}),
        ("--epochs", "epochs", {"type": float, "help": "the budget is min(epochs, max steps)"}),
        ("--max-steps", "max_steps", {"type": int, "help": "at most this many optimizer steps; 0: no cap"}),
        ("--lr", "lr", {"type": float}),
        ("--warmup", "warmup", {"type": float, "help": "share of the steps with a rising learning rate"}),
        ("--batch-size", "batch_size", {"type": int}),
        ("--lora-r", "lora_r", {"type": int}),
        ("--lora-alpha", "lora_alpha", {"type": int}),
        ("--lora-dropout", "lora_dropout", {"type": float}),
        ("--lora-targets", "lora_targets", {"help": "'all-linear' or comma-separated module names"}),
        ("--test-size", "test_size", {"type": float}),
        ("--val-size", "val_size", {"type": float}),
        ("--eval-steps", "eval_steps", {"type": int}),
        ("--logging-steps", "logging_steps", {"type": int}),
        ("--save-steps", "save_steps", {"type": int, "help": "checkpoint every N steps"}),
        ("--early-stopping", "early_stopping_patience",
         {"type": int, "help": "stop after this many evaluations without a better validation score"}),
        ("--eval-samples", "eval_samples", {"type": int, "help": "regression: samples per test row"}),
        ("--eval-temperature", "eval_temperature", {"type": float}),
        ("--seed", "seed", {"type": int}),
        ("--trust-remote-code", "trust_remote_code", {"action": "store_true", "default": None}),
    ]


def cmd_train(args) -> None:
    from lift_core.training import run_training

    config = _train_config(args)
    run = run_training(config, args.out)
    state = run.status()["state"]
    print(f"run {state}: {run.path}")
    if state == "completed":
        _print_metrics(run.eval_results())


def _print_metrics(results: dict) -> None:
    keys = ("accuracy", "macro_f1", "log_loss", "rmse", "mae", "rae", "invalid_rate", "n_test")
    print("  ".join(f"{k}={results[k]:.4g}" if isinstance(results[k], float) else f"{k}={results[k]}"
                    for k in keys if results.get(k) is not None))
    from lift_core.evaluation import majority_warning

    warning = majority_warning(results)
    if warning:
        print(f"warning: {warning}")


def _open_run(path):
    from lift_core.runs import Run

    run = Run(path)
    if not run.adapter_dir.is_dir():
        raise LiftError(f"'{path}' holds no trained adapter. Give the --out folder of a finished "
                        "(or stopped) `train` run.")
    return run


def cmd_evaluate(args) -> None:
    from lift_core.evaluation import evaluate_run

    _print_metrics(evaluate_run(_open_run(args.run), progress=_progress_bar("evaluating")))


def cmd_predict(args) -> None:
    from lift_core import data
    from lift_core.predict import Predictor

    run = _open_run(args.run)
    info = run.dataset_info()
    table = data.load_table(args.data)
    missing = [name for name in info["features"] if name not in table.columns]
    if missing:
        raise LiftError(f"The table lacks the run's feature columns: {', '.join(missing)}.")
    predictor = Predictor.from_run(run, args.quant)
    predicted = predictor.predict(table[info["features"]], args.samples, args.temperature,
                                  _progress_bar("predicting"))
    output = table.reset_index(drop=True).join(predicted)
    _write_table(output, args.out)
    print(f"wrote {len(output)} predictions to {args.out}")


def cmd_boundary(args) -> None:
    from lift_core.boundary import model_boundary
    from lift_core.predict import Predictor

    run = _open_run(args.run)
    grid = model_boundary(run, args.resolution, args.margin, args.samples, args.temperature,
                          _progress_bar("grid"), Predictor.from_run(run, args.quant))
    _write_table(grid, args.out)
    print(f"wrote a {len(grid)}-point grid to {args.out}")


def cmd_baselines(args) -> None:
    import pandas as pd

    from lift_core import baselines, data

    features = [name.strip() for name in args.features.split(",")] if args.features else None
    dataset = data.prepare_dataset(data.load_table(args.data), args.target, features, args.task)
    splits = data.split_dataset(dataset, args.test_size, args.val_size, args.seed)
    names = args.only.split(",") if args.only else None
    table = baselines.run_baselines(splits, dataset, names, args.seed)
    with pd.option_context("display.width", 160, "display.max_columns", 20):
        print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    if args.out:
        _write_table(table, args.out)


def cmd_models(args) -> None:
    from lift_core import models

    print(models.hardware_summary())
    for name, description in models.ALIASES.items():
        print(f"  {name:<38} {description}")
    for name in models.PRESET_MODELS:
        if name not in models.ALIASES:
            print(f"  {name:<38} hub id (needs network access or a local copy)")
    print("Any hub id or local model folder works with --model.")


def build_parser() -> argparse.ArgumentParser:
    from lift_core.models import QUANT_MODES

    parser = argparse.ArgumentParser(prog="python -m lift_core", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    synth = commands.add_parser("synth", help="generate a synthetic data set as in the LIFT paper")
    synth.add_argument("--kind", required=True)
    synth.add_argument("--n", type=int, default=400)
    synth.add_argument("--noise", type=float, default=0.1)
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--p", type=int, default=1, help="regression: number of features")
    synth.add_argument("--out", required=True)
    synth.add_argument("--test-out", help="regression: also write a noise-free test set here")
    synth.set_defaults(handler=cmd_synth)

    train = commands.add_parser("train", help="finetune a model on a table; writes a run folder")
    train.add_argument("--data", required=True)
    train.add_argument("--target", required=True)
    for flag, field_name, options in _train_options():
        train.add_argument(flag, dest=field_name, **options)
    train.add_argument("--out", required=True, help="the run folder to create")
    train.set_defaults(handler=cmd_train)

    evaluate = commands.add_parser("evaluate", help="(re)score a run on its test split")
    evaluate.add_argument("--run", required=True)
    evaluate.set_defaults(handler=cmd_evaluate)

    for name, handler, help_text in (("predict", cmd_predict, "predict a table with a trained run"),
                                     ("boundary", cmd_boundary, "predict a grid over two numeric features")):
        command = commands.add_parser(name, help=help_text)
        command.add_argument("--run", required=True)
        if name == "predict":
            command.add_argument("--data", required=True)
        else:
            command.add_argument("--resolution", type=int, default=60)
            command.add_argument("--margin", type=float, default=0.2)
        command.add_argument("--out", required=True)
        command.add_argument("--samples", type=int, default=0,
                             help="draw K generations per row (vote shares / spread); 0: label scoring")
        command.add_argument("--temperature", type=float, default=1.0)
        command.add_argument("--quant", choices=QUANT_MODES, help="default: as trained")
        command.set_defaults(handler=handler)

    baselines = commands.add_parser("baselines", help="scikit-learn baselines on the same split")
    baselines.add_argument("--data", required=True)
    baselines.add_argument("--target", required=True)
    baselines.add_argument("--features")
    baselines.add_argument("--task", choices=("classification", "regression"))
    baselines.add_argument("--only", help="comma-separated baseline names")
    baselines.add_argument("--test-size", dest="test_size", type=float, default=0.2)
    baselines.add_argument("--val-size", dest="val_size", type=float, default=0.1)
    baselines.add_argument("--seed", type=int, default=0)
    baselines.add_argument("--out")
    baselines.set_defaults(handler=cmd_baselines)

    models = commands.add_parser("models", help="list built-in models and the hardware")
    models.set_defaults(handler=cmd_models)
    return parser


def main(argv=None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # Library deprecation notices and bitsandbytes' optional-kernel notice say nothing a user can act on.
    warnings.filterwarnings("ignore", category=FutureWarning)
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    args = build_parser().parse_args(argv)
    try:
        args.handler(args)
    except LiftError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return EXIT_USER_ERROR
    except Exception as error:
        if os.environ.get("LIFT_DEBUG"):
            raise
        print(f"error: {_explain(error)} (set LIFT_DEBUG=1 for the traceback)", file=sys.stderr)
        return EXIT_INTERNAL_ERROR
    return 0


def _explain(error: Exception) -> str:
    text = f"{error.__class__.__name__}: {error}".splitlines()[0][:300]
    if "out of memory" in text.lower():
        return (f"{text}. Out of memory: lower --batch-size, use --quant 4bit, or pick a smaller --model.")
    return text

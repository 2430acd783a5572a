"""`python -m lift_core`: the engine from the command line.

Every user mistake ends as one line on stderr and a non-zero exit; set LIFT_DEBUG=1 for tracebacks.
"""

import argparse
import logging
import os
import sys
import warnings
from dataclasses import asdict
from pathlib import Path

from lift_core.config import DEFAULTS, SETTINGS, TrainConfig, split_list
from lift_core.errors import OUT_OF_MEMORY_HINT, LiftError, looks_out_of_memory
from lift_core.models import QUANT_MODES
from lift_core.files import read_json

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
        frame = synthetic.make_classification(args.kind, n=args.n, noise=args.noise, seed=args.seed)
    elif args.kind in synthetic.REGRESSION_KINDS:
        frame, test = synthetic.make_regression(args.kind, n=args.n, p=args.p, noise=args.noise, seed=args.seed)
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


def _train_config(args, defaults: dict | None = None):
    """The flags given, read as TrainConfig values; with --config, laid over the settings file; both laid over
    `defaults` (a preset's settings)."""
    defaults = defaults or {}
    values = {name: getattr(args, name) for name in SETTINGS if getattr(args, name, None) is not None}
    if isinstance(values.get("features"), str):
        values["features"] = split_list(values["features"])
    if values.get("template_text") and "template" not in values:
        values["template"] = "custom"
    for path in ("data", "test_data", "val_data"):
        if values.get(path):
            values[path] = os.path.abspath(values[path])
    if args.config:
        # Settings from a file (how the web app launches runs): a column name or a template is never a flag.
        saved = read_json(args.config)
        if not isinstance(saved, dict):
            raise LiftError(f"Cannot read the settings file '{args.config}': give a JSON file of TrainConfig fields.")
        return TrainConfig.from_dict({**defaults, **saved, **values})
    missing = [f"--{name}" for name in REQUIRED_SETTINGS if name not in values]
    if missing:
        raise LiftError(f"{args.command} needs {' and '.join(missing)} (or --config with a settings file).")
    return TrainConfig(**{**defaults, **values})


def train_flags(config) -> list[str]:
    """The `train` flags that reproduce `config` (a TrainConfig): the required ones, and every setting that
    differs from its default (launcher.training_command makes them a command line)."""
    command = ["--data", config.data, "--target", config.target]
    for flag, field_name, options in train_options():
        value = getattr(config, field_name)
        if value is None or value == getattr(DEFAULTS, field_name):
            continue
        if isinstance(value, bool):
            command.append(flag if value else "--no-" + flag[2:])
        else:
            command += [flag, ",".join(value) if isinstance(value, list) else str(value)]
    return command


# Settings every `train` command names itself, as required arguments.
REQUIRED_SETTINGS = ("data", "target")


def train_options() -> list[tuple[str, str, dict]]:
    """(flag, TrainConfig field, argparse options) for every optional `train` setting, from TrainConfig itself."""
    options = []
    for name, setting in SETTINGS.items():
        if name in REQUIRED_SETTINGS:
            continue
        flag = setting.metadata["flag"] or "--" + name.replace("_", "-")
        default = getattr(DEFAULTS, name)
        if isinstance(default, bool):
            # No default of its own, so an absent flag leaves the TrainConfig default in place.
            kind = {"action": argparse.BooleanOptionalAction, "default": None}
        else:
            kind = {"type": type(default) if default is not None else str}
            if setting.metadata["choices"]:
                kind["choices"] = setting.metadata["choices"]
        help_text = setting.metadata["help"] + ("" if default in (None, "") else f" (default: {default})")
        options.append((flag, name, {**kind, "help": help_text.replace("%", "%%")}))
    return options


def cmd_study(args) -> None:
    from lift_core import studies
    from lift_core.processes import process_identity
    from lift_core.study_results import summary_text
    from lift_core.study_runner import default_parallel, run_study

    if args.resume:
        if _given_study_options(args) or _given_settings(args):
            raise LiftError("study --resume continues a study with its own definition: give only its folder "
                            "(and --parallel).")
        study = studies.Study(args.resume)
        study.definition()  # a folder without a study is refused here
    else:
        study = studies.create_study(args.out, _study_spec(args))
        print(f"study created: {study.path}, {len(study.run_names())} runs")
    with study.running():
        # A person's own --resume continues a stopped study; the web app cleared the stop itself when it launched
        # this process, and a Stop pressed since must hold.
        if not os.environ.get(studies.LAUNCHED_ENV):
            study.clear_stop()
        study.record_process(process_identity(os.getpid()))
        run_study(study, parallel=args.parallel or default_parallel())
    print(summary_text(study))


def _study_spec(args):
    from lift_core.presets import apply_preset
    from lift_core.studies import LEVEL_FLAGS, StudySpec

    if not args.kind:
        raise LiftError("study needs --kind (or --resume with a study folder).")
    given = [flag for flag in LEVEL_FLAGS.values() if getattr(args, flag) is not None]
    misplaced = [flag for flag in given if flag != LEVEL_FLAGS[args.kind]]
    if misplaced:
        raise LiftError(f"--{misplaced[0]} sets the levels of another study; the {args.kind} study takes "
                        f"--{LEVEL_FLAGS[args.kind]}.")
    for option, kind in (("mode", "label-noise"), ("setting", "vary-setting")):
        if getattr(args, option) is not None and args.kind != kind:
            raise LiftError(f"--{option} is an option of the {kind} study, not of {args.kind}.")
    levels = split_list(getattr(args, LEVEL_FLAGS[args.kind]) or "")
    config = _train_config(args, apply_preset(args.preset) if args.preset else None)
    given = {"seeds": args.seeds, "noise_mode": args.mode, "setting": args.setting,
             "baselines": split_list(args.baselines) if args.baselines else None}
    return StudySpec(kind=args.kind, base=asdict(config), levels=levels,
                     **{name: value for name, value in given.items() if value is not None})


def _given_study_options(args) -> list[str]:
    """The options of `study` that define one (all but --parallel), given on the command line."""
    from lift_core.studies import LEVEL_FLAGS

    options = ("kind", "mode", "setting", "seeds", "preset", "baselines", *LEVEL_FLAGS.values())
    return [name for name in options if getattr(args, name) is not None]


def _given_settings(args) -> list[str]:
    return [name for name in SETTINGS if getattr(args, name, None) is not None] + (["config"] if args.config else [])


def cmd_train(args) -> None:
    from lift_core import distributed
    from lift_core.runs import check_new_run_folder
    from lift_core.training import check_training_inputs, resumable_run, resume_training, run_training

    if args.resume:
        if _given_settings(args):
            raise LiftError("train --resume continues a run with its own settings: give only the run folder.")
        config = resumable_run(args.resume)[1]
    else:
        config = _train_config(args)
    run_dir = args.resume or args.out
    if config.num_processes > 1 and not distributed.inside_launch():
        if not args.resume:
            # Bad input, or an --out that holds a run, is reported once, before any process starts.
            check_new_run_folder(run_dir)
            check_training_inputs(config)
        # Each process runs this same command, finds itself inside the launch and trains.
        distributed.launch(config, args.argv, run_dir)
        return  # its main process has reported the run
    run = resume_training(run_dir) if args.resume else run_training(config, run_dir)
    if distributed.inside_launch():
        distributed.leave()
        if not distributed.training_processes().is_main_process:
            return  # the main process reports the run
    state = run.status()["state"]
    print(f"run {state}: {run.path}")
    if state == "completed":
        _print_metrics(run.eval_results())


def _print_metrics(results: dict) -> None:
    from lift_core.evaluation import majority_warning
    from lift_core.metrics import metrics_line

    print(metrics_line(results))

    warning = majority_warning(results)
    if warning:
        print(f"warning: {warning}")


def _open_run(path):
    from lift_core.runs import Run

    run = Run(path)
    if not run.has_adapter():
        raise LiftError(f"'{path}' holds no trained adapter. Give the --out folder of a finished "
                        "(or stopped) `train` run.")
    return run


def cmd_evaluate(args) -> None:
    from lift_core.evaluation import evaluate_run

    _print_metrics(evaluate_run(_open_run(args.run), progress=_progress_bar("evaluating")))


def cmd_predict(args) -> None:
    from lift_core import data
    from lift_core.predict import predict_table

    run = _open_run(args.run)
    output = predict_table(run, data.load_table(args.data), quant=args.quant, samples=args.samples,
                           temperature=args.temperature, progress=_progress_bar("predicting"))
    _write_table(output, args.out)
    print(f"wrote {len(output)} predictions to {args.out}")


def cmd_boundary(args) -> None:
    from lift_core.boundary import model_boundary
    from lift_core.predict import Predictor

    run = _open_run(args.run)
    grid = model_boundary(run, resolution=args.resolution, margin=args.margin, samples=args.samples,
                          temperature=args.temperature, exhaustive=args.exhaustive, progress=_progress_bar("grid"),
                          predictor=Predictor.from_run(run, args.quant))
    _write_table(grid, args.out)
    answered = int(grid["scored"].sum())
    filled = "" if answered == len(grid) else (
        f"; {len(grid) - answered} filled in from answered neighbours that agree (column 'scored' is False there; "
        "--exhaustive answers every point)")
    print(f"wrote a {len(grid)}-point grid to {args.out}: {answered} points answered by the model{filled}")


def cmd_baselines(args) -> None:
    import pandas as pd

    from lift_core import baselines, data

    features = split_list(args.features) if args.features else None
    dataset = data.prepare_dataset(data.load_table(args.data), args.target, features=features, task=args.task)
    splits = data.split_dataset(dataset, test_size=args.test_size, val_size=args.val_size, seed=args.seed)
    names = split_list(args.only) if args.only else None
    table = baselines.run_baselines(splits, dataset, names=names, seed=args.seed)
    with pd.option_context("display.width", 160, "display.max_columns", 20):
        print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    if args.out:
        _write_table(table, args.out)


def cmd_models(args) -> None:
    from lift_core import models

    print(models.hardware_summary())
    for name, listed in models.LISTED_MODELS.items():
        print(f"  {name:<38} {listed.description(name)}")
    print("Any hub id or local model folder works with --model; a hub id needs network access or the hub's cache.")


def _add_settings(command) -> None:
    """The training settings, as `train` takes them: a study's runs are trained with them."""
    for name in REQUIRED_SETTINGS:
        command.add_argument(f"--{name}", help=SETTINGS[name].metadata["help"] + " (required without --config)")
    command.add_argument("--config", help="a JSON file of settings (TrainConfig fields); flags given too override it")
    for flag, field_name, options in train_options():
        command.add_argument(flag, dest=field_name, **options)


def _add_train_command(commands) -> None:
    train = commands.add_parser("train", help="finetune a model on a table; writes a run folder")
    _add_settings(train)
    _add_destination(train, "the run folder to create", "RUN_DIR",
                     "continue an interrupted, failed or stopped run from its last checkpoint")
    train.set_defaults(handler=cmd_train)


def _add_destination(command, out_help: str, resume_metavar: str, resume_help: str) -> None:
    """--out for a new folder, or --resume of an earlier one: exactly one."""
    destination = command.add_mutually_exclusive_group(required=True)
    destination.add_argument("--out", help=out_help)
    destination.add_argument("--resume", metavar=resume_metavar, help=resume_help)


def _add_study_command(commands) -> None:
    from lift_core.baselines import CLASSIFIERS, REGRESSORS
    from lift_core.presets import PRESETS
    from lift_core.studies import DEFAULT_LEVELS, FACTORS, KINDS, LEVEL_FLAGS, NOISE_MODES, levels_text

    study = commands.add_parser(
        "study", help="runs that vary one factor, as in the LIFT paper, each beside the baselines fitted under the "
                      "same factor; prints the scores per level")
    study.add_argument("--kind", choices=KINDS, help="the study (required without --resume)")
    for kind, flag in LEVEL_FLAGS.items():
        default = levels_text(DEFAULT_LEVELS[kind])
        meaning = FACTORS.get(kind, "values of --setting, e.g. 1e-4,1e-3")
        study.add_argument(f"--{flag}", help=f"{kind}: the levels, comma-separated: {meaning}"
                                             + (f" (default: {default})" if default else ""))
    study.add_argument("--mode", choices=NOISE_MODES,
                       help="label-noise: a corrupted label becomes another class drawn uniformly (random), or "
                            "class k becomes class k+1 (systematic) (default: random)")
    study.add_argument("--setting", help="vary-setting: the training setting that varies (a `train` flag's name, "
                                         "e.g. lr, lora_r, template, model)")
    study.add_argument("--seeds", type=int, help="runs per level, with seeds --seed, --seed + 1, ... (default: 1)")
    study.add_argument("--preset", choices=list(PRESETS), help="a preset's settings under the flags given")
    study.add_argument("--baselines", help="the baselines fitted beside each run, comma-separated (default: all of "
                                           f"the task's): classification {', '.join(CLASSIFIERS)}; regression "
                                           f"{', '.join(REGRESSORS)}")
    study.add_argument("--parallel", type=int, help="runs trained at once, each in a training process of its own "
                                                    "on a GPU of its own (default: one per GPU; 1 on a CPU)")
    _add_settings(study)
    _add_destination(study, "the study folder to create", "STUDY_DIR",
                     "continue a study: finished runs are kept, the others train")
    study.set_defaults(handler=cmd_study)


def build_parser() -> argparse.ArgumentParser:
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

    _add_train_command(commands)
    _add_study_command(commands)

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
            command.add_argument("--exhaustive", action="store_true",
                                 help="answer every grid point (the exact map); by default the map is refined "
                                      "only where the answers change and filled in elsewhere")
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
    # The split of a `train` run with the same settings, so the scores compare.
    baselines.add_argument("--test-size", dest="test_size", type=float, default=DEFAULTS.test_size)
    baselines.add_argument("--val-size", dest="val_size", type=float, default=DEFAULTS.val_size)
    baselines.add_argument("--seed", type=int, default=DEFAULTS.seed)
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
    args.argv = sys.argv[1:] if argv is None else list(argv)  # what each process of a multi-process run runs
    try:
        args.handler(args)
    except LiftError as error:
        return _fail(str(error), getattr(error, "exit_code", EXIT_USER_ERROR))
    except KeyboardInterrupt:
        return _fail("interrupted", EXIT_USER_ERROR)
    except Exception as error:
        if os.environ.get("LIFT_DEBUG"):
            raise
        return _fail(f"{_explain(error)} (set LIFT_DEBUG=1 for the traceback)", EXIT_INTERNAL_ERROR)
    return 0


def _fail(message: str, exit_code: int) -> int:
    from lift_core.distributed import record_failure

    print(f"error: {message}", file=sys.stderr)
    record_failure(message)  # one of several training processes: tells the launching process why
    return exit_code


def _explain(error: Exception) -> str:
    text = f"{error.__class__.__name__}: {error}".splitlines()[0][:300]
    return f"{text}. {OUT_OF_MEMORY_HINT}" if looks_out_of_memory(text) else text

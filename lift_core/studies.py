"""LIFT studies: runs that differ in one factor, as the LIFT paper's experiments varied it, each scored beside the
baselines fitted under the same factor.

A study is a folder, and `Study` is its only writer:

    study.json      the definition (a StudySpec) and, per run, its level, seed, tables and settings
    tables/         the rows every run shares (test.parquet, val.parquet) and each run's own training rows; a run
                    whose factor changes its validation or test rows too (fewer rows, renamed columns, a narrower
                    range) has its own. Parquet, so that every column reads back with the type it had
    runs/           one ordinary run folder per level and seed (runs.Run writes them)
    study.log       the output of the study's process, when the web app launched it
    process.json    that process (pid and start time)
    stop-requested  present once a stop of the whole study was asked for; the study starts no further run

Every run of a study has the same test rows. The factor changes only what the paper changed: how many training rows
(sample efficiency), their labels (label noise: never the validation or test rows), the feature names (permuted
across columns, the values left in place) or the training range (extrapolation: the ends of a 1-D regression's
range are held out of training). The "vary-setting" study changes one training setting and nothing in the data.
"""

import contextlib
import fcntl
import math
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from lift_core import data
from lift_core.baselines import check_names
from lift_core.config import SETTINGS, TrainConfig
from lift_core.errors import LiftError
from lift_core.files import read_json, write_json_atomically
from lift_core.runs import Run

KINDS = ("sample-efficiency", "label-noise", "feature-names", "extrapolation", "vary-setting")
NOISE_MODES = ("random", "systematic")
NAME_LEVELS = ("none", "shuffled", "correct")
DEFAULT_LEVELS = {
    "sample-efficiency": [0.05, 0.1, 0.2, 0.5, 1.0],
    "label-noise": [0.0, 0.05, 0.1, 0.2],
    "feature-names": list(NAME_LEVELS),
    "extrapolation": [0.0, 0.1, 0.2, 0.3],
    "vary-setting": [],
}
# What each kind's levels are, on the curve's axis and in the CLI's flag.
FACTORS = {
    "sample-efficiency": "share of the training rows used",
    "label-noise": "share of the training labels corrupted",
    "feature-names": "feature names in the prompt",
    "extrapolation": "share of the x range held out of training at each end",
}
LEVEL_FLAGS = {"sample-efficiency": "fractions", "label-noise": "noise", "feature-names": "names",
               "extrapolation": "ends", "vary-setting": "values"}
MIN_TRAIN_ROWS = 10  # the paper's sample-efficiency runs keep at least this many rows, and two classes
MAX_DRAWS = 200  # resampling tries before a sample that meets the guards is declared impossible
# Settings that are the data itself or would change what a run is compared on: never a study's varying setting.
# The seed is the --seeds factor of every study.
NOT_A_FACTOR = ("data", "target", "features", "task", "test_data", "val_data", "test_size", "val_size", "seed",
                "num_processes", "trust_remote_code", "logging_steps", "save_steps")
# Scored on the curve: the baselines report the same metric.
SCORES = {"classification": "accuracy", "regression": "rae"}
LIFT = "LIFT"

STUDIES_FOLDER = "studies"  # a web app's studies, inside its runs folder

_DEFINITION = "study.json"
_TABLES = "tables"
_RUNS = "runs"
_LOG = "study.log"
_PROCESS = "process.json"
_STOP = "stop-requested"
_LOCK = ".running.lock"
# Set by the web app for the study process it launches: that process leaves the stop request as it finds it.
LAUNCHED_ENV = "LIFT_STUDY_LAUNCHED"


@dataclass
class StudySpec:
    kind: str
    base: dict  # TrainConfig fields every run shares: data, target, model, the preset's settings, the seed
    levels: list = field(default_factory=list)  # empty: DEFAULT_LEVELS of the kind
    seeds: int = 1  # each level is run with seeds base seed, base seed + 1, ...
    noise_mode: str = "random"  # label-noise: "random" (to another class, uniformly) or "systematic" (k to k+1)
    setting: str = ""  # vary-setting: the TrainConfig field that varies
    baselines: list = field(default_factory=list)  # fitted beside each run (baselines.py's names); empty: all

    def __post_init__(self):
        self.levels = list(self.levels) or list(DEFAULT_LEVELS.get(self.kind, []))

    def base_config(self) -> TrainConfig:
        return TrainConfig.from_dict(self.base)

    def factor(self) -> str:
        if self.kind == "vary-setting":
            return (SETTINGS[self.setting].metadata["label"] or self.setting) if self.setting in SETTINGS else ""
        return FACTORS.get(self.kind, "")

    def check(self) -> None:
        """Refuses a definition that cannot make a study, saying what to change."""
        if self.kind not in KINDS:
            raise LiftError(f"Unknown study '{self.kind}'. Choose one of: {', '.join(KINDS)}.")
        if isinstance(self.seeds, bool) or not isinstance(self.seeds, int) or not 1 <= self.seeds <= 20:
            raise LiftError(f"The number of seeds must be a whole number from 1 to 20 (got {self.seeds!r}).")
        if self.noise_mode not in NOISE_MODES:
            raise LiftError(f"Unknown label-noise mode '{self.noise_mode}'. Choose {' or '.join(NOISE_MODES)}.")
        if self.kind == "vary-setting":
            self._check_setting()
        self.levels = self._checked_levels()
        self.base_config().check()
        if self.base_config().num_processes != 1:
            raise LiftError("A study trains each run in one process; to use several GPUs, train several runs at "
                            "once (--parallel).")

    def _check_setting(self) -> None:
        settable = [name for name in SETTINGS if name not in NOT_A_FACTOR]
        if self.setting not in settable:
            raise LiftError(f"Choose the setting to vary (--setting), one of: {', '.join(settable)}.")

    def _checked_levels(self) -> list:
        if not self.levels:
            raise LiftError(f"Give the levels of the study (--{LEVEL_FLAGS[self.kind]}), separated by commas.")
        levels = self._parsed_levels()
        if len(set(map(repr, levels))) != len(levels):
            raise LiftError("Each level of a study must be different; a level is listed twice.")
        return levels

    def _parsed_levels(self) -> list:
        if self.kind == "feature-names":
            unknown = [level for level in self.levels if level not in NAME_LEVELS]
            if unknown:
                raise LiftError(f"Unknown feature-names level '{unknown[0]}'. Use: {', '.join(NAME_LEVELS)}.")
            return list(self.levels)
        if self.kind == "vary-setting":
            values = [setting_value(self.setting, level) for level in self.levels]
            numbers = all(isinstance(value, (int, float)) and not isinstance(value, bool) for value in values)
            return sorted(values) if numbers else values  # a curve over numbers runs left to right
        low, high, meaning = {"sample-efficiency": (0, 1, "a share of the training rows in (0, 1]"),
                              "label-noise": (0, 1, "a share of the labels in [0, 1)"),
                              "extrapolation": (0, 0.5, "a share of the range in [0, 0.5) at each end")}[self.kind]
        levels = [_number(level, meaning) for level in self.levels]
        for level in levels:
            if not (low < level <= high if self.kind == "sample-efficiency" else low <= level < high):
                raise LiftError(f"Each level must be {meaning} (got {level:g}).")
        return sorted(levels)


def levels_text(levels: list) -> str:
    """Levels as a person types them: "0.05,0.1,1", "none,shuffled"."""
    return ",".join(f"{level:g}" if isinstance(level, float) else str(level) for level in levels)


def setting_value(name: str, text):
    """A level of a vary-setting study, read as the setting's type ("1e-3" for the learning rate is 0.001)."""
    default = SETTINGS[name].default
    if not isinstance(text, str):
        return text
    try:
        if isinstance(default, bool):
            return {"true": True, "false": False}[text.strip().lower()]
        if isinstance(default, int):
            return int(text)
        if isinstance(default, float):
            return float(text)
    except (KeyError, ValueError):
        raise LiftError(f"'{text}' is not a value of {name}: give "
                        f"{'true or false' if isinstance(default, bool) else type(default).__name__} values.")
    return text.strip()


def _number(level, meaning: str) -> float:
    try:
        value = float(level)
    except (TypeError, ValueError):
        raise LiftError(f"Each level must be {meaning}, not {level!r}.")
    if not math.isfinite(value):
        raise LiftError(f"Each level must be {meaning}, not {level!r}.")
    return value


# ---- the rows of each run ---------------------------------------------------------------------------------

def subsample(frame: pd.DataFrame, fraction: float, dataset: data.Dataset, rng) -> pd.DataFrame:
    """`fraction` of the training rows, at least MIN_TRAIN_ROWS; a classification sample is drawn again until it
    holds two classes, and every class where it has a row for each (a class with no training row could not be
    answered, and its validation and test rows would be refused)."""
    n_rows = min(len(frame), max(MIN_TRAIN_ROWS, round(fraction * len(frame))))
    if n_rows >= len(frame):
        return frame.reset_index(drop=True)
    classes = frame[dataset.target].nunique() if dataset.task == "classification" else 0
    if classes > n_rows:
        raise LiftError(f"A share of {fraction:g} keeps {n_rows} training rows, fewer than the {classes} classes: "
                        "each class needs a training row. Use a larger share.")
    for _ in range(MAX_DRAWS):
        sample = frame.iloc[np.sort(rng.choice(len(frame), n_rows, replace=False))]
        if sample[dataset.target].nunique() >= max(2, classes) or not classes:
            return sample.reset_index(drop=True)
    raise LiftError(f"{MAX_DRAWS} samples of {n_rows} training rows (a share of {fraction:g}) never held every "
                    "class. Use a larger share.")


def corrupt_labels(frame: pd.DataFrame, rate: float, mode: str, dataset: data.Dataset, rng) -> pd.DataFrame:
    """round(rate × rows) training labels changed: to another class drawn uniformly ("random"), or class k to class
    k+1 of the sorted classes, the last to the first ("systematic"). Only the frame given is changed."""
    if dataset.task != "classification":
        raise LiftError("The label-noise study corrupts class labels: it needs a classification target.")
    corrupted = frame.copy()
    changed = rng.choice(len(frame), round(rate * len(frame)), replace=False)
    codes = frame[dataset.target].map({label: code for code, label in enumerate(dataset.classes)}).to_numpy()
    count = len(dataset.classes)
    shift = np.ones(len(changed), dtype=int) if mode == "systematic" else rng.integers(1, count, len(changed))
    column = corrupted.columns.get_loc(dataset.target)
    corrupted.iloc[changed, column] = [dataset.classes[code] for code in (codes[changed] + shift) % count]
    return corrupted


def shuffled_names(features: list[str], rng) -> dict[str, str]:
    """Each feature's column renamed to another feature's name: a permutation that leaves no name in place, so
    every value is read under a wrong name while the values themselves stay in their columns."""
    if len(features) < 2:
        raise LiftError("Shuffling feature names needs at least two features; this table has one.")
    while True:
        order = rng.permutation(len(features))
        if not (order == np.arange(len(features))).any():
            return {name: features[position] for name, position in zip(features, order)}


def held_out_range(values: pd.Series, share: float) -> tuple[float, float]:
    """The training range of an extrapolation level: the data's range less `share` of its width at each end."""
    low, high = float(values.min()), float(values.max())
    width = high - low
    return low + share * width, high - share * width


def wide_range(low: float, high: float) -> tuple[float, float]:
    """Where an extrapolation is drawn, as in the paper: (lb − (ub − lb)/2, ub + (ub − lb)/2)."""
    return low - (high - low) / 2, high + (high - low) / 2


@dataclass
class PlannedRun:
    name: str
    level: object
    seed: int  # the run's seed: the base seed plus the seed's index
    splits: data.Splits
    overrides: dict  # TrainConfig fields this run sets beyond the base (a template, the varying setting)
    own: tuple[str, ...] = ()  # which of "val" and "test" differ from the shared rows
    renamed: dict = field(default_factory=dict)  # feature-names: each feature's name -> the name the run gives it


def plan(spec: StudySpec) -> tuple[data.Dataset, data.Splits, list[PlannedRun]]:
    """The study's data, its shared split, and every run with its rows, in the order they train: each seed's levels
    in turn, so the first seed's whole curve comes first."""
    spec.check()
    base = spec.base_config()
    dataset, shared = data.load_splits(base)
    _check_kind_fits(spec, dataset)
    planned = []
    for index in range(spec.seeds):
        for position, level in enumerate(spec.levels):
            rng = np.random.default_rng([base.seed, index, position])
            splits, overrides, own = _rows_of(spec, dataset, shared, level, rng)
            renamed = dict(zip(dataset.features, splits.train.columns.drop(dataset.target)))
            planned.append(PlannedRun(_run_name(spec, level, index), level, base.seed + index, splits,
                                      {**overrides, "task": dataset.task, "seed": base.seed + index}, own,
                                      {name: shown for name, shown in renamed.items() if name != shown}))
    names = [run.name for run in planned]
    if len(set(names)) != len(names):
        raise LiftError("Two levels are too close to tell apart in a run's name; make the levels differ more.")
    return dataset, shared, planned


def _check_kind_fits(spec: StudySpec, dataset: data.Dataset) -> None:
    check_names(spec.baselines or None, dataset.task)
    if spec.kind == "label-noise" and dataset.task != "classification":
        raise LiftError("The label-noise study corrupts class labels: it needs a classification target.")
    if spec.kind == "extrapolation":
        numeric = pd.api.types.is_numeric_dtype(dataset.frame[dataset.features[0]])
        if dataset.task != "regression" or len(dataset.features) != 1 or not numeric:
            raise LiftError("The extrapolation study is for a 1-D regression: a numeric target and exactly one "
                            "numeric feature (choose it as the only feature).")
    if spec.kind == "feature-names" and spec.base_config().template == "custom":
        raise LiftError("The feature-names study writes the names itself; choose the lift, names or sentence "
                        "template instead of a custom one.")


def _rows_of(spec: StudySpec, dataset: data.Dataset, shared: data.Splits, level, rng):
    """(splits, settings, which of val and test are the run's own) of one level."""
    if spec.kind == "sample-efficiency":
        # The validation rows shrink with the training rows: the level is a share of all the rows LIFT learns and
        # chooses its best step from, not of the training rows alone.
        validation = shared.val.sample(n=max(1, round(level * len(shared.val))), random_state=rng) \
            if len(shared.val) else shared.val
        return data.Splits(subsample(shared.train, level, dataset, rng), validation.reset_index(drop=True),
                           shared.test), {}, ("val",)
    if spec.kind == "label-noise":
        train = corrupt_labels(shared.train, level, spec.noise_mode, dataset, rng)
        return data.Splits(train, shared.val, shared.test), {}, ()
    if spec.kind == "feature-names":
        template = spec.base_config().template
        named = template if template in ("names", "sentence") else "names"
        if level == "none":
            return shared, {"template": "lift"}, ()
        if level == "correct":
            return shared, {"template": named}, ()
        names = shuffled_names(dataset.features, rng)
        renamed = data.Splits(*(part.rename(columns=names) for part in (shared.train, shared.val, shared.test)))
        return renamed, {"template": named, "features": None}, ("val", "test")
    if spec.kind == "extrapolation":
        feature = dataset.features[0]
        low, high = held_out_range(dataset.frame[feature], level)
        inside = [part[part[feature].between(low, high)].reset_index(drop=True) for part in (shared.train, shared.val)]
        if len(inside[0]) < MIN_TRAIN_ROWS:
            raise LiftError(f"Holding out {level:g} of the range at each end leaves {len(inside[0])} training rows; "
                            f"at least {MIN_TRAIN_ROWS} are needed. Use a smaller share.")
        if inside[1].empty and not shared.val.empty:
            raise LiftError(f"Holding out {level:g} of the range at each end leaves no validation row inside it. "
                            "Use a smaller share, or a larger validation fraction.")
        return data.Splits(inside[0], inside[1], shared.test), {}, ("val",)
    return shared, {spec.setting: level}, ()


def _run_name(spec: StudySpec, level, index: int) -> str:
    prefix = {"sample-efficiency": "fraction", "label-noise": f"noise-{spec.noise_mode}", "feature-names": "names",
              "extrapolation": "ends", "vary-setting": spec.setting}[spec.kind]
    text = f"{level:g}" if isinstance(level, float) else str(level)
    return f"{prefix}-{text}-seed{index}".replace("/", "-").replace(" ", "-")


# ---- the study folder ----------------------------------------------------------------------------------------

class Study:
    def __init__(self, path):
        self.path = Path(path)

    @property
    def name(self) -> str:
        return self.path.name

    def exists(self) -> bool:
        return (self.path / _DEFINITION).is_file()

    def definition(self) -> dict:
        saved = read_json(self.path / _DEFINITION)
        if not isinstance(saved, dict):
            raise LiftError(f"'{self.path}' holds no study: give the --out folder of an earlier `study`.")
        return saved

    def spec(self) -> StudySpec:
        return StudySpec(**self.definition()["spec"])

    def run_names(self) -> list[str]:
        return list(self.definition()["runs"])

    def run(self, name: str) -> Run:
        return Run(self.path / _RUNS / name)

    def runs(self) -> list[Run]:
        return [self.run(name) for name in self.run_names()]

    def planned(self, name: str) -> dict:
        """A run's level, seed, tables and settings."""
        return self.definition()["runs"][name]

    def run_config(self, name: str) -> TrainConfig:
        planned = self.planned(name)
        tables = {role: str(self.path / path) for role, path in planned["tables"].items()}
        return TrainConfig.from_dict({**self.spec().base, **planned["overrides"], **tables})

    def save_run_settings(self, name: str) -> Path:
        """The run's settings as a file, for a `train --config` process of its own (runs trained at once)."""
        path = self.path / _TABLES / f"{name}-settings.json"
        write_json_atomically(path, asdict(self.run_config(name)))
        return path

    def states(self) -> dict[str, str]:
        """Each run's state; "waiting" for a run not created yet."""
        return {run.name: run.reconcile().get("state", "waiting") if run.exists() else "waiting"
                for run in self.runs()}

    def pending(self) -> list[str]:
        """The runs still to train: all but the completed ones and the failed ones that cannot be resumed."""
        return [run.name for run in self.runs() if _needs_training(run)]

    def finished(self) -> bool:
        return not self.pending()

    def created(self) -> float:
        return self.definition().get("created", 0.0)

    # The study's process, and stopping it

    @contextlib.contextmanager
    def running(self):
        """Held by the process that trains the study, for its whole life: a second one is refused."""
        with open(self.path / _LOCK, "w") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise LiftError(f"Study '{self.path}' is already running in another process.") from None
            yield

    def request_stop(self) -> None:
        (self.path / _STOP).touch()

    def stop_requested(self) -> bool:
        return (self.path / _STOP).exists()

    def clear_stop(self) -> None:
        (self.path / _STOP).unlink(missing_ok=True)

    def record_process(self, identity: dict) -> None:
        write_json_atomically(self.path / _PROCESS, identity)

    def process(self) -> dict:
        return read_json(self.path / _PROCESS) or {}

    def open_log(self, mode: str):
        return open(self.path / _LOG, mode)

    def log_tail(self, n_lines: int = 20) -> str:
        with contextlib.suppress(OSError):
            return "\n".join((self.path / _LOG).read_text(errors="replace").splitlines()[-n_lines:])
        return ""


def _needs_training(run: Run) -> bool:
    state = run.reconcile().get("state") if run.exists() else None
    return state != "completed" and not (state == "failed" and run.resume_problem())


def create_study(folder, spec: StudySpec) -> Study:
    """The study folder with its tables and definition; refused, with nothing left behind, when the definition or
    the data cannot make every run."""
    study = Study(folder)
    if study.exists() or (study.path.exists() and any(study.path.iterdir())):
        raise LiftError(f"'{folder}' already holds files. Choose a new folder for the study (--out).")
    dataset, shared, planned = plan(spec)
    try:
        runs = _write_tables(study, spec, shared, planned)
    except BaseException:
        shutil.rmtree(study.path, ignore_errors=True)
        raise
    # Written last: a folder without its definition is a study that was never made.
    write_json_atomically(study.path / _DEFINITION, {"spec": asdict(spec), "runs": runs, "created": time.time(),
                                                     "task": dataset.task, "target": dataset.target,
                                                     "features": dataset.features, "classes": dataset.classes,
                                                     "ranges": _numeric_ranges(dataset)})
    return study


def _table_path(run: PlannedRun, role: str) -> str:
    """Where a run's rows of a role are, in the study folder: its own, or the study's shared ones."""
    own = role == "train" or role in run.own
    return f"{_TABLES}/{run.name}-{role}.parquet" if own else f"{_TABLES}/{role}.parquet"


def _write_tables(study: Study, spec: StudySpec, shared: data.Splits, planned: list[PlannedRun]) -> dict:
    """Every run's tables, as Parquet (each column keeps its type: a label "01" or "NA" stays one), each run then
    checked as its training will check it, reading them back; returns each run's entry of study.json."""
    from lift_core.training import check_training_inputs

    (study.path / _TABLES).mkdir(parents=True, exist_ok=True)
    for role, part in (("test", shared.test), ("val", shared.val)):
        part.to_parquet(study.path / _TABLES / f"{role}.parquet", index=False)
    runs = {}
    for run in planned:
        for role in ("train", *run.own):
            getattr(run.splits, role).to_parquet(study.path / _table_path(run, role), index=False)
        separate = {field_name: _table_path(run, role) for role, field_name in (("val", "val_data"),
                                                                                ("test", "test_data"))
                    if not getattr(run.splits, role).empty}
        runs[run.name] = {"level": run.level, "seed": run.seed, "overrides": run.overrides, "renamed": run.renamed,
                          "tables": {"data": _table_path(run, "train"), **separate}}
        paths = {field_name: str(study.path / path) for field_name, path in runs[run.name]["tables"].items()}
        check_training_inputs(TrainConfig.from_dict({**spec.base, **run.overrides, **paths}))
    return runs


def _numeric_ranges(dataset: data.Dataset) -> dict[str, list[float]]:
    """Each numeric feature's range over all the study's rows: where its maps are drawn."""
    frame = dataset.frame
    return {name: [float(frame[name].min()), float(frame[name].max())] for name in dataset.features
            if pd.api.types.is_numeric_dtype(frame[name])}


def studies_dir(runs_dir) -> Path:
    return Path(runs_dir) / STUDIES_FOLDER


def list_studies(folder) -> list[Study]:
    """The studies of a folder, newest first."""
    root = Path(folder)
    studies = [Study(path) for path in root.iterdir()] if root.is_dir() else []
    # A definition that cannot be read (cut off, or hand-edited) is no study to list or continue.
    readable = [study for study in studies if isinstance(read_json(study.path / _DEFINITION), dict)]
    return sorted(readable, key=Study.created, reverse=True)


def estimate_seconds(spec: StudySpec, runs_dir, calibrate: bool = False) -> float | None:
    """The whole study's duration, the sum of each run's duration estimate (estimate.py); with `calibrate`, a model
    never run here is timed first, once. None when a run's speed is unknown here."""
    from lift_core.estimate import estimate_duration

    dataset, _, planned = plan(spec)
    total = 0.0
    for run in planned:
        config = TrainConfig.from_dict({**spec.base, **run.overrides})
        features = list(run.splits.train.columns.drop(dataset.target))
        run_dataset = data.Dataset(run.splits.train, dataset.target, features, dataset.task, dataset.classes, 0)
        seconds = estimate_duration(config, runs_dir, calibrate=calibrate,
                                    splits_loaded=(run_dataset, run.splits)).seconds
        if seconds is None:
            return None
        total += seconds
    return total

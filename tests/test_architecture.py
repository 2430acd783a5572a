"""The shape of the code: settings declared once and followed everywhere, no import cycles, a torch-free
`import lift_core`, tabs that import no other tab nor the CLI, short functions, and the run decisions the tabs
used to make by hand now in the engine."""

import ast
import inspect
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from helpers import REPO_ROOT, put_in_state

from lift_core import cli
from lift_core.config import DEFAULTS, SETTINGS, TrainConfig, split_list
from lift_core.errors import LiftError
from lift_core.estimators import PREDICT_SETTINGS, TRAIN_SETTINGS, LiftClassifier, LiftRegressor
from lift_core.launcher import training_command
from lift_core.predict import predict_table
from lift_core.access import RunAccess
from lift_core.runs import create_run

PACKAGE = Path(REPO_ROOT) / "lift_core"
UI_PACKAGE = Path(REPO_ROOT) / "lift_ui"
MAX_FUNCTION_LINES = 60


# ---------- one settings model ----------

def train_parser_actions() -> dict:
    commands = next(action for action in cli.build_parser()._actions if action.dest == "command")
    return {action.dest: action for action in commands.choices["train"]._actions}


def test_every_setting_is_a_train_flag_with_its_help_and_no_default_of_its_own():
    actions = train_parser_actions()
    assert set(SETTINGS) <= set(actions)
    for name, setting in SETTINGS.items():
        action = actions[name]
        assert setting.metadata["help"] in action.help, name
        # Without a default of its own, an absent flag leaves TrainConfig's default in place.
        assert action.default is None, name
        if setting.metadata["choices"]:
            assert tuple(action.choices) == setting.metadata["choices"], name


def test_a_bare_train_command_gives_the_default_config():
    args = cli.build_parser().parse_args(["train", "--data", "t.csv", "--target", "y", "--out", "run"])
    config = cli._train_config(args)
    assert {name: getattr(config, name) for name in SETTINGS if name != "data"} == {
        name: getattr(DEFAULTS, name) for name in SETTINGS if name != "data"} | {"target": "y"}


def test_train_command_round_trips_every_changed_setting_through_the_parser():
    changed = TrainConfig(data="/t.csv", target="y", features=["a", "b"], task="regression", decimals=3,
                          quant="none", lora_r=4, epochs=2.5, max_steps=7, lr=0.01, warmup=0.1, seed=3,
                          early_stopping_patience=2, eval_temperature=0.3, trust_remote_code=True)
    command = training_command(changed, "/runs/x")
    parsed = cli._train_config(cli.build_parser().parse_args(command[3:]))
    assert parsed == changed


def test_the_estimators_take_their_parameters_and_defaults_from_train_config():
    for estimator in (LiftClassifier, LiftRegressor):
        parameters = inspect.signature(estimator.__init__).parameters
        assert list(parameters)[1:] == [*TRAIN_SETTINGS, *PREDICT_SETTINGS, "run_dir"]
        for parameter, setting in {**{name: name for name in TRAIN_SETTINGS}, **PREDICT_SETTINGS}.items():
            assert parameters[parameter].default == getattr(DEFAULTS, setting), parameter
            assert SETTINGS[setting].metadata["help"] in estimator.__doc__, parameter


def test_the_train_and_prompt_tabs_show_each_labelled_setting_with_its_default_and_help(tmp_path):
    from lift_ui import build_app

    app = build_app(tmp_path / "runs", default_model="tiny", default_quant="none")
    by_label = {}
    for block in app.blocks.values():
        by_label.setdefault(getattr(block, "label", None), []).append(block)
    labelled = {name: setting for name, setting in SETTINGS.items() if setting.metadata["label"]}
    assert {"lr", "epochs", "max_steps", "warmup", "batch_size", "lora_r", "decimals", "template"} <= set(labelled)
    for name, setting in labelled.items():
        label, help_text = setting.metadata["label"], setting.metadata["help"]
        if name in ("template", "template_text"):  # a radio of template kinds, and free text shown on demand
            assert by_label.get(label), name
            continue
        if name == "num_processes":  # only with several GPUs, defaulting to all of them (test_ui_train_extras.py)
            continue
        # Another tab may use the same label (the Data tab's seed of a synthetic set): the help tells them apart.
        control = next((block for block in by_label.get(label, []) if help_text in (block.info or "")), None)
        assert control is not None, f"no control labelled {label!r} with the help of {name}"
        assert control.value == ("none" if name == "quant" else getattr(DEFAULTS, name)), name


def test_split_list_reads_what_people_type():
    assert split_list(" a, b,,c ,") == ["a", "b", "c"]
    assert TrainConfig(lora_targets="q_proj, v_proj").lora_settings().target_modules == ["q_proj", "v_proj"]
    assert TrainConfig().lora_settings().target_modules == "all-linear"


# ---------- imports ----------

def top_level_imports(path: Path) -> set[str]:
    """The lift_core modules a module imports when it is itself imported (not those inside functions)."""
    imported = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("lift_core"):
            if node.module == "lift_core":
                imported |= {f"lift_core.{alias.name}" for alias in node.names}
            else:
                imported.add(node.module)
        elif isinstance(node, ast.Import):
            imported |= {alias.name for alias in node.names if alias.name.startswith("lift_core.")}
    return imported


def test_lift_core_has_no_import_cycles():
    modules = {f"lift_core.{path.stem}": path for path in PACKAGE.glob("*.py") if path.stem != "__init__"}
    graph = {name: top_level_imports(path) & set(modules) for name, path in modules.items()}
    assert graph["lift_core.training"] >= {"lift_core.config", "lift_core.evaluation"}  # the graph is real
    finished, on_path = set(), []

    def visit(module):
        if module in on_path:
            pytest.fail("import cycle: " + " -> ".join(on_path[on_path.index(module):] + [module]))
        if module in finished:
            return
        on_path.append(module)
        for imported in graph[module]:
            visit(imported)
        on_path.pop()
        finished.add(module)

    for module in graph:
        visit(module)


def run_python(code: str) -> str:
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_importing_lift_core_and_the_settings_loads_no_torch():
    loaded = run_python("import sys, lift_core, lift_core.cli, lift_core.config, lift_core.presets, "
                        "lift_core.runs, lift_core.estimators; lift_core.LiftClassifier; "
                        "print(sorted(name for name in ('torch', 'transformers', 'peft') if name in sys.modules))")
    assert loaded == "[]"


def test_the_synth_command_loads_no_torch(tmp_path):
    out = tmp_path / "moons.csv"
    loaded = run_python(f"import sys; from lift_core.cli import main; "
                        f"code = main(['synth', '--kind', 'moons', '--n', '20', '--out', {str(out)!r}]); "
                        "print(code, 'torch' in sys.modules)")
    assert loaded.splitlines()[-1] == "0 False"
    assert len(pd.read_csv(out)) == 20


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports (the code imports absolutely), at its top or inside a function; `from package
    import name` counts as importing package.name too, which is how the app imports its tab modules."""
    imported = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            imported |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return imported


def ui_modules() -> dict[str, set[str]]:
    return {module_name(path): imported_modules(path) for path in sorted(UI_PACKAGE.rglob("*.py"))}


def test_no_ui_module_imports_a_tab_module():
    """What two tabs share lives in a shared module (lift_ui/common.py, tables.py...); only the app, in
    lift_ui/__init__.py, assembles the tabs."""
    tabs = {module_name(path) for path in (UI_PACKAGE / "tabs").glob("*_tab.py")}
    modules = ui_modules()
    assert tabs and modules["lift_ui"] >= tabs  # the check sees the imports that are there
    importing = {name: sorted(imported & tabs) for name, imported in modules.items()
                 if name != "lift_ui" and imported & tabs}
    assert not importing


def test_the_ui_imports_nothing_from_the_cli():
    """The CLI is a front end like the web app: the UI takes what it needs from the engine's own modules."""
    importing = [name for name, imported in ui_modules().items() if "lift_core.cli" in imported]
    assert not importing


# ---------- short functions ----------

def test_no_function_in_the_engine_or_the_ui_is_longer_than_60_lines():
    too_long = []
    for path in sorted([*PACKAGE.rglob("*.py"), *UI_PACKAGE.rglob("*.py")]):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    too_long.append(f"{path.relative_to(REPO_ROOT)}:{node.lineno} {node.name}: {lines} lines")
    assert not too_long


# ---------- run decisions in the engine ----------

def test_runs_are_found_only_by_a_listed_name(tmp_path):
    runs_dir = tmp_path / "runs"
    put_in_state(create_run(runs_dir / "done", {"model": "tiny"}), "completed")
    (runs_dir / "done" / "adapter").mkdir()
    put_in_state(create_run(runs_dir / "no-adapter", {"model": "tiny"}), "failed")
    access = RunAccess(runs_dir)
    assert access.find("done").name == "done"
    assert access.trained_run_names() == ["done"]
    assert access.finished_trained_run("done").name == "done"
    for name, problem in (("../runs/done", "no run named"), ("no-adapter", "no trained adapter"),
                          (None, "Choose a run")):
        with pytest.raises(LiftError, match=problem):
            access.finished_trained_run(name)


def test_predicting_a_table_keeps_its_columns_and_replaces_old_predictions(tiny_run):
    _, run = tiny_run
    table = run.split("test").head(4).assign(note="kept", y_pred="stale")
    predicted = predict_table(run, table)
    assert list(predicted.columns[:len(table.columns) - 1]) == [c for c in table.columns if c != "y_pred"]
    assert predicted.columns.tolist().count("y_pred") == 1 and "stale" not in predicted["y_pred"].tolist()
    assert (predicted["note"] == "kept").all()
    with pytest.raises(LiftError, match="lacks the feature column"):
        predict_table(run, table.drop(columns=[run.dataset_info().features[0]]))

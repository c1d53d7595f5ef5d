"""The job layer: one error family mapped to exit codes in one place, job functions that return
their results, and command lines that only parse, call and print."""

import ast
import json

import pytest

import mug_errors
from conftest import ROOT, cli_modules, module_name, run_main
from mug_errors import CheckFailed, MugError, OutputExists, SettingsError, command
from torch_trainer.training import jobs
from torch_trainer.settings.recipes import load_recipe
from torch_trainer.classifier.report import evaluate_checkpoint
from torch_trainer.training.data import load_data

CLI_PACKAGES = ("torch_trainer", "convert", "trainer", "check_deployed_model", "bench")


def test_command_maps_the_family_to_exit_codes_and_lets_bugs_through(capsys):
    @command
    def fails(error):
        raise error

    assert fails(SettingsError("--epochs must be at least 1")) == 2
    assert capsys.readouterr().err == "error: --epochs must be at least 1\n"
    assert fails(CheckFailed("the export disagrees")) == 1  # the check ran; its answer is no
    with pytest.raises(KeyError):  # not the family: a bug, with its traceback
        fails(KeyError("x"))
    with pytest.raises(AssertionError):
        fails(AssertionError("a bug's assert is not a parity miss"))
    assert command(lambda: None)() == 0


def test_every_error_the_project_defines_is_in_the_family():
    """A command catches MugError and nothing else: an error class outside the family would escape
    as a traceback. The scan finds each class the packages define on an Exception."""
    found = {}
    for package in ("serving", "torch_trainer", "convert", "check_deployed_model", "trainer"):
        for path in sorted((ROOT / package).rglob("*.py")):
            for node in ast.parse(path.read_text()).body:
                if isinstance(node, ast.ClassDef) and any(getattr(b, "id", "").endswith(("Error", "Unavailable", "Failed"))
                                                          for b in node.bases):
                    module = __import__(module_name(path), fromlist=[node.name])
                    found[node.name] = getattr(module, node.name)
    assert {"DatasetError", "RecipeError", "WeightsUnavailable", "ParityError", "RequestError", "DeployError"} <= set(found)
    assert all(issubclass(cls, MugError) for cls in found.values()), found
    assert found["ParityError"].exit_code == 1 and found["DatasetError"].exit_code == 2
    # a missing file is still a FileNotFoundError, a bad setting a ValueError, for callers that catch those
    assert issubclass(mug_errors.NotFound, FileNotFoundError) and issubclass(SettingsError, ValueError)


def test_command_lines_catch_nothing_and_stay_thin():
    """Every CLI's main is wrapped in `command` (the one place errors become exit codes), holds no
    try/except of its own, and is argument handling and printing only."""
    paths = cli_modules(CLI_PACKAGES)
    assert len(paths) >= 19
    for path in paths:
        tree = ast.parse(path.read_text())
        main = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "main")
        if path.stem != "verify":  # run by convert.compare in a fresh process: its exit status is all it says
            assert [ast.unparse(d) for d in main.decorator_list] == ["command"], path
        assert not any(isinstance(n, ast.Try) for n in ast.walk(main)), path
        assert main.end_lineno - main.lineno < 40, (path, main.end_lineno - main.lineno)


def test_train_job_returns_its_metrics_and_never_overwrites(data_root, tmp_path):
    run = load_recipe("exposure-ens3", {"epochs": 1, "ensemble": 1, "weights": "none", "batch_size": 16})
    asked = run.record()
    metrics = jobs.train(run, tmp_path / "run", data_root / "train", data_root / "eval", log=lambda *a: None)
    assert metrics == json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert (metrics["num_train"], metrics["num_val"]) == (96, 32) and metrics["complete"]
    # the plan is what was asked, unchanged; what the run found is recorded beside it (what --resume reads back)
    assert run.record() == asked == json.loads((tmp_path / "run" / "config.json").read_text()) == metrics["run"]
    found = json.loads((tmp_path / "run" / "data.json").read_text())
    assert found == metrics["data"] == {"train_dirs": [str((data_root / "train").resolve())],
                                        "val_dir": str((data_root / "eval").resolve()), "val_files": [],
                                        "held_out_by": None}
    before = (tmp_path / "run" / "model.pt").read_bytes()
    with pytest.raises(OutputExists, match="--overwrite"):
        jobs.train(run, tmp_path / "run", data_root / "train")
    assert (tmp_path / "run" / "model.pt").read_bytes() == before
    report = evaluate_checkpoint(tmp_path / "run" / "model.pt", data_root / "eval")
    assert report["images"] == 32 and report["accuracy"] == pytest.approx(metrics["final_val_accuracy"])


def test_load_data_holds_out_whole_groups_without_a_validation_folder(data_root):
    run = load_recipe("exposure-ens3")
    train, val, names, found = load_data(run, data_root / "train", hold_out=0.25, log=lambda *a: None)
    assert len(train) + len(val) == 96 and 12 <= len(val) <= 40 and names == ["0white", "1black", "2blue", "3transparent"]
    assert not set(train.indices) & set(val.indices)
    assert found.val_dir is None and sorted(found.val_files) == sorted(str(train.base.paths[i].resolve())
                                                                       for i in val.indices)
    # what was found holds out the same photos again, whatever hold_out says
    again = load_data(run, data_root / "train", val_files=found.val_files, log=lambda *a: None)
    assert again[1].indices == val.indices and again[3] == found
    assert found.held_out_by == "bursts"
    logged = []
    train, val, _, found = load_data(run, data_root / "train", hold_out=0.25, held_out_by="shoots", log=logged.append)
    assert len(train) + len(val) == 96 and val.indices and found.held_out_by == "shoots"
    assert "shoots of its classes" in logged[0]
    with pytest.raises(ValueError, match="held_out_by: 'shoot' is not one of bursts, shoots"):
        load_data(run, data_root / "train", hold_out=0.25, held_out_by="shoot")
    train, val, _, found = load_data(load_recipe("exposure-ens3"), [data_root / "train", data_root / "eval"])
    assert len(train) == 128 and val is None and len(found.train_dirs) == 2 and not found.val_files


def test_a_resumed_hold_out_run_validates_on_its_recorded_images_and_never_trains_on_them(data_root, tmp_path,
                                                                                          monkeypatch):
    settings = {"epochs": 2, "ensemble": 1, "batch_size": 32, "amp": "off"}
    seen = []
    real = jobs.train_run
    monkeypatch.setattr(jobs, "train_run", lambda c, d, train, val, *a, **k: seen.append((train, val)) or real(
        c, d, train, val, *a, **k))
    run = tmp_path / "run"
    jobs.train(load_recipe("exposure-ens3", settings), run, data_root / "train", hold_out=0.25, stop_after=1, log=lambda *a: None)
    recorded = json.loads((run / "data.json").read_text())["val_files"]
    assert 12 <= len(recorded) <= 40
    metrics = jobs.resume(run, log=lambda *a: None)
    assert metrics["complete"] and metrics["num_val"] == len(recorded) and metrics["num_train"] == 96 - len(recorded)
    assert metrics["data"]["held_out_by"] == "bursts"
    for train, val in seen:  # the first run and the resumed one alike
        paths = train.base.paths
        assert {str(paths[i].resolve()) for i in val.indices} == set(recorded)
        assert not {str(paths[i].resolve()) for i in train.indices} & set(recorded)


def test_a_job_error_reaches_the_user_as_one_line(tmp_path):
    proc = run_main("torch_trainer.train", "--train-dir", str(tmp_path / "nothing"), "--output-dir", str(tmp_path / "r"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == f"error: {tmp_path / 'nothing'}: data folder does not exist"



def test_a_resumed_families_run_keeps_the_settings_it_started_with(data_root, tmp_path):
    """Recipes change between sessions; a run resumes with the families' settings it recorded."""
    small = {"epochs": 1, "ensemble": 1, "batch_size": 32, "amp": "off"}
    for name in ("a", "b"):
        (tmp_path / f"{name}.json").write_text(json.dumps(small))
    (tmp_path / "both.json").write_text(json.dumps({"families": [str(tmp_path / "a.json"), str(tmp_path / "b.json")]}))
    run = tmp_path / "run"
    first = jobs.train(load_recipe(str(tmp_path / "both.json")), run, data_root / "eval", stop_after=1,
                       log=lambda *a: None)
    assert not first["complete"] and not (run / "b").exists()
    (tmp_path / "b.json").write_text(json.dumps(dict(small, epochs=3)))  # the recipe file changes meanwhile
    metrics = jobs.resume(run, log=lambda *a: None)
    assert metrics["complete"]
    assert json.loads((run / "b" / "metrics.json").read_text())["config"]["epochs"] == 1
    assert [f["name"] for f in json.loads((run / "config.json").read_text())["families"]] == ["a", "b"]

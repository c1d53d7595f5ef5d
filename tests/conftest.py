"""Shared fixtures: a synthetic mug data set drawn with Pillow, a trained run and its export."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from draw_mug import CLASS_NAMES, draw_mug

ROOT = Path(__file__).resolve().parent.parent
# what an export's report must hold within 1e-5 of PyTorch: ONNX Runtime, and the SavedModel through
# both loaders under both of TensorFlow's CPU kernel libraries, on JPEG files and PNG copies
SERVED_MODELS = [f"{loader}-{kernel}" for loader in ("graph", "tf2") for kernel in ("onednn", "eigen")]
EXPORT_CHECKS = ["onnxruntime/files"] + [f"{model}/{case}" for model in SERVED_MODELS for case in ("files", "png")]


def write_dataset(root: Path, per_class: int, seed: int = 0, names=CLASS_NAMES) -> Path:
    """A class-per-folder tree of drawn mugs (JPEG, with one PNG of another size per class)."""
    for label, name in enumerate(names):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            image = draw_mug(label, seed=seed * 10_000 + i)
            if i == 0:
                image.resize((96, 80)).save(folder / f"{i}.png")
            else:
                image.save(folder / f"{i}.jpg", quality=95)
    return root


def run_module(module: str, *args: str, timeout: float = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run `python -m module args` from the repo root, as a user would."""
    return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def run_main(module: str, *args: str) -> subprocess.CompletedProcess:
    """`module`'s `main(args)` in this process, its exit code and printed output as `run_module` gives
    them: for tests of flags and error messages, which need no fresh Python, torch and TensorFlow."""
    import contextlib
    import importlib
    import io
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = importlib.import_module(module).main(list(args))
        except SystemExit as stop:  # argparse's errors
            code = stop.code
    return subprocess.CompletedProcess([module, *args], code, out.getvalue(), err.getvalue())


def cli_modules(packages) -> list[Path]:
    """The command-line modules (those with a `__main__` block) of `packages`, subpackages included."""
    return [path for package in packages for path in sorted((ROOT / package).rglob("*.py"))
            if 'if __name__ == "__main__"' in path.read_text()]


def module_name(path: Path) -> str:
    """The dotted name of a project file ("torch_trainer.training.fit"; a package's __init__ is the package)."""
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@pytest.fixture(scope="session")
def data_root(tmp_path_factory) -> Path:
    """DATA/train (24 per class) and DATA/eval (8 per class), drawn."""
    root = tmp_path_factory.mktemp("mugs")
    write_dataset(root / "train", 24, seed=0)
    write_dataset(root / "eval", 8, seed=1)
    return root


@pytest.fixture(scope="session")
def trained_run(data_root, tmp_path_factory) -> Path:
    """A run folder trained briefly on the drawn data through the real CLI."""
    run = tmp_path_factory.mktemp("run") / "r18"
    proc = run_module("torch_trainer.train", "--recipe", "exposure-ens3", "--train-dir", str(data_root / "train"), "--val-dir",
                      str(data_root / "eval"), "--output-dir", str(run), "--epochs", "6", "--ensemble", "1", "--weights", "none",
                      "--batch-size", "16", "--lr", "3e-3")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run


@pytest.fixture(scope="session")
def export(trained_run, data_root, tmp_path_factory):
    """(SavedModel folder, CLI output) converted from `trained_run` through the real CLI."""
    out = tmp_path_factory.mktemp("export") / "exported_model"
    proc = run_module("convert.to_savedmodel", "--checkpoint", str(trained_run / "model.pt"),
                      "--output-dir", str(out), "--images", str(data_root / "eval"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((out / "assets.extra" / "export_report.json").read_text())
    assert "SavedModel written to" in proc.stdout and f"{report['graph_ops']['Conv2D']} Conv2D" in proc.stdout
    return out, report


@pytest.fixture(scope="session")
def default_job(data_root, tmp_path_factory) -> Path:
    """JOB_DIR of the main job on the drawn data: the default recipe shortened to one ResNet18 (random
    init) and one Lite0 (packaged ImageNet weights) of one epoch each, trained and exported by
    trainer.final_task as gcloud runs it. Shared by the tests of the job, the Lite0 graph and the export."""
    job = tmp_path_factory.mktemp("default-job") / "job"
    proc = run_module("trainer.final_task", "--data-dir", str(data_root), "--job-dir", str(job),
                      "--epochs", "1", "--ensemble", "1", "--batch-size", "16")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return job

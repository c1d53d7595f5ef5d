"""The packages import one way: mug_errors (the error family) under everything, serving and
torch_trainer on it, convert and check_deployed_model on them, trainer on those, bench on top;
no circles between modules."""

import ast
import graphlib

from conftest import ROOT, cli_modules

PACKAGES = ("mug_errors", "serving", "torch_trainer", "convert", "check_deployed_model", "trainer", "bench")
# what each package may import besides itself
ALLOWED = {
    "mug_errors": set(),
    "serving": {"mug_errors"},
    "torch_trainer": {"mug_errors"},
    "convert": {"mug_errors", "serving", "torch_trainer"},
    "check_deployed_model": {"mug_errors", "serving", "torch_trainer"},
    "trainer": {"mug_errors", "serving", "torch_trainer", "convert"},
    "bench": {"mug_errors", "serving", "torch_trainer", "convert", "check_deployed_model", "trainer"},
}


def imports_of(path) -> set[str]:
    """The project modules a file imports, at module level or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return {name for name in found if name.split(".")[0] in PACKAGES}


def project_modules() -> dict[str, set[str]]:
    modules = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).glob("*.py")):
            name = package if path.stem == "__init__" else f"{package}.{path.stem}"
            modules[name] = imports_of(path)
    # "from torch_trainer import distributed" names a module; "from torch_trainer.model import X" does not
    return {name: {i for i in found if i in modules and i != name} for name, found in modules.items()}


def test_no_package_imports_a_higher_layer():
    wrong = [(name, target) for name, found in project_modules().items() for target in found
             if target.split(".")[0] not in ALLOWED[name.split(".")[0]] | {name.split(".")[0]}]
    assert not wrong, wrong


def test_torch_trainer_needs_no_tensorflow():
    for path in (ROOT / "torch_trainer").glob("*.py"):
        tree = ast.parse(path.read_text())
        names = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
        names |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
        assert not {n for n in names if n.split(".")[0] in ("tensorflow", "onnx", "onnx_tf", "onnxruntime")}, path


def test_modules_import_without_a_circle():
    graph = project_modules()
    assert graph["convert.to_savedmodel"] and graph["trainer.final_task"]  # the walk found real edges
    list(graphlib.TopologicalSorter(graph).static_order())  # raises CycleError on a circle


def test_no_module_imports_a_command_line_module():
    """Library code lives in modules nobody runs: a module with a `__main__` block is a CLI, and
    no other project module imports it (tests may)."""
    clis = {f"{path.parent.name}.{path.stem}" for path in cli_modules(PACKAGES)}
    assert {"torch_trainer.train", "convert.to_savedmodel", "trainer.final_task"} <= clis  # the scan sees them
    wrong = [(name, target) for name, found in project_modules().items() for target in found if target in clis]
    assert not wrong, wrong


def test_the_house_stays_lean(monkeypatch):
    """No module over 400 lines, a README of at most 250, at most 35 options to torch_trainer.train."""
    from conftest import run_main
    long = [path for package in PACKAGES + ("tests",) for path in (ROOT / package).glob("*.py")
            if len(path.read_text().splitlines()) > 400]
    assert not long, long
    assert len((ROOT / "README.md").read_text().splitlines()) <= 250
    monkeypatch.setenv("COLUMNS", "400")
    options = [line.split()[0] for line in run_main("torch_trainer.train", "--help").stdout.splitlines()
               if line.startswith("  --") and not line.startswith("  --help")]
    assert "--family" in options and "--resume" in options and len(options) <= 35, options

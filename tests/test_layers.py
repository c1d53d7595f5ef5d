"""The house: layers that import one way, folders that name their jobs, names said once.

Layers, lowest first (each may import itself and those in its row):

    mug_errors                  the error family, under everything
    serving                     the SavedModel's contract and its loaders
    torch_trainer.classifier    photos decoded, the classifier and its checkpoint, scores: what others use
    torch_trainer.settings      what a run trains: its plan, recipes, flags
    torch_trainer.training      how: the jobs, a run's data and families, one model's loop
    torch_trainer               the training CLI (train.py)
    convert                     checkpoint -> ONNX -> SavedModel
    check_deployed_model        the export in use: requests, predictions, the server, scoring, the deploy
    trainer                     ML6's gcloud entry points
    bench                       the measurements, on top
"""

import ast
import graphlib
import re

from conftest import ROOT, cli_modules, module_name

PACKAGES = ("mug_errors", "serving", "torch_trainer", "convert", "check_deployed_model", "trainer", "bench")
CLASSIFIER, SETTINGS, TRAINING = "torch_trainer.classifier", "torch_trainer.settings", "torch_trainer.training"
# what each layer may import besides itself
ALLOWED = {
    "mug_errors": set(),
    "serving": {"mug_errors"},
    CLASSIFIER: {"mug_errors"},
    SETTINGS: {"mug_errors", CLASSIFIER},
    TRAINING: {"mug_errors", CLASSIFIER, SETTINGS},
    "torch_trainer": {"mug_errors", SETTINGS, TRAINING},
    "convert": {"mug_errors", "serving", CLASSIFIER},
    "check_deployed_model": {"mug_errors", "serving", CLASSIFIER},
    "trainer": {"mug_errors", "serving", CLASSIFIER, SETTINGS, TRAINING, "convert"},
    "bench": {"mug_errors", "serving", CLASSIFIER, SETTINGS, TRAINING, "torch_trainer", "convert",
              "check_deployed_model", "trainer"},
}
MOST_FILES = 12  # Python files directly in one product folder


def layer(module: str) -> str:
    """The row of ALLOWED a module belongs to: the longest that names it or a package above it."""
    return max((name for name in ALLOWED if module == name or module.startswith(name + ".")), key=len)


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


def product_files():
    return [path for package in PACKAGES for path in sorted((ROOT / package).rglob("*.py"))]


def project_modules() -> dict[str, set[str]]:
    modules = {module_name(path): imports_of(path) for path in product_files()}
    # "from torch_trainer.training import fit" names a module; "from torch_trainer.training.fit import X" does not
    return {name: {i for i in found if i in modules and i != name} for name, found in modules.items()}


def test_no_module_imports_a_higher_layer():
    graph = project_modules()
    assert {"torch_trainer.classifier.network", "torch_trainer.training.fit", "convert.compare"} <= set(graph)
    wrong = [(name, target) for name, found in graph.items() for target in found
             if layer(target) not in ALLOWED[layer(name)] | {layer(name)}]
    assert not wrong, wrong
    # the rows are real: the layers above the classifier do use it, and nothing below training does
    assert any(layer(t) == CLASSIFIER for n, found in graph.items() if layer(n) == "convert" for t in found)


def test_torch_trainer_needs_no_tensorflow():
    for path in (ROOT / "torch_trainer").rglob("*.py"):
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
    clis = {module_name(path) for path in cli_modules(PACKAGES)}
    assert {"torch_trainer.train", "convert.to_savedmodel", "trainer.final_task"} <= clis  # the scan sees them
    wrong = [(name, target) for name, found in project_modules().items() for target in found if target in clis]
    assert not wrong, wrong


def test_folders_name_their_jobs():
    """torch_trainer holds its CLI and three folders, one a job; no product folder holds more than
    MOST_FILES Python files; no two modules or folders are one word in singular and plural."""
    top = ROOT / "torch_trainer"
    assert sorted(p.name for p in top.glob("*.py")) == ["__init__.py", "train.py"]
    assert sorted(p.name for p in top.iterdir() if (p / "__init__.py").is_file()) == ["classifier", "settings", "training"]
    folders = {path.parent for path in product_files()}
    crowded = {str(f.relative_to(ROOT)): n for f in folders if (n := len(list(f.glob("*.py")))) > MOST_FILES}
    assert not crowded, crowded
    names = {p.stem for p in product_files() if p.stem != "__init__"} | {f.name for f in folders}
    pairs = [(n, n + "s") for n in names if n + "s" in names] + [(n, n[:-1] + "ies") for n in names
                                                                 if n.endswith("y") and n[:-1] + "ies" in names]
    assert not pairs, pairs


def test_the_contract_is_spelled_once():
    """The contract's output names and its loaders are spelled in serving/contract.py alone; every
    other product file takes them from there."""
    spelled = {}
    for path in product_files():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and node.value in ("PROBABILITIES", "CLASSES", "graph", "tf2"):
                spelled.setdefault(str(path.relative_to(ROOT)), set()).add(node.value)
    assert spelled == {"serving/contract.py": {"PROBABILITIES", "CLASSES", "graph", "tf2"}}, spelled
    from serving import contract
    assert set(contract.OUTPUTS) == {contract.CLASSES, contract.PROBABILITIES} and contract.LOADERS == ("graph", "tf2")


def test_one_name_for_the_input_size():
    """`input_size` is the size photos are loaded at (the serving input); what a network computes at
    inside is its `resolution`. No other name means either."""
    other = re.compile(r"\b(image_size|img_size|member_image_sizes)\b")
    found = [str(path.relative_to(ROOT)) for path in product_files() if other.search(path.read_text())]
    found += [str(p.relative_to(ROOT)) for p in (ROOT / "torch_trainer" / "recipes").glob("*.json")
              if other.search(p.read_text())]
    assert not found, found


def test_the_house_stays_lean(monkeypatch):
    """No module over 400 lines, a README of at most 250, at most 35 options to torch_trainer.train."""
    from conftest import run_main
    long = [path for path in product_files() + sorted((ROOT / "tests").glob("*.py"))
            if len(path.read_text().splitlines()) > 400]
    assert not long, long
    assert len((ROOT / "README.md").read_text().splitlines()) <= 250
    monkeypatch.setenv("COLUMNS", "400")
    options = [line.split()[0] for line in run_main("torch_trainer.train", "--help").stdout.splitlines()
               if line.startswith("  --") and not line.startswith("  --help")]
    assert "--family" in options and "--resume" in options and len(options) <= 35, options

"""Recipe files: named runs in `torch_trainer/recipes/`, read into a `RunPlan`.

A recipe is a small JSON object. Either one family, written short: `TrainConfig` fields for all its
models, `ensemble` K (seeds seed..seed+K-1) and `member_resolutions` (the dataclass defaults are
the settings of `exposure-ens3`, the ensemble 3); or `"families": [...]`, each entry a recipe of
one family by name, or {"recipe": name, setting: value, ...} with settings of its own. `--recipe
NAME` picks one (`--recipe path/to/file.json` reads any file); flags go on top (`torch_trainer.settings.flags`).
"""

from __future__ import annotations

import json
from pathlib import Path

from mug_errors import SettingsError
from torch_trainer.settings.plan import DEFAULT_RECIPE, Family, RunPlan, family_models, family_name, setting_defaults

RECIPE_DIR = Path(__file__).resolve().parents[1] / "recipes"


class RecipeError(SettingsError):
    """An unknown recipe name, or a recipe file that does not describe a run."""


def list_recipes() -> list[str]:
    """The names of the recipe files in `torch_trainer/recipes/`."""
    return sorted(p.stem for p in RECIPE_DIR.glob("*.json"))


def recipe_path(name: str) -> Path:
    """The file of recipe `name`: a name from `list_recipes()`, or a path to a .json file."""
    if name.endswith(".json") or "/" in name:
        path = Path(name)
        if not path.is_file():
            raise RecipeError(f"--recipe: {path} is not a file")
        return path
    if name not in list_recipes():
        raise RecipeError(f"--recipe: unknown recipe {name!r}; the recipes are {', '.join(list_recipes())} "
                          f"(files in {RECIPE_DIR}), or give a path to a .json file")
    return RECIPE_DIR / f"{name}.json"


def recipe_label(name: str) -> str:
    """How a run records its recipe: the name of a recipe file, else the path given."""
    path = recipe_path(name)
    return path.stem if path.parent == RECIPE_DIR else str(path)


def read_file(name: str) -> tuple[Path, dict]:
    """(the file, its settings) of recipe `name`, its description left out."""
    path = recipe_path(name)
    try:
        values = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise RecipeError(f"{path}: not a readable JSON recipe: {err}") from err
    if not isinstance(values, dict):
        raise RecipeError(f"{path}: a recipe is a JSON object of training settings")
    values.pop("description", None)
    return path, values


def read_recipe(name: str = DEFAULT_RECIPE) -> list[tuple[str, dict]]:
    """(family name, the settings its file gives) for each family of recipe `name`; an unknown
    setting or a value of the wrong type is a `RecipeError` that names the file."""
    path, values = read_file(name)
    if "families" not in values:
        check_settings(path, values)
        return [(path.stem, values)]
    entries = values.pop("families")
    if values:
        raise RecipeError(f"{path}: a recipe of families sets nothing but 'families' (each family's "
                          f"recipe holds its settings), not {', '.join(sorted(values))}")
    if not isinstance(entries, list) or not entries or not all(
            isinstance(e, str) or (isinstance(e, dict) and isinstance(e.get("recipe"), str)) for e in entries):
        raise RecipeError(f"{path}: families is a list of recipe names or of {{\"recipe\": name, "
                          f"setting: value, ...}} objects, not {entries!r}")
    families = []
    for entry in entries:
        base, own = (entry, {}) if isinstance(entry, str) else (entry["recipe"], dict(entry))
        own.pop("recipe", None)
        base_path, settings = read_file(base)
        if "families" in settings:
            raise RecipeError(f"{path}: family {base!r} is itself a recipe of families; a family is one recipe "
                              f"of models")
        check_settings(base_path, settings)
        check_settings(f"{path}: family {base!r}", own)
        families.append((family_name(entry), {**settings, **own}))
    names = [n for n, _ in families]
    if len(set(names)) != len(names):
        raise RecipeError(f"{path}: two families share a name ({', '.join(names)})")
    return families


def check_settings(where: Path | str, values: dict) -> None:
    """Raise a `RecipeError` naming `where` for a setting a family lacks or a value of the wrong type."""
    # checked against the dataclass's own defaults here rather than by a typed loader (pydantic,
    # dacite): one more dependency for JSON's int-where-float rule and errors that name the file
    defaults = setting_defaults()
    for key, value in values.items():
        if key not in defaults:
            raise RecipeError(f"{where}: unknown setting {key!r} (settings are the --flags of "
                              f"torch_trainer.train with _ for -)")
        want = type(defaults[key])
        # JSON has one number type: an int is fine where a float goes, never the other way round
        if not (isinstance(value, want) or (want is float and type(value) is int)) or \
                (want is int and type(value) is bool) or \
                (want is list and not all(type(v) is int for v in value)):
            raise RecipeError(f"{where}: {key} must be of type {want.__name__}"
                              f"{' of int' if want is list else ''}, not {value!r}")


def load_recipe(name: str = DEFAULT_RECIPE, overrides: dict | None = None,
                family_overrides: dict | None = None) -> RunPlan:
    """The run of recipe `name`: each family's models with `overrides` (settings for every family)
    and `family_overrides` ({family: {setting: value}}) on top of the file's settings."""
    return build_run(read_recipe(name), recipe_label(name), overrides, family_overrides)


def build_run(families: list[tuple[str, dict]], recipe: str, overrides: dict | None = None,
              family_overrides: dict | None = None) -> RunPlan:
    """The run of the families `read_recipe` gave for `recipe`, with the settings of `load_recipe`."""
    overrides, family_overrides = dict(overrides or {}), dict(family_overrides or {})
    unknown = sorted(set(family_overrides) - {n for n, _ in families})
    if unknown:
        raise RecipeError(f"--family {unknown[0]}: recipe {recipe} has no family {unknown[0]!r} "
                          f"(its families: {', '.join(n for n, _ in families)})")
    return RunPlan([Family(n, family_models({**s, **overrides, **family_overrides.get(n, {})}, n))
                      for n, s in families], recipe, overrides, family_overrides)

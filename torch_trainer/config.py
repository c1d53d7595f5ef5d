"""The training configuration: one dataclass, its command-line flags, and the recipe files.

A recipe is a small JSON file in `torch_trainer/recipes/` that sets some `TrainConfig` fields;
`--recipe NAME` picks it (`--recipe path/to/file.json` reads any file). The dataclass defaults
are the default recipe's settings; a recipe's values replace them; a flag on the command line
replaces both.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Sequence

from torch_trainer.model import ARCHS, INPUT_NORMS, NORMS

AMP_MODES = ("auto", "off", "bf16", "fp16")
RECIPE_DIR = Path(__file__).resolve().parent / "recipes"
DEFAULT_RECIPE = "plain"


class RecipeError(ValueError):
    """An unknown recipe name, or a recipe file that does not describe a `TrainConfig`."""


@dataclass
class TrainConfig:
    """Every knob of a training run; the field defaults are the default recipe (`plain`)."""
    recipe: str = DEFAULT_RECIPE       # the recipe file these settings started from (a record)
    arch: str = "resnet18"
    weights: str = "imagenet"          # imagenet | none | PATH to a checkpoint or state dict
    strict_weights: bool = False       # make unreachable ImageNet weights an error
    epochs: int = 12
    batch_size: int = 64
    lr: float = 2e-3
    backbone_lr_scale: float = 0.1     # backbone lr multiplier when starting from pretrained weights
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.1
    ema_decay: float = 0.99            # EMA of weights per step (with warm-up); 0 turns it off
    swa_start: float = 0.5             # share of the steps after which weights are averaged uniformly (SWA,
                                       # instead of the EMA; batch norm recomputed after); 0 = off
    ensemble: int = 1                  # models trained with seeds seed..seed+K-1, served as one (mean softmax)
    # augmentation: vary framing and lighting, keep the mug's colour
    crop_scale: float = 0.35           # smallest crop area of RandomResizedCrop
    rotate: float = 0.0                # max degrees
    brightness: float = 0.5
    exposure: float = 1.0              # whole-picture brightness factor range [1/e, e], log-uniform (1 = off)
    contrast: float = 0.5
    saturation: float = 0.3
    hue: float = 0.0                   # off: hue is what tells a blue mug from a black one (and costs
                                       # 1.1 ms a picture, a third of the augmentation)
    blur_p: float = 0.0
    noise: float = 0.0                 # std of Gaussian pixel noise on [0, 1] pixels
    erase_p: float = 0.0
    background_swap: float = 0.0       # probability of pasting the mug onto another photo's background
    background_gain: float = 1.0       # swapped background brightness factor range [1/g, g], then re-exposed
    background_mask: str = "ellipse"   # what of the photo is kept as the mug: ellipse | object
    object_gain: float = 1.0           # swapped samples: the mug's brightness factor range [1/g, g]
    synthetic_background: float = 0.0  # share of swaps onto a made-up backdrop instead of a photo
    mixstyle: float = 0.0              # probability per batch of MixStyle after layer1 and layer2 (0 = off)
    mix: float = 0.0                   # probability per batch of CutMix or MixUp (0 = off)
    augmix: float = 0.0                # probability per picture of AugMix (0 = off)
    rand_conv: float = 0.0             # probability per picture of a random convolution (RandConv; 0 = off)
    rsc: float = 0.0                   # share of each batch trained with its top features muted (RSC; 0 = off)
    invert_luma: float = 0.0           # probability per picture of brightness turned upside down, colour kept
    consistency: float = 0.0           # weight of the JS divergence between two augmented pictures of each
                                       # photo (each batch: batch_size / 2 photos, twice; 0 = off)
    amp: str = "auto"                  # auto (bf16 on CUDA and on CPUs with AMX) | off | bf16 | fp16
    channels_last: str = "auto"        # auto (on for CUDA and with bf16 on the CPU) | on | off
    input_size: int = 64               # images are resized to this when loaded (the serving input)
    image_size: int = 64               # what the network sees (resized inside the model; 128: finer logos)
    input_norm: str = "imagenet"       # imagenet | per-image (exposure-invariant)
    norm: str = "bn"                   # bn | ibn (instance + batch norm in layer1-3, IBN-Net-a)
    seed: int = 0
    workers: int = 0
    device: str = "auto"
    extra: dict[str, Any] = field(default_factory=dict)


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
    defaults = TrainConfig()
    known = {f.name for f in fields(TrainConfig)} - {"recipe", "extra"}
    for key, value in values.items():
        if key not in known:
            raise RecipeError(f"{path}: unknown setting {key!r} (settings are the --flags of "
                              f"torch_trainer.train with _ for -)")
        want = type(getattr(defaults, key))
        # JSON has one number type: an int is fine where a float goes, never the other way round
        if not (isinstance(value, want) or (want is float and type(value) is int)) or \
                (want is int and type(value) is bool):
            raise RecipeError(f"{path}: {key} must be of type {want.__name__}, not {value!r}")
    return TrainConfig(**{**values, "recipe": path.stem if path.parent == RECIPE_DIR else str(path)})


def parse_args(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None,
               known_only: bool = False) -> tuple[argparse.Namespace, TrainConfig, list[str]]:
    """Parse `argv` with `parser` plus `--recipe` and every training flag.

    The recipe named by `--recipe` sets the flags' defaults, so that a flag given on the
    command line wins over the recipe. A bad recipe exits through `parser.error` (status 2)
    with the list of recipes. With `known_only`, unknown arguments are returned, not refused.
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
    if known_only:
        args, unknown = parser.parse_known_args(argv)
    else:
        args, unknown = parser.parse_args(argv), []
    cfg = config_from_args(args)
    cfg.recipe = defaults.recipe
    return args, cfg, unknown


def add_train_args(parser: argparse.ArgumentParser, defaults: TrainConfig | None = None) -> None:
    """The training flags shared by torch_trainer's CLIs and the gcloud modules in `trainer/`."""
    d = defaults or TrainConfig()
    g = parser.add_argument_group("training")
    g.add_argument("--arch", choices=ARCHS, default=d.arch)
    g.add_argument("--weights", default=d.weights, help="imagenet | none | PATH to a checkpoint (default %(default)s)")
    g.add_argument("--strict-weights", action="store_true", default=d.strict_weights,
                   help="fail instead of falling back to random init when ImageNet weights are unreachable")
    g.add_argument("--epochs", type=int, default=d.epochs)
    g.add_argument("--batch-size", type=int, default=d.batch_size)
    g.add_argument("--lr", type=float, default=d.lr, help="peak learning rate of the head (default %(default)s)")
    g.add_argument("--backbone-lr-scale", type=float, default=d.backbone_lr_scale)
    g.add_argument("--weight-decay", type=float, default=d.weight_decay)
    g.add_argument("--warmup-epochs", type=float, default=d.warmup_epochs)
    g.add_argument("--label-smoothing", type=float, default=d.label_smoothing)
    g.add_argument("--ema-decay", type=float, default=d.ema_decay, help="per-step EMA of weights; 0 = off")
    g.add_argument("--ensemble", type=int, default=d.ensemble, metavar="K",
                   help="train K models (seeds seed..seed+K-1) and serve the mean of their probabilities "
                        "(default %(default)s)")
    g.add_argument("--swa-start", type=float, default=d.swa_start,
                   help="average the weights uniformly from this share of the steps on (SWA) instead of "
                        "the EMA; 0 = off (default %(default)s)")
    g.add_argument("--amp", choices=AMP_MODES, default=d.amp,
                   help="mixed precision (auto: bf16 on CUDA where supported and on CPUs with AMX, else float32)")
    g.add_argument("--channels-last", choices=("auto", "on", "off"), default=d.channels_last,
                   help="channels-last memory format (auto: on for CUDA and for bf16 on the CPU)")
    a = parser.add_argument_group("augmentation")
    a.add_argument("--crop-scale", type=float, default=d.crop_scale, help="smallest crop area (fraction)")
    a.add_argument("--rotate", type=float, default=d.rotate, help="max rotation in degrees")
    a.add_argument("--brightness", type=float, default=d.brightness)
    a.add_argument("--exposure", type=float, default=d.exposure,
                   help="the whole picture is scaled by up to this factor either way and clipped, "
                        "log-uniformly (a camera's exposure; 1 = off)")
    a.add_argument("--contrast", type=float, default=d.contrast)
    a.add_argument("--saturation", type=float, default=d.saturation)
    a.add_argument("--hue", type=float, default=d.hue)
    a.add_argument("--blur-p", type=float, default=d.blur_p, help="probability of a Gaussian blur")
    a.add_argument("--noise", type=float, default=d.noise, help="std of Gaussian pixel noise (0..1 scale)")
    a.add_argument("--erase-p", type=float, default=d.erase_p, help="probability of erasing a patch")
    a.add_argument("--background-swap", type=float, default=d.background_swap,
                   help="probability of swapping the background with another photo's")
    a.add_argument("--background-gain", type=float, default=d.background_gain,
                   help="swapped backgrounds are scaled by up to this factor either way, then the picture is "
                        "re-exposed to its old mean brightness (1 = off)")
    a.add_argument("--background-mask", choices=("ellipse", "object"), default=d.background_mask,
                   help="keep a soft ellipse around the centre, or the object that stands out from the border")
    a.add_argument("--object-gain", type=float, default=d.object_gain,
                   help="in swapped samples the mug's brightness is scaled by up to this factor either way (1 = off)")
    a.add_argument("--synthetic-background", type=float, default=d.synthetic_background,
                   help="share of swapped backgrounds that are made up (plain, tinted, graded, grainy) "
                        "instead of taken from another photo")
    a.add_argument("--mixstyle", type=float, default=d.mixstyle,
                   help="probability per batch of mixing feature statistics between samples (MixStyle; 0 = off)")
    a.add_argument("--mix", type=float, default=d.mix,
                   help="probability per batch of CutMix or MixUp, one of the two at random (0 = off)")
    a.add_argument("--augmix", type=float, default=d.augmix,
                   help="probability per picture of AugMix (torchvision's, severity 3; 0 = off)")
    a.add_argument("--rand-conv", type=float, default=d.rand_conv,
                   help="probability per picture of filtering it with a random convolution, blended with "
                        "the original (RandConv: scrambles colour and texture, keeps outlines; 0 = off)")
    a.add_argument("--invert-luma", type=float, default=d.invert_luma,
                   help="probability per picture of turning its brightness upside down (luma Y -> 1 - Y) "
                        "while keeping its colour (0 = off)")
    a.add_argument("--rsc", type=float, default=d.rsc,
                   help="share of each batch whose most relied-on features (a third of the last stage's "
                        "channels or positions, by gradient) are muted before the head (RSC; 0 = off)")
    a.add_argument("--consistency", type=float, default=d.consistency,
                   help="weight of a Jensen-Shannon consistency loss between two independently augmented "
                        "pictures of each photo (a batch then holds half as many photos; 0 = off)")
    g.add_argument("--input-size", type=int, default=d.input_size, help="images are resized to this on load")
    g.add_argument("--image-size", type=int, default=d.image_size, help="the network's input size")
    g.add_argument("--input-norm", choices=INPUT_NORMS, default=d.input_norm,
                   help="imagenet mean/std, or per-image standardisation (exposure-invariant)")
    g.add_argument("--norm", choices=NORMS, default=d.norm,
                   help="batch norm, or IBN-Net-a blocks (half the channels of each block's first norm in "
                        "layer1-3 instance-normalised: a picture's own contrast stops mattering there)")
    g.add_argument("--seed", type=int, default=d.seed)
    g.add_argument("--workers", type=int, default=d.workers, help="DataLoader worker processes")
    g.add_argument("--device", default=d.device, help="auto | cpu | cuda | cuda:N")


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The `TrainConfig` of parsed training flags."""
    return TrainConfig(**{f.name: getattr(args, f.name) for f in fields(TrainConfig) if hasattr(args, f.name)})



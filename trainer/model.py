"""The recipe of the gcloud jobs: read this first.

`trainer.task` and `trainer.final_task` train with exactly these settings unless a flag
on their command line overrides one (for example `--epochs 5`). The model is
torchvision's ResNet; `torch_trainer/model.py` builds it and `torch_trainer/train.py`
trains it. Offline, `weights="imagenet"` falls back to random initialisation with a
loud warning (`--strict-weights` makes that an error).
"""

from torch_trainer.train import TrainConfig

HPARAMS = TrainConfig(
    arch="resnet18",
    weights="imagenet",
    epochs=15,
    batch_size=64,
    lr=2e-3,
    backbone_lr_scale=0.1,
    weight_decay=0.05,
    warmup_epochs=1.0,
    label_smoothing=0.1,
    ema_decay=0.99,
    swa_start=0.0,
    crop_scale=0.35,
    rotate=10.0,
    brightness=0.5,
    exposure=1.0,
    contrast=0.5,
    saturation=0.3,
    hue=0.02,
    blur_p=0.2,
    noise=0.03,
    erase_p=0.25,
    background_swap=0.5,
    background_gain=1.0,
    background_mask="ellipse",
    object_gain=1.0,
    synthetic_background=0.0,
    mixstyle=0.0,
    mix=0.0,
    augmix=0.0,
    rand_conv=0.0,
    rsc=0.0,
    invert_luma=0.0,
    consistency=0.0,
    amp="auto",
    channels_last="auto",
    input_size=64,
    image_size=128,
    norm="bn",
    seed=0,
    workers=0,
    device="auto",
)

# trainer.task without an eval split: share of train held out, in groups of near-identical
# burst frames (thumbnail distance below the threshold) so that no frame's twin leaks.
VAL_FRACTION = 0.2
NEAR_DUPLICATE_THRESHOLD = 0.15

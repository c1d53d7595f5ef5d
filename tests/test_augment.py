"""The batch augmentation: torchvision's per-picture transforms, drawn the same way, applied to a
whole batch at once; the exposure jitter and the colour cast."""

import math

import pytest
import torch
from torchvision.transforms.v2 import functional as TF

from torch_trainer.training.augment import BatchAugment, adjust_brightness, adjust_colour_cast, adjust_contrast, \
    adjust_hue, adjust_saturation, crop_boxes, resized_crop
from torch_trainer.settings.plan import TrainConfig

OFF = dict(brightness=0.0, contrast=0.0, saturation=0.0, hue=0.0, exposure=1.0, colour_cast=1.0)
TORCHVISION = {0: TF.adjust_brightness, 1: TF.adjust_contrast, 2: TF.adjust_saturation, 3: TF.adjust_hue}


def pictures(n: int = 16, size: int = 64, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=generator)


def test_crop_boxes_follow_random_resized_crop():
    torch.manual_seed(0)
    boxes = crop_boxes(20_000, 64, 64, (0.35, 1.0))
    top, left, h, w = boxes.T
    assert (h >= 1).all() and (w >= 1).all() and (top >= 0).all() and (left >= 0).all()
    assert (top + h <= 64).all() and (left + w <= 64).all()
    area = (h * w).float() / 64 ** 2
    # rounding w and h to whole pixels moves the area share by a little
    assert area.min() >= 0.33 and area.max() <= 1.0
    aspect = w.float() / h.float()
    assert aspect.min() >= 0.7 and aspect.max() <= 1.4
    assert 0.5 < area.mean() < 0.8  # log-uniform ratio with uniform area: mostly inside the range
    # every position a box of its size can take is drawn
    assert set(left[w == 40].tolist()) == set(range(25))
    # no try fits on a picture too flat for the ratio range: the central crop of the nearest ratio
    flat = crop_boxes(5, 10, 64, (0.9, 1.0))
    assert flat.tolist() == [[0, 25, 10, 13]] * 5


def test_crop_and_mirror_equal_torchvision_picture_by_picture():
    images = pictures().float() / 255
    torch.manual_seed(1)
    boxes = crop_boxes(len(images), 64, 64, (0.35, 1.0))
    flip = torch.rand(len(images)) < 0.5
    batch = resized_crop(images, boxes, 64, flip)
    for image, (top, left, h, w), mirrored, got in zip(images, boxes.tolist(), flip, batch):
        want = TF.resized_crop(image, top, left, h, w, [64, 64], antialias=True)
        if mirrored:
            want = TF.horizontal_flip(want)
        torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


@pytest.mark.parametrize("k, ours", enumerate([adjust_brightness, adjust_contrast, adjust_saturation, adjust_hue]))
def test_each_jitter_equals_torchvision_with_a_factor_per_picture(k, ours):
    images = pictures().float() / 255
    factors = torch.linspace(-0.1, 0.1, len(images)) if k == 3 else torch.linspace(0.5, 1.5, len(images))
    batch = ours(images, factors)
    for image, factor, got in zip(images, factors.tolist(), batch):
        torch.testing.assert_close(got, TORCHVISION[k](image, factor), atol=1e-5, rtol=0)


def test_the_whole_augmentation_equals_torchvision_in_each_pictures_order():
    cfg = TrainConfig(hue=0.05)
    augment = BatchAugment(cfg)
    images = pictures(32)
    torch.manual_seed(2)
    params = augment.params(len(images), 64, 64)
    assert {tuple(o) for o in params["order"].tolist()} != {(0, 1, 2, 3)}  # the order varies by picture
    batch = augment.apply(images, params)
    assert batch.dtype == torch.float32 and batch.shape == (32, 3, 64, 64)
    for i, image in enumerate(images.float() / 255):
        top, left, h, w = params["boxes"][i].tolist()
        want = TF.resized_crop(image, top, left, h, w, [64, 64], antialias=True)
        if params["flip"][i]:
            want = TF.horizontal_flip(want)
        for k in params["order"][i].tolist():
            want = TORCHVISION[k](want, float(params["factors"][i, k]))
        want = (want * params["exposure"][i]).clamp(0, 1)
        torch.testing.assert_close(batch[i], want, atol=2e-5, rtol=0)


def test_exposure_scales_a_picture_by_one_factor_within_the_range_and_clips():
    augment = BatchAugment(TrainConfig(crop_scale=1.0, **{**OFF, "exposure": 2.0}))
    half = pictures(200, seed=3)[..., :32]
    images = torch.cat([half, half.flip(-1)], -1)  # mirror-symmetric: the random flip changes nothing
    torch.manual_seed(4)
    out = augment(images)
    x = images.float() / 255
    factors = []
    for before, after in zip(x, out):
        inside = (before > 0.05) & (after < 0.999)  # not clipped, and large enough to divide by
        ratio = after[inside] / before[inside]
        factor = float(ratio.median())
        assert 0.5 - 1e-6 <= factor <= 2 + 1e-6
        torch.testing.assert_close(ratio, torch.full_like(ratio, factor), atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(after, (before * factor).clamp(0, 1), atol=1e-4, rtol=0)
        factors.append(factor)
    logs = torch.tensor(factors).log2()
    # log-uniform in [1/2, 2]: as often darker as brighter, reaching both ends
    assert logs.min() < -0.8 and logs.max() > 0.8 and abs(float((logs > 0).float().mean()) - 0.5) < 0.15


def test_colour_cast_keeps_a_grey_pixels_brightness():
    grey = torch.full((8, 3, 4, 4), 0.4)
    torch.manual_seed(5)
    gains = 1.2 ** (2 * torch.rand(8, 3) - 1)
    out = adjust_colour_cast(grey, gains)
    luma = (out * torch.tensor([0.2989, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1)
    torch.testing.assert_close(luma, torch.full_like(luma, 0.4), atol=1e-6, rtol=0)
    assert (out[:, 0] != out[:, 2]).all()  # tinted
    # the channels keep the gains' proportions
    torch.testing.assert_close(out[:, :, 0, 0] / out[:, :1, 0, 0], gains / gains[:, :1])


def test_steps_turned_off_leave_pictures_alone():
    augment = BatchAugment(TrainConfig(crop_scale=1.0, **OFF))
    half = pictures(8, seed=6)[..., :32]
    images = torch.cat([half, half.flip(-1)], -1)
    torch.testing.assert_close(augment(images), images.float() / 255, atol=1e-5, rtol=0)


def test_bad_input_and_settings_are_named():
    augment = BatchAugment(TrainConfig())
    with pytest.raises(TypeError, match="uint8 batches"):
        augment(torch.rand(2, 3, 64, 64))
    for setting, flag in (({"exposure": 0.5}, "--exposure"), ({"colour_cast": 0.9}, "--colour-cast"),
                          ({"crop_scale": 0.0}, "--crop-scale"), ({"hue": 0.7}, "--hue")):
        with pytest.raises(ValueError, match=flag):
            BatchAugment(TrainConfig(**setting))


def test_log_uniform_factors_are_symmetric_in_log():
    torch.manual_seed(7)
    params = BatchAugment(TrainConfig(exposure=2.0, colour_cast=1.2)).params(50_000, 64, 64)
    assert abs(float(params["exposure"].log().mean())) < 0.01
    assert params["exposure"].min() >= 0.5 and params["exposure"].max() <= 2.0
    assert params["cast"].min() >= 1 / 1.2 - 1e-6 and params["cast"].max() <= 1.2 + 1e-6
    assert math.isclose(float(params["flip"].float().mean()), 0.5, abs_tol=0.01)

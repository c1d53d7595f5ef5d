"""Capture shifts: in training (off unless a recipe asks) and in the robustness report, which scores a
checkpoint or an export on drawn photos under named shifts and writes its table, plot and sheet."""

import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

from check_deployed_model.scoring.accuracy import bytes_predictor
from check_deployed_model.scoring.shifts import SHIFTS, parse_shifts, shifted_jpeg
from conftest import run_main, write_dataset
from mug_errors import SettingsError
from torch_trainer.classifier.capture import adjust_white_balance, gaussian_blur, white_balance_gains
from torch_trainer.training.augment import BACKDROP_BLUR, BLURRED, EDGE, FLAT, MIRROR, OTHER, BatchAugment
from torch_trainer.settings.plan import TrainConfig

CAPTURE = dict(white_balance=100, zoom_out=1.6, blur=1.5, noise=0.08, jpeg=10)
OFF = dict(brightness=0.0, contrast=0.0, saturation=0.0, hue=0.0, exposure=1.0, colour_cast=1.0)


def grey(value: float = 0.5, size: int = 8) -> torch.Tensor:
    return torch.full((1, 3, size, size), value)


def decode(blob: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(blob)) as image:
        assert image.format == "JPEG"
        return np.asarray(image.convert("RGB"), dtype=np.float64)


def test_white_balance_follows_the_black_body():
    gains = white_balance_gains(torch.tensor([3000.0, 6500.0, 16000.0]))
    assert torch.allclose(gains[1], torch.ones(3), atol=1e-6)  # the neutral light changes nothing
    warm, cool = gains[0], gains[2]
    assert warm[0] > 1 > warm[2] and cool[2] > 1 > cool[0]  # warm light is red, cool light blue
    assert torch.allclose(gains @ torch.tensor([0.2126, 0.7152, 0.0722]), torch.ones(3), atol=1e-5)
    lit = adjust_white_balance(grey().repeat(2, 1, 1, 1), torch.tensor([3000.0, 16000.0]))
    assert lit[0, 0].mean() > 0.5 > lit[0, 2].mean() and lit[1, 2].mean() > 0.5 > lit[1, 0].mean()


def test_capture_shifts_are_off_by_default_and_draw_nothing():
    """A recipe without them draws the same random numbers as before they existed."""
    images = torch.randint(0, 256, (8, 3, 64, 64), dtype=torch.uint8)
    torch.manual_seed(0)
    plain = BatchAugment(TrainConfig()).params(8, 64, 64)
    after = torch.rand(1)
    assert set(plain) == {"boxes", "flip", "order", "factors", "cast", "exposure"}
    torch.manual_seed(0)
    BatchAugment(TrainConfig())(images)
    assert torch.equal(torch.rand(1), after)


def test_capture_shifts_change_the_pictures_they_are_drawn_for():
    torch.manual_seed(0)
    augment = BatchAugment(TrainConfig(**CAPTURE))
    params = augment.params(400, 64, 64)
    top, left, h, w = params["boxes"].T
    zoomed = (h > 64) | (w > 64)
    assert 0.35 < zoomed.float().mean() < 0.65  # a random half zoomed out (the rest cropped as before)
    assert (top[zoomed] <= 0).all() and (top[zoomed] + h[zoomed] >= 64).all() and h.max() <= round(64 * 1.6)
    assert 1e6 / params["kelvin"].max() >= 1e6 / 6500 - 100 - 1e-3 and params["kelvin"].min() < 4500
    for key in ("blur", "jpeg"):
        assert 0.35 < (params[key] > 0).float().mean() < 0.65
    assert params["blur"].max() <= 1.5 and params["jpeg"][params["jpeg"] > 0].min() >= 10
    # a zoomed-out picture keeps the whole photo: its border is the photo's edge colour
    flat = torch.full((1, 3, 64, 64), 200, dtype=torch.uint8)
    flat[:, :, 16:48, 16:48] = 0
    out = BatchAugment(TrainConfig(**{**CAPTURE, "white_balance": 0, "blur": 0, "noise": 0, "jpeg": 0, **OFF}))
    one = {k: v[:1] for k, v in params.items()}
    one["boxes"] = torch.tensor([[-10, -10, 84, 84]])
    one["flip"] = torch.tensor([False])
    pictured = out.apply(flat, {k: v for k, v in one.items() if k in ("boxes", "flip", "order", "factors", "cast",
                                                                        "exposure")})
    assert pictured[0, :, 0, 0].tolist() == pytest.approx([200 / 255] * 3)
    assert pictured[0, :, 32, 32].max() < 0.05  # the dark square, now smaller, is still in the middle
    batch = augment(torch.randint(0, 256, (16, 3, 64, 64), dtype=torch.uint8))
    assert batch.shape == (16, 3, 64, 64) and batch.min() >= 0 and batch.max() <= 1
    assert "surround" not in params  # the edge colour, drawing nothing more


def test_a_varied_surround_puts_the_edge_a_mirror_or_a_flat_colour_around_a_zoomed_out_picture():
    torch.manual_seed(0)
    augment = BatchAugment(TrainConfig(zoom_out=2.0, zoom_surround="varied", **OFF))
    params = augment.params(600, 64, 64)
    kinds, (_, _, h, w) = params["surround"], params["boxes"].T
    assert (kinds[(h < 64) | (w < 64)] == EDGE).all()  # a crop inside the photo has nothing around it
    zoomed = h > 64
    assert all(0.25 < (kinds[zoomed] == k).float().mean() < 0.42 for k in (EDGE, MIRROR, FLAT))
    # a photo dark on the left with a grey edge column, light on the right, shrunk to half its size in the middle
    photo = torch.full((1, 3, 64, 64), 200, dtype=torch.uint8)
    photo[..., :32], photo[..., :4] = 20, 100
    one = {"boxes": torch.tensor([[-32, -32, 128, 128]] * 3), "flip": torch.zeros(3, dtype=torch.bool),
           "order": torch.arange(4).repeat(3, 1), "factors": torch.tensor([[1.0, 1.0, 1.0, 0.0]] * 3),
           "cast": torch.ones(3, 3), "exposure": torch.ones(3), "surround": torch.tensor([EDGE, MIRROR, FLAT]),
           "fill": torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.1, 0.5, 0.9]])}
    edge, mirror, flat = augment.apply(photo.repeat(3, 1, 1, 1), one) * 255
    middle = (slice(None), slice(24, 40))
    for out in (edge, mirror, flat):  # the photo itself, smaller
        assert (out[(*middle, slice(20, 30))] - 20).abs().max() < 1 and (out[(*middle, slice(34, 44))] - 200).abs().max() < 1
    # left of it: the edge column's grey continues, or the photo is seen again mirrored (its dark side)
    assert (edge[..., 2:14] - 100).abs().max() < 1 and (mirror[..., 2:14] - 20).abs().max() < 1
    assert (mirror[..., 50:62] - 200).abs().max() < 1
    # the flat colour all round, whatever the photo's edge
    for corner in (flat[:, :12, :12], flat[:, :12, 52:], flat[:, 52:, :12], flat[:, 52:, 52:]):
        assert torch.allclose(corner.mean((1, 2)), torch.tensor([0.1, 0.5, 0.9]) * 255, atol=0.01)


def test_scenes_put_the_photo_or_another_photo_blurred_around_a_zoomed_out_picture():
    torch.manual_seed(0)
    augment = BatchAugment(TrainConfig(zoom_out=2.0, zoom_surround="scenes", **OFF))
    params = augment.params(1000, 64, 64)
    kinds, (_, _, h, w) = params["surround"], params["boxes"].T
    zoomed = h > 64
    assert (kinds[(h < 64) | (w < 64)] == EDGE).all() and (params["other"] != torch.arange(1000)).all()
    assert all(0.14 < (kinds[zoomed] == k).float().mean() < 0.27 for k in (EDGE, MIRROR, FLAT, BLURRED, OTHER))
    assert BACKDROP_BLUR[0] <= params["backdrop"].min() and params["backdrop"].max() <= BACKDROP_BLUR[1]
    # a photo dark on the left, light on the right, shrunk to half its size in the middle; the last one mid-grey
    photos = torch.full((4, 3, 64, 64), 200, dtype=torch.uint8)
    photos[:3, ..., :32], photos[3] = 20, 120
    one = {"boxes": torch.tensor([[-32, -32, 128, 128]] * 4), "flip": torch.zeros(4, dtype=torch.bool),
           "order": torch.arange(4).repeat(4, 1), "factors": torch.tensor([[1.0, 1.0, 1.0, 0.0]] * 4),
           "cast": torch.ones(4, 3), "exposure": torch.ones(4), "surround": torch.tensor([EDGE, BLURRED, OTHER, EDGE]),
           "fill": torch.zeros(4, 3), "other": torch.tensor([3, 3, 3, 0]), "backdrop": torch.full((4,), 0.1)}
    edge, blurred, other, _ = augment.apply(photos, one) * 255
    for out in (edge, blurred, other):  # the photo itself, smaller
        assert (out[:, 24:40, 20:30] - 20).abs().max() < 1 and (out[:, 24:40, 34:44] - 200).abs().max() < 1
    # above it: the edge row goes on sharp, or the photo itself out of focus (dark far left, light far right)
    assert (edge[:, :8, 28:31] - 20).abs().max() < 1 and (edge[:, :8, 33:36] - 200).abs().max() < 1
    assert (blurred[:, :8, :4] - 20).abs().max() < 2 and (blurred[:, :8, 60:] - 200).abs().max() < 2
    assert 60 < blurred[:, :8, 30:34].min() and blurred[:, :8, 30:34].max() < 160
    assert (other[:, :12] - 120).abs().max() < 1 and (other[:, 52:] - 120).abs().max() < 1  # the last photo behind
    batch = augment(torch.randint(0, 256, (16, 3, 64, 64), dtype=torch.uint8))
    assert batch.shape == (16, 3, 64, 64) and batch.min() >= 0 and batch.max() <= 1


@pytest.mark.parametrize("setting, value", [("white_balance", 120), ("white_balance", -1), ("zoom_out", 0.9),
                                            ("zoom_surround", "blurry"),
                                            ("blur", 6.0), ("noise", 1.5), ("jpeg", 96)])
def test_a_capture_setting_out_of_range_is_refused(setting, value):
    with pytest.raises(SettingsError, match=setting):
        BatchAugment(TrainConfig(**{setting: value}))


def test_each_shift_changes_the_photo_as_named(tmp_path):
    photo = io.BytesIO()
    picture = np.full((64, 64, 3), 128, dtype=np.uint8)
    picture[20:44, 20:44] = (200, 200, 200)
    Image.fromarray(picture).save(photo, "PNG")
    photo = photo.getvalue()
    clean = decode(shifted_jpeg(photo, SHIFTS["none"], 0))
    assert clean.shape == (64, 64, 3) and np.abs(clean - picture).max() <= 3
    cool, warm = (decode(shifted_jpeg(photo, SHIFTS[n], k)) for n, k in (("cooler", 16000), ("warmer", 3000)))
    assert cool[..., 2].mean() > cool[..., 0].mean() + 40 and warm[..., 0].mean() > warm[..., 2].mean() + 40
    assert decode(shifted_jpeg(photo, SHIFTS["darker"], 0.35)).mean() < clean.mean() - 40
    assert decode(shifted_jpeg(photo, SHIFTS["lower-contrast"], 0.35)).std() < clean.std() / 2
    assert decode(shifted_jpeg(photo, SHIFTS["larger-photo"], 256)).shape == (256, 256, 3)
    small = decode(shifted_jpeg(photo, SHIFTS["zoom-out"], 2.0))
    assert np.abs(small[:12] - 128).max() <= 3 and np.abs(small[28:36, 28:36] - 200).max() <= 4
    assert np.abs(decode(shifted_jpeg(photo, SHIFTS["zoom-in"], 1.5))[32, 32] - 200).max() <= 4
    # other surrounds: the photo mirrored (grey then its light square again at the border), a flat colour
    mirror = decode(shifted_jpeg(photo, SHIFTS["zoom-out-mirror"], 2.0))
    assert np.abs(mirror[28:36, 28:36] - 200).max() <= 4 and np.abs(mirror[:2, 28:36] - 200).max() <= 6
    assert np.abs(mirror[8:12, 28:36] - 128).max() <= 4
    flats = [decode(shifted_jpeg(photo, SHIFTS["zoom-out-flat"], 2.0, seed=s)) for s in (0, 1)]
    assert np.abs(flats[0][28:36, 28:36] - 200).max() <= 4
    assert flats[0][:8].std((0, 1)).max() < 2 and np.abs(flats[0][:8].mean((0, 1)) - flats[1][:8].mean((0, 1))).max() > 10
    picture_t = torch.from_numpy(picture).permute(2, 0, 1).float() / 255  # the scene behind, out of focus
    behind = SHIFTS["zoom-out-blurred"].apply(picture_t, 2.0, 0)
    assert torch.allclose(behind[:, 28:36, 28:36], torch.tensor(200 / 255), atol=1e-3)
    assert torch.allclose(behind[:, :16], gaussian_blur(picture_t[None], torch.tensor([4.0]))[0, :, :16], atol=1e-6)
    assert 130 / 255 < behind[:, 14, 32].min() < 170 / 255  # the light square, blurred, seen past the picture's edge
    noisy = [decode(shifted_jpeg(photo, SHIFTS["noise"], 24, seed=s)) for s in (0, 0, 1)]
    assert np.array_equal(noisy[0], noisy[1]) and not np.array_equal(noisy[0], noisy[2])
    assert len(shifted_jpeg(photo, SHIFTS["jpeg"], 10)) < len(shifted_jpeg(photo, SHIFTS["none"], 0))


def test_shifts_are_named_with_their_strengths():
    chosen = parse_shifts(["cooler=9000,12000", "blur"])
    assert [(s.name, v) for s, v in chosen] == [("none", (0,)), ("cooler", (9000.0, 12000.0)),
                                                 ("blur", SHIFTS["blur"].strengths)]
    assert [s.name for s, _ in parse_shifts(None)] == list(SHIFTS)
    with pytest.raises(SettingsError, match="unknown shift 'fog'.*cooler"):
        parse_shifts(["fog"])
    with pytest.raises(SettingsError, match="jpeg: 0 is out of range"):
        parse_shifts(["jpeg=0"])
    with pytest.raises(SettingsError, match="numbers separated by commas"):
        parse_shifts(["noise=a"])


def test_the_report_shows_a_shift_hurting_a_model_that_never_saw_it(trained_run, data_root, tmp_path):
    """The drawn mugs differ by colour and shape: a photo nearly without light (every mug a dark
    one) and heavy noise must cost the ResNet18 that trained on clean drawings what it gets right."""
    out = tmp_path / "report"
    proc = run_main("check_deployed_model.robustness", "--checkpoint", str(trained_run / "model.pt"), "--data-dir",
                    str(data_root / "eval"), "--output-dir", str(out), "--shifts", "noise=150", "darker=0.05", "tilt=10")
    assert proc.returncode == 0, proc.stderr
    result = json.loads((out / "robustness.json").read_text())
    summary = result["summary"]
    assert [(r["shift"], r["strength"]) for r in result["rows"]] == [("none", 0), ("noise", 150),
                                                                     ("darker", 0.05), ("tilt", 10)]
    assert summary["clean"] >= 0.7 and summary["shifts"]["darker"] <= summary["clean"] - 0.3
    assert summary["shifts"]["noise"] < summary["clean"] and result["images"] == 32
    for row in result["rows"]:
        confusion = np.array(row["confusion"])
        assert confusion.sum() == 32 and np.trace(confusion) / 32 == pytest.approx(row["accuracy"])
    table = (out / "robustness.md").read_text()
    assert "| noise | 150 std, levels of 255 |" in table and "mean over the shifts" in table
    assert "mean over the shifts" in proc.stdout
    for name in ("accuracy.png", "mistakes.png"):
        with Image.open(out / name) as image:
            assert image.format == "PNG" and image.size[0] > 300
    # an existing report is kept unless --overwrite, and nothing is left half written beside it
    again = run_main("check_deployed_model.robustness", "--checkpoint", str(trained_run / "model.pt"),
                     "--data-dir", str(data_root / "eval"), "--output-dir", str(out), "--shifts", "tilt")
    assert again.returncode == 2 and "--overwrite" in again.stderr
    assert json.loads((out / "robustness.json").read_text()) == result
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report"]


def test_the_report_names_what_is_wrong(trained_run, tmp_path):
    model = ["--checkpoint", str(trained_run / "model.pt")]
    missing = run_main("check_deployed_model.robustness", *model, "--data-dir", str(tmp_path / "nope"),
                       "--output-dir", str(tmp_path / "out"))
    assert missing.returncode == 2 and "nope: data folder does not exist" in missing.stderr
    bad = run_main("check_deployed_model.robustness", *model, "--data-dir", str(tmp_path),
                   "--output-dir", str(tmp_path / "out"), "--shifts", "cooler=100")
    assert bad.returncode == 2 and "cooler: 100 is out of range" in bad.stderr
    assert not (tmp_path / "out").exists()


def test_an_export_scores_the_shifted_bytes_as_its_checkpoint_does(export, trained_run, data_root, tmp_path):
    """The export sees the JPEG bytes through serving_default; its probabilities on every shifted
    64-px photo match the checkpoint's on the same bytes, and its classes on photos it resizes."""
    photos = sorted(write_dataset(tmp_path / "photos", 3, seed=7).rglob("*.jpg"))  # 64 px (the PNGs are not)
    shifts = parse_shifts(["cooler", "zoom-out", "jpeg", "larger-photo"])
    blobs = [shifted_jpeg(p.read_bytes(), shift, strengths[-1], seed=i)
             for shift, strengths in shifts for i, p in enumerate(photos)]
    served = bytes_predictor(model_dir=export[0])(blobs)
    trained = bytes_predictor(checkpoint=trained_run / "model.pt")(blobs)
    assert served.shape == (len(blobs), 4)
    same_size = slice(0, len(photos) * (len(shifts) - 1))  # the larger photos are resized: TF's filter, not PIL's
    assert np.abs(served[same_size] - trained[same_size]).max() < 1e-5
    assert (served.argmax(1) == trained.argmax(1)).all() and np.abs(served - trained).max() < 0.02
    with pytest.raises(SettingsError, match="not both or neither"):
        bytes_predictor()


def test_the_held_out_bench_scores_the_photos_a_run_held_out(trained_run, data_root, tmp_path):
    """bench.held_out_shifts reads the held-out photos from a run's record and scores its model on them;
    a report already written is read back, not scored again."""
    run = tmp_path / "task_run"
    run.mkdir()
    held_out = sorted(str(p) for p in (data_root / "eval").rglob("*.jpg"))[::2]
    (run / "data.json").write_text(json.dumps({"val_files": held_out}))
    (run / "model.pt").symlink_to(trained_run / "model.pt")
    args = ["--runs", f"a/0={run}", f"b/0={run}", "--output-dir", str(tmp_path / "out"), "--shifts", "tilt=10",
            "zoom-out-flat=2"]
    first = run_main("bench.held_out_shifts", *args)
    assert first.returncode == 0, first.stderr
    head = next(line for line in first.stdout.splitlines() if line.startswith("run "))
    assert head.split() == ["run", "clean", "tilt", "zoom-out-flat", "mean", "worst"]  # whole names
    report = json.loads((tmp_path / "out" / "a-0" / "robustness.json").read_text())
    assert report["images"] == len(held_out) and report["data_dir"] == f"{run} (held out)"
    assert "b - a, seed by seed" in first.stdout and "a (mean of 1)" in first.stdout
    (tmp_path / "out" / "b-0" / "robustness.json").write_text(json.dumps(dict(report, images=-1)))
    again = run_main("bench.held_out_shifts", *args)
    assert again.returncode == 0 and "b/0: -1 held-out photos" in again.stdout
    (run / "data.json").write_text(json.dumps({"val_files": []}))
    empty = run_main("bench.held_out_shifts", "--runs", f"c/0={run}", "--output-dir", str(tmp_path / "out"))
    assert empty.returncode == 2 and "held out no photos" in empty.stderr


def test_the_report_scores_an_ensembles_families_and_members(data_root, tmp_path):
    """--parts: each family and each of its members scored beside the served mean, shift by shift,
    each part's accuracy the one it has alone."""
    from check_deployed_model.scoring.accuracy import WHOLE, parts_predictor
    from torch_trainer.classifier.network import Ensemble, MugClassifier, class_probabilities, save_checkpoint
    from torch_trainer.classifier.photos import MugDataset, load_images
    torch.manual_seed(3)
    resnets = Ensemble([MugClassifier("resnet18", 4, 64), MugClassifier("resnet18", 4, 64)])
    small = Ensemble([MugClassifier("resnet18", 4, 32)])
    model = Ensemble([resnets, small]).eval()
    names = ["0white", "1black", "2blue", "3transparent"]
    save_checkpoint(tmp_path / "model.pt", model, names, 64, families=["resnets", "small"])
    out = tmp_path / "report"
    proc = run_main("check_deployed_model.robustness", "--checkpoint", str(tmp_path / "model.pt"), "--data-dir",
                    str(data_root / "eval"), "--output-dir", str(out), "--shifts", "blur=1.2", "--parts")
    assert proc.returncode == 0, proc.stderr
    result = json.loads((out / "robustness.json").read_text())
    assert list(result["parts"]) == ["resnets", "resnets/member0", "resnets/member1", "small"]
    data = MugDataset(data_root / "eval")
    blobs = [shifted_jpeg(p.read_bytes(), SHIFTS["none"], 0, seed=i) for i, p in enumerate(data.paths)]
    alone = parts_predictor(tmp_path / "model.pt")(blobs)
    images = load_images(blobs, 64)
    with torch.no_grad():
        for name, part in (("resnets", resnets), ("resnets/member1", resnets.members[1]), ("small", small)):
            probs = class_probabilities(part, images)
            np.testing.assert_allclose(alone[name], probs, atol=1e-6)
            assert result["parts"][name]["clean"] == pytest.approx(float((probs.argmax(1) == data.targets.numpy()).mean()))
    assert result["rows"][0]["accuracy"] == pytest.approx(float((alone[WHOLE].argmax(1) == data.targets.numpy()).mean()))
    assert set(result["parts"]["small"]["shifts"]) == {"blur"}
    table = (out / "robustness.md").read_text()
    assert "| part | clean | blur | mean | worst |" in table and "| resnets/member1 |" in table
    single = run_main("check_deployed_model.robustness", "--model-dir", str(tmp_path), "--data-dir",
                      str(data_root / "eval"), "--output-dir", str(tmp_path / "x"), "--parts")
    assert single.returncode == 2 and "--parts needs --checkpoint" in single.stderr

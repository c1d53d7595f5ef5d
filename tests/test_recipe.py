"""The training recipe's tools: shoots, cross-scene validation, evaluation, resume, repeatability."""

import json

import numpy as np
import pytest
import torch

from check_deployed_model.draw_mug import CLASS_NAMES, draw_mug
from conftest import run_module
from torch_trainer.data import MugDataset
from torch_trainer.shoots import find_shoots

BACKGROUNDS = [(60, 60, 70), (190, 170, 140)]


@pytest.fixture(scope="module")
def two_shoots(tmp_path_factory):
    """8 pictures per class on each of two backgrounds, like ML6's two shoots per class."""
    root = tmp_path_factory.mktemp("shoots")
    for label, name in enumerate(CLASS_NAMES):
        (root / name).mkdir()
        for i in range(16):
            draw_mug(label, seed=i, background=BACKGROUNDS[i // 8]).save(root / name / f"{i}.jpg", quality=95)
    return root


def test_find_shoots_separates_backgrounds(two_shoots):
    data = MugDataset(two_shoots)
    shoots = find_shoots(data.images, data.targets)
    for label in range(4):
        per_class = shoots[data.targets.numpy() == label]
        names = [p.stem for p in np.array(data.paths)[data.targets.numpy() == label]]
        by_bg = {int(n) // 8: set() for n in names}
        for n, s in zip(names, per_class):
            by_bg[int(n) // 8].add(int(s))
        assert all(len(v) == 1 for v in by_bg.values()) and by_bg[0] != by_bg[1]


def test_validate_reports_every_fold(two_shoots, tmp_path):
    out = tmp_path / "report"
    proc = run_module("torch_trainer.validate", "--data-dir", str(two_shoots), "--output-dir", str(out),
                      "--epochs", "1", "--weights", "none", "--batch-size", "16")
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert [(r["seed"], r["fold"]) for r in report["runs"]] == [(0, "fold0"), (0, "fold1")]
    assert report["shoot_sizes"] == {name: [8, 8] for name in CLASS_NAMES}
    assert sum(map(sum, report["pooled"]["confusion"])) == 64
    assert (out / "confusion.png").read_bytes()[:4] == b"\x89PNG"
    assert "leave out one shoot of every class" in (out / "report.md").read_text()


def test_class_shoot_folds_hold_out_one_class_shoot_each():
    from torch_trainer.validate import folds
    targets = np.repeat([0, 1, 2, 3], 4)
    shoots = np.tile([0, 0, 1, 1], 4)
    held = folds(shoots, targets, "class-shoot")
    assert [name for name, _ in held] == [f"class{c}_shoot{k}" for c in range(4) for k in range(2)]
    for (name, mask), (c, k) in zip(held, [(c, k) for c in range(4) for k in range(2)]):
        assert mask.sum() == 2 and set(targets[mask]) == {c} and set(shoots[mask]) == {k}
    assert np.array_equal(np.sum([m for _, m in held], 0), np.ones(16))  # every image held out once
    assert [m.sum() for _, m in folds(shoots, targets, "shoot")] == [8, 8]
    with pytest.raises(ValueError, match="protocol"):
        folds(shoots, targets, "random")


def test_evaluate_checkpoint_and_savedmodel_agree(trained_run, export, data_root, tmp_path):
    model_dir, _ = export
    reports = []
    for flag, value, out in (("--checkpoint", trained_run / "model.pt", tmp_path / "ckpt"),
                             ("--model-dir", model_dir, tmp_path / "saved")):
        proc = run_module("torch_trainer.evaluate", flag, str(value), "--data-dir", str(data_root / "eval"),
                          "--output-dir", str(out))
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert "accuracy" in proc.stdout and "confusion" in proc.stdout
        for png in ("confusion.png", "misclassified.png"):
            assert (out / png).read_bytes()[:4] == b"\x89PNG"
        reports.append(json.loads((out / "report.json").read_text()))
    # the eval set holds one 96x80 PNG per class, resized slightly differently by TF: allow one flip
    assert abs(reports[0]["accuracy"] - reports[1]["accuracy"]) <= 1 / 32
    assert len(reports[0]["misclassified"]) == round((1 - reports[0]["accuracy"]) * 32)


def test_resume_gives_the_uninterrupted_result(data_root, tmp_path):
    common = ["--train-dir", str(data_root / "eval"), "--epochs", "2", "--weights", "none", "--batch-size", "8"]
    full = run_module("torch_trainer.train", *common, "--output-dir", str(tmp_path / "full"))
    assert full.returncode == 0, full.stderr[-3000:]
    part = run_module("torch_trainer.train", *common, "--output-dir", str(tmp_path / "part"), "--stop-after", "1")
    assert part.returncode == 0 and "--resume" in part.stdout
    assert not (tmp_path / "part" / "model.pt").exists()
    resumed = run_module("torch_trainer.train", "--resume", str(tmp_path / "part"))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a = torch.load(tmp_path / "full" / "model.pt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "part" / "model.pt", weights_only=True)["state_dict"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    history = json.loads((tmp_path / "part" / "metrics.json").read_text())["history"]
    assert [r["epoch"] for r in history] == [1, 2]


def test_swa_is_the_mean_of_the_weights_from_its_start(data_root, tmp_path):
    # one step per epoch (32 pictures, batch 32): --swa-start 0.5 of 4 epochs averages steps 3 and 4
    args = ["--train-dir", str(data_root / "eval"), "--epochs", "4", "--weights", "none", "--batch-size", "32",
            "--swa-start", "0.5", "--output-dir", str(tmp_path / "run")]
    raw = []
    for step_args in (args + ["--stop-after", "3"], ["--resume", str(tmp_path / "run")]):
        proc = run_module("torch_trainer.train", *step_args)
        assert proc.returncode == 0, proc.stderr[-3000:]
        last = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
        raw.append(last["training_state"]["model"])
    assert "swa from step 3" in proc.stdout
    saved = torch.load(tmp_path / "run" / "model.pt", weights_only=True)["state_dict"]
    weights = [k for k, v in saved.items() if v.is_floating_point() and "running_" not in k]
    assert "net.fc.weight" in weights and "net.bn1.weight" in weights
    assert not torch.equal(raw[0]["net.fc.weight"], raw[1]["net.fc.weight"])
    for k in weights:
        torch.testing.assert_close(saved[k], (raw[0][k] + raw[1][k]) / 2, rtol=1e-5, atol=1e-6)
    # the batch-norm statistics are not averaged: they are recomputed for the averaged weights
    assert "batch-norm statistics of the averaged weights recomputed" in proc.stdout
    assert not torch.allclose(saved["net.bn1.running_mean"],
                              (raw[0]["net.bn1.running_mean"] + raw[1]["net.bn1.running_mean"]) / 2)


def test_swa_start_out_of_range_is_a_clear_error(data_root, tmp_path):
    proc = run_module("torch_trainer.train", "--train-dir", str(data_root / "eval"), "--epochs", "1",
                      "--weights", "none", "--swa-start", "1", "--output-dir", str(tmp_path / "run"))
    assert proc.returncode != 0 and "--swa-start" in proc.stderr and "Traceback" not in proc.stderr


def test_same_seed_same_model_other_seed_differs(data_root, tmp_path):
    common = ["--train-dir", str(data_root / "eval"), "--epochs", "1", "--weights", "none", "--batch-size", "8"]
    for name, seed in (("a", "3"), ("b", "3"), ("c", "4")):
        proc = run_module("torch_trainer.train", *common, "--seed", seed, "--output-dir", str(tmp_path / name))
        assert proc.returncode == 0, proc.stderr[-3000:]
    w = {n: torch.load(tmp_path / n / "model.pt", weights_only=True)["state_dict"]["net.fc.weight"] for n in "abc"}
    assert torch.equal(w["a"], w["b"]) and not torch.equal(w["a"], w["c"])


def drawn(label: int, background) -> torch.Tensor:
    return torch.from_numpy(np.array(draw_mug(label, seed=3, background=background))).permute(2, 0, 1).contiguous()


def test_object_mask_finds_the_mug_and_swap_keeps_it():
    from torch_trainer.augment import object_mask, swap_background
    white = drawn(0, BACKGROUNDS[0])
    mask = object_mask(white)
    assert mask is not None
    body = (white.float() - torch.tensor(BACKGROUNDS[0]).view(3, 1, 1)).abs().amax(0) > 60
    assert mask[body].mean() > 0.95 and mask[~body].mean() < 0.3
    # a plain picture has nothing that stands out: no mask, and the swap falls back to the ellipse
    assert object_mask(torch.full((3, 64, 64), 128, dtype=torch.uint8)) is None
    other = drawn(1, BACKGROUNDS[1])
    torch.manual_seed(0)
    out = swap_background(white, other, mask="object")
    assert out.dtype == torch.uint8 and out.shape == white.shape
    inner = -torch.nn.functional.max_pool2d(-body.float()[None], 5, 1, 2)[0] > 0  # the body, 2 px in
    assert (out.float() - white.float())[:, inner].abs().max() <= 1  # the mug itself is untouched
    corner = out[:, :4, :4].float().mean((1, 2))
    assert (corner - torch.tensor(BACKGROUNDS[1])).abs().max() < 15  # the new floor shows around it
    with pytest.raises(ValueError, match="mask"):
        swap_background(white, other, mask="box")


def test_background_gain_re_exposes_to_the_old_brightness():
    from torch_trainer.augment import swap_background
    white, other = drawn(0, BACKGROUNDS[0]), drawn(1, BACKGROUNDS[1])
    means = []
    for seed in range(6):
        torch.manual_seed(seed)
        out = swap_background(white, other, gain=3.0, mask="object")
        assert abs(out.float().mean() - white.float().mean()) < 3  # clipping aside, same mean
        means.append(float(out[:, 20:44, 20:44].float().mean()))
    assert max(means) - min(means) > 10  # the mug's brightness moves with the background's


def test_random_backdrop_spans_dark_to_light_floors():
    from torch_trainer.augment import random_backdrop
    torch.manual_seed(0)
    means = []
    for _ in range(40):
        b = random_backdrop(64, 48)
        assert b.shape == (3, 64, 48) and b.dtype == torch.float32
        assert float(b.min()) >= 0 and float(b.max()) <= 255
        means.append(float(b.mean()))
    assert min(means) < 70 and max(means) > 190


def test_synthetic_background_and_object_gain_keep_the_mug_and_change_the_rest():
    from torch_trainer.augment import swap_background
    white, other = drawn(0, BACKGROUNDS[0]), drawn(1, BACKGROUNDS[1])
    body = (white.float() - torch.tensor(BACKGROUNDS[0]).view(3, 1, 1)).abs().amax(0) > 60
    inner = -torch.nn.functional.max_pool2d(-body.float()[None], 5, 1, 2)[0] > 0
    corners, bodies = [], []
    for seed in range(8):
        torch.manual_seed(seed)
        out = swap_background(white, other, mask="object", synthetic=1.0)
        assert (out.float() - white.float())[:, inner].abs().max() <= 1  # the mug itself is untouched
        corners.append(out[:, :4, :4].float().mean((1, 2)))
        torch.manual_seed(seed)
        lit = swap_background(white, other, mask="object", object_gain=3.0)
        bodies.append(float(lit[:, inner].float().mean()))
        # object gain relights the mug only: the other photo's floor is as it was
        assert (lit[:, :4, :4].float().mean((1, 2)) - torch.tensor(BACKGROUNDS[1])).abs().max() < 15
    # made-up floors, not the other photo's: they differ from it and from each other
    assert max(float((c - torch.tensor(BACKGROUNDS[1])).abs().max()) for c in corners) > 40
    assert float(torch.stack(corners).std(0).max()) > 20
    assert max(bodies) - min(bodies) > 30


def test_random_exposure_darkens_and_brightens_whole_pictures_and_clips():
    from torch_trainer.augment import RandomExposure
    image = torch.linspace(0.1, 0.9, 3 * 8 * 8).reshape(3, 8, 8)
    expose = RandomExposure(3.0)
    torch.manual_seed(0)
    ratios = []
    for _ in range(50):
        out = expose(image)
        assert out.shape == image.shape and float(out.min()) >= 0 and float(out.max()) <= 1
        ratios.append(float(out[0, 0, 0] / image[0, 0, 0]))  # a dark pixel: never clipped
    assert min(ratios) >= 1 / 3 - 1e-6 and max(ratios) <= 3 + 1e-6
    assert min(ratios) < 0.5 and max(ratios) > 2  # both ways, by more than a stop
    with pytest.raises(ValueError, match="exposure"):
        RandomExposure(0.5)


def test_random_convolution_recolours_pictures_keeps_flat_areas_flat_and_clips():
    from torch_trainer.augment import RandomConvolution
    image = torch.full((3, 16, 16), 0.2)
    image[:, 4:12, 4:12] = torch.tensor([0.9, 0.3, 0.1]).view(3, 1, 1)  # an orange square on grey
    assert torch.equal(RandomConvolution(0.0)(image), image)
    torch.manual_seed(0)
    colours = []
    for _ in range(20):
        out = RandomConvolution(1.0, kernel_sizes=(1,))(image)
        assert out.shape == image.shape and float(out.min()) >= 0 and float(out.max()) <= 1
        # a 1x1 kernel maps colours pixel by pixel: each flat area stays one colour
        inside, outside = out[:, 4:12, 4:12].flatten(1), out[:, :4].flatten(1)
        assert float(inside.std(1).max()) < 1e-5 and float(outside.std(1).max()) < 1e-5
        colours.append(inside[:, 0])
    # the square's colour changes from draw to draw, and often by a lot
    assert float(torch.stack(colours).std(0).max()) > 0.1
    out = RandomConvolution(1.0, kernel_sizes=(7,))(image)
    assert not torch.equal(out, image)
    with pytest.raises(ValueError, match="random convolution"):
        RandomConvolution(1.5)


def test_luma_inversion_turns_brightness_over_and_keeps_colour():
    from torch_trainer.augment import RandomLumaInvert
    luma = torch.tensor([0.299, 0.587, 0.114]).view(3, 1, 1)
    white_mug = torch.full((3, 8, 8), 0.85)
    white_mug[:, 2:4, 2:6] = torch.tensor([0.6, 0.2, 0.2]).view(3, 1, 1)  # a red logo panel
    assert torch.equal(RandomLumaInvert(0.0)(white_mug), white_mug)
    out = RandomLumaInvert(1.0)(white_mug)
    assert out.shape == white_mug.shape and float(out.min()) >= 0 and float(out.max()) <= 1
    y_in, y_out = (white_mug * luma).sum(0), (out * luma).sum(0)
    assert torch.allclose(y_out, 1 - y_in, atol=1e-5)  # nothing clipped here: exactly 1 - Y
    assert float(out[:, 5, 5].max()) < 0.2  # the white body is dark now
    # the panel keeps its chroma: still red, by as much as before
    assert torch.allclose(out[0] - out[1], white_mug[0] - white_mug[1], atol=1e-5)
    assert float(out[0, 2, 2] - out[1, 2, 2]) > 0.35
    with pytest.raises(ValueError, match="luma inversion"):
        RandomLumaInvert(-0.1)


def test_consistency_gives_two_pictures_per_photo_and_scores_their_disagreement(two_shoots, tmp_path):
    from torch_trainer.augment import train_view
    from torch_trainer.config import TrainConfig
    from torch_trainer.train import fit, js_divergence
    torch.manual_seed(0)
    data = MugDataset(two_shoots, 64)
    pair, label = train_view(data, None, TrainConfig(consistency=1.0))[3]
    assert pair.shape == (2, 3, 64, 64) and label == int(data.targets[3])
    assert not torch.equal(pair[0], pair[1])  # augmented independently
    assert train_view(data, None, TrainConfig())[3][0].shape == (3, 64, 64)
    logits = torch.tensor([[2.0, 0.0, 0.0, -1.0], [2.0, 0.0, 0.0, -1.0], [0.0, 3.0, 0.0, 0.0], [0.0, 0.0, 3.0, 0.0]])
    js = js_divergence(logits, views=2)
    # photo 0's pictures agree (0), photo 1's do not: JS of two one-hot-ish answers, halved by the mean over photos
    p, q = logits[2].softmax(0), logits[3].softmax(0)
    m = (p + q) / 2
    expected = ((p * (p / m).log()).sum() + (q * (q / m).log()).sum()) / 2 / 2
    assert torch.isclose(js, expected, atol=1e-6) and float(js) > 0.1
    assert float(js_divergence(logits[:2], views=2)) < 1e-6
    cfg = TrainConfig(weights="none", epochs=1, batch_size=16, image_size=64, consistency=1.0, ema_decay=0)
    (tmp_path / "run").mkdir()
    metrics = fit(cfg, train_view(data, None, cfg), None, data.class_names, tmp_path / "run", log=lambda *a: None)
    assert metrics["complete"] and (tmp_path / "run" / "model.pt").is_file()
    assert len(metrics["history"]) == 1 and np.isfinite(metrics["history"][0]["train_loss"])
    with pytest.raises(ValueError, match="--consistency"):
        fit(TrainConfig(consistency=1.0, mix=0.5), [], None, ["a"], "unused")


def test_bench_ensemble_scores_each_seed_and_their_average(two_shoots, tmp_path):
    from bench.ensemble import score_report
    from torch_trainer.evaluate import class_probabilities
    from torch_trainer.model import load_checkpoint
    out = tmp_path / "report"
    proc = run_module("torch_trainer.validate", "--data-dir", str(two_shoots), "--output-dir", str(out),
                      "--epochs", "1", "--weights", "none", "--batch-size", "16", "--image-size", "64",
                      "--seeds", "0", "1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = {(r["seed"], r["fold"]): r["accuracy"] for r in json.loads((out / "report.json").read_text())["runs"]}
    proc = run_module("bench.ensemble", "--report", str(out), "--data-dir", str(two_shoots), "--sizes", "2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "ensemble2" in proc.stdout and "all folds" in proc.stdout
    result = json.loads((out / "ensemble.json").read_text())
    assert result["seeds"] == [0, 1]
    data = MugDataset(two_shoots)
    shoots = find_shoots(data.images, data.targets)
    for k, fold in enumerate(("fold0", "fold1")):
        row = result["folds"][fold]
        # a single model scores what validate reported for its run
        assert row["single"] == pytest.approx([runs[(0, fold)], runs[(1, fold)]])
        held = torch.from_numpy(shoots == k)
        probs = [class_probabilities(load_checkpoint(out / f"seed{s}_{fold}" / "model.pt")[0], data.images[held]) for s in (0, 1)]
        assert row["ensemble2"] == [float(((probs[0] + probs[1]).argmax(1) == data.targets[held].numpy()).mean())]
    (out / "seed1_fold1" / "model.pt").unlink()
    with pytest.raises(FileNotFoundError, match="seed1_fold1"):
        score_report(out, two_shoots, sizes=(2,))

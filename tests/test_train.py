import json
import warnings

import pytest
import torch
import torchvision

from conftest import run_module
from torch_trainer.model import MugClassifier, WeightsUnavailable, load_checkpoint, save_checkpoint
from torch_trainer.config import TrainConfig
from torch_trainer.train import autocast_dtype, build_model, cpu_has_amx


def test_run_writes_checkpoints_and_metrics(trained_run):
    for name in ("model.pt", "last.pt", "best.pt", "metrics.json"):
        assert (trained_run / name).is_file(), name
    metrics = json.loads((trained_run / "metrics.json").read_text())
    assert [row["epoch"] for row in metrics["history"]] == list(range(1, 7))
    assert metrics["history"][-1]["train_loss"] < metrics["history"][0]["train_loss"]
    # the drawn classes differ in colour: a few epochs must get well past chance (25%)
    assert metrics["best_val_accuracy"] >= 0.75, metrics["history"]


def test_checkpoint_round_trip(trained_run, tmp_path):
    model, meta = load_checkpoint(trained_run / "model.pt")
    assert meta["arch"] == "resnet18" and meta["input_size"] == 64 and meta["image_size"] == 64
    assert meta["class_names"] == ["0white", "1black", "2blue", "3transparent"]
    x = torch.rand(3, 3, 64, 64)
    save_checkpoint(tmp_path / "copy.pt", model, meta["class_names"], meta["input_size"])
    again, _ = load_checkpoint(tmp_path / "copy.pt")
    with torch.no_grad():
        assert torch.equal(model(x), again(x))
    # a plain weights_only load works: no pickled code in the checkpoint
    assert "state_dict" in torch.load(trained_run / "model.pt", weights_only=True)


def test_bad_checkpoint_is_named(tmp_path):
    bad = tmp_path / "model.pt"
    bad.write_bytes(b"garbage")
    with pytest.raises(ValueError, match="model.pt"):
        load_checkpoint(bad)
    with pytest.raises(FileNotFoundError, match="nothing.pt"):
        load_checkpoint(tmp_path / "nothing.pt")


def test_refuses_non_empty_output_dir(data_root, trained_run):
    before = (trained_run / "model.pt").read_bytes()
    proc = run_module("torch_trainer.train", "--train-dir", str(data_root / "train"), "--output-dir",
                      str(trained_run), "--epochs", "1", "--weights", "none")
    assert proc.returncode == 2
    assert "not empty" in proc.stderr and str(trained_run) in proc.stderr
    assert (trained_run / "model.pt").read_bytes() == before


def test_bad_data_dir_is_a_clear_error(tmp_path):
    proc = run_module("torch_trainer.train", "--train-dir", str(tmp_path / "nope"), "--output-dir",
                      str(tmp_path / "run"), "--weights", "none")
    assert proc.returncode == 2 and "nope" in proc.stderr and "Traceback" not in proc.stderr


def unreachable_weights(monkeypatch):
    """Send torchvision's real download code to a closed local port, whatever network this machine has."""
    real = torchvision.models._api.load_state_dict_from_url

    def offline(url, *args, **kwargs):
        return real("http://127.0.0.1:9/" + url.rsplit("/", 1)[-1], *args, **kwargs)

    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", offline)


def test_imagenet_unreachable_falls_back_loudly(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    unreachable_weights(monkeypatch)
    cfg = TrainConfig(weights="imagenet")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        build_model(cfg, 4)
    assert any("RANDOM INITIALISATION" in str(w.message) for w in caught)
    assert cfg.extra["pretrained"] is False
    with pytest.raises(WeightsUnavailable, match="could not download ImageNet weights"):
        build_model(TrainConfig(weights="imagenet", strict_weights=True), 4)


def test_weights_from_a_checkpoint(trained_run):
    cfg = TrainConfig(weights=str(trained_run / "model.pt"))
    model = build_model(cfg, 4)
    source, _ = load_checkpoint(trained_run / "model.pt")
    assert torch.equal(model.net.conv1.weight, source.net.conv1.weight)
    assert cfg.extra["pretrained"] is True


@pytest.mark.parametrize("arch", ["resnet34", "resnet50"])
def test_other_archs_build(arch):
    model = MugClassifier(arch, 4).eval()
    assert model(torch.rand(2, 3, 64, 64)).shape == (2, 4)
    with pytest.raises(ValueError, match="resnet9"):
        MugClassifier("resnet9", 4)


def test_mixstyle_changes_training_features_only():
    from torch_trainer.model import MugClassifier, add_mixstyle
    torch.manual_seed(0)
    plain = MugClassifier("resnet18", 4, 32)
    mixed = MugClassifier("resnet18", 4, 32)
    mixed.load_state_dict(plain.state_dict())
    add_mixstyle(mixed, p=1.0)
    x = torch.rand(6, 3, 32, 32)
    plain.eval(), mixed.eval()
    with torch.no_grad():
        assert torch.equal(plain(x), mixed(x))  # eval (and so the export) is untouched
    plain.train(), mixed.train()
    with torch.no_grad():
        out = mixed(x)
        assert out.shape == (6, 4) and not torch.allclose(plain(x), out, atol=1e-4)


def test_batch_mixer_mixes_a_share_of_batches_into_class_probabilities():
    from torch_trainer.augment import batch_mixer
    assert batch_mixer(TrainConfig(mix=0.0), 4) is None
    torch.manual_seed(0)
    images, labels = torch.rand(8, 3, 32, 32), torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])
    mixed, targets = batch_mixer(TrainConfig(mix=1.0), 4)(images, labels)
    assert targets.shape == (8, 4) and torch.allclose(targets.sum(1), torch.ones(8))
    assert (targets.max(1).values < 1).all()  # every picture now holds two of them
    assert not torch.equal(mixed, images)
    # a mixed batch trains through the loss the recipe uses (soft targets with label smoothing)
    loss = torch.nn.functional.cross_entropy(torch.randn(8, 4), targets, label_smoothing=0.1)
    assert torch.isfinite(loss)


def test_augmix_flag_changes_pictures_and_keeps_their_range():
    from torch_trainer.augment import train_transform
    torch.manual_seed(0)
    image = (torch.rand(3, 64, 64) * 255).to(torch.uint8)
    quiet = dict(crop_scale=1.0, rotate=0.0, brightness=0.0, contrast=0.0, saturation=0.0, hue=0.0, blur_p=0.0,
                 noise=0.0, erase_p=0.0)
    outs = [train_transform(TrainConfig(augmix=p, **quiet))(image) for p in (0.0, 1.0)]
    assert all(o.dtype == torch.float32 and o.shape == (3, 64, 64) for o in outs)
    assert outs[1].min() >= 0 and outs[1].max() <= 1
    # crops of the whole picture and flips aside, only AugMix can change pixel values
    plain = image.float() / 255
    assert torch.allclose(outs[0], plain) or torch.allclose(outs[0], plain.flip(-1))
    assert not (torch.allclose(outs[1], plain, atol=1e-3) or torch.allclose(outs[1], plain.flip(-1), atol=1e-3))


def test_ibn_blocks_normalise_each_picture_and_survive_checkpoint_and_onnx(tmp_path):
    import onnxruntime as ort

    from convert.export_onnx import export_onnx
    from torch_trainer.model import IBN, load_checkpoint, save_checkpoint
    torch.manual_seed(0)
    model = MugClassifier("resnet18", 4, 64, norm="ibn")
    assert all(isinstance(b.bn1, IBN) for layer in (model.net.layer1, model.net.layer2, model.net.layer3)
               for b in layer)
    assert not isinstance(model.net.layer4[0].bn1, IBN)
    ibn = model.net.layer1[0].bn1.eval()
    x = torch.rand(2, 64, 8, 8)
    brighter = x.clone()
    brighter[0] = brighter[0] * 3 + 1  # one picture's features, rescaled and shifted
    out, out_b = ibn(x), ibn(brighter)
    assert torch.allclose(out[:, :32], out_b[:, :32], atol=1e-3)  # the instance-norm half does not see it
    assert not torch.allclose(out[0, 32:], out_b[0, 32:], atol=1e-2)  # the batch-norm half does
    assert torch.equal(out[1], out_b[1])

    model.train()
    model(torch.rand(8, 3, 64, 64))  # move the batch-norm statistics off their init
    model.eval()
    save_checkpoint(tmp_path / "model.pt", model, ["a", "b", "c", "d"], 64)
    loaded, meta = load_checkpoint(tmp_path / "model.pt")
    assert meta["norm"] == "ibn" and loaded.norm == "ibn"
    images = torch.rand(3, 3, 64, 64)
    with torch.no_grad():
        expected = torch.softmax(model(images), 1).numpy()
        assert torch.equal(model(images), loaded(images))
    path = export_onnx(loaded, tmp_path / "model.onnx", 64)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"images": (images.permute(0, 2, 3, 1) * 255).numpy()})[0]
    assert abs(got - expected).max() < 1e-5
    from convert.to_savedmodel import frozen_serving_graph
    graph_def, _, _, _ = frozen_serving_graph(path, 64)  # onnx-tf reads every op of the IBN blocks
    assert any(node.op == "Conv2D" for node in graph_def.node)
    with pytest.raises(ValueError, match="--norm"):
        MugClassifier("resnet18", 4, norm="gn")


def test_self_challenge_mutes_what_the_true_class_leans_on():
    from torch_trainer.model import self_challenged_logits
    torch.manual_seed(0)
    model = MugClassifier("resnet18", 4, 64).eval()  # eval: the same features on every call
    images, labels = torch.rand(6, 3, 64, 64), torch.tensor([0, 1, 2, 3, 0, 1])
    with torch.no_grad():
        plain = model(images)
    assert torch.allclose(self_challenged_logits(model, images, labels, share=0.0), plain, atol=1e-5)
    for _ in range(6):  # channels and positions are both drawn
        muted = self_challenged_logits(model, images, labels, share=1.0)
        true_plain, true_muted = plain.gather(1, labels[:, None]), muted.gather(1, labels[:, None])
        assert (true_muted < true_plain - 1e-6).all()  # the top third of the score's support is gone
        assert muted.requires_grad
    model.rsc_share = 1.0  # what the trainer sets from --rsc: forward challenges in training only
    with torch.no_grad():
        assert torch.equal(model(images, labels), plain)
    model.train()
    trained_plain, trained_muted = model(images), model(images, labels)
    assert (trained_muted.gather(1, labels[:, None]) < trained_plain.gather(1, labels[:, None])).all()
    with pytest.raises(ValueError, match="--rsc"):
        from torch_trainer.train import fit
        fit(TrainConfig(rsc=0.5, mix=0.5), [], None, ["a"], "unused")


def test_cpu_precision_follows_amp_and_saves_float32(data_root, tmp_path):
    cpu = torch.device("cpu")
    assert autocast_dtype(TrainConfig(amp="bf16"), cpu) == torch.bfloat16
    assert autocast_dtype(TrainConfig(amp="off"), cpu) is None
    assert autocast_dtype(TrainConfig(amp="auto"), cpu) == (torch.bfloat16 if cpu_has_amx() else None)
    with pytest.raises(ValueError, match="--amp fp16 needs CUDA"):
        autocast_dtype(TrainConfig(amp="fp16"), cpu)
    proc = run_module("torch_trainer.train", "--train-dir", str(data_root / "eval"), "--epochs", "1",
                      "--weights", "none", "--batch-size", "8", "--amp", "bf16",
                      "--output-dir", str(tmp_path / "run"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "amp torch.bfloat16" in proc.stdout and "channels-last on" in proc.stdout
    # autocast keeps the weights in float32, which is what the export and the SavedModel expect
    state = torch.load(tmp_path / "run" / "model.pt", weights_only=True)["state_dict"]
    assert state["net.fc.weight"].dtype == torch.float32
    assert all(v.dtype == torch.float32 for v in state.values() if v.is_floating_point())

import json
from pathlib import Path

import pytest
import torch
import torchvision

from conftest import run_main, run_module
from torch_trainer.classifier.network import MugClassifier, WeightsUnavailable, load_checkpoint, save_checkpoint
from torch_trainer.settings.plan import TrainConfig
from torch_trainer.training.build import autocast_dtype, build_model


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
    assert meta["arch"] == "resnet18" and meta["input_size"] == 64 and meta["resolution"] == 64
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
    proc = run_main("torch_trainer.train", "--recipe", "exposure-ens3", "--train-dir", str(data_root / "train"), "--output-dir",
                    str(trained_run), "--epochs", "1", "--weights", "none")
    assert proc.returncode == 2
    assert "not empty" in proc.stderr and str(trained_run) in proc.stderr
    assert (trained_run / "model.pt").read_bytes() == before


def test_bad_data_dir_is_a_clear_error(tmp_path):
    proc = run_main("torch_trainer.train", "--recipe", "exposure-ens3", "--train-dir", str(tmp_path / "nope"), "--output-dir",
                    str(tmp_path / "run"), "--weights", "none")
    assert proc.returncode == 2 and "nope" in proc.stderr and "Traceback" not in proc.stderr


def unreachable_weights(monkeypatch):
    """Send torchvision's real download code to a closed local port, whatever network this machine has."""
    real = torchvision.models._api.load_state_dict_from_url

    def offline(url, *args, **kwargs):
        return real("http://127.0.0.1:9/" + url.rsplit("/", 1)[-1], *args, **kwargs)

    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", offline)


def test_a_failed_download_is_an_error_not_random_weights(monkeypatch, tmp_path, data_root):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    unreachable_weights(monkeypatch)
    with pytest.raises(WeightsUnavailable, match="could not download ImageNet weights for resnet18") as caught:
        build_model(TrainConfig(weights="imagenet"), 4)
    # it says what to do: where the file goes, or the flag, or the weights that install with the project
    message = str(caught.value)
    assert str(tmp_path / "hub" / "checkpoints") in message and "--weights none" in message
    assert "efficientnet_lite0" in message
    # through the CLI: exit 2, no traceback, no run folder with a random-init model in it
    proc = run_module("torch_trainer.train", "--recipe", "exposure-ens3", "--train-dir", str(data_root / "eval"), "--output-dir",
                      str(tmp_path / "run"), "--recipe", "exposure-ens3", "--weights", "imagenet", "--epochs", "1",
                      env={"TORCH_HOME": str(tmp_path), "https_proxy": "http://127.0.0.1:9",
                           "HTTPS_PROXY": "http://127.0.0.1:9"})
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "could not download ImageNet weights for resnet18" in proc.stderr
    assert not list((tmp_path / "run").rglob("*.pt"))


def test_weights_from_a_checkpoint(trained_run):
    cfg = TrainConfig(weights=str(trained_run / "model.pt"))
    model = build_model(cfg, 4)
    source, _ = load_checkpoint(trained_run / "model.pt")
    assert torch.equal(model.net.conv1.weight, source.net.conv1.weight)
    assert model.weights_source == f"checkpoint ({(trained_run / 'model.pt').resolve()})"
    with pytest.raises(ValueError, match="does not fit efficientnet_lite0"):
        build_model(TrainConfig(weights=str(trained_run / "model.pt"), arch="efficientnet_lite0"), 4)


def test_weights_sources_are_recorded(trained_run):
    assert build_model(TrainConfig(weights="none"), 4).weights_source == "random"
    model, meta = load_checkpoint(trained_run / "model.pt")
    assert model.weights_source == "random" and meta["weights_sources"] == ["random"]
    assert json.loads((trained_run / "metrics.json").read_text())["weights_sources"] == ["random"]


@pytest.mark.parametrize("arch", ["resnet34", "resnet50"])
def test_other_archs_build(arch):
    model = MugClassifier(arch, 4).eval()
    assert model(torch.rand(2, 3, 64, 64)).shape == (2, 4)
    with pytest.raises(ValueError, match="resnet9"):
        MugClassifier("resnet9", 4)


def test_cpu_precision_follows_amp_and_saves_float32(data_root, tmp_path):
    cpu = torch.device("cpu")
    assert autocast_dtype(TrainConfig(amp="bf16"), cpu) == torch.bfloat16
    assert autocast_dtype(TrainConfig(amp="off"), cpu) is None
    with pytest.raises(ValueError, match="--amp fp16 needs CUDA"):
        autocast_dtype(TrainConfig(amp="fp16"), cpu)
    proc = run_module("torch_trainer.train", "--recipe", "exposure-ens3", "--train-dir", str(data_root / "eval"),
                      "--epochs", "1", "--batch-size", "8", "--amp", "bf16", "--ensemble", "1",
                      "--output-dir", str(tmp_path / "run"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert (metrics["amp"], metrics["channels_last"]) == ("bfloat16", True)  # channels-last comes with bf16 on the CPU
    # autocast keeps the weights in float32, which is what the export and the SavedModel expect
    state = torch.load(tmp_path / "run" / "model.pt", weights_only=True)["state_dict"]
    assert state["net.fc.weight"].dtype == torch.float32
    assert all(v.dtype == torch.float32 for v in state.values() if v.is_floating_point())


def test_a_checkpoint_records_its_run_and_the_folders_it_trained_on(trained_run):
    """The export finds photos to check itself with in the checkpoint's record of the run's data."""
    from convert.export_savedmodel import training_folder
    _, meta = load_checkpoint(trained_run / "model.pt")
    assert training_folder(meta) == meta["data"]["train_dirs"][0] and Path(training_folder(meta)).is_dir()
    assert meta["run"]["recipe"] and meta["train_config"]["arch"] == "resnet18"

"""torchrun with DDP on this CPU: 2 processes, gloo."""

import json
import subprocess
import sys

import torch

from conftest import ROOT
from convert.compare import parity, require
from convert.export_onnx import export_onnx, sample_images
from torch_trainer.training.augment import TransformedSubset
from torch_trainer.classifier.photos import MugDataset
from torch_trainer.classifier.network import load_checkpoint
from torch_trainer.settings.plan import TrainConfig
from torch_trainer.training.build import train_sampler

# Accuracy of a 2-process run may differ from a single-process one (different augmentation
# streams and BN statistics per rank), but not by more than this on the 32 drawn eval images.
TOLERANCE = 0.2


def test_ranks_see_disjoint_shards(data_root):
    data = TransformedSubset(MugDataset(data_root / "train"))
    for epoch in (0, 1):
        shards = []
        for rank in (0, 1):
            sampler = train_sampler(data, TrainConfig(seed=5), rank, 2)
            sampler.set_epoch(epoch)
            shards.append(list(sampler))
        assert len(shards[0]) == len(shards[1]) == len(data) // 2
        assert not set(shards[0]) & set(shards[1])
        assert len(set(shards[0]) | set(shards[1])) == len(data)
    assert train_sampler(data, TrainConfig(), 0, 1) is None


def test_torchrun_two_processes_matches_single(data_root, trained_run, tmp_path):
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "torch_trainer.train", "--recipe", "exposure-ens3", "--train-dir", str(data_root / "train"), "--val-dir", str(data_root / "eval"),
           "--output-dir", str(out), "--epochs", "6", "--ensemble", "1", "--weights", "none", "--batch-size", "8", "--lr", "3e-3"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert proc.stdout.count("training resnet18 at 64 px from random weights on 96 images") == 1  # only rank 0 logs
    assert "2 process(es)" in proc.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    single = json.loads((trained_run / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and len(metrics["history"]) == 6
    # both ranks' samples are counted: 96 images per epoch (2 ranks x 48 = 6 batches of 8)
    assert [row["images"] for row in metrics["history"]] == [96] * 6
    assert abs(metrics["final_val_accuracy"] - single["final_val_accuracy"]) <= TOLERANCE, \
        (metrics["final_val_accuracy"], single["final_val_accuracy"])
    model, meta = load_checkpoint(out / "model.pt")
    onnx_path = export_onnx(model, tmp_path / "ddp.onnx", meta["input_size"])
    blobs = [p.read_bytes() for p in sample_images(data_root / "eval", 8, size=64)]
    require(parity(model, meta["input_size"], {"files": blobs}, onnx_path=onnx_path), str(onnx_path))


def test_torchrun_resume(data_root, tmp_path):
    out = tmp_path / "ddp"
    base = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
            "-m", "torch_trainer.train"]
    first = subprocess.run(base + ["--recipe", "exposure-ens3", "--train-dir", str(data_root / "eval"), "--output-dir", str(out), "--epochs", "2",
                                   "--ensemble", "1", "--weights", "none", "--batch-size", "8", "--stop-after", "1"],
                           cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-4000:]
    assert not (out / "model.pt").exists()
    second = subprocess.run(base + ["--resume", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr[-4000:]
    history = json.loads((out / "metrics.json").read_text())["history"]
    assert [r["epoch"] for r in history] == [1, 2]
    # the same two epochs without the interruption give the same model
    whole = subprocess.run(base + ["--recipe", "exposure-ens3", "--train-dir", str(data_root / "eval"), "--output-dir",
                                   str(tmp_path / "whole"), "--epochs", "2", "--ensemble", "1", "--weights", "none",
                                   "--batch-size", "8"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert whole.returncode == 0, whole.stderr[-4000:]
    resumed = torch.load(out / "model.pt", weights_only=True)["state_dict"]
    uninterrupted = torch.load(tmp_path / "whole" / "model.pt", weights_only=True)["state_dict"]
    assert resumed.keys() == uninterrupted.keys()
    for key in resumed:
        torch.testing.assert_close(resumed[key], uninterrupted[key], msg=key)

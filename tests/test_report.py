"""The classification report: counts checked by hand, the confusion plot a real PNG."""

import pytest
from PIL import Image

from torch_trainer.classifier.report import classification_report, format_classification_report, plot_confusion

NAMES = ["0white", "1black", "2blue", "3transparent"]


def test_report_counts_what_happened():
    targets = [0, 0, 0, 1, 1, 2, 2, 2, 2, 3]
    preds = [0, 0, 1, 1, 1, 2, 2, 2, 0, 0]  # no image is predicted 3transparent
    report = classification_report(preds, targets, NAMES)
    assert report["images"] == 10 and report["accuracy"] == pytest.approx(0.7)
    assert report["confusion"] == [[2, 1, 0, 0], [0, 2, 0, 0], [1, 0, 3, 0], [1, 0, 0, 0]]
    white, black, glass = report["per_class"]["0white"], report["per_class"]["1black"], report["per_class"]["3transparent"]
    assert white["precision"] == pytest.approx(2 / 4) and white["recall"] == pytest.approx(2 / 3)
    assert white["f1"] == pytest.approx(2 * (1 / 2) * (2 / 3) / (1 / 2 + 2 / 3)) and white["support"] == 3
    assert black["precision"] == pytest.approx(2 / 3) and black["recall"] == 1.0
    assert glass == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    text = format_classification_report(report)
    assert "accuracy 0.7000 on 10 images" in text and text.splitlines()[-1].split() == ["3transparent", "1", "0", "0", "0"]


def test_an_empty_report_is_an_error():
    with pytest.raises(ValueError, match="no predictions"):
        classification_report([], [], NAMES)


def test_confusion_plot_is_a_png(tmp_path):
    report = classification_report([0, 1, 2, 3, 3], [0, 1, 2, 3, 2], NAMES)
    plot_confusion(report, tmp_path / "confusion.png")
    with Image.open(tmp_path / "confusion.png") as image:
        assert image.format == "PNG" and image.size == (550, 480)

import numpy as np
import pytest
import torch
from PIL import Image

from draw_mug import draw_mug
from conftest import run_main, write_dataset
from torch_trainer.classifier.photos import DatasetError, MugDataset, find_classes, split_dir
from torch_trainer.training.data import group_split, near_duplicate_groups


def test_labels_come_from_folder_numbers(tmp_path):
    names = ("0white", "1black", "2blue", "3transparant")  # ML6's older spelling
    write_dataset(tmp_path, 3, names=names)
    (tmp_path / "1black" / ".hidden.jpg").write_bytes(b"not an image")
    (tmp_path / ".DS_Store").write_bytes(b"junk")
    ds = MugDataset(tmp_path)
    assert ds.class_names == list(names)
    assert ds.targets.tolist() == [0] * 3 + [1] * 3 + [2] * 3 + [3] * 3
    assert ds.images.shape == (12, 3, 64, 64) and ds.images.dtype == torch.uint8


def test_png_of_other_size_is_resized_like_pil(tmp_path):
    write_dataset(tmp_path, 2)
    ds = MugDataset(tmp_path)
    png = tmp_path / "0white" / "0.png"
    assert Image.open(png).size == (96, 80)
    expected = np.asarray(Image.open(png).convert("RGB").resize((64, 64), Image.BILINEAR))
    index = ds.paths.index(png)
    assert np.array_equal(ds.images[index].permute(1, 2, 0).numpy(), expected)


@pytest.mark.parametrize("breakage, culprit", [
    ("corrupt", "1black/5.jpg"),
    ("empty", "2blue"),
    ("duplicate", "2bleu"),
    ("gap", "3transparent"),
    ("unnumbered", "white"),
])
def test_bad_layouts_name_the_path(tmp_path, breakage, culprit):
    write_dataset(tmp_path, 6)
    if breakage == "corrupt":
        (tmp_path / "1black" / "5.jpg").write_bytes(b"\xff\xd8 truncated jpeg")
    elif breakage == "empty":
        for f in (tmp_path / "2blue").iterdir():
            f.unlink()
    elif breakage == "duplicate":
        (tmp_path / "2bleu").mkdir()
    elif breakage == "gap":
        for f in (tmp_path / "2blue").iterdir():
            f.unlink()
        (tmp_path / "2blue").rmdir()
    elif breakage == "unnumbered":
        (tmp_path / "white").mkdir()
    with pytest.raises(DatasetError) as err:
        MugDataset(tmp_path)
    message = str(err.value)
    if breakage == "gap":  # no folder is to blame: the message names the missing number
        assert "missing [2]" in message
    else:  # the whole path, not a word a hint might contain too ("e.g. 0white" holds "white")
        assert str(tmp_path / culprit) in message


def test_missing_folder_is_named(tmp_path):
    with pytest.raises(DatasetError, match="does-not-exist"):
        find_classes(tmp_path / "does-not-exist")


def test_eval_split_answers_to_test(tmp_path):
    (tmp_path / "train").mkdir()
    (tmp_path / "test").mkdir()
    assert split_dir(tmp_path, "train") == tmp_path / "train"
    assert split_dir(tmp_path, "eval") == tmp_path / "test"
    (tmp_path / "eval").mkdir()
    assert split_dir(tmp_path, "eval") == tmp_path / "eval"
    assert split_dir(tmp_path / "train", "eval") is None


def test_near_duplicates_share_a_group_and_a_side():
    base = [np.asarray(draw_mug(i % 4, seed=i)) for i in range(12)]
    rng = np.random.default_rng(0)
    frames = []
    for img in base:  # three "burst frames" per picture: tiny pixel noise
        for _ in range(3):
            frames.append(np.clip(img + rng.normal(0, 2, img.shape), 0, 255).astype(np.uint8))
    images = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2)
    groups = near_duplicate_groups(images)
    assert len(set(groups)) == 12
    assert all(len(set(groups[3 * i:3 * i + 3])) == 1 for i in range(12))
    targets = torch.tensor([(i // 3) % 4 for i in range(36)])
    train, val = group_split(targets, groups, val_fraction=0.3, seed=1)
    assert sorted(train + val) == list(range(36)) and val
    assert not set(groups[train]) & set(groups[val])
    assert set(targets[val].tolist()) == {0, 1, 2, 3}


def test_a_shoot_split_keeps_most_of_every_shoot_in_training():
    # one class, two shoots: one a single 50-frame burst (as a shoot of ML6's blue), one of ten 5-frame bursts
    groups = np.array([0] * 50 + [g for g in range(1, 11) for _ in range(5)])
    shoots = np.array([0] * 50 + [1] * 50)
    targets = torch.zeros(100, dtype=torch.long)
    by_class = [group_split(targets, groups, 0.2, seed)[1] for seed in range(20)]
    assert any(set(range(50)) <= set(val) for val in by_class)  # drawn per class, a whole shoot can go
    for seed in range(20):
        train, val = group_split(targets, groups, 0.2, seed, shoots)
        assert sorted(train + val) == list(range(100)) and not set(groups[train]) & set(groups[val])
        assert not set(val) & set(range(50))  # the one-burst shoot stays in training
        assert 10 <= len(val) <= 20  # a fifth of the other shoot, never over twice that
    assert len({tuple(group_split(targets, groups, 0.2, seed, shoots)[1]) for seed in range(20)}) > 1


def test_corrupt_image_stops_training_cleanly(tmp_path):
    write_dataset(tmp_path / "train", 3)
    (tmp_path / "train" / "1black" / "2.jpg").write_bytes(b"\xff\xd8 truncated jpeg")
    proc = run_main("torch_trainer.train", "--recipe", "exposure-ens3", "--train-dir", str(tmp_path / "train"), "--output-dir",
                    str(tmp_path / "run"), "--weights", "none")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    # the progress bar is cleared first, so that the error starts a line of its own on a terminal
    last = proc.stderr.replace("\r", "\n").strip().splitlines()[-1]
    assert last.startswith("error: ") and str(tmp_path / "train" / "1black" / "2.jpg") in last
    assert not (tmp_path / "run").exists()  # nothing made before the data has loaded

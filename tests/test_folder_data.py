"""Training on any image folder: the scan, the decode (sizes, modes, formats, broken files), streaming, the net for
other sizes and channels, and a class model trained on a folder whose class names are its prompts."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from fundiff import models, parta
from fundiff.errors import UserError
from fundiff.nets.unet import UNet, UNetConfig, supported_size, unet_depth
from fundiff.train.data import load_folder, split_holdout
from fundiff.train.folder import CachedImages, FolderImages, decode, read_folder
from fundiff.train.recipes import Recipe
from fundiff.train.session import run_train

COLOURS = {"circle": (220, 40, 40), "square": (40, 200, 60), "stripe": (40, 60, 220)}


def _shape(kind: str, side: int, rng: np.random.Generator) -> np.ndarray:
    """A coloured shape on a light background, side x side RGB uint8, jittered."""
    yy, xx = np.mgrid[:side, :side] / side
    cx, cy = 0.5 + rng.uniform(-0.1, 0.1, 2)
    mask = {"circle": (xx - cx) ** 2 + (yy - cy) ** 2 < 0.09,
            "square": (abs(xx - cx) < 0.25) & (abs(yy - cy) < 0.25),
            "stripe": abs(xx - cx) < 0.12}[kind]
    img = np.full((side, side, 3), 235, np.uint8)
    img[mask] = COLOURS[kind]
    return img


def make_folder(root, per_class: int = 14, seed: int = 0):
    """Class subfolders of coloured shapes: 28-37 px (median 32), not square, as PNG (RGB, RGBA, palette), JPEG and
    WebP; plus one broken file and one file that is not an image."""
    rng = np.random.default_rng(seed)
    for kind in COLOURS:
        (root / kind).mkdir(parents=True)
        for i in range(per_class):
            side = (28, 30, 32, 34, 36)[i % 5] + int(rng.integers(0, 2))
            im = Image.fromarray(_shape(kind, side, rng)).resize((side + 6, side))
            fmt = i % 5
            if fmt == 0:
                im.save(root / kind / f"{i}.png")
            elif fmt == 1:
                im.convert("RGBA").save(root / kind / f"{i}.png")
            elif fmt == 2:
                im.convert("P").save(root / kind / f"{i}.png")
            elif fmt == 3:
                im.save(root / kind / f"{i}.jpg", quality=95)
            else:
                im.save(root / kind / f"{i}.webp", lossless=True)
    (root / "square" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    (root / "circle" / "notes.txt").write_text("not an image")
    return root


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    return make_folder(tmp_path_factory.mktemp("shapes") / "data")


def test_scan_reads_classes_sizes_and_modes_and_skips_broken_files(shapes):
    found = read_folder(shapes, progress=False)
    assert found.class_names == ("circle", "square", "stripe")
    assert [p.name for p, _ in found.skipped] == ["broken.png"]
    assert isinstance(found.images, CachedImages) and found.images.shape == (42, 3, 32, 32)
    assert torch.bincount(found.labels).tolist() == [14, 14, 14]
    x = found.images[torch.arange(3)]
    assert x.dtype == torch.float32 and 0 <= float(x.min()) and float(x.max()) <= 1


def test_grey_saved_as_colour_is_read_as_grey(tmp_path):
    for i in range(4):
        g = np.random.default_rng(i).integers(0, 255, (20, 20), dtype=np.uint8)
        Image.fromarray(np.stack([g] * 3, -1)).save(tmp_path / f"{i}.png")
    found = read_folder(tmp_path, progress=False)
    assert found.images.shape == (4, 1, 20, 20) and found.class_names == ()


def test_transparency_is_laid_on_white(tmp_path):
    Image.new("RGBA", (16, 16), (255, 0, 0, 0)).save(tmp_path / "clear.png")
    assert (decode(tmp_path / "clear.png", 16, 3) == 255).all()


def test_streaming_gives_the_same_batches_as_memory(shapes, monkeypatch):
    cached = read_folder(shapes, progress=False)
    monkeypatch.setenv("FUNDIFF_DATA_CACHE_MB", "0")
    streamed = read_folder(shapes, progress=False)
    assert isinstance(streamed.images, FolderImages) and not hasattr(streamed.images, "data")
    idx = torch.tensor([5, 0, 41, 17])
    assert torch.equal(streamed.images[idx], cached.images[idx])
    assert torch.equal(streamed.images.take(idx)[1:3], cached.images.take(idx)[1:3])


def test_bad_folders_are_one_line(tmp_path, shapes):
    with pytest.raises(UserError, match="does not exist"):
        read_folder(tmp_path / "nope")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    Image.new("L", (20, 20)).save(tmp_path / "a" / "x.png")
    with pytest.raises(UserError, match=r"class folder b in .* holds no images"):
        read_folder(tmp_path)
    only_broken = tmp_path / "broken"
    only_broken.mkdir()
    (only_broken / "x.png").write_bytes(b"nope")
    with pytest.raises(UserError, match="none of the 1 image files"):
        read_folder(only_broken)
    with pytest.raises(UserError, match="--image-size 30 is not a size the UNet builds for; the nearest is 32"):
        read_folder(shapes, size=30)
    few = load_folder(shapes, progress=False)
    with pytest.raises(UserError, match="class circle has only 14 images; cannot hold out 50"):
        split_holdout(few, 50)
    train, held = split_holdout(few, 4)
    assert len(held) == 12 and isinstance(held.images, torch.Tensor) and len(train) == 30


@pytest.mark.parametrize("size,depth", [(16, 1), (28, 2), (32, 2), (64, 3)])
def test_unet_builds_for_other_sizes_and_channels(size, depth):
    net = UNet(UNetConfig(width=4, conditioning="class", num_classes=3, in_channels=3, image_size=size))
    assert net.config.depth == depth == unet_depth(size)
    out = net(torch.randn(2, 3, size, size), torch.rand(2), torch.eye(3)[:2])
    assert out.shape == (2, 3, size, size)


def test_the_28px_net_and_records_are_the_spec_ones():
    """The 28 px net has the spec net's parameters (names and shapes of the shipped digit weights); records of runs
    on 28 px grey digits carry no new fields."""
    shipped = load_file(models.shipped_path("digits"))
    width = shipped["first.0.0.weight"].shape[0]
    net = UNet(UNetConfig(width=width, conditioning="class"))
    assert {k: tuple(v.shape) for k, v in net.state_dict().items()} == {k: tuple(v.shape) for k, v in shipped.items()}
    assert "image_size" not in UNetConfig().to_dict()
    assert not {"image_size", "channels", "num_classes", "class_names"} & set(Recipe().to_dict())
    assert supported_size(30) == 32 and supported_size(100) == 96 and not unet_depth(30)


def test_a_class_model_trained_on_a_folder_takes_its_class_names(tmp_path, shapes):
    out = tmp_path / "run"
    overrides = dict(data=str(shapes), width=8, epochs=1, batch_size=16, holdout_per_class=4, precision="fp32")
    run_train("class", "ddpm", "default", overrides, None, None, out, False, "cpu")
    info = json.loads((out / "run.json").read_text())
    assert info["recipe"]["class_names"] == ["circle", "square", "stripe"] and info["recipe"]["data"] == "folder"
    assert info["unet"]["image_size"] == 32 and info["unet"]["in_channels"] == 3
    assert info["data"]["data_dir"] == str(shapes.resolve())
    model = models.load(out, "cpu")
    assert (model.image_size, model.channels, model.class_names) == (32, 3, ("circle", "square", "stripe"))
    x = parta.generate(model, "square", 2, seed=0)
    assert x.shape == (2, 3, 32, 32)
    a = parta.anagram(model, ["circle", "stripe"], ["identity", "flip"], n=1, seed=0)
    assert a.shape[-3:] == (3, 32, 32)
    with pytest.raises(UserError, match="circle, square, stripe"):
        parta.generate(model, "triangle", 1)


def test_a_flat_folder_trains_a_time_model_not_a_class_model(tmp_path):
    flat = tmp_path / "flat"
    flat.mkdir()
    rng = np.random.default_rng(0)
    for i in range(12):
        Image.fromarray(_shape("circle", 20, rng)).save(flat / f"{i}.png")
    overrides = dict(data=str(flat), width=4, epochs=1, batch_size=4, holdout_per_class=2, precision="fp32")
    with pytest.raises(UserError, match="no classes: train a time model"):
        run_train("class", "ddpm", "default", overrides, None, None, tmp_path / "c", False, "cpu")
    info = run_train("time", "ddpm", "default", overrides, None, None, tmp_path / "t", False, "cpu")
    assert info["recipe"]["image_size"] == 20 and info["recipe"]["num_classes"] == 1
    again = run_train("time", None, None, {}, None, None, tmp_path / "t", True, "cpu")  # the folder from run.json
    assert again["recipe"] == info["recipe"] and again["epoch"] == 1


def test_judge_and_evaluate_work_on_a_folder_run(tmp_path, shapes, monkeypatch):
    """evaluate trains the judge of the run's folder (at its size and channels) and scores class and time runs."""
    from fundiff.evaluate.judge import load_judge
    from fundiff.evaluate.runs import run_evaluate, run_judge_train

    monkeypatch.setenv("FUNDIFF_CACHE", str(tmp_path / "cache"))
    base = dict(data=str(shapes), width=8, epochs=1, batch_size=16, holdout_per_class=4, precision="fp32")
    run_train("class", "ddpm", "default", base, None, None, tmp_path / "c", False, "cpu")
    result = run_evaluate(tmp_path / "c", per_class=2, device="cpu")
    assert set(result["accuracy"]["per_class"]) <= {"0", "1", "2"} and result["n_samples"] == 6
    judges = list((tmp_path / "cache").glob("judge-folder-*.safetensors"))
    net, info = load_judge(judges[0])
    assert len(judges) == 1 and (info["channels"], info["image_size"], info["num_classes"]) == (3, 32, 3)
    run_train("time", "ddpm", "default", base, None, None, tmp_path / "t", False, "cpu")
    shares = run_evaluate(tmp_path / "t", per_class=2, device="cpu")["class_shares"]
    assert set(shares) == {"0", "1", "2"} and abs(sum(shares.values()) - 1) < 1e-3
    out = run_judge_train(str(shapes), None, 1, tmp_path / "j.safetensors", False, holdout_per_class=4)
    assert load_judge(out)[1]["data"].startswith("image folder")


def test_torchvision_sets_by_name(monkeypatch, tmp_path):
    """--data cifar10 --download DIR goes through torchvision's class (here a stand-in with CIFAR's layout: HWC
    uint8, targets, classes); without --download it is one line."""
    from torchvision import datasets

    from fundiff.train.data import load_digits

    class FakeCIFAR:
        def __init__(self, root, train, download):
            assert train and download and root == str(tmp_path)
            self.data = np.random.default_rng(0).integers(0, 256, (20, 32, 32, 3), dtype=np.uint8)
            self.targets, self.classes = [i % 2 for i in range(20)], ["airplane", "automobile"]

    monkeypatch.setattr(datasets, "CIFAR10", FakeCIFAR)
    data = load_digits("cifar10", None, tmp_path)
    assert data.images.shape == (20, 3, 32, 32) and data.class_names == ("airplane", "automobile")
    assert torch.equal(data.images[torch.tensor([3])][0, :, 4, 5] * 255,
                       torch.from_numpy(FakeCIFAR(str(tmp_path), True, True).data[3, 4, 5]).float())
    with pytest.raises(UserError, match="--data cifar10 downloads through torchvision: pass --download DIR"):
        load_digits("cifar10")

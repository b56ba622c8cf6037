"""The second shipped model, ``fashion``: Fashion-MNIST class names as prompts, sampling by name, no MNIST framing of
drawings, and tools/ship_model.py writing a loadable asset and card (into a temporary assets folder)."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import CPU, fundiff_in_process, train_run
from PIL import Image

import fundiff.models
from fundiff import parta as ops
from fundiff.errors import UserError
from fundiff.io.images import load_image
from fundiff.models import MODEL_HELP, SHIPPED, load_diffusion_model
from fundiff.models.fundiff_unet import fundiff_model
from fundiff.train.checkpoint import build_net, read_weights
from fundiff.train.data import CLASS_NAMES, FASHION_DIR, Digits, load_digits, split_holdout
from fundiff.train.recipes import make_recipe

TOOLS = Path(__file__).resolve().parents[1] / "tools"
RECIPE = make_recipe("class", data="fashion", epochs=1, batch_size=128, width=8, ema_decay=0.5)
"""A tiny fashion run: what `fundiff train class --data fashion --epochs 1 --batch-size 128 --width 8
--ema-decay 0.5` makes (sampling weights after epoch 1)."""


def ship_model():
    spec = importlib.util.spec_from_file_location("ship_model", TOOLS / "ship_model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def random_model(data: str = "fashion"):
    """A randomly initialised width-8 class net on ``data`` as a DiffusionModel."""
    recipe = make_recipe("class", data=data, width=8)
    torch.manual_seed(0)
    return fundiff_model(build_net(recipe).eval(), recipe, f"tiny-{data}", CPU)


@pytest.fixture(scope="module")
def fashion_run(tmp_path_factory) -> Path:
    """One epoch of RECIPE on 600 random 28x28 images, 60 per class (50 held out per class -> 100 to train on)."""
    d = tmp_path_factory.mktemp("fashion_run")
    g = torch.Generator().manual_seed(0)
    data = Digits(torch.rand(600, 1, 28, 28, generator=g), torch.arange(10).repeat(60), "random clothes")
    train_run(RECIPE, d, data)
    return d


@pytest.mark.parametrize(("prompt", "label"), [
    ("sneaker", 7), ("Ankle Boot", 9), ("ankle boot", 9), ("bag", 8), ("shirt", 6), ("Shirt", 6), ("t-shirt", 0),
    ("tshirt", 0), ("top", 0), ("T-shirt/top", 0), ("boot", 9), ("trousers", 1), ("sneakers", 7), ("sandals", 5),
    ("shirts", 6), ("t-shirts", 0), ("dresses", 3), ("  Pullover ", 2), ("3", 3), (3, 3), ("7", 7),
])
def test_fashion_class_names_and_their_short_forms(prompt, label):
    assert random_model().check_condition(prompt) == label


def test_the_class_names_are_defined_once_and_reach_the_model():
    model = random_model()
    assert model.class_names == CLASS_NAMES["fashion"] and len(model.class_names) == model.num_classes == 10
    assert model.describe()["class_names"] == list(CLASS_NAMES["fashion"])
    assert random_model("mnist").class_names == ()


@pytest.mark.parametrize("prompt", ["hat", "a photo of a sneaker", "socks", "shirtt"])
def test_an_unknown_name_is_one_line_listing_the_names(prompt):
    with pytest.raises(UserError) as e:
        random_model().check_condition(prompt)
    line = str(e.value)
    assert "\n" not in line and repr(prompt) in line and "0-9" in line
    assert all(name in line for name in CLASS_NAMES["fashion"]), line


def test_digit_models_keep_numbers_only():
    model = random_model("mnist")
    assert model.check_condition("7") == 7
    with pytest.raises(UserError, match="give a class 0-9, not the prompt 'sneaker'"):
        model.check_condition("sneaker")


def test_only_digit_models_frame_drawings_like_mnist():
    fashion, digits = random_model("fashion"), random_model("mnist")
    assert fashion.light_on_dark and digits.light_on_dark
    assert digits.mnist_framing and not fashion.mnist_framing


def test_the_model_samples_one_class_name_per_image(fashion_run):
    model = load_diffusion_model(str(fashion_run), CPU)
    names = ["sneaker", "Ankle boot", "bag", "shirt", "t-shirt", "3"]
    x = ops.generate(model, names, len(names), seed=0, sampling=ops.Sampling(steps=5))
    assert x.shape == (6, 1, 28, 28) and torch.isfinite(x).all() and 0 <= x.min() and x.max() <= 1
    assert model.check_condition(names) == [7, 9, 8, 6, 0, 3]


def test_edit_of_a_fashion_model_inverts_but_does_not_fit(fashion_run, tmp_path, monkeypatch, capsys):
    """A dark coat on white paper: inverted (light on dark, like Fashion-MNIST) and not shrunk into MNIST's 20 px."""
    ink = np.full((28, 28), 255, np.uint8)
    ink[1:27, 2:26] = 20  # fills the frame, as Fashion-MNIST's clothes do
    Image.fromarray(ink).save(tmp_path / "coat.png")
    out = tmp_path / "edit"
    code, _, err = fundiff_in_process(monkeypatch, capsys, "edit", tmp_path / "coat.png", "--model", fashion_run,
                                      "--prompt", "coat", "--i-start", "1", "--stride", "50", "--out", out)
    assert code == 0, err
    rec = json.loads((out / "args.json").read_text())
    assert rec["args"]["fit"] is False and rec["args"]["condition"] == 4
    with Image.open(out / "input.png") as im:
        a = np.asarray(im)
    assert a[0].max() < 30 and a[14, 3] > 200, "inverted, and the coat still reaches the frame's sides"


def test_invert_auto_looks_at_the_background(tmp_path):
    """A dark garment on white that fills most of the frame is inverted; a Fashion-MNIST-like light garment on black
    that fills most of it is not (the image's mean would say the opposite of both)."""
    coat = np.full((28, 28), 255, np.uint8)
    coat[2:26, 3:25] = 40
    Image.fromarray(coat).save(tmp_path / "coat.png")
    Image.fromarray(255 - coat).save(tmp_path / "negative.png")
    x = load_image(tmp_path / "coat.png", 28, 1, light_on_dark=True)
    assert x[0, 0, 0].max() < 0.01 and x[0, 0, 14, 14] > 0.8
    y = load_image(tmp_path / "negative.png", 28, 1, light_on_dark=True)
    assert torch.equal(y, load_image(tmp_path / "negative.png", 28, 1))
    assert torch.equal(x, 1 - load_image(tmp_path / "coat.png", 28, 1, light_on_dark=True, invert="no"))


def test_ship_model_writes_a_loadable_asset_and_card(fashion_run, tmp_path, monkeypatch):
    assets = tmp_path / "assets"
    assets.mkdir()
    evaluation = tmp_path / "eval.json"
    evaluation.write_text(json.dumps({"sampler": "ddpm", "steps": 300, "accuracy": {"overall": 0.5}, "frechet": 9.0,
                                      "unrelated": 1}))
    card = ship_model().main("fashion", fashion_run, [evaluation], assets=assets)
    assert sorted(p.name for p in assets.iterdir()) == ["fashion.json", "fashion.safetensors"]
    assert card == json.loads((assets / "fashion.json").read_text())
    assert card["command"] == "fundiff train class --data fashion --epochs 1 --batch-size 128 --width 8 --ema-decay 0.5"
    assert card["name"] == "fashion" and card["epoch"] == 1 and card["recipe"]["data"] == "fashion"
    assert "Fashion-MNIST" in card["what"] and "EMA" in card["what"]
    assert card["class_names"] == list(CLASS_NAMES["fashion"]) and card["training_seconds"] >= 0
    assert card["data"]["source"] == "random clothes" and card["versions"]["fundiff"]
    assert card["evaluations"] == [{"sampler": "ddpm", "steps": 300, "accuracy": {"overall": 0.5}, "frechet": 9.0}]
    state, recipe, epoch = read_weights(assets / "fashion.safetensors")
    assert epoch == 1 and recipe.data == "fashion" and recipe.width == 8
    assert all(v.dtype == torch.float16 for v in state.values() if v.is_floating_point())

    monkeypatch.setattr(fundiff.models, "shipped_path", lambda name: assets / SHIPPED[name])
    model = load_diffusion_model("fashion", CPU)
    assert model.name == "fashion" and model.info["card"]["command"] == card["command"]
    assert model.check_condition("sneakers") == 7 and not model.mnist_framing
    x = ops.generate(model, "ankle boot", 2, sampling=ops.Sampling(steps=3))
    assert x.shape == (2, 1, 28, 28)
    assert model.sampling.sampler == "dpmpp-2m" and card["sampling"] == {}  # the default recipe's card


def test_a_card_sets_the_models_own_sampler(fashion_run, tmp_path, monkeypatch):
    """--sampling sampler=dpmpp-2m,steps=20: the card's choice over the recipe's DDPM-300, where measurements show it
    holds (the shipped digit model; not the clothing model, which DPM-Solver++(2M) samples worse: README)."""
    tool = ship_model()
    given = tool.parse_sampling("sampler=dpmpp-2m,steps=20")
    card = tool.main("fashion", fashion_run, [], assets=tmp_path, sampling=given)
    assert card["sampling"] == {"sampler": "dpmpp-2m", "steps": 20}
    monkeypatch.setattr(fundiff.models, "shipped_path", lambda name: tmp_path / SHIPPED[name])
    s = load_diffusion_model("fashion", CPU).sampling
    assert (s.sampler, s.stride, s.steps, s.guidance, s.guidance_interval) == ("dpmpp-2m", None, 20, 5.0, (0.5, 0.9))
    for bad in ("sampler=magic", "colour=red", "steps="):
        with pytest.raises(UserError):
            tool.parse_sampling(bad)
    monkeypatch.undo()
    assert load_diffusion_model("fashion", CPU).sampling.sampler == "ddpm"
    assert load_diffusion_model("digits", CPU).sampling.sampler == "dpmpp-2m"


def test_ship_model_refuses_unfinished_and_mismatched_runs(fashion_run, tmp_path):
    tool = ship_model()
    with pytest.raises(UserError, match="is a class model on mnist"):
        tool.main("digits", fashion_run, [], assets=tmp_path)
    with pytest.raises(UserError, match="unknown shipped model 'shoes'"):
        tool.main("shoes", fashion_run, [], assets=tmp_path)
    running = tmp_path / "running"
    shutil.copytree(fashion_run, running)
    info = json.loads((running / "run.json").read_text())
    (running / "run.json").write_text(json.dumps({**info, "status": "running"}))
    with pytest.raises(UserError, match="has not finished training"):
        tool.main("fashion", running, [], assets=tmp_path)
    assert not list(tmp_path.glob("*.safetensors"))


def test_ship_digits_is_ship_model_digits(tmp_path):
    """The old entry point still runs (one error line for a run it cannot ship) and names the new one."""
    proc = subprocess.run([sys.executable, TOOLS / "ship_digits.py", tmp_path], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 1 and proc.stderr.strip().splitlines() == [
        f"ship_model: error: {tmp_path} is not a fundiff run directory (no run.json)"]
    assert "ship_model.py digits" in (TOOLS / "ship_digits.py").read_text()


def test_a_missing_shipped_asset_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(fundiff.models, "shipped_path", lambda name: tmp_path / SHIPPED[name])
    with pytest.raises(UserError) as e:
        load_diffusion_model("fashion", CPU)
    missing = tmp_path / "fashion.safetensors"
    assert str(e.value) == f"the shipped model 'fashion' is missing from this install ({missing})"
    assert "fashion" in MODEL_HELP


@pytest.mark.skipif(not FASHION_DIR.is_dir(), reason=f"no Fashion-MNIST in {FASHION_DIR}")
def test_the_full_fashion_training_set_loads():
    data = load_digits("fashion")
    assert len(data) == 60_000 and data.images.shape == (60_000, 1, 28, 28)
    assert torch.bincount(data.labels).tolist() == [6_000] * 10
    assert data.images.mean() < 0.5, "light clothes on a dark ground, like MNIST"


def test_the_shipped_clothing_model_draws_the_asked_garments():
    """The shipped ``fashion`` model: its card names the command that trained it, its prompts are the class names,
    and its samples (20 steps) are closer to the asked class's mean held-out image than a random class's would be
    (nearest-centroid accuracy; 0.1 is chance)."""
    from fundiff.models import shipped_card, shipped_path
    from fundiff.train.checkpoint import read_weights

    _, recipe, _ = read_weights(shipped_path("fashion"))
    card = shipped_card("fashion")
    assert recipe.data == "fashion" and card["command"].startswith("fundiff train class --data fashion")
    assert card["data"]["train_images"] > 50_000 and shipped_path("fashion").stat().st_size < 6_000_000
    model = load_diffusion_model("fashion", CPU)
    names = ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot"]
    x = ops.generate(model, [n for n in names for _ in range(3)], 30, seed=0, sampling=ops.Sampling(steps=20))
    if not FASHION_DIR.is_dir():
        pytest.skip("Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)")
    held = split_holdout(load_digits("fashion"), 50)[1]
    centroids = torch.stack([held.images[held.labels == c].mean(0) for c in range(10)]).flatten(1)
    read = torch.cdist(x.flatten(1), centroids).argmin(1)
    assert (read == torch.arange(10).repeat_interleave(3)).float().mean() >= 0.5

"""``fundiff train --net diffusers``: a diffusers UNet2DModel behind fundiff's net contract, trained, reloaded,
resumed, sampled by Part A and exported."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace

import pytest
import torch
from helpers import CPU, fundiff_in_process, tiny_recipe, train_run
from safetensors.torch import load_file, save_file
from test_folder_data import make_folder

from fundiff import models, parta
from fundiff.core.sampling import Sampling
from fundiff.errors import UserError
from fundiff.export import export_run
from fundiff.nets.diffusers_net import DiffusersUNet, DiffusersUNetConfig, block_widths, norm_groups, unet2d_kwargs
from fundiff.nets.unet import UNetConfig
from fundiff.train import checkpoint as ckpt
from fundiff.train.loop import Trainer
from fundiff.train.recipes import Recipe, make_recipe
from fundiff.train.session import run_train


class _StopError(Exception):
    pass


def _stop_after(epoch: int):
    def on_epoch(trainer, e):
        if e == epoch:
            raise _StopError

    return on_epoch


def _recipe(**kw) -> Recipe:
    """A width-8 class net (8 GroupNorm groups), batch 64, fp32, weights after each of 2 epochs."""
    return tiny_recipe("class", net="diffusers", precision="fp32", sample_epochs=(1, 2), **kw)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, small_digits):
    """(A, B): the same 2-epoch diffusers class run, A unbroken, B stopped after epoch 1 and resumed."""
    root = tmp_path_factory.mktemp("diffusers_net")
    a, b = root / "a", root / "b"
    r = _recipe()
    train_run(r, a, small_digits)
    with pytest.raises(_StopError):
        train_run(r, b, small_digits, on_epoch=_stop_after(1))
    assert json.loads((b / "run.json").read_text())["epoch"] == 1
    resumed = Trainer(r, b, small_digits, CPU, progress=False)
    resumed.resume()
    assert resumed.epoch == 1
    resumed.run()
    return a, b


def test_importing_fundiff_does_not_import_diffusers():
    code = "import sys, fundiff.models, fundiff.train.checkpoint, fundiff.nets.diffusers_net; " \
           "print('diffusers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_unet2d_config_follows_size_and_width():
    assert block_widths(8, 2) == [8, 16, 16] and block_widths(8, 3) == [8, 16, 16, 32]
    assert [norm_groups(w) for w in (8, 12, 64, 48, 7)] == [8, 12, 32, 24, 7]
    kw = unet2d_kwargs(UNetConfig(width=8, conditioning="class", num_classes=3, in_channels=3, image_size=64))
    assert kw["block_out_channels"] == [8, 16, 16, 32] and kw["num_class_embeds"] == 4
    assert kw["down_block_types"] == ["DownBlock2D"] * 3 + ["AttnDownBlock2D"]
    assert kw["up_block_types"] == ["AttnUpBlock2D"] + ["UpBlock2D"] * 3
    assert "num_class_embeds" not in unet2d_kwargs(UNetConfig(width=8, conditioning="time"))


@pytest.mark.parametrize(("size", "channels", "cond"), [(28, 1, "class"), (32, 3, "time"), (16, 1, "none")])
def test_forward_contract_channels_last_and_bf16(size, channels, cond):
    net = DiffusersUNet(UNetConfig(width=4, conditioning=cond, num_classes=3, in_channels=channels, image_size=size))
    assert isinstance(net.config, UNetConfig) and net.config.conditioning == cond
    net = net.to(memory_format=torch.channels_last)
    x = torch.rand(3, channels, size, size).contiguous(memory_format=torch.channels_last)
    t = torch.tensor([0.1, 0.5, 1.0])
    c = torch.eye(3)
    c[2] = 0  # no class: the null embedding
    out = net(x, t, c)
    assert out.shape == x.shape and out.dtype == torch.float32
    with torch.autocast("cpu", torch.bfloat16):
        low = net(x, t, c)
    low.float().mean().backward()
    assert low.shape == x.shape and torch.isfinite(low).all()
    if cond == "class":  # the null row differs from class 0's
        zero = torch.zeros(1, 3)
        one = torch.eye(3)[:1]
        assert not torch.equal(net(x[:1], t[:1], zero), net(x[:1], t[:1], one))


def test_run_records_the_diffusers_net(runs):
    a, _ = runs
    info = json.loads((a / "run.json").read_text())
    assert info["recipe"]["net"] == "diffusers"
    assert info["unet"]["net"] == "diffusers" and info["unet"]["unet2d"]["norm_num_groups"] == 8
    assert info["unet"]["unet2d"]["num_class_embeds"] == 11
    state, recipe, epoch = ckpt.read_weights(ckpt.weights_path(a, 2))
    assert recipe.net == "diffusers" and epoch == 2
    net = ckpt.build_net(recipe, state)  # strict shapes, load_state_dict strict
    assert isinstance(net, DiffusersUNet) and isinstance(net.config, DiffusersUNetConfig)
    with pytest.raises(UserError, match="do not fit"):
        ckpt.check_shapes(replace(recipe, net="fundiff"), state)


def test_resume_equals_unbroken_run(runs):
    a, b = runs
    for name in ("weights/epoch_001.safetensors", "weights/epoch_002.safetensors"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    sa, sb = load_file(a / "checkpoint_002.safetensors"), load_file(b / "checkpoint_002.safetensors")
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_part_a_on_a_diffusers_run(runs):
    a, _ = runs
    model = models.load(a, "cpu")
    x = parta.generate(model, 3, 2, seed=0)
    assert x.shape == (2, 1, 28, 28) and torch.isfinite(x).all()
    assert torch.equal(x, parta.generate(model, 3, 2, seed=0))
    s = Sampling(steps=5)
    ana = parta.anagram(model, [3, 6], ("identity", "flip"), n=1, sampling=s)
    assert ana.shape == (1, 1, 28, 28)
    hyb = parta.hybrid(model, [1, 7], n=1, sampling=s)
    assert hyb.shape == (1, 1, 28, 28)


def test_contradicting_metadata_is_one_error(runs, tmp_path):
    a, _ = runs
    path = ckpt.weights_path(a, 2)
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    recipe = json.loads(meta["recipe"])
    del recipe["net"]  # the recipe now names fundiff's UNet; the unet entry still says diffusers
    bad = tmp_path / "bad.safetensors"
    save_file(load_file(path), str(bad), {**meta, "recipe": json.dumps(recipe)})
    with pytest.raises(UserError, match="contradicts its recipe"):
        ckpt.read_weights(bad)


def test_bad_net_is_one_line(monkeypatch, capsys, tmp_path):
    code, _, err = fundiff_in_process(monkeypatch, capsys, "train", "class", "--net", "nope", "--out", tmp_path / "r")
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "unknown net 'nope'" in lines[0] and "fundiff, diffusers" in lines[0], err
    with pytest.raises(UserError, match="unknown net"):
        make_recipe("class", net="nope")


def test_old_records_have_no_net_key(class_run):
    assert "net" not in Recipe().to_dict() and "net" not in make_recipe("time", "flow").to_dict()
    assert make_recipe("class", net="diffusers").to_dict()["net"] == "diffusers"
    info = json.loads((class_run / "run.json").read_text())
    assert "net" not in info["recipe"] and "net" not in info["unet"]
    assert Recipe.from_dict(info["recipe"]).net == "fundiff"


def test_export_round_trip(runs, tmp_path):
    a, _ = runs
    out = export_run(a, tmp_path / "exp", samples=False, device="cpu").out
    assert json.loads((out / "model_index.json").read_text())["unet"] == ["diffusers", "UNet2DModel"]
    from diffusers import UNet2DModel

    theirs = UNet2DModel.from_pretrained(out / "unet").eval()  # diffusers reads its own folder
    model = models.load(out, "cpu")
    run_model = models.load(a, "cpu")
    assert model.num_classes == run_model.num_classes == 10
    ours = ckpt.load_model(a)[0]
    x, t = torch.rand(2, 1, 28, 28), torch.tensor([0.3, 0.7])
    with torch.no_grad():
        want = ours(x, t, torch.eye(10)[[3, 5]])
        got = theirs(x, t * 1000, class_labels=torch.tensor([3, 5])).sample
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    assert torch.equal(parta.generate(model, 3, 1, seed=0), parta.generate(run_model, 3, 1, seed=0))
    card = (out / "README.md").read_text()
    assert "class_labels=" in card and "fundiff.nets.hub" not in card


def test_folder_run_with_class_names(tmp_path):
    """32 px RGB image folder through run_train (the CLI's path): class names are the prompts."""
    folder = make_folder(tmp_path / "shapes", per_class=6)
    run = tmp_path / "run"
    info = run_train("class", None, None, dict(net="diffusers", width=8, epochs=1, batch_size=8, precision="bf16",
                                               holdout_per_class=1, data=str(folder)),
                     None, None, run, False, "cpu")
    assert info["recipe"]["net"] == "diffusers" and info["unet"]["unet2d"]["block_out_channels"] == [8, 16, 16]
    model = models.load(run, "cpu")
    x = parta.generate(model, "circle", 2, seed=0, sampling=Sampling(steps=4))
    assert x.shape == (2, 3, 32, 32) and torch.isfinite(x).all()

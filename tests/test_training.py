"""train/loop.py: a tiny run's files, exact resume, seeds, and the loss falling on real digits."""

from __future__ import annotations

import csv
import json
import math
import statistics

import pytest
import torch
from helpers import CPU, per_class_subset, tiny_recipe, train_run
from safetensors.torch import load_file

from fundiff.errors import UserError
from fundiff.train.checkpoint import load_model, read_weights
from fundiff.train.data import split_holdout
from fundiff.train.loop import Trainer, read_losses


class SimulatedKillError(Exception):
    pass


def stop_after(epoch: int):
    def on_epoch(trainer, e):
        if e == epoch:
            raise SimulatedKillError

    return on_epoch


def tensors_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_tiny_run_writes_its_files(tmp_path, small_digits):
    r = tiny_recipe("class", "ddpm")
    trainer = train_run(r, tmp_path, small_digits)
    steps = 2 * math.ceil(250 / 64)
    files = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert files == ["checkpoint_002.safetensors", "loss.csv", "run.json", "weights/epoch_002.safetensors"]
    info = json.loads((tmp_path / "run.json").read_text())
    assert info["kind"] == "fundiff-run" and info["status"] == "done"
    assert info["epoch"] == 2 and info["step"] == steps == trainer.step
    assert info["recipe"] == r.to_dict()
    assert info["unet"]["width"] == 8 and info["unet"]["conditioning"] == "class"
    assert info["data"]["train_images"] == 250 and info["data"]["held_out_images"] == 50
    assert [h["epoch"] for h in info["history"]] == [1, 2]
    assert info["versions"]["torch"] == torch.__version__
    with open(tmp_path / "loss.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == steps and [int(x["step"]) for x in rows] == list(range(1, steps + 1))
    assert {int(x["epoch"]) for x in rows} == {1, 2}
    assert all(math.isfinite(float(x["loss"])) for x in rows)
    # the lr of epoch 2 is halfway down the default's cosine from lr to lr / 100 over 2 epochs
    lrs = {int(x["epoch"]): float(x["lr"]) for x in rows}
    assert lrs[2] == pytest.approx(lrs[1] / 100 + (lrs[1] - lrs[1] / 100) * (1 + math.cos(math.pi / 2)) / 2, rel=1e-5)
    assert read_losses(tmp_path)[-1][0] == steps
    state, recipe, epoch = read_weights(tmp_path / "weights" / "epoch_002.safetensors")
    assert recipe == r and epoch == 2
    assert tensors_equal(state, {k: v.contiguous() for k, v in trainer.sampling_net().state_dict().items()})
    net, recipe2, ep = load_model(tmp_path)
    assert recipe2 == r and ep == 2 and not net.training


def test_training_never_sees_the_held_out_digits(small_digits):
    r = tiny_recipe("class", "ddpm")
    trainer = Trainer(r, "unused", small_digits, CPU, progress=False)
    train, held = split_holdout(small_digits, 5)
    assert torch.equal(trainer.train_set.images, train.images)
    assert torch.equal(trainer.held_out.images, held.images)


@pytest.mark.parametrize(("model", "objective", "recipe"), [("class", "ddpm", "default"), ("time", "flow", "spec"),
                                                            ("denoiser", "ddpm", "spec")])
def test_resume_equals_uninterrupted(tmp_path, small_digits, model, objective, recipe):
    """Train 2 epochs straight in A; in B stop after epoch 1 (an exception after its checkpoint, as a
    kill would), then resume with a fresh Trainer: every tensor and the loss log are bit-identical."""
    r = tiny_recipe(model, objective, recipe, sample_epochs=(1, 2))
    a, b = tmp_path / "a", tmp_path / "b"
    train_run(r, a, small_digits)
    with pytest.raises(SimulatedKillError):
        train_run(r, b, small_digits, on_epoch=stop_after(1))
    partial = json.loads((b / "run.json").read_text())
    assert partial["epoch"] == 1 and partial["status"] == "running"
    assert not (b / "weights" / "epoch_002.safetensors").exists()

    resumed = Trainer(r, b, small_digits, CPU, progress=False)
    resumed.resume()
    assert resumed.epoch == 1 and resumed.step == partial["step"]
    resumed.run()

    for name in ("weights/epoch_001.safetensors", "weights/epoch_002.safetensors", "checkpoint_002.safetensors"):
        assert tensors_equal(load_file(a / name), load_file(b / name)), name
    assert not (b / "checkpoint_001.safetensors").exists()
    assert (a / "loss.csv").read_bytes() == (b / "loss.csv").read_bytes()
    ia, ib = (json.loads((d / "run.json").read_text()) for d in (a, b))
    drop = ("seconds", "images_per_s")
    assert [{k: v for k, v in h.items() if k not in drop} for h in ia["history"]] == \
           [{k: v for k, v in h.items() if k not in drop} for h in ib["history"]]
    assert (ia["epoch"], ia["step"], ia["scheduler"]) == (ib["epoch"], ib["step"], ib["scheduler"])


def test_resume_refuses_a_different_recipe_or_data(tmp_path, small_digits):
    r = tiny_recipe("class", "ddpm", epochs=1)
    train_run(r, tmp_path, small_digits)
    for other in (tiny_recipe("class", "ddpm", epochs=1, lr=5e-4), tiny_recipe("class", "ddpm", epochs=2),
                  tiny_recipe("time", "ddpm", epochs=1)):
        with pytest.raises(UserError, match="different recipe"):
            Trainer(other, tmp_path, small_digits, CPU, progress=False).resume()
    other_data = per_class_subset(small_digits, 20)
    with pytest.raises(UserError):
        Trainer(r, tmp_path, other_data, CPU, progress=False).resume()
    with pytest.raises(UserError):
        Trainer(r, tmp_path / "nothing-here", small_digits, CPU, progress=False).resume()


def test_same_seed_same_weights_other_seed_other_weights(tmp_path, small_digits):
    r = tiny_recipe("class", "ddpm", epochs=1)
    for d in ("a", "b"):
        train_run(r, tmp_path / d, small_digits)
    train_run(tiny_recipe("class", "ddpm", epochs=1, seed=1), tmp_path / "c", small_digits)
    w = {d: load_file(tmp_path / d / "weights" / "epoch_001.safetensors") for d in "abc"}
    assert tensors_equal(w["a"], w["b"])
    assert not tensors_equal(w["a"], w["c"])


def test_an_ema_decay_the_warmup_never_reaches_gives_the_same_weights(tmp_path, small_digits):
    """What ``fundiff train``'s note says: 2 epochs of 4 steps end the warm-up's decay at 9 / 18 = 0.5, so 0.9 and
    0.99 give the same EMA, bit for bit, and 0.3 (reached at step 3) another one."""
    w = {}
    for decay in (0.9, 0.99, 0.3):
        train_run(tiny_recipe("class", "ddpm", ema_decay=decay), tmp_path / str(decay), small_digits)
        w[decay] = load_file(tmp_path / str(decay) / "weights" / "epoch_002.safetensors")
    assert tensors_equal(w[0.9], w[0.99])
    assert not tensors_equal(w[0.9], w[0.3])


def test_train_says_when_its_ema_decay_is_never_reached(tmp_path, capsys):
    from fundiff.train.session import run_train

    small = dict(width=4, epochs=1, batch_size=512, precision="fp32")
    run_train("class", "ddpm", "default", {**small, "ema_decay": 0.99}, None, None, tmp_path / "a", False, "cpu")
    out = capsys.readouterr().out
    assert "--ema-decay 0.99 is never reached" in out and "890 steps and this run takes 9" in out
    run_train("class", "ddpm", "default", {**small, "ema_decay": 0.5}, None, None, tmp_path / "b", False, "cpu")
    assert "never reached" not in capsys.readouterr().out


def test_on_epoch_is_called_at_sample_epochs(tmp_path, small_digits):
    seen = []
    train_run(tiny_recipe("time", "ddpm", epochs=3, sample_epochs=(2,), batch_size=128), tmp_path, small_digits,
              on_epoch=lambda t, e: seen.append(e))
    assert seen == [2, 3]  # asked-for epochs and always the last
    assert sorted(p.name for p in (tmp_path / "weights").iterdir()) == ["epoch_002.safetensors",
                                                                         "epoch_003.safetensors"]


def test_class_ddpm_loss_falls_on_real_digits(tmp_path, digits):
    """End to end on the 4,500 offline training digits: width 16, batch 32, one epoch (141 steps)."""
    r = tiny_recipe("class", "ddpm", width=16, epochs=1, batch_size=32, holdout_per_class=50)
    trainer = train_run(r, tmp_path, digits)
    assert len(trainer.train_set) == 4500 and trainer.step == math.ceil(4500 / 32)
    losses = [row[2] for row in trainer.losses]
    first, last = statistics.mean(losses[:20]), statistics.mean(losses[-20:])
    assert last < 0.6 * first, (first, last)
    assert last < 0.3
    for name in ("run.json", "loss.csv", "checkpoint_001.safetensors", "weights/epoch_001.safetensors"):
        assert (tmp_path / name).is_file(), name

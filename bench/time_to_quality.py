"""Time to quality: ``fundiff train class`` with its defaults against a plain fp32 implementation of the spec's
recipe, trained side by side in one run, then judged the way ``fundiff evaluate`` judges.

The plain implementation is the spec's recipe written the obvious way: the spec's width-64 class UNet in fp32
(no autocast, no channels_last), Adam at 1e-3, batch 128, 20 epochs, ExponentialLR(0.1 ** (1 / 20)) per epoch,
class dropout 0.1, t ~ U{1..300}, a host sync per step for the loss. Its epochs and the default recipe's
alternate (plain epoch, default epoch, ...), so a noisy shared machine slows both alike; each side's time is the
sum of its epochs' wall-clock seconds, the default's including its checkpoint writes. The default run is then
evaluated with its own card (40 samples per digit, guidance 5): judge accuracy and Frechet distance as a ratio
to real-vs-real. ``--judge-plain`` also evaluates the plain net, sampled with the default run's card.

    python bench/time_to_quality.py [--out /tmp/ttq] [--plain-epochs 20] [--judge-plain] [KEY=VALUE ...]

KEY=VALUE pairs override the default recipe (e.g. epochs=12 lr=2e-3), for the ablations in the README.
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from fundiff.core.schedule import forward_process, linear_schedule
from fundiff.evaluate.runs import run_evaluate
from fundiff.nets.unet import UNet, UNetConfig
from fundiff.train.checkpoint import save_weights, weights_path
from fundiff.train.data import load_digits
from fundiff.train.loop import Trainer
from fundiff.train.recipes import Recipe, make_recipe


class PlainTrainer:
    """The spec's class-conditioned DDPM recipe, written plainly (fp32, contiguous, no EMA)."""

    def __init__(self, train_images: torch.Tensor, train_labels: torch.Tensor, epochs: int) -> None:
        torch.manual_seed(0)
        self.x, self.y, self.epochs = train_images, train_labels, epochs
        self.net = UNet(UNetConfig(64, "class"))
        self.opt = torch.optim.Adam(self.net.parameters(), lr=1e-3)
        self.sched = torch.optim.lr_scheduler.ExponentialLR(self.opt, 0.1 ** (1 / epochs))
        self.schedule = linear_schedule(300, 1e-4, 0.02)
        self.g = torch.Generator().manual_seed(0)
        self.epoch = 0

    def train_epoch(self) -> None:
        self.net.train()
        for idx in torch.randperm(len(self.x), generator=self.g).split(128):
            x, y = self.x[idx], self.y[idx]
            c = F.one_hot(y, 10).float() * (torch.rand(len(y), generator=self.g) >= 0.1).float()[:, None]
            k = torch.randint(0, 300, (len(y),), generator=self.g)
            eps = torch.randn(x.shape, generator=self.g)
            x_t = forward_process(x, k, self.schedule, eps)
            loss = F.mse_loss(self.net(x_t, self.schedule.model_time(k), c), eps)
            self.opt.zero_grad()
            loss.backward()
            self.opt.step()
            loss.item()
        self.sched.step()
        self.epoch += 1


def parse_overrides(pairs: list[str]) -> dict:
    """KEY=VALUE pairs typed like the Recipe field they name."""
    fields = Recipe().to_dict()
    out = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        if key not in fields:
            raise SystemExit(f"unknown recipe field {key!r}; known: {', '.join(fields)}")
        kind = type(fields[key])
        out[key] = tuple(float(v) for v in value.split(",")) if kind is list else (
            value.lower() in ("1", "true", "yes") if kind is bool else kind(value))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=Path("/tmp/fundiff-time-to-quality"))
    ap.add_argument("--plain-epochs", type=int, default=20)
    ap.add_argument("--judge-plain", action="store_true")
    ap.add_argument("overrides", nargs="*", help="KEY=VALUE changes to the default recipe")
    a = ap.parse_args()
    recipe = make_recipe("class", **parse_overrides(a.overrides))
    shutil.rmtree(a.out, ignore_errors=True)
    data = load_digits(recipe.data)
    trainer = Trainer(recipe, a.out / "default", data, torch.device("cpu"), progress=False)
    plain = PlainTrainer(trainer.train_set.images, trainer.train_set.labels, a.plain_epochs)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {len(trainer.train_set)} training images "
          f"({data.source}); default recipe: {recipe.to_dict()}", flush=True)
    trainer.save("running")
    seconds = {"plain": 0.0, "default": 0.0}
    for i in range(max(a.plain_epochs, recipe.epochs)):
        for name, go in (("plain", i < a.plain_epochs), ("default", i < recipe.epochs)):
            if not go:
                continue
            t0 = time.perf_counter()
            plain.train_epoch() if name == "plain" else trainer.train_epoch()
            seconds[name] += time.perf_counter() - t0
        print(f"  epoch {i + 1}: plain {seconds['plain']:7.1f} s, default {seconds['default']:7.1f} s", flush=True)
    trainer.save("done")
    ratio = seconds["default"] / seconds["plain"]
    result = run_evaluate(a.out / "default")
    print(f"\nplain fp32 spec recipe ({a.plain_epochs} epochs, batch 128): {seconds['plain']:.1f} s")
    print(f"default recipe ({recipe.epochs} epochs, batch {recipe.batch_size}): {seconds['default']:.1f} s "
          f"= {ratio:.3f}x plain")
    print(f"default: judge accuracy {result['accuracy']['overall']:.4f}, Frechet ratio {result['ratio']:.2f} "
          f"({result['sampler']}, {result['steps']} steps)")
    if a.judge_plain:
        _judge_plain(plain, recipe, a.out)


def _judge_plain(plain: PlainTrainer, recipe: Recipe, out: Path) -> None:
    """The plain net saved as a run of the spec's recipe (fp32), evaluated with the default card's sampler."""
    spec = make_recipe("class", recipe="spec", epochs=plain.epochs)
    run = out / "plain"
    data = load_digits(spec.data)
    t = Trainer(spec, run, data, torch.device("cpu"), progress=False)
    t.net.load_state_dict(plain.net.state_dict())
    t.epoch = plain.epoch
    save_weights(weights_path(run, plain.epoch), t.net.state_dict(), spec, plain.epoch)
    t.save("done")
    r = run_evaluate(run)
    print(f"plain: judge accuracy {r['accuracy']['overall']:.4f}, Frechet ratio {r['ratio']:.2f} "
          f"({r['sampler']}, {r['steps']} steps)")


if __name__ == "__main__":
    main()

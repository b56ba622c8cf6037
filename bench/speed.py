"""Side-by-side speed of fundiff's training and sampling paths on this machine.

Prints images/s for each variant and its ratio to the fp32 baseline, measured interleaved in one
run (A, B, C, A, B, C, ...) so that a noisy shared machine affects every variant alike.

    python bench/speed.py [--width 64] [--batch 64] [--rounds 3]
"""

from __future__ import annotations

import argparse
import time

import torch

from fundiff import parta
from fundiff.core.sampling import Sampling
from fundiff.models.fundiff_unet import fundiff_model
from fundiff.nets.unet import UNet, UNetConfig
from fundiff.train.recipes import make_recipe


def train_variant(width: int, batch: int, channels_last: bool, bf16: bool):
    torch.manual_seed(0)
    net = UNet(UNetConfig(width, "class"))
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    x = torch.rand(batch, 1, 28, 28)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    t, c = torch.rand(batch), torch.eye(10)[torch.arange(batch) % 10]

    def step() -> int:
        with torch.autocast("cpu", torch.bfloat16, enabled=bf16):
            loss = (net(x, t, c).float() - x).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        return batch

    return step


def sample_variant(width: int, n: int, sampler: str, steps: int, channels_last: bool, precision: str = "fp32",
                   interval: tuple[float, float] = (0.0, 1.0)):
    recipe = make_recipe("class", width=width, precision=precision, guidance_interval=interval)
    net = UNet(UNetConfig(width, "class")).eval()
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    model = fundiff_model(net, recipe, "bench", torch.device("cpu"))
    labels = list(range(10)) * (n // 10)

    def run() -> int:
        s = Sampling(sampler=sampler, steps=steps)
        parta.generate(model, labels, len(labels), guidance=5.0, seed=0, sampling=s)
        return n

    return run


def measure(fns: dict, rounds: int, seconds: float) -> dict[str, float]:
    """Interleave the variants; images/s of each summed over all rounds."""
    done = {k: 0 for k in fns}
    spent = {k: 0.0 for k in fns}
    for f in fns.values():
        f()  # warm-up
    for _ in range(rounds):
        for k, f in fns.items():
            t0 = time.perf_counter()
            while time.perf_counter() - t0 < seconds:
                done[k] += f()
            spent[k] += time.perf_counter() - t0
    return {k: done[k] / spent[k] for k in fns}


def report(title: str, rates: dict[str, float], base: str) -> None:
    print(f"\n{title}")
    for k, r in rates.items():
        print(f"  {k:<34} {r:8.1f} img/s   x{r / rates[base]:.2f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--samples", type=int, default=20, help="images per sampling batch")
    a = ap.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, width {a.width}")
    train = {
        "fp32": train_variant(a.width, a.batch, False, False),
        "fp32 + channels_last (default)": train_variant(a.width, a.batch, True, False),
        "bf16 autocast": train_variant(a.width, a.batch, False, True),
        "bf16 autocast + channels_last": train_variant(a.width, a.batch, True, True),
    }
    report(f"training, batch {a.batch}", measure(train, a.rounds, a.seconds), "fp32")
    n = a.samples
    sample = {
        "DDPM-300, fp32": sample_variant(a.width, n, "ddpm", 300, False),
        "DDPM-300, channels_last": sample_variant(a.width, n, "ddpm", 300, True),
        "DDPM-300, channels_last + bf16": sample_variant(a.width, n, "ddpm", 300, True, "bf16"),
        "DDPM-300, bf16 + interval (default)": sample_variant(a.width, n, "ddpm", 300, True, "bf16", (0.5, 1.0)),
        "DDIM-50, bf16 + interval": sample_variant(a.width, n, "ddim", 50, True, "bf16", (0.5, 1.0)),
    }
    report(f"sampling with CFG, {n} images", measure(sample, a.rounds, a.seconds), "DDPM-300, fp32")


if __name__ == "__main__":
    main()

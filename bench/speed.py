"""Side-by-side speed of fundiff's training and sampling paths on this machine.

Prints images/s for each variant and its ratio to the fp32 baseline, measured interleaved in one
run (A, B, C, A, B, C, ...) so that a noisy shared machine affects every variant alike, and as a fraction of the
limit the machine's matmul peak sets: peak FLOP/s (a square matmul, fp32 and bf16, measured in the same run)
divided by the net's FLOPs per image (counted by ``torch.utils.flop_counter``: forward and backward for
training, one forward for a sampling step).

    python bench/speed.py [--width 64] [--batch 64] [--rounds 3] [--compile] [--training-only]

A second table replaces the net's BatchNorms, GELUs or both by identities (the FLOPs stay the same): what the
convolution kernels alone reach on this machine, the ceiling of any fusion of the rest; the sampling table ends with
the default sampler on such nets.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
import time

import torch
from torch import nn

from fundiff import parta
from fundiff.core.sampling import Sampling
from fundiff.models.fundiff_unet import fundiff_model
from fundiff.nets.unet import UNet, UNetConfig
from fundiff.train.recipes import make_recipe

DEFAULT = make_recipe("class")
STRIPPED = {"without BatchNorm": (nn.BatchNorm2d,), "without GELU": (nn.GELU,),
            "convolutions only": (nn.BatchNorm2d, nn.GELU)}
"""Layer kinds replaced by identities (:func:`without`) in the ceiling's variants."""


def without(net: nn.Module, kinds: tuple[type, ...]) -> nn.Module:
    """``net`` with every layer of the given kinds replaced by an identity (the FLOPs stay those of the convolutions
    and linears: the flop counter counts nothing else)."""
    for parent in list(net.modules()):
        for name, child in parent.named_children():
            if isinstance(child, kinds):
                setattr(parent, name, nn.Identity())
    return net


def train_variant(width: int, batch: int, channels_last: bool, bf16: bool, fused: bool = False,
                  drop: tuple[type, ...] = (), compiled: bool = False):
    """One optimizer step of the class net; ``drop``: layer kinds replaced by identities (see :func:`without`);
    ``compiled``: the net through ``torch.compile`` (inductor)."""
    torch.manual_seed(0)
    net = without(UNet(UNetConfig(width, "class")), drop)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(net.parameters(), 1e-3, fused=fused or None)
    x = torch.rand(batch, 1, 28, 28)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    t, c = torch.rand(batch), torch.eye(10)[torch.arange(batch) % 10]
    forward = torch.compile(net) if compiled else net

    def step() -> int:
        with torch.autocast("cpu", torch.bfloat16, enabled=bf16):
            loss = (forward(x, t, c).float() - x).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        return batch

    return step


def counting(model):
    """The model with a counter of images passed through its net (net calls per image, CFG's included)."""
    calls = [0]

    def bind(condition):
        fn = model.bind(condition)

        def counted(x, level):
            calls[0] += x.shape[0]
            return fn(x, level)

        return counted

    return dataclasses.replace(model, bind=bind), calls


def sample_variant(width: int, n: int, sampler: str, steps: int, channels_last: bool, precision: str = "fp32",
                   interval: tuple[float, float] = (0.0, 1.0), drop: tuple[type, ...] = ()):
    """A sampling run of ``n`` images with CFG 5 (returns the image count), and a function that gives the net calls
    per image over the runs so far; ``drop``: layer kinds replaced by identities (see :func:`without`)."""
    recipe = make_recipe("class", width=width, precision=precision, guidance_interval=interval)
    net = without(UNet(UNetConfig(width, "class")), drop).eval()
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    model, calls = counting(fundiff_model(net, recipe, "bench", torch.device("cpu")))
    labels = [i % 10 for i in range(n)]
    s = Sampling(sampler=sampler, steps=steps)
    images = [0]

    def run() -> int:
        parta.generate(model, labels, len(labels), guidance=5.0, seed=0, sampling=s)
        images[0] += n
        return n

    return run, lambda: calls[0] / images[0]


def matmul_peak(dtype: torch.dtype, sizes: tuple[int, ...] = (1024, 2048, 4096), seconds: float = 2.0) -> float:
    """The machine's matmul peak in ``dtype``: the best FLOP/s of one n x n matmul (2 n^3 FLOPs), over ``seconds``
    of calls at each size n in ``sizes`` (the best size differs between machines and days)."""
    best = 0.0
    for n in sizes:
        a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
        a @ b  # warm-up
        t_end = time.perf_counter() + seconds
        while time.perf_counter() < t_end:
            t0 = time.perf_counter()
            a @ b
            best = max(best, 2 * n ** 3 / (time.perf_counter() - t0))
    return best


def flops_per_image(width: int, batch: int, train: bool) -> float:
    """FLOPs of one image through the class net: forward and backward (``train``) or one forward."""
    from torch.utils.flop_counter import FlopCounterMode

    net = UNet(UNetConfig(width, "class"))
    x, t, c = torch.rand(batch, 1, 28, 28), torch.rand(batch), torch.eye(10)[torch.arange(batch) % 10]
    with FlopCounterMode(display=False) as counter:
        if train:
            net(x, t, c).pow(2).mean().backward()
        else:
            with torch.no_grad():
                net(x, t, c)
    return counter.get_total_flops() / batch


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


def report(title: str, rates: dict[str, float], base: str, limit: dict[str, float] | None = None) -> None:
    """Each variant's images/s, its ratio to ``base`` and (given ``limit``: images/s at the fp32 and bf16 peak)
    its fraction of the limit of its precision."""
    print(f"\n{title}")
    for k, r in rates.items():
        frac = ""
        if limit:
            kind = "bf16" if "bf16" in k else "fp32"
            frac = f"   {r / limit[kind]:6.1%} of the {kind} limit ({limit[kind]:.0f} img/s)"
        print(f"  {k:<48} {r:8.1f} img/s   x{r / rates[base]:.2f}{frac}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--samples", type=int, default=20, help="images per sampling batch")
    ap.add_argument("--batches", default="1,16,128,1024", help="images asked for seconds per image ('' = skip)")
    ap.add_argument("--chunks", default="32,64,128,256,512", help="chunk sizes to compare ('' = none)")
    ap.add_argument("--compile", action="store_true", help="also time the default path through torch.compile")
    ap.add_argument("--training-only", action="store_true", help="stop after the training measurements")
    ap.add_argument("--chunk-images", type=int, default=512, help="images sampled for the chunk comparison")
    a = ap.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, width {a.width}")
    peak = {"fp32": matmul_peak(torch.float32), "bf16": matmul_peak(torch.bfloat16)}
    train_flops, step_flops = flops_per_image(a.width, a.batch, True), flops_per_image(a.width, a.batch, False)
    print(f"matmul peak: fp32 {peak['fp32'] / 1e9:.0f} GFLOP/s, bf16 {peak['bf16'] / 1e9:.0f} GFLOP/s; the net: "
          f"{train_flops / 1e9:.2f} GFLOP per training image, {step_flops / 1e9:.3f} GFLOP per image per net call")
    train = {
        "fp32": train_variant(a.width, a.batch, False, False),
        "fp32 + channels_last": train_variant(a.width, a.batch, True, False),
        "bf16 autocast": train_variant(a.width, a.batch, False, True),
        "bf16 autocast + channels_last": train_variant(a.width, a.batch, True, True),
        "bf16 + channels_last + fused Adam": train_variant(a.width, a.batch, True, True, True),
        f"the default path, batch {DEFAULT.batch_size} (bf16)": train_variant(a.width, DEFAULT.batch_size, True, True,
                                                                             True),
    }
    limit = {k: p / train_flops for k, p in peak.items()}
    report(f"training, batch {a.batch}", measure(train, a.rounds, a.seconds), "fp32", limit)
    kernels(a.width, a.batch, a.rounds, a.seconds, limit, a.compile)
    if a.training_only:
        return
    n = a.samples
    variants = {
        "DDPM-300, fp32": (n, "ddpm", 300, False),
        "DDPM-300, channels_last": (n, "ddpm", 300, True),
        "DDPM-300, channels_last + bf16": (n, "ddpm", 300, True, "bf16"),
        "DDPM-300, bf16 + interval": (n, "ddpm", 300, True, "bf16", (0.5, 0.9)),
        "DDIM-50, bf16 + interval": (n, "ddim", 50, True, "bf16", (0.5, 0.9)),
        "DPM-Solver++(2M)-20, bf16 + interval (default)": (n, "dpmpp-2m", 20, True, "bf16", (0.5, 0.9)),
        **{f"... the default, {name}, bf16": (n, "dpmpp-2m", 20, True, "bf16", (0.5, 0.9), STRIPPED[name])
           for name in ("without BatchNorm", "convolutions only")},
    }
    made = {k: sample_variant(a.width, *v) for k, v in variants.items()}
    rates = measure({k: fn for k, (fn, _) in made.items()}, a.rounds, a.seconds)
    report(f"sampling with CFG 5, {n} images", rates, "DDPM-300, fp32")
    print(f"\nper net call (images/s x net calls per image), against the limit of {step_flops / 1e9:.3f} GFLOP each")
    for k, (_, calls_per_image) in made.items():
        kind = "bf16" if "bf16" in k else "fp32"
        calls = calls_per_image()
        per_call = rates[k] * calls
        print(f"  {k:<48} {calls:5.0f} calls/img  {per_call:8.0f} img-calls/s  "
              f"{per_call * step_flops / peak[kind]:6.1%} of the {kind} limit")
    if a.batches:
        batch_sizes(a.width, [int(b) for b in a.batches.split(",")],
                    [int(c) for c in a.chunks.split(",") if c], a.chunk_images)


def kernels(width: int, batch: int, rounds: int, seconds: float, limit: dict[str, float], compiled: bool) -> None:
    """The ceiling this net's convolution kernels set: the default path (bf16, channels_last, fused Adam) with its
    BatchNorms, its GELUs, or both replaced by identities, at the default batch and at ``batch``. The same FLOPs
    (the flop counter counts convolutions and matmuls only), so what is left is the convolutions' own speed, with
    the concatenations, the bf16 casts and the optimizer step that every variant keeps.
    ``compiled``: also the default path through ``torch.compile``, compiled into an empty cache first (timed)."""
    variants = {}
    if compiled:
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="fundiff-inductor-")
        t0 = time.perf_counter()
        step = train_variant(width, DEFAULT.batch_size, True, True, True, compiled=True)
        step(), step()
        print(f"\ntorch.compile (inductor) of the default path: {time.perf_counter() - t0:.0f} s to compile "
              f"into an empty cache")
        variants[f"the default path + torch.compile, batch {DEFAULT.batch_size} (bf16)"] = step
    for b in (DEFAULT.batch_size, batch):
        for name, drop in {"the default path": (), **STRIPPED}.items():
            variants[f"{name}, batch {b} (bf16)"] = train_variant(width, b, True, True, True, drop)
    rates = measure(variants, rounds, seconds)
    report("the ceiling of the convolution kernels (layers replaced by identities, same FLOPs)", rates,
           f"the default path, batch {DEFAULT.batch_size} (bf16)", limit)


def batch_sizes(width: int, sizes: list[int], chunks: list[int], chunk_images: int) -> None:
    """Seconds per image of the default sampler (DPM-Solver++(2M)-20, bf16, CFG 5 on [0.5, 0.9]): for ``n`` images
    asked of ``generate`` (which slices them by :func:`parta.chunk_size`), and for ``chunk_images`` images sliced
    into chunks of each size in ``chunks``; each timed twice, alternately, and the faster kept."""
    runs = {f"{n:>5} images asked": (sample_variant(width, n, "dpmpp-2m", 20, True, "bf16", (0.5, 0.9))[0], None)
            for n in sizes}
    for c in chunks:
        runs[f"{chunk_images} images in chunks of {c:>4}"] = (
            sample_variant(width, chunk_images, "dpmpp-2m", 20, True, "bf16", (0.5, 0.9))[0], c)
    best = {k: float("inf") for k in runs}
    default = parta.CPU_CHUNK_PIXELS
    for _ in range(2):
        for k, (fn, chunk) in runs.items():
            parta.CPU_CHUNK_PIXELS = default if chunk is None else chunk * 28 * 28
            t0 = time.perf_counter()
            done = fn()
            best[k] = min(best[k], (time.perf_counter() - t0) / done)
    parta.CPU_CHUNK_PIXELS = default
    fastest = min(best.values())
    print(f"\nsampling seconds per image (default sampler; generate slices a batch into chunks of "
          f"{default // 784} digits)")
    for k, sec in best.items():
        print(f"  {k:<36} {sec * 1000:8.1f} ms per image   x{sec / fastest:.2f} of the fastest")


if __name__ == "__main__":
    main()

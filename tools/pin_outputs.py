"""Pin the outputs of every command for fixed seeds, to compare bytes before and after a restructure.

    python tools/pin_outputs.py OUT_DIR            # runs every command, writes OUT_DIR/pins.json
    python tools/pin_outputs.py OUT_DIR --old-defaults   # the digit commands with the old Part A loop's options
    python tools/pin_outputs.py --compare A.json B.json

Each command runs through ``fundiff.cli.main`` (the console script's code path) on the shipped digit model,
on a tiny training run, and on the tiny DeepFloyd IF models of ``tests/tiny_if.py``; ``pins.json`` maps
each command to the sha256 of every picture, array and weights file it wrote.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
SUFFIXES = (".png", ".gif", ".npz", ".safetensors")


OLD_PART_A = ["--stride", 9, "--variance", "posterior", "--guidance-interval", "0,1"]
"""The Part A loop the digit commands ran before the unified path (with --old-defaults)."""


def digit_commands(img: Path, old: bool = False) -> dict[str, list]:
    extra = OLD_PART_A if old else []
    return {name: [*args, *extra] + (["--sigma", 2.0] if old and name == "hybrid" else [])
            for name, args in _digit_commands(img).items()}


def _digit_commands(img: Path) -> dict[str, list]:
    return {
        "noise": ["noise", img, "--t", 50, 150],
        "denoise": ["denoise", img, "--t", 150, "--class", 3],
        "generate-class": ["generate", "--class", 7, "--n", 4],
        "generate-uncond": ["generate", "--n", 2],
        "edit": ["edit", img, "--class", 3, "--i-start", 5, 10],
        "inpaint": ["inpaint", img, "--box", 0, 0, 14, 14, "--class", 2],
        "anagram-flip": ["anagram", "--prompt", 3, "--prompt", 7, "--n", 2],
        "anagram-rot": ["anagram", "--prompt", 1, "--prompt", 6, "--views", "rotate_90", "--n", 2],
        "hybrid": ["hybrid", "--low", 3, "--high", 7, "--n", 2],
        "hybrid-3": ["hybrid", "--low", 3, "--mid", 5, "--high", 7, "--n", 1, "--sigma", 2.0, 1.0],
    }


def if_commands(img: Path, tiny) -> dict[str, list]:
    common = ["--model", tiny.stage1, "--stage-2", tiny.stage2, "--cache", tiny.cache]
    up = [*common, "--upsample", "--steps-2", 2, "--stride", 165]
    return {
        "if-generate": ["generate", *common, "--prompt", "a rocket ship", "--steps-1", 5, "--steps-2", 2, "--n", 2],
        "if-noise": ["noise", img, *common, "--upsample"],
        "if-denoise": ["denoise", img, "--t", 500, *up],
        "if-edit": ["edit", img, "--i-start", 1, 3, "--prompt", "a rocket ship", *up],
        "if-inpaint": ["inpaint", img, "--box", 24, 2, 40, 30, *up],
        "if-anagram": ["anagram", "--prompt", "a photo of a dog", "--prompt", "a pencil", "--n", 1, *up],
        "if-hybrid": ["hybrid", "--low", "a lithograph of a skull", "--high", "a pencil", "--n", 1, *up],
    }


def run(args: list) -> None:
    from fundiff.cli.app import main

    sys.argv = ["fundiff", *map(str, args)]
    try:
        main()
    except SystemExit as e:
        if e.code:
            raise RuntimeError(f"fundiff {' '.join(sys.argv[1:])} exited {e.code}") from None


def hashes(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.suffix in SUFFIXES}


def photo(path: Path) -> Path:
    g = torch.Generator().manual_seed(0)
    from PIL import Image

    Image.fromarray((torch.rand(80, 96, 3, generator=g) * 255).to(torch.uint8).numpy()).save(path)
    return path


def pin(out: Path, old: bool = False) -> dict:
    torch.set_num_threads(1)
    sys.path.insert(0, str(ROOT / "tests"))
    from tiny_if import tiny_if

    from fundiff.evaluate.drawings import draw_digit

    out.mkdir(parents=True, exist_ok=True)
    digit = out / "drawn3.png"
    draw_digit(3, seed=0).save(digit)
    commands = digit_commands(digit, old) | if_commands(photo(out / "photo.jpg"), tiny_if())
    run_dir = out / "runs" / "class"
    commands |= {
        "train": ["train", "class", "--width", 8, "--epochs", 1, "--out", run_dir],
        "sample": ["sample", run_dir, "--classes", "3,7", "--per-class", 2, "--gif"],
        "sample-shipped": ["sample", ROOT / "src/fundiff/assets/digits.safetensors", "--classes", 7, "--per-class",
                           4, "--out", out / "sample-shipped"],
        "figures": ["figures", run_dir, "--steps", 20],
    }
    pins = {}
    for name, args in commands.items():
        folder = out / name
        if "--out" not in args and name not in ("sample", "figures"):
            args = [*args, "--out", folder]
        before = hashes(out)
        run(args)
        pins[name] = {"args": [str(a) for a in args], "files": {k: v for k, v in hashes(out).items()
                                                               if before.get(k) != v}}
        print(f"{name}: {len(pins[name]['files'])} files", flush=True)
    (out / "pins.json").write_text(json.dumps(pins, indent=1))
    return pins


def compare(a: Path, b: Path) -> int:
    pa, pb = json.loads(a.read_text()), json.loads(b.read_text())
    changed = 0
    for name in pa:
        fa, fb = pa[name]["files"], pb.get(name, {}).get("files", {})
        same = sum(fa[k] == fb.get(k) for k in fa)
        differ = [k for k in fa if k in fb and fa[k] != fb[k]]
        missing = [k for k in fa if k not in fb]
        changed += bool(differ or missing)
        print(f"{name:16s} {same}/{len(fa)} identical" + (f"; differ: {differ[:4]}" if differ else "")
              + (f"; missing: {missing[:4]}" if missing else ""))
    return changed


if __name__ == "__main__":
    if sys.argv[1] == "--compare":
        sys.exit(1 if compare(Path(sys.argv[2]), Path(sys.argv[3])) else 0)
    pin(Path(sys.argv[1]), old="--old-defaults" in sys.argv)

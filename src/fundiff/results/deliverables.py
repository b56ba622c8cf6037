"""``fundiff parta``: every Part A deliverable of the assignment on DeepFloyd IF, one folder each, resumable."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path

from fundiff.core.sampling import Sampling
from fundiff.errors import UserError
from fundiff.io.files import versions, write_json
from fundiff.models.deepfloyd.prompts import DEFAULT_PROMPT
from fundiff.progress import say
from fundiff.results.parta import (
    Run,
    run_anagram,
    run_denoise,
    run_edit,
    run_generate,
    run_hybrid,
    run_inpaint,
    run_noise,
)
from fundiff.results.settings import ModelSpec, StageTwo

PART0_PROMPTS = ("an oil painting of a snowy mountain village", "a man wearing a hat", "a rocket ship")
ANAGRAMS = (("an oil painting of an old man", "an oil painting of people around a campfire"),
            ("an oil painting of a snowy mountain village", "a photo of the amalfi cost"),
            ("a lithograph of waterfalls", "a lithograph of a skull"))
HYBRIDS = (("a lithograph of a skull", "a lithograph of waterfalls"),
           ("a photo of a dog", "a photo of the amalfi cost"),
           ("a man wearing a hat", "a pencil"))
"""(low = seen from far, high = seen close up)."""
I_STARTS = [1, 3, 5, 7, 10, 20]
TOWER_TOP = [24, 2, 40, 30]
"""x0 y0 x1 y1 of the Campanile's top in the 64 px test image (the course's mask[2:30, 24:40])."""


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")[:48] or "empty"


def _pair(i: int, a: str, b: str) -> str:
    """'1-an_old_man-people_around_a_campfire' for ('an oil painting of an old man', '... of people around ...')."""
    return f"{i + 1}-{_slug(a.split(' of ')[-1])}-{_slug(b.split(' of ')[-1])}"


@dataclass
class PartABase:
    """What every deliverable of ``fundiff parta`` shares: the model, the seed, stage II, the strided grid."""

    m: ModelSpec
    seed: int
    up: StageTwo
    stride: int = 30


class Deliverables:
    """The Part A folder: one subfolder per result; a finished one (its args.json written) is skipped on rerun."""

    def __init__(self, out: Path, base: PartABase) -> None:
        self.out, self.base, self.done, self.ran = Path(out), base, [], []

    def __call__(self, name: str, fn, *args, guidance: float | None = None, steps: int | None = None,
                 steps_2: int | None = None) -> None:
        folder = self.out / name
        if (folder / "args.json").is_file():
            self.done.append(name)
            return
        say(f"[parta] {name}")
        b = self.base
        asked = Sampling(guidance=guidance, steps=steps, stride=None if steps else b.stride)
        up = replace(b.up, steps_2=steps_2 or b.up.steps_2)
        fn(*args, Run(name.split("/")[0], b.m, asked, b.seed, folder, True, up, name))
        self.ran.append(name)


def run_parta(image: Path, own: list[Path], web: Path | None, drawings: list[Path], out: Path, base: PartABase,
              steps_1: list[int], n: int) -> Path:
    """Every Part A deliverable of spec.md (Part 0, 1.1-1.9) with the spec's prompts, timesteps, i_start values,
    gamma 7 and seed, each upsampled by stage II unless --no-upsample, into ``out``; rerunning resumes."""
    for p in [image, *own, *drawings, *([web] if web else [])]:
        if not Path(p).is_file():
            raise UserError(f"{p}: no such image file")
    _embed_all(base.m)
    d = Deliverables(out, base)
    for steps in steps_1:
        for prompt in PART0_PROMPTS:
            d(f"0_text_to_image/steps{steps}-{_slug(prompt)}", run_generate, 1, False, (prompt, None), steps=steps,
              steps_2=base.up.steps_2 or steps)
    d("1.1_forward", run_noise, image, [250, 500, 750])
    d("1.2-1.3_denoise", run_denoise, image, [250, 500, 750], "all", (5, 2.0), (None, None), guidance=1.0)
    d("1.4_iterative", run_denoise, image, [690], "all", (5, 2.0), (None, None), guidance=1.0)
    d("1.5_sampling", run_generate, n, False, (None, None), guidance=1.0)
    d("1.6_cfg", run_generate, n, False, (None, None), guidance=7.0)
    named = [("test", image), *((f"own{i + 1}", p) for i, p in enumerate(own))]
    extra = [*([("web", web)] if web else []), *((f"drawn{i + 1}", p) for i, p in enumerate(drawings))]
    for tag, img in named:
        d(f"1.7_sdedit/{tag}", run_edit, img, I_STARTS, False, "no", (None, None), guidance=7.0)
    for tag, img in extra:
        d(f"1.7.1_web_and_drawn/{tag}", run_edit, img, I_STARTS, False, "no", (None, None), guidance=7.0)
    for tag, img in named:
        box = TOWER_TOP if tag == "test" else [16, 16, 48, 48]
        d(f"1.7.2_inpaint/{tag}", run_inpaint, img, None, box, (None, None), guidance=7.0)
    for tag, img in named + extra:
        d(f"1.7.3_text/{tag}", run_edit, img, I_STARTS, False, "no", ("a rocket ship", None), guidance=7.0)
    for i, pair in enumerate(ANAGRAMS):
        d(f"1.8_anagram/{_pair(i, *pair)}", run_anagram, list(pair), ["flip"], 1, guidance=7.0)
    for i, (low, high) in enumerate(HYBRIDS):
        d(f"1.9_hybrid/{_pair(i, low, high)}", run_hybrid, [low, high], 1, 33, [2.0], guidance=7.0)
    write_json(Path(out) / "parta.json", {"model": base.m.model, "stage_2": base.up.stage_2, "seed": base.seed,
                                          "upsample": base.up.upsample, "stride": base.stride, "steps_1": steps_1,
                                          "steps_2": base.up.steps_2, "ran": d.ran, "already_done": d.done,
                                          "versions": versions()})
    say(f"Part A: {len(d.ran)} sections written, {len(d.done)} already done, in {out}")
    return Path(out)


def _embed_all(m: ModelSpec) -> None:
    """Look up (or compute, loading T5 once) every prompt the deliverables use, then free the encoder."""
    from fundiff.models import load_diffusion_model

    model = load_diffusion_model(m.model, m.device, prompt_cache=m.prompt_cache, dtype=m.dtype, offload=m.offload)
    if model.conditioning != "prompt":
        raise UserError(f"fundiff parta runs DeepFloyd IF (--model deepfloyd); {m.model} is not a prompt model")
    pairs = [p for pair in ANAGRAMS + HYBRIDS for p in pair]
    model.prompts.ensure(["", DEFAULT_PROMPT, "a rocket ship", *PART0_PROMPTS, *pairs])
    model.prompts.release_encoder()

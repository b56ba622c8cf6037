"""The whole page: sections in the reports' order (Part A 0, 1.1-1.9; Part B 1.1-2.5; extras), then the
measured numbers, the machine, fundiff's version and the command that rebuilds the page."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from fundiff.report import sections_a as sa
from fundiff.report import sections_b as sb
from fundiff.report.content import num, seconds, table
from fundiff.report.estimate import recipe_of
from fundiff.report.page import Page, Section
from fundiff.report.profiles import QUICK, Profile
from fundiff.report.runner import StageResult

if TYPE_CHECKING:
    from fundiff.report.options import ReportOptions

Results = dict[str, StageResult]


def quick_text() -> str:
    """The quick profile in words, from its runs' recipes."""
    r = {run.name: recipe_of(run) for run in QUICK.runs}
    c = r["class-ddpm"]
    f = r["class-flow"]
    return (f"the quick profile: the spec's nets, trained with fundiff's default recipe ({c.precision}, batch "
            f"{c.batch_size}, {c.lr_schedule} lr, EMA) for fewer epochs (class DDPM {c.epochs}, time DDPM "
            f"{r['time-ddpm'].epochs}, time flow {r['time-flow'].epochs}, class flow {f.epochs} ({f.lr_schedule} "
            f"lr), its learning-rate variants {r['class-flow-constant-lr'].epochs}) and narrower single-step "
            f"denoisers (D = {r['denoiser'].width}, {r['denoiser'].epochs} epochs); under ten minutes on a 2-core CPU")


PROFILE_TEXT = {
    "quick": quick_text(),
    "spec": "the spec profile: every model trained with the spec's recipe exactly",
    "smoke": "the smoke profile: tiny nets trained for one epoch, to test the page; its numbers mean nothing",
    "tiny": "the tiny profile: one Part A section and one tiny training run, to test the report's resumption",
}
ENABLE_DEEPFLOYD = [
    "Accept the licences of DeepFloyd/IF-I-XL-v1.0 (or IF-I-L / IF-I-M) and DeepFloyd/IF-II-L-v1.0 on Hugging "
    "Face and log in (`huggingface-cli login`, or set HF_TOKEN).",
    "`pip install 'fundiff[deepfloyd]'`; optionally `fundiff embed --assignment` computes the T5 prompt "
    "embeddings once (the encoder is about 10 GB in fp16).",
    "`fundiff report --deepfloyd deepfloyd` (or `deepfloyd:IF-I-M-v1.0`, or a local IF pipeline directory). "
    "A GPU with 16 GB or more is the practical way; the stage is resumable.",
]


def build_page(o: ReportOptions, p: Profile, res: Results, record: dict) -> Page:
    out = Path(o.out)
    v = record["versions"]
    sections = [about(p, res, record)]
    sections += [Section("part-a", "Part A: The power of diffusion models", 2, text=_part_a_text()),
                 *sa.part_a(res, out), sa.measured(res, out)]
    sections += [Section("part-b", "Part B: Diffusion models from scratch", 2, text=[
        f"Trained here on {_data(res)}, with {PROFILE_TEXT[p.name]}."]),
        Section("b-part-1", "Part 1: Training a single-step denoising UNet", 3), sb.unet(res, out),
        *sb.denoiser(res, out),
        Section("b-part-2", "Part 2: Training a diffusion model", 3), *sb.time_model(res, out),
        *sb.class_model(res, out)]
    sections += [Section("extras", "Extras", 2), *sb.flow(res, out), sb.learning_rate(res, out),
                 deepfloyd(res, o)]
    sections += measurements(res, record)
    footer = [f"Made by fundiff {v['fundiff']} on {time.strftime('%Y-%m-%d')} with `{record['command']}`.",
              "Every number on this page was measured by the run that wrote it; every picture was drawn from "
              "files the runs wrote (see report.json and the stage folders)."]
    return Page("Fun With Diffusion Models", f"A fundiff report: {PROFILE_TEXT[p.name]}.", sections, footer)


def _data(res: Results) -> str:
    r = res.get("train/class-ddpm")
    return r.result["data"]["source"] + f" ({r.result['data']['train_images']} training images)" if r else "digits"


def _part_a_text() -> list[str]:
    return ["The sampling loops of Part A run on any diffusion model through one contract. Here they run on the "
            "class-conditioned digit model fundiff ships (the spec's UNet, 60 epochs on 4,500 MNIST digits with an "
            "EMA of the weights; T = 300), where a class plays the part of a prompt and the null class the part "
            "of 'a high quality photo'. The reports' timesteps scale to T = 300: t = 250, 500, 750 become 75, 150, "
            "225; the strided loop uses stride 9 (297, 288, ..., 0), so i_start = 10 is t = 207. Anagrams and "
            "hybrids (1.8, 1.9) are sampled as `fundiff anagram` and `fundiff hybrid` sample by default, so the "
            "rates measured below (with their 95% intervals) are the rates of what their pictures show.",
            "Try them yourself in the browser: `pip install \"fundiff[play]\"` (in a clone: `pip install -e "
            "\".[play]\"`), then `fundiff play` serves a playground on this machine (it prints the address), "
            "offline: draw a digit and edit it, paint a mask, make an anagram or a hybrid, each with the command line "
            "that makes the same images (README, 'A playground in the browser')."]


def about(p: Profile, res: Results, record: dict) -> Section:
    v = record["versions"]
    total = sum(r.seconds for r in res.values())
    return Section("about", "About this report", 2, text=[
        f"Built with {PROFILE_TEXT[p.name]}. The stages took {seconds(total)} of compute in all "
        f"({sum(r.reused for r in res.values())} of {len(res)} reused from an earlier run of the same command).",
        f"Machine: {v['platform']}, {v['processor']}, {v['threads']} threads; Python {v['python']}, torch "
        f"{v['torch']}, fundiff {v['fundiff']}.",
        f"Rebuild this page (finished stages are reused): `{record['command']}`"])


def deepfloyd(res: Results, o: ReportOptions) -> Section:
    r = res.get("deepfloyd")
    s = Section("deepfloyd", "DeepFloyd IF and stage-II upsampling", 3)
    if r is None:
        s.notes.append("Not run: this report was built without --deepfloyd (its weights are gated and tens of GB). "
                       "Part A above ran on the digit model. To add DeepFloyd IF to every Part A section:")
        s.notes[-1] += " " + _steps()
    elif r.result.get("status") != "done":
        s.notes.append(f"Not run: DeepFloyd IF ({o.deepfloyd}) stopped: {r.result.get('reason')}")
        s.notes[-1] += " To enable it: " + _steps()
    else:
        info = r.result["parta"]
        s.text.append(f"Stage I: {info['model']}; stage II: {info.get('stage_2') or 'DeepFloyd/IF-II-L-v1.0'}; seed "
                      f"{info['seed']}; strided timesteps with stride {info['stride']}; Part 0 with "
                      f"{', '.join(map(str, info['steps_1']))} steps; every result upsampled to 256 px. The pictures "
                      f"are in each Part A section above; this stage took {seconds(r.seconds)}.")
    return s


def _steps() -> str:
    return " ".join(f"({i + 1}) {step}" for i, step in enumerate(ENABLE_DEEPFLOYD))


def measurements(res: Results, record: dict) -> list[Section]:
    train_rows = []
    for name, r in res.items():
        if name.startswith("train/"):
            s, rec = r.result, r.result["recipe"]
            train_rows.append([name[6:], f"{rec['model']}/{rec['objective']}", rec["recipe"], s["epoch"], s["steps"],
                               rec["width"], rec["batch_size"], f"{rec['lr']:g} {rec['lr_schedule']}",
                               rec["precision"], seconds(s["train_seconds"]), num(s["first_loss"], 4),
                               num(s["epoch_losses"][-1] if s["epoch_losses"] else None, 4)])
    j = res.get("judge")
    shipped = " (the one fundiff ships, so every machine measures with it)" if j and j.result.get("shipped") else ""
    judge_text = (f"The judge{shipped}: a small CNN trained on the training split ({j.result['train_images']} images, "
                  f"{j.result['epochs']} epochs); held-out accuracy {num(j.result['held_out_accuracy'])} on "
                  f"{j.result['held_out_images']} held-out images.") if j else ""
    evals = [n[9:] for n in res if n.startswith("evaluate/")]
    stage_rows = [[n, seconds(r.seconds), "reused" if r.reused else "ran"] for n, r in res.items()]
    return [
        Section("measurements", "Measurements", 2, text=[judge_text] if judge_text else []),
        Section("m-training", "Training", 3, tables=[table(
            ["run", "model", "recipe", "epochs", "steps", "D", "batch", "lr", "precision", "time", "first loss",
             "last-epoch loss"], train_rows, "Training time is the sum of the epochs' wall time on this machine.")]),
        Section("m-evaluation", "Sample quality", 3, tables=[sb.eval_table(res, evals)]),
        Section("m-stages", "Stages and times", 3, text=[f"Rebuild: `{record['command']}`"], tables=[table(
            ["stage", "time", "this run"], stage_rows, "Time of each stage when it ran (reused stages keep the time "
                                                          "of the run that made them).")]),
    ]

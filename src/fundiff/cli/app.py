"""The ``fundiff`` command line. User mistakes print one line ("fundiff: error: ...") and exit 2."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from fundiff.cli.options import (
    SEED_HELP,
    Device,
    ModelOptions,
    OutputOptions,
    SamplingOptions,
    command,
    int_list,
    interval,
)
from fundiff.cli.parta import expand_multi_values, register
from fundiff.errors import UserError, os_error_line

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Fun With Diffusion Models: train, sample, edit and evaluate diffusion models.")
judge_app = typer.Typer(no_args_is_help=True, help="The judge of a data set (a small classifier) that evaluate uses.")
app.add_typer(judge_app, name="judge")
register(app)

Opt = typer.Option


@command(app)
def train(
    model: Annotated[str, typer.Argument(help="denoiser | time | class")],
    recipe: Annotated[str | None, Opt(help="default (improved) | spec (exactly the spec's)")] = None,
    objective: Annotated[str | None, Opt(help="ddpm | flow (default: ddpm)")] = None,
    data: Annotated[str | None, Opt(help="mnist | fashion | cifar10 | cifar100 | svhn | stl10 | a folder of images "
                                         "(one subfolder per class, or flat for a time model; default: mnist)")
                    ] = None,
    data_dir: Annotated[Path | None, Opt(help="directory of IDX files (gzipped or not)")] = None,
    download: Annotated[Path | None, Opt(help="download the full set with torchvision into this directory")] = None,
    image_size: Annotated[int | None, Opt(help="image folders: resize and centre-crop to this size (default: the "
                                               "images' median size, rounded to one the net supports)")] = None,
    channels: Annotated[int | None, Opt(help="image folders: 1 (grey) or 3 (colour) (default: from the images)")
                        ] = None,
    holdout_per_class: Annotated[int | None, Opt(help="images per class held out for evaluation (default: 50)")
                                 ] = None,
    epochs: Annotated[int | None, Opt()] = None,
    batch_size: Annotated[int | None, Opt()] = None,
    lr: Annotated[float | None, Opt()] = None,
    lr_schedule: Annotated[str | None, Opt(help="exponential | constant | cosine")] = None,
    width: Annotated[int | None, Opt(help="hidden width D")] = None,
    net: Annotated[str | None, Opt(help="fundiff (the spec's UNet) | diffusers (a diffusers UNet2DModel, for larger "
                                        "images; default: fundiff)")] = None,
    ema_decay: Annotated[float | None, Opt(help="EMA of the weights (0 = off)")] = None,
    augment: Annotated[float | None, Opt(help="probability that a training image is given a small random "
                                         "rotation, scale and shift (0 = off)")] = None,
    loss_weighting: Annotated[str | None, Opt(help="DDPM loss weight: uniform | min-snr (min(SNR, 5) / SNR)")] = None,
    time_sampling: Annotated[str | None, Opt(help="flow-matching times: uniform | logit-normal")] = None,
    p_uncond: Annotated[float | None, Opt(help="class-dropout probability")] = None,
    sigma: Annotated[float | None, Opt(help="denoiser noise level")] = None,
    pure_noise: Annotated[bool, Opt("--pure-noise", help="denoiser trained on z = eps")] = False,
    sample_epochs: Annotated[str | None, Opt(help="epochs that get weights and a sample grid, e.g. 1,5,20")] = None,
    seed: Annotated[int | None, Opt()] = None,
    precision: Annotated[str | None, Opt(help="fp32 | bf16 (autocast)")] = None,
    guidance_interval: Annotated[str | None, Opt(help="noise levels t/T where CFG applies when sampling, "
                                                 "e.g. 0.5,1")] = None,
    out: Annotated[Path | None, Opt(help="run directory (default runs/MODEL-OBJECTIVE-RECIPE)")] = None,
    resume: Annotated[bool, Opt("--resume", help="continue a run in --out")] = False,
    device: Device = "auto",
) -> None:
    """Train the spec's UNet (single-step denoiser, time- or class-conditioned) on digits, clothes or your images."""
    from fundiff.train.session import run_train

    overrides = dict(epochs=epochs, batch_size=batch_size, lr=lr, lr_schedule=lr_schedule, width=width, net=net,
                     ema_decay=ema_decay, augment=augment, loss_weighting=loss_weighting,
                     time_sampling=time_sampling, p_uncond=p_uncond, sigma=sigma, seed=seed,
                     precision=precision, data=data, pure_noise=pure_noise or None, image_size=image_size,
                     channels=channels, holdout_per_class=holdout_per_class,
                     guidance_interval=interval(guidance_interval),
                     sample_epochs=int_list(sample_epochs, "--sample-epochs") if sample_epochs else None)
    run_train(model, objective, recipe, overrides, data_dir, download, out, resume, device)


@command(app, "train-classifier")
def train_classifier(
    model: Annotated[str, typer.Argument(help="a class-conditioned DDPM run folder, or digits / fashion (with --out)")],
    data_dir: Annotated[Path | None, Opt(help="directory of IDX files (default: the model's training data)")] = None,
    epochs: Annotated[int, Opt(help="epochs over the training split")] = 30,
    seed: Annotated[int, Opt(help="seed of the weights, batches and noise")] = 0,
    out: Annotated[Path | None, Opt(help="classifier file (default: RUN/classifier.safetensors, where loading the run "
                                         "finds it)")] = None,
    force: Annotated[bool, Opt("--force", help="overwrite an existing classifier")] = False,
) -> None:
    """Train a model's noise-aware classifier: with it, anagrams and hybrids use classifier guidance by default."""
    from fundiff.train.classifier import run_train_classifier

    run_train_classifier(model, data_dir, epochs, seed, out, force)


Precision = Annotated[str | None, Opt(help="fp32 | bf16 autocast for the net (default: the recipe's)")]
Epoch = Annotated[int | None, Opt(help="use the weights saved after this epoch")]


@command(app)
def sample(
    model: Annotated[str, typer.Argument(help="digits or fashion (shipped), a training run directory or a weights "
                                               "file")],
    s: SamplingOptions, o: OutputOptions,
    classes: Annotated[str | None, Opt(help="classes, e.g. 0-9 or 3,5 (default 0-9 for a class model)")] = None,
    per_class: Annotated[int, Opt(help="samples per class (an unconditional model: 10 x this many)")] = 4,
    epoch: Epoch = None, precision: Precision = None,
    gif: Annotated[bool, Opt("--gif", help="also write a GIF of the trajectory")] = False,
    device: Device = "auto",
) -> None:
    """Sample a grid: PNG grid, samples.npz (uint8 N x H x W + labels), optional GIF, and sample.json."""
    from fundiff.cli.sample import run_sample

    run_sample(model, int_list(classes, "--classes") if classes else None, per_class, epoch, precision, gif, s, o,
               device)


@command(app)
def evaluate(
    run_dir: Annotated[Path, typer.Argument(help="a class-conditioned training run directory")],
    s: SamplingOptions,
    per_class: Annotated[int, Opt(help="samples per class")] = 40,
    epoch: Epoch = None, precision: Precision = None,
    judge: Annotated[Path | None, Opt(help="judge weights (default: fundiff's shipped judge of the offline digits or "
                                                 "Fashion-MNIST; for other data one trained on the run's data, "
                                                 "once, into the cache)")] = None,
    force: Annotated[bool, Opt("--force", help="evaluate again when RUN/eval-<settings> is already there")] = False,
    device: Device = "auto",
) -> None:
    """Judge accuracy per class (class models) or the classes read (time models), and Frechet distance vs held-out
    images with the real-vs-real baseline."""
    from fundiff.evaluate.runs import run_evaluate

    run_evaluate(run_dir, per_class, epoch, precision, judge, s.sampling(), s.seed, device, force)


@command(app, "evaluate-parta")
def evaluate_parta(
    model: Annotated[list[str] | None, Opt(help="a class-conditioned 28x28 model with 10 classes: a shipped name, a "
                                           "run dir or weights; repeat for more (default: every shipped model "
                                           "installed)")] = None,
    out: Annotated[Path, Opt(help="output directory")] = Path("runs/parta-eval"),
    pairs: Annotated[int | None, Opt(help="a seeded subset of this many ordered class pairs (and as many "
                                     "triples) for anagrams and hybrids (default: all 90)")] = None,
    per_pair: Annotated[int, Opt(help="images per pair")] = 4,
    per_target: Annotated[int, Opt(help="edited real images per target class")] = 20,
    guidance: Annotated[float | None, Opt(help="CFG scale (default: the model's)")] = None,
    seed: Annotated[int, Opt(help=SEED_HELP)] = 0,
    force: Annotated[bool, Opt("--force")] = False,
    device: Device = "auto",
) -> None:
    """Judge-measured Part A with 95% intervals: class edits, anagrams (flip, rotate_90, rotate_180, transpose, three
    views) and hybrids as `fundiff anagram` / `fundiff hybrid` make them by default, SDEdit of drawings."""
    from fundiff.evaluate.parta_suite import run_evaluate_models

    if min(pairs if pairs is not None else 1, per_pair, per_target) < 1:
        raise UserError("--pairs, --per-pair and --per-target must be at least 1")
    run_evaluate_models(model, out, pairs, per_pair, per_target, guidance, seed, force, device)


@command(judge_app, "train")
def judge_train(
    data: Annotated[str, Opt(help="mnist | fashion | cifar10 | ... | a folder of images in class subfolders")
                    ] = "mnist",
    data_dir: Annotated[Path | None, Opt()] = None,
    image_size: Annotated[int | None, Opt(help="image folders: as fundiff train's (default: from the images)")
                          ] = None,
    channels: Annotated[int | None, Opt(help="image folders: 1 or 3 (default: from the images)")] = None,
    holdout_per_class: Annotated[int, Opt(help="as fundiff train's: images per class held out")] = 50,
    epochs: Annotated[int | None, Opt(help="default: about 36,000 images (8 epochs of the 4,450 offline digits, 1 of "
                                           "a full 60,000 set)")] = None,
    out: Annotated[Path | None, Opt(
        help="judge file (default: the cache evaluate uses for data without a shipped judge; pass --judge FILE to "
             "evaluate with it)")] = None,
    force: Annotated[bool, Opt("--force", help="overwrite an existing judge")] = False,
    far: Annotated[bool, Opt("--far", help="the far judge: also reads images shrunk to 7-14 px and enlarged back, "
                                          "as evaluate-parta reads hybrids from far")] = False,
) -> None:
    """Train the judge of a data set on its training split and report its held-out accuracy."""
    from fundiff.evaluate.runs import run_judge_train

    run_judge_train(data, data_dir, epochs, out, force, far, image_size, channels, holdout_per_class)


@command(app)
def figures(
    runs: Annotated[list[Path], typer.Argument(help="training run directories (denoiser, time, class, ...)")],
    out: Annotated[Path | None, Opt(help="output directory (default: RUN_DIR/figures for one run)")] = None,
    sampler: Annotated[str | None, Opt(help="ddpm | ddim for DDPM runs (default: the run's)")] = None,
    steps: Annotated[int | None, Opt()] = None,
    seed: Annotated[int, Opt(help=SEED_HELP)] = 0,
    force: Annotated[bool, Opt("--force", help="write into a folder that is not empty; the files an earlier "
                                              "figures.json lists are removed first")] = False,
    device: Device = "auto",
) -> None:
    """Every Part B figure the runs allow: noising, loss curves, denoiser results, OOD test, samples, GIFs."""
    from fundiff.partb.all_figures import run_figures

    run_figures(runs, out, sampler, steps, seed, device, force)


@command(app)
def report(
    out: Annotated[Path, Opt(help="report directory: index.html, the runs, the figures, report.log")] = Path("report"),
    profile: Annotated[str, Opt(help="quick (9 min measured on a 2-core CPU) | spec (the spec's recipes "
                                     "exactly; about 1.9 h here, estimated from the quick stages' rates)")]
    = "quick",
    data: Annotated[str, Opt(help="mnist | fashion (Part B training data)")] = "mnist",
    data_dir: Annotated[Path | None, Opt(help="directory of IDX files to train on (gzipped or not)")] = None,
    deepfloyd: Annotated[str | None, Opt(help="also run Part A on DeepFloyd IF: deepfloyd[:IF-I-M-v1.0] or a local "
                                         "IF stage I directory")] = None,
    stage_2: Annotated[str | None, Opt("--stage-2", help="DeepFloyd stage II (default IF-II-L-v1.0)")] = None,
    prompt_cache: Annotated[Path | None, Opt(help="DeepFloyd prompt-embedding cache (.pth or .safetensors)")] = None,
    seed: Annotated[int, Opt(help=SEED_HELP)] = 0,
    force: Annotated[bool, Opt("--force", help="rebuild from scratch what an earlier report left in --out")] = False,
    device: Device = "auto",
) -> None:
    """The whole illustrated write-up: run (or reuse) every Part A and Part B deliverable, write OUT/index.html."""
    from fundiff.report.build import ReportOptions, run_report

    run_report(ReportOptions(out, profile, data, data_dir, deepfloyd, stage_2, prompt_cache, seed, force, device))


@command(app)
def embed(
    prompts: Annotated[list[str] | None, typer.Argument(help="prompts to embed, e.g. 'a photo of a dog'")] = None,
    model: Annotated[str, Opt(help="DeepFloyd stage I whose T5 encoder to use: deepfloyd[:NAME] or a local IF dir")]
    = "deepfloyd",
    cache: Annotated[Path | None, Opt("--prompt-cache", "--cache", help="cache file, .pth (the assignment's format) or "
                                      ".safetensors (default "
                                      "$FUNDIFF_PROMPT_CACHE or ~/.cache/fundiff/prompt_embeds.pth)")] = None,
    assignment: Annotated[bool, Opt("--assignment", help="also the assignment's 14 prompts")] = False,
    merge: Annotated[list[Path] | None, Opt(help="copy another cache file in (either format)")] = None,
    recompute: Annotated[bool, Opt("--recompute", help="recompute prompts already cached")] = False,
    dtype: Annotated[str, Opt(help="auto | fp32 | fp16 | bf16 (8-bit on CUDA when bitsandbytes is installed)")]
    = "auto",
    device: Device = "auto",
) -> None:
    """DeepFloyd: compute T5 prompt embeddings [1, 77, 4096] into the cache every command reads first."""
    from fundiff.cli.deepfloyd import run_embed

    run_embed(prompts or [], model, cache, device, dtype, assignment, merge or [], recompute)


@command(app)
def export(
    run: Annotated[Path, typer.Argument(help="a fundiff training run directory (a time or class model)")],
    out: Annotated[Path, typer.Argument(help="the folder to write: diffusers' layout and a Hugging Face model card")],
    epoch: Epoch = None,
    force: Annotated[bool, Opt("--force", help="write into a folder that is not empty; the files an earlier export "
                                              "there lists are removed first")] = False,
    samples: Annotated[bool, Opt("--samples/--no-samples", help="draw samples.png for the card (fundiff's sampler, "
                                                                "seed 0)")] = True,
    device: Device = "auto",
) -> None:
    """Export a run for diffusers / the Hugging Face Hub: unet/ + scheduler/ + model_index.json, README.md card."""
    from fundiff.export import export_run

    done = export_run(run, out, epoch, force, samples, device)
    print(f"exported {run} (epoch {done.epoch}, {done.scheduler}) -> {done.out}")
    for f in done.files:
        print(f"  {done.out / f}")


@command(app)
def parta(
    image: Annotated[Path, Opt(help="the test image (the Campanile), any size and format")],
    own: Annotated[list[Path] | None, Opt(help="images of your own for 1.7, 1.7.2, 1.7.3 (two)")] = None,
    web: Annotated[Path | None, Opt(help="a web image for 1.7.1")] = None,
    drawing: Annotated[list[Path] | None, Opt(help="hand-drawn images for 1.7.1 (two)")] = None,
    model: Annotated[str, Opt(help="deepfloyd[:IF-I-M-v1.0|:IF-I-XL-v1.0] or a local IF stage I directory")]
    = "deepfloyd",
    stage_2: Annotated[str | None, Opt("--stage-2", help="deepfloyd:IF-II-L-v1.0 (default), deepfloyd:IF-II-M-v1.0 "
                                       "or a local directory")] = None,
    upsample: Annotated[bool, Opt("--upsample/--no-upsample", help="every result through stage II too")] = True,
    steps_1: Annotated[list[int] | None, Opt("--steps-1", help="Part 0 stage I steps (default 20 50)")] = None,
    steps_2: Annotated[int | None, Opt("--steps-2", help="stage II steps (default: Part 0 as stage I, else 50)")]
    = None,
    stride: Annotated[int, Opt(help="stride of the strided timesteps (spec: 30 -> 990, 960, ..., 0)")] = 30,
    n: Annotated[int, Opt(help="samples for 1.5 and 1.6")] = 5,
    seed: Annotated[int, Opt(help="the assignment's seed")] = 180,
    cache: Annotated[Path | None, Opt("--prompt-cache", "--cache", help="prompt-embedding cache (.pth or "
                                      ".safetensors)")] = None,
    dtype: Annotated[str, Opt(help="auto (fp16 on CUDA, fp32 on CPU) | fp32 | fp16 | bf16")] = "auto",
    offload: Annotated[bool, Opt("--offload", help="model CPU offload (less GPU memory)")] = False,
    out: Annotated[Path, Opt(help="output folder (rerun to resume)")] = Path("outputs/parta-deepfloyd"),
    device: Device = "auto",
) -> None:
    """DeepFloyd: every Part A deliverable (0, 1.1-1.9) into one folder, resumable."""
    from fundiff.results.deliverables import PartABase, run_parta
    from fundiff.results.settings import ModelSpec, StageTwo

    base = PartABase(ModelSpec(model, device, cache, dtype, offload), seed, StageTwo(upsample, stage_2, steps_2),
                     stride)
    run_parta(image, own or [], web, drawing or [], out, base, steps_1 or [20, 50], n)


@command(app)
def play(
    m: ModelOptions,
    host: Annotated[str, Opt(help="address to listen on: 127.0.0.1 (this machine only) or 0.0.0.0 (your network)")]
    = "127.0.0.1",
    port: Annotated[int, Opt(help="port to listen on (0: any free one)")] = 7860,
) -> None:
    """A playground in the browser: Part A on a model, one tab per idea (needs Gradio: the play extra)."""
    from fundiff.play.serve import serve

    serve(m.model, host, port, m.device, prompt_cache=m.prompt_cache, dtype=m.dtype, offload=m.offload)


def main() -> None:
    """Entry point: runs the app; a UserError becomes one line on stderr and exit code 2."""
    try:
        code = app(args=expand_multi_values(sys.argv[1:]), prog_name="fundiff", standalone_mode=False)
    except UserError as e:
        print(f"fundiff: error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        _interrupted()
    except OSError as e:  # found while working (disk full, a folder made read-only meanwhile): one line, no traceback
        print(f"fundiff: error: {os_error_line(e)}", file=sys.stderr)
        sys.exit(2)
    except MemoryError:
        _out_of_memory()
    except Exception as e:  # click's (or typer's vendored click's) own usage errors, by duck type
        if _is_out_of_memory(e):
            _out_of_memory()
        name = type(e).__name__
        if name == "Exit":
            sys.exit(getattr(e, "exit_code", 0))
        if name == "Abort":
            _interrupted()
        if hasattr(e, "format_message") and hasattr(e, "exit_code"):
            if e.format_message():
                print(f"fundiff: error: {e.format_message()}", file=sys.stderr)
            sys.exit(2)
        raise
    if code == 130:  # typer turns Ctrl-C into exit code 130, returned (not raised) outside standalone mode
        _interrupted()
    if isinstance(code, int) and code:
        sys.exit(code)


def _is_out_of_memory(e: Exception) -> bool:
    """torch's allocators fail with a RuntimeError (CPU) or torch.OutOfMemoryError (CUDA), not MemoryError."""
    text = str(e).lower()
    return isinstance(e, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


def _out_of_memory() -> None:
    print("fundiff: error: out of memory; ask for fewer images (--n, --per-class), a smaller --batch-size or "
          "--width, or free memory", file=sys.stderr)
    sys.exit(2)


def _interrupted() -> None:
    print("fundiff: interrupted; run the same command again to continue (fundiff train: add --resume)",
          file=sys.stderr)
    sys.exit(130)


if __name__ == "__main__":
    main()

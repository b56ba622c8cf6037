"""Tiny, randomly initialised DeepFloyd IF models of the real architecture, saved in diffusers' layout.

Stage I and stage II are ``UNet2DConditionModel``s configured as IF's (as diffusers' own IF tests do):
ResnetDownsample / SimpleCrossAttn blocks, ``encoder_hid_dim`` (the T5 width) projected to
``cross_attention_dim``, ``addition_embed_type="text"`` (a pooled text embedding added to the time
embedding), ``resnet_time_scale_shift="scale_shift"``, GELU, group-normed cross attention, 6 output
channels (eps and the learned-range variance); stage II takes 6 input channels (x_t and the upscaled
image) and ``class_embed_type="timestep"`` for the noise level. Schedulers are IF's DDPMSchedulers
(squaredcos_cap_v2, learned_range, dynamic thresholding) and stage II's image-noising scheduler. The text
encoder is a 1-layer ``T5EncoderModel`` built from a config; its tokenizer is a unigram SentencePiece model
trained here on the assignment's prompts (converted without protobuf through its (piece, score) list).
Widths are a few channels, so a 64 px UNet call takes milliseconds on one CPU thread.
"""

from __future__ import annotations

import atexit
import functools
import io
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from fundiff.models.deepfloyd.prompts import ASSIGNMENT_PROMPTS

D_TEXT = 16  # T5 width of the tiny encoder (4096 for DeepFloyd's T5-XXL)
_IF_BLOCKS = dict(layers_per_block=1, mid_block_type="UNetMidBlock2DSimpleCrossAttn", cross_attention_dim=32,
                  encoder_hid_dim=D_TEXT, attention_head_dim=8, addition_embed_type="text",
                  addition_embed_type_num_heads=2, cross_attention_norm="group_norm",
                  resnet_time_scale_shift="scale_shift", act_fn="gelu", norm_num_groups=4, out_channels=6)


def train_tokenizer():
    """A T5Tokenizer on a 60-piece unigram SentencePiece model trained on the assignment's prompts."""
    import sentencepiece as spm
    from transformers import T5Tokenizer

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter([p for p in ASSIGNMENT_PROMPTS if p] * 5),
                                   model_writer=model, vocab_size=60, model_type="unigram", pad_id=0, eos_id=1,
                                   unk_id=2, bos_id=-1, hard_vocab_limit=False, minloglevel=2)
    sp = spm.SentencePieceProcessor(model_proto=model.getvalue())
    vocab = [(sp.id_to_piece(i), sp.get_score(i)) for i in range(sp.get_piece_size())]
    return T5Tokenizer(vocab=vocab, extra_ids=0)


def tiny_t5(vocab_size: int, seed: int = 0):
    from transformers import T5Config, T5EncoderModel

    torch.manual_seed(seed)
    config = T5Config(vocab_size=vocab_size, d_model=D_TEXT, d_kv=8, d_ff=32, num_layers=1, num_heads=2,
                      relative_attention_num_buckets=8, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
    return T5EncoderModel(config).eval()


def stage1_unet(seed: int = 0):
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    return UNet2DConditionModel(
        sample_size=64, in_channels=3, block_out_channels=(4, 8, 8),
        down_block_types=("ResnetDownsampleBlock2D", "ResnetDownsampleBlock2D", "SimpleCrossAttnDownBlock2D"),
        up_block_types=("SimpleCrossAttnUpBlock2D", "ResnetUpsampleBlock2D", "ResnetUpsampleBlock2D"),
        **_IF_BLOCKS).eval()


def stage2_unet(seed: int = 1):
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    return UNet2DConditionModel(
        sample_size=256, in_channels=6, block_out_channels=(4, 4, 8, 8),
        down_block_types=("ResnetDownsampleBlock2D",) * 3 + ("SimpleCrossAttnDownBlock2D",),
        up_block_types=("SimpleCrossAttnUpBlock2D",) + ("ResnetUpsampleBlock2D",) * 3,
        class_embed_type="timestep", mid_block_scale_factor=1.414, time_embedding_act_fn="gelu",
        time_embedding_dim=32, **_IF_BLOCKS).eval()


def if_scheduler(sample_max_value: float = 1.5, **overrides):
    """IF's sampling scheduler: T = 1000, squaredcos_cap_v2, epsilon, learned_range, dynamic thresholding."""
    from diffusers import DDPMScheduler

    cfg = dict(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", beta_start=0.0001, beta_end=0.02,
               prediction_type="epsilon", variance_type="learned_range", thresholding=True,
               dynamic_thresholding_ratio=0.95, sample_max_value=sample_max_value, clip_sample=True)
    return DDPMScheduler(**{**cfg, **overrides})


def noising_scheduler():
    from diffusers import DDPMScheduler

    return DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", beta_start=0.0001,
                         beta_end=0.02)


_NONE = dict(safety_checker=None, feature_extractor=None, watermarker=None, requires_safety_checker=False)


def save_stage1(path: Path, text_encoder: bool = True) -> Path:
    """An IFPipeline directory (model_index.json, unet/, scheduler/, and text_encoder/ + tokenizer/)."""
    from diffusers import IFPipeline

    tokenizer = train_tokenizer() if text_encoder else None
    encoder = tiny_t5(len(tokenizer)) if text_encoder else None
    IFPipeline(tokenizer=tokenizer, text_encoder=encoder, unet=stage1_unet(), scheduler=if_scheduler(),
               **_NONE).save_pretrained(str(path))
    return Path(path)


def save_stage2(path: Path) -> Path:
    """An IFSuperResolutionPipeline directory (unet/, scheduler/, image_noising_scheduler/), no text encoder."""
    from diffusers import IFSuperResolutionPipeline

    IFSuperResolutionPipeline(tokenizer=None, text_encoder=None, unet=stage2_unet(),
                              scheduler=if_scheduler(sample_max_value=1.0), image_noising_scheduler=noising_scheduler(),
                              **_NONE).save_pretrained(str(path))
    return Path(path)


@dataclass(frozen=True)
class TinyIF:
    """Directories of the tiny models (built once per process) and a cache of the assignment's prompts."""

    stage1: Path  # IFPipeline with text_encoder/ and tokenizer/
    stage1_no_encoder: Path  # the same UNet, no text encoder
    stage2: Path  # IFSuperResolutionPipeline (256 px)
    cache: Path  # .pth: the 14 assignment prompts -> (1, 77, D_TEXT)


@functools.cache
def tiny_if() -> TinyIF:
    """Build (once) and save the tiny models in a temporary directory removed at exit."""
    from diffusers.utils import logging as dlog
    from transformers.utils import logging as tlog

    from fundiff.models.deepfloyd.prompts import PromptEmbeddings, t5_loader

    dlog.disable_progress_bar()
    tlog.disable_progress_bar()
    root = Path(tempfile.mkdtemp(prefix="fundiff-tiny-if-"))
    atexit.register(shutil.rmtree, root, True)
    s1, s1_bare, s2 = save_stage1(root / "IF-I-tiny"), save_stage1(root / "IF-I-tiny-bare", False), \
        save_stage2(root / "IF-II-tiny")
    load, _ = t5_loader(str(s1), True, "cpu", torch.float32)
    PromptEmbeddings(root / "assignment_embeds.pth", load).ensure(ASSIGNMENT_PROMPTS)
    return TinyIF(s1, s1_bare, s2, root / "assignment_embeds.pth")


def _time_per_image(repeats: int = 3) -> None:
    """CPU seconds per 64 px image of the tiny stage I: spec 1.6 (34 strided steps, CFG 7: 68 UNet calls),
    and per 256 px stage II of it (50 steps, CFG 4: 100 UNet calls)."""
    import time

    from fundiff import parta as ops
    from fundiff.models import load_diffusion_model
    from fundiff.models.deepfloyd.stage2 import load_upsampler, upsample

    torch.set_num_threads(1)
    tiny = tiny_if()
    model = load_diffusion_model(str(tiny.stage1), prompt_cache=tiny.cache)
    up = load_upsampler(model, str(tiny.stage2))
    ops.generate(model, 1, "a high quality photo", seed=0)  # warm-up
    for n in (1, 5):
        best = min(_timed(lambda n=n: ops.generate(model, n, "a high quality photo", seed=0), time)
                   for _ in range(repeats))
        print(f"tiny stage I, 1 thread: {best / n:.3f} s per 64x64 image (batch {n}, 34 steps, CFG: 68 UNet calls)")
    x = torch.rand(1, 3, 64, 64)
    best = min(_timed(lambda: upsample(up, x, "a high quality photo"), time) for _ in range(repeats))
    print(f"tiny stage II, 1 thread: {best:.3f} s per 256x256 image (50 steps, CFG: 100 UNet calls)")


def _timed(fn, time) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


if __name__ == "__main__":  # OMP_NUM_THREADS=1 python tests/tiny_if.py
    _time_per_image()

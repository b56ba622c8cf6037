"""Prompt embeddings for text-conditioned models (DeepFloyd IF): a cache on disk and a lazy T5 encoder.

The cache is a file mapping each prompt string to its T5 embedding, shape (1, 77, D) (D = 4096 for
DeepFloyd's T5-XXL). Two formats, chosen by the suffix:

- ``.pth`` / ``.pt``: ``torch.save`` of a ``dict[str, Tensor]``, the format the assignment shipped
  (``prompt_embeds_dict.pth``); read with ``weights_only=True``.
- ``.safetensors``: the same dict with the prompts as tensor names (any string, the empty one included).

Every lookup reads the cache first; the text encoder (tokenizer + T5 encoder) is loaded only when a prompt
is missing, and what it computes is written back to the cache. Text goes through IFPipeline.encode_prompt's
steps (``clean_caption=False``): ``prompt.lower().strip()``, padded to 77 tokens, T5 with the attention mask.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Callable, Iterable
from pathlib import Path

import torch

from fundiff.errors import UserError
from fundiff.io.files import atomic_write

MAX_LENGTH = 77
DEFAULT_PROMPT = "a high quality photo"
"""The spec's 'null' prompt for 1.3-1.7 when none is given (the unconditional one is '')."""
ASSIGNMENT_PROMPTS = (
    "an oil painting of a snowy mountain village", "a photo of the amalfi cost", "a photo of a man",
    "a photo of a hipster barista", "a photo of a dog", "an oil painting of people around a campfire",
    "an oil painting of an old man", "a lithograph of waterfalls", "a lithograph of a skull", "a man wearing a hat",
    "a high quality photo", "", "a rocket ship", "a pencil")
"""The 14 prompts of the assignment's precomputed file (spec.md Part A; 'cost' sic)."""

Encoder = Callable[[list[str]], torch.Tensor]
"""encode(prompts) -> (len(prompts), 77, D) float embeddings on the CPU."""


def default_cache_path() -> Path:
    """$FUNDIFF_PROMPT_CACHE, else ~/.cache/fundiff/prompt_embeds.pth."""
    return Path(os.environ.get("FUNDIFF_PROMPT_CACHE", "~/.cache/fundiff/prompt_embeds.pth")).expanduser()


def _kind(path: Path) -> str:
    suffix = Path(path).suffix
    if suffix in (".pth", ".pt"):
        return "torch"
    if suffix == ".safetensors":
        return "safetensors"
    raise UserError(f"prompt cache {path}: use a .pth (the assignment's format) or a .safetensors file")


def load_cache(path: Path) -> dict[str, torch.Tensor]:
    """prompt -> (1, 77, D) tensor from a cache file; a missing file is an empty cache."""
    path = Path(path)
    kind = _kind(path)
    if not path.is_file():
        return {}
    try:
        if kind == "safetensors":
            from safetensors.torch import load_file

            data = load_file(str(path))
        else:
            data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file is the same user mistake
        raise UserError(f"cannot read the prompt cache {path}: {str(e).splitlines()[0] if str(e) else e!r}") from None
    if not isinstance(data, dict) or not all(isinstance(k, str) and torch.is_tensor(v) for k, v in data.items()):
        raise UserError(f"prompt cache {path} is not a dict from prompt strings to tensors")
    return {k: _check_shape(v, k, path) for k, v in data.items()}


def _check_shape(emb: torch.Tensor, prompt: str, path: Path) -> torch.Tensor:
    if emb.dim() == 2:
        emb = emb[None]
    if emb.dim() != 3 or emb.shape[0] != 1:
        raise UserError(f"prompt cache {path}: the embedding of {prompt!r} has shape {tuple(emb.shape)}, "
                        f"expected (1, {MAX_LENGTH}, D)")
    return emb


def save_cache(path: Path, embeds: dict[str, torch.Tensor]) -> Path:
    """Write prompt -> tensor atomically in the format the suffix names."""
    path = Path(path)
    kind = _kind(path)
    data = {k: v.detach().cpu().contiguous() for k, v in embeds.items()}

    def write(tmp: Path) -> None:
        if kind == "safetensors":
            from fundiff.io.files import safetensors_bytes

            tmp.write_bytes(safetensors_bytes(data, {"format": "pt", "content": "fundiff prompt embeddings"}))
        else:
            torch.save(data, tmp)

    atomic_write(path, write)
    return path


def preprocess(prompt: str) -> str:
    """IFPipeline._text_preprocessing with clean_caption=False: lower case, stripped."""
    return prompt.lower().strip()


class PromptEmbeddings:
    """Embeddings of prompts: the cache file first, the text encoder (loaded once, lazily) for the rest.

    Args:
        path: the cache file (.pth or .safetensors), read now and rewritten when prompts are added.
        load_encoder: builds the encoder; None when there is none (a missing prompt is then an error).
        dim: the embedding width the model expects (its ``encoder_hid_dim``), checked on every lookup.
        model_spec: how the user named the model, for the ``fundiff embed`` hint in errors.
        no_encoder_reason: why there is no encoder, said in that error.
    """

    def __init__(self, path: Path, load_encoder: Callable[[], Encoder] | None, dim: int | None = None,
                 model_spec: str = "deepfloyd", no_encoder_reason: str = "") -> None:
        self.path, self.dim, self.model_spec = Path(path), dim, model_spec
        self.cache = load_cache(self.path)
        self._load_encoder, self._encoder = load_encoder, None
        self.no_encoder_reason = no_encoder_reason
        self.encoder_loads = 0

    def __contains__(self, prompt: str) -> bool:
        return prompt in self.cache

    def get(self, prompt: str) -> torch.Tensor:
        """(1, 77, D) embedding of ``prompt`` on the CPU (computed and cached if missing)."""
        self.ensure([prompt])
        return self._checked(prompt)

    def ensure(self, prompts: Iterable[str]) -> list[str]:
        """Compute the prompts not in the cache in one batch and save them; returns those computed."""
        missing = list(dict.fromkeys(p for p in prompts if p not in self.cache))
        if not missing:
            return []
        encoder = self._encoder_for(missing)
        embeds = encoder([preprocess(p) for p in missing]).detach().float().cpu()
        for i, p in enumerate(missing):
            self.cache[p] = embeds[i:i + 1].clone()
        save_cache(self.path, self.cache)
        return missing

    def release_encoder(self) -> None:
        """Drop the text encoder (it is the largest part of DeepFloyd: 4.7B parameters)."""
        self._encoder = None
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def _encoder_for(self, missing: list[str]) -> Encoder:
        if self._encoder is None:
            if self._load_encoder is None:
                raise UserError(self.missing_message(missing[0]))
            self._encoder = self._load_encoder()
            self.encoder_loads += 1
        return self._encoder

    def missing_message(self, prompt: str) -> str:
        reason = f" ({self.no_encoder_reason})" if self.no_encoder_reason else ""
        return (f"prompt {prompt!r} has no embedding in {self.path} and no T5 text encoder is available{reason}: "
                f"compute it with `fundiff embed {shlex.quote(prompt)} --model {shlex.quote(self.model_spec)} "
                f"--cache {shlex.quote(str(self.path))}` where the text encoder is available")

    def _checked(self, prompt: str) -> torch.Tensor:
        emb = self.cache[prompt]
        if self.dim is not None and emb.shape[-1] != self.dim:
            raise UserError(f"the cached embedding of {prompt!r} in {self.path} has width {emb.shape[-1]}, but the "
                            f"model expects {self.dim}: it was computed by another text encoder")
        return emb


def t5_encoder(tokenizer, text_encoder, device: torch.device | str) -> Encoder:
    """encode(prompts): tokens padded to 77 (truncated), T5 with the attention mask -> last hidden state,
    as IFPipeline.encode_prompt."""

    @torch.no_grad()
    def encode(prompts: list[str]) -> torch.Tensor:
        tokens = tokenizer(prompts, padding="max_length", max_length=MAX_LENGTH, truncation=True,
                           add_special_tokens=True, return_tensors="pt")
        out = text_encoder(tokens.input_ids.to(device), attention_mask=tokens.attention_mask.to(device))
        return out[0].float().cpu()

    return encode


def t5_loader(source: str, local: bool, device: str, dtype: torch.dtype) -> tuple[Callable[[], Encoder] | None, str]:
    """(load() -> Encoder, "") for the tokenizer and T5 encoder in ``source``'s ``tokenizer/`` and
    ``text_encoder/`` (a hub id or a local IF directory), or (None, why there is none). The encoder is 8-bit
    (bitsandbytes) on CUDA when bitsandbytes is installed, else ``dtype``; fp16 weights (``variant="fp16"``)."""
    if local and not (Path(source) / "text_encoder" / "config.json").is_file():
        return None, f"{source} has no text_encoder/"
    try:
        import transformers  # noqa: F401
    except ImportError:
        return None, "transformers is not installed: pip install 'fundiff[deepfloyd]'"

    def load() -> Encoder:
        from transformers import AutoTokenizer, T5EncoderModel
        from transformers.utils import logging as tlog

        from fundiff.models.deepfloyd.hub import hub_error, hub_reachable, oom_guard, quiet

        kwargs, level = _encoder_kwargs(source, local, device, dtype), tlog.get_verbosity()
        if not local and not hub_reachable(source):
            kwargs["local_files_only"] = True
        tlog.set_verbosity_error()
        try:
            with oom_guard("loading the T5 text encoder"), quiet():
                tokenizer = AutoTokenizer.from_pretrained(source, subfolder="tokenizer",
                                                          local_files_only=kwargs.get("local_files_only", False))
                encoder = T5EncoderModel.from_pretrained(source, subfolder="text_encoder", **kwargs).eval()
                if "quantization_config" not in kwargs:
                    encoder = encoder.to(device)
        except UserError:
            raise
        except Exception as e:  # noqa: BLE001 - mapped to one line that names the cause
            raise hub_error(e, source) from None
        finally:
            tlog.set_verbosity(level)
        return t5_encoder(tokenizer, encoder, encoder.device)

    return load, ""


def _encoder_kwargs(source: str, local: bool, device: str, dtype: torch.dtype) -> dict:
    folder = Path(source) / "text_encoder"
    has_fp16 = folder.is_dir() and any(".fp16." in p.name or ".fp16-" in p.name for p in folder.iterdir())
    kwargs: dict = {"variant": "fp16"} if not local or has_fp16 else {}
    if torch.device(device).type == "cuda":
        try:
            import bitsandbytes  # noqa: F401
            from transformers import BitsAndBytesConfig

            return {**kwargs, "quantization_config": BitsAndBytesConfig(load_in_8bit=True), "device_map": "auto"}
        except ImportError:
            pass
    return {**kwargs, "dtype": dtype}

"""prompts.py: the prompt-embedding cache (.pth as the assignment shipped it, and safetensors) and the lazy
T5 encoder: a cached prompt never loads the text encoder; a missing one without an encoder names the command."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("diffusers")
pytest.importorskip("transformers")
pytest.importorskip("sentencepiece")

from tiny_if import D_TEXT, tiny_if  # noqa: E402

from fundiff.errors import UserError  # noqa: E402
from fundiff.models.deepfloyd.prompts import (  # noqa: E402
    ASSIGNMENT_PROMPTS,
    PromptEmbeddings,
    load_cache,
    preprocess,
    save_cache,
)


def _embeds(width: int = 4096, dtype=torch.float16) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {p: torch.randn(1, 77, width, generator=g).to(dtype) for p in ASSIGNMENT_PROMPTS}


@pytest.mark.parametrize("suffix", [".pth", ".pt", ".safetensors"])
def test_cache_round_trips_every_prompt_exactly(tmp_path, suffix):
    embeds = _embeds(64)
    path = save_cache(tmp_path / f"cache{suffix}", embeds)
    back = load_cache(path)
    assert sorted(back) == sorted(embeds) and "" in back  # the empty (unconditional) prompt is a key too
    for p in embeds:
        assert back[p].dtype == torch.float16 and torch.equal(back[p], embeds[p])


def test_reads_the_assignments_format(tmp_path):
    """A torch.save'd dict from prompt to a [1, 77, 4096] fp16 tensor, as the course's prompt_embeds_dict.pth."""
    path = tmp_path / "prompt_embeds_dict.pth"
    torch.save(_embeds(), path)
    back = load_cache(path)
    assert len(back) == 14 and back["a photo of the amalfi cost"].shape == (1, 77, 4096)
    store = PromptEmbeddings(path, None, dim=4096)
    assert store.get("").shape == (1, 77, 4096)


def test_pth_and_safetensors_convert_both_ways(tmp_path):
    embeds = _embeds(32)
    a = load_cache(save_cache(tmp_path / "a.pth", embeds))
    b = load_cache(save_cache(tmp_path / "b.safetensors", a))
    c = load_cache(save_cache(tmp_path / "c.pth", b))
    assert all(torch.equal(c[p], embeds[p]) for p in embeds)


@pytest.mark.parametrize(("name", "content"), [("x.json", None), ("bad.pth", b"not a pickle"),
                                               ("list.pth", "list"), ("shape.pth", "shape")])
def test_bad_caches_are_one_line_errors(tmp_path, name, content):
    path = tmp_path / name
    if content == "list":
        torch.save([torch.zeros(1)], path)
    elif content == "shape":
        torch.save({"a": torch.zeros(2, 77, 8)}, path)
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(UserError):
        load_cache(path)


def test_missing_cache_file_is_empty(tmp_path):
    assert load_cache(tmp_path / "none.pth") == {}


def test_cached_prompt_never_loads_the_encoder(tmp_path):
    path = save_cache(tmp_path / "c.pth", _embeds(8))

    def load():
        raise AssertionError("the text encoder must not be loaded for cached prompts")

    store = PromptEmbeddings(path, load, dim=8)
    store.ensure(ASSIGNMENT_PROMPTS)
    assert store.get("a rocket ship").shape == (1, 77, 8) and store.encoder_loads == 0


def test_missing_prompt_is_encoded_once_and_written_back(tmp_path):
    calls = []

    def load():
        def encode(prompts):
            calls.append(list(prompts))
            return torch.ones(len(prompts), 77, 8)

        return encode

    path = tmp_path / "c.safetensors"
    store = PromptEmbeddings(path, load, dim=8)
    store.ensure(["A Dog ", "a cat", "a cat"])
    store.get("a cat")
    assert store.encoder_loads == 1 and calls == [["a dog", "a cat"]]  # preprocessed, deduplicated, one batch
    assert set(load_cache(path)) == {"A Dog ", "a cat"}  # keyed by the prompt as given


def test_missing_prompt_without_encoder_names_the_command(tmp_path):
    store = PromptEmbeddings(tmp_path / "c.pth", None, dim=8, model_spec="deepfloyd", no_encoder_reason="no T5 here")
    with pytest.raises(UserError, match="fundiff embed 'a photo of a cat' --model deepfloyd --cache") as e:
        store.get("a photo of a cat")
    assert "no T5 here" in str(e.value) and "\n" not in str(e.value)


def test_wrong_width_is_refused(tmp_path):
    path = save_cache(tmp_path / "c.pth", _embeds(8))
    with pytest.raises(UserError, match="width 8"):
        PromptEmbeddings(path, None, dim=4096).get("a pencil")


def test_preprocess_is_ifpipelines():
    assert preprocess("  An Oil Painting ") == "an oil painting"


def test_tiny_t5_embeddings_equal_ifpipeline_encode_prompt():
    """fundiff's encoder path (tokenizer, 77 tokens, mask, T5) gives IFPipeline.encode_prompt's embeddings."""
    from diffusers import IFPipeline

    tiny = tiny_if()
    pipe = IFPipeline.from_pretrained(str(tiny.stage1), safety_checker=None, feature_extractor=None,
                                      watermarker=None, requires_safety_checker=False)
    cached = load_cache(tiny.cache)
    for prompt in ["a photo of a dog", ""]:
        ref, _ = pipe.encode_prompt(prompt, do_classifier_free_guidance=False, device="cpu")
        assert ref.shape == (1, 77, D_TEXT)
        torch.testing.assert_close(cached[prompt], ref, atol=1e-6, rtol=1e-5)

"""``fundiff embed``: DeepFloyd prompt embeddings into the cache every command reads first."""

from __future__ import annotations

from pathlib import Path

import typer

from fundiff.errors import UserError
from fundiff.io.files import pick_device
from fundiff.models.deepfloyd.prompts import (
    ASSIGNMENT_PROMPTS,
    PromptEmbeddings,
    default_cache_path,
    load_cache,
    save_cache,
    t5_loader,
)
from fundiff.models.deepfloyd.stage1 import LoadOptions, resolve_source

# ----- fundiff embed -----

def run_embed(prompts: list[str], model: str, cache: Path | None, device: str, dtype: str, assignment: bool,
              merge: list[Path], recompute: bool) -> Path:
    """Compute the T5 embeddings of ``prompts`` (and the assignment's 14 with ``assignment``) into the cache;
    ``merge`` copies other cache files in (either format), e.g. the assignment's ``prompt_embeds_dict.pth``."""
    path = Path(cache) if cache is not None else default_cache_path()
    prompts = list(dict.fromkeys([*prompts, *(ASSIGNMENT_PROMPTS if assignment else ())]))
    if not prompts and not merge:
        raise UserError("give prompts to embed, --assignment, or --merge FILE")
    source, local = resolve_source(model, 1)
    opts = LoadOptions(str(pick_device(device)), dtype)
    load, reason = t5_loader(source, local, opts.device, opts.torch_dtype())
    store = PromptEmbeddings(path, load, None, model, reason)
    for other in merge:
        if not Path(other).is_file():
            raise UserError(f"--merge {other}: no such file")
        store.cache.update(load_cache(Path(other)))
    if recompute:
        for p in prompts:
            store.cache.pop(p, None)
    computed = store.ensure(prompts)
    if merge and not computed:
        save_cache(path, store.cache)
    typer.echo(f"{len(computed)} computed, {len(prompts) - len(computed)} already cached; "
               f"{len(store.cache)} prompts in {path}")
    return path



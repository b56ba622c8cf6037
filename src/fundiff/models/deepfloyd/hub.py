"""Loading from the Hugging Face Hub: one-line errors for gated, missing or uncached weights, out-of-memory
help, and quiet loading (shared by stage I, stage II and the T5 prompt encoder)."""

from __future__ import annotations

from contextlib import contextmanager

import torch

from fundiff.errors import UserError

OOM_HELP = ("try --offload (model CPU offload: only the running model on the GPU), a smaller model "
            "(--model deepfloyd:IF-I-M-v1.0, --stage-2 deepfloyd:IF-II-M-v1.0), fewer images (--n), or --device cpu")


def torch_oom_message(where: str) -> str:
    return f"out of GPU memory {where}: {OOM_HELP}"


@contextmanager
def oom_guard(where: str):
    """Turn CUDA out-of-memory into a one-line UserError that says which option helps."""
    try:
        yield
    except torch.cuda.OutOfMemoryError:
        raise UserError(torch_oom_message(where)) from None


def hub_error(e: BaseException, source: str) -> UserError:
    """A one-line UserError for a failed from_pretrained: gated repo, no token, not cached offline, missing files."""
    from huggingface_hub import get_token
    from huggingface_hub.errors import GatedRepoError, LocalEntryNotFoundError, RepositoryNotFoundError

    chain, x = [], e
    while x is not None and len(chain) < 10:
        chain.append(x)
        x = x.__cause__ or x.__context__
    text = " ".join(str(c) for c in chain).lower()
    url = f"https://huggingface.co/{source}"
    if any(isinstance(c, GatedRepoError) for c in chain) or "gated" in text:
        if get_token() is None:
            return UserError(f"{source} is gated and no Hugging Face token was found: accept the licence at {url}, "
                             "then run `hf auth login` (or set HF_TOKEN)")
        return UserError(f"{source} is gated and your Hugging Face token has no access: accept the licence at {url} "
                         "with the account of that token")
    if any(isinstance(c, RepositoryNotFoundError) for c in chain):
        return UserError(f"{source} was not found on the Hugging Face Hub (or needs a token): check the name, accept "
                         f"the licence at {url} and run `hf auth login`, or pass a local directory")
    if any(isinstance(c, LocalEntryNotFoundError) for c in chain) or "not fully cached" in text or "offline" in text:
        return UserError(f"the weights of {source} are not in the local Hugging Face cache and the Hub cannot be "
                         f"reached: run `hf download {source}` where there is internet, or pass a local directory")
    first = (str(e).strip().splitlines() or [type(e).__name__])[0]
    return UserError(f"cannot load DeepFloyd from {source}: {first}")


@contextmanager
def quiet():
    """diffusers' and transformers' loading chatter (progress bars, deprecation notes) off, then restored."""
    import warnings

    from diffusers.utils import logging as dlog
    from huggingface_hub.utils import logging as hlog

    levels = dlog.get_verbosity(), hlog.get_verbosity()
    dlog.set_verbosity_error()
    hlog.set_verbosity_error()  # its download retries would print beside the one-line error
    dlog.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*torch_dtype.*")
            yield
    finally:
        dlog.set_verbosity(levels[0])
        hlog.set_verbosity(levels[1])
        dlog.enable_progress_bar()


def hub_reachable(source: str) -> bool:
    """Whether the Hub answers for ``source`` (10 s); a gated or missing repo is raised as its one-line error.
    When it does not, loaders use the local cache only instead of retrying downloads."""
    import huggingface_hub
    from huggingface_hub.errors import RepositoryNotFoundError

    try:
        huggingface_hub.model_info(source, timeout=10)
        return True
    except RepositoryNotFoundError as e:  # includes GatedRepoError
        raise hub_error(e, source) from None
    except Exception:  # noqa: BLE001 - offline, DNS, proxy, timeout: all mean "use the cache"
        return False

"""models/diffusers_unet.py: any diffusers UNet2DModel directory (pipeline or bare) as a DiffusionModel.

The UNets are tiny and randomly initialised (a few thousand parameters), saved to disk the two ways
diffusers does it, and loaded back through the adapter.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

diffusers = pytest.importorskip("diffusers")

from fundiff.core.loop import sample_loop  # noqa: E402
from fundiff.core.model import Prediction  # noqa: E402
from fundiff.core.schedule import strided_timesteps  # noqa: E402
from fundiff.errors import UserError  # noqa: E402
from fundiff.models.diffusers_unet import diffusers_unet_model, is_diffusers_dir  # noqa: E402

SIZE, C, T = 16, 3, 1000


def _tiny_unet(out_channels: int = C, num_class_embeds: int | None = None, seed: int = 0):
    torch.manual_seed(seed)
    return diffusers.UNet2DModel(sample_size=SIZE, in_channels=C, out_channels=out_channels,
                                 block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=4,
                                 down_block_types=("DownBlock2D", "DownBlock2D"),
                                 up_block_types=("UpBlock2D", "UpBlock2D"), attention_head_dim=8,
                                 num_class_embeds=num_class_embeds).eval()


def _scheduler(beta_schedule: str = "linear", **kw):
    return diffusers.DDPMScheduler(num_train_timesteps=T, beta_schedule=beta_schedule, clip_sample=False, **kw)


def _save_pipeline(path: Path, unet, sched) -> Path:
    diffusers.DDPMPipeline(unet=unet, scheduler=sched).save_pretrained(str(path))
    return path


def _save_bare(path: Path, unet, sched=None) -> Path:
    unet.save_pretrained(str(path))
    if sched is not None:
        sched.save_pretrained(str(path))
    return path


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """name -> (directory, unet, scheduler) for the layouts and schedules under test."""
    root = tmp_path_factory.mktemp("diffusers")
    eps_unet, var_unet = _tiny_unet(C, seed=1), _tiny_unet(2 * C, seed=2)
    class_unet = _tiny_unet(C, num_class_embeds=4, seed=3)
    linear, cosine = _scheduler("linear"), _scheduler("squaredcos_cap_v2", variance_type="learned_range")
    return {
        "pipeline-linear": (_save_pipeline(root / "pl", eps_unet, linear), eps_unet, linear),
        "bare-linear": (_save_bare(root / "bl", eps_unet, linear), eps_unet, linear),
        "pipeline-cosine-learned": (_save_pipeline(root / "pc", var_unet, cosine), var_unet, cosine),
        "bare-cosine-learned": (_save_bare(root / "bc", var_unet, cosine), var_unet, cosine),
        "class": (_save_bare(root / "cls", class_unet, linear), class_unet, linear),
    }


def _x(batch: int = 2, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, C, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))


def test_layouts_on_disk(saved):
    pipe = saved["pipeline-linear"][0]
    assert (pipe / "model_index.json").is_file() and (pipe / "unet" / "config.json").is_file()
    assert (pipe / "scheduler" / "scheduler_config.json").is_file()
    bare = saved["bare-linear"][0]
    assert (bare / "config.json").is_file() and (bare / "scheduler_config.json").is_file()


@pytest.mark.parametrize("name", ["pipeline-linear", "bare-linear", "pipeline-cosine-learned",
                                  "bare-cosine-learned"])
def test_schedule_and_description(saved, name):
    path, unet, sched = saved[name]
    model = diffusers_unet_model(path)
    assert model.schedule.T == T
    torch.testing.assert_close(model.schedule.betas, sched.betas.double(), atol=0, rtol=0)
    torch.testing.assert_close(model.schedule.alphas_cumprod, sched.alphas_cumprod.double(), atol=1e-6, rtol=0)
    assert model.image_size == SIZE and model.channels == C
    assert model.value_range == (-1.0, 1.0)
    assert model.learned_variance == ("learned" in name)
    assert model.conditioning == "none" and model.num_classes == 0
    info = model.describe()
    assert info["learned_variance"] == model.learned_variance and info["kind"] == "diffusers-UNet2DModel"


@pytest.mark.parametrize("name", ["pipeline-linear", "bare-linear"])
def test_eps_model_prediction_equals_the_unet(saved, name):
    path, unet, _ = saved[name]
    eps_fn = diffusers_unet_model(path).denoiser(None)
    x, k = _x(), torch.tensor([990, 3])
    pred = eps_fn(x, k)
    assert isinstance(pred, Prediction) and pred.variance is None
    assert pred.eps.shape == (2, C, SIZE, SIZE)
    with torch.no_grad():
        ref = unet(x, k).sample
    torch.testing.assert_close(pred.eps, ref, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("name", ["pipeline-cosine-learned", "bare-cosine-learned"])
def test_learned_variance_model_splits_its_channels(saved, name):
    path, unet, _ = saved[name]
    eps_fn = diffusers_unet_model(path).denoiser(None)
    x, k = _x(seed=1), torch.tensor([500, 0])
    pred = eps_fn(x, k)
    with torch.no_grad():
        ref = unet(x, k).sample
    assert ref.shape == (2, 2 * C, SIZE, SIZE)
    assert pred.eps.shape == pred.variance.shape == (2, C, SIZE, SIZE)
    torch.testing.assert_close(pred.eps, ref[:, :C], atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(pred.variance, ref[:, C:], atol=1e-6, rtol=1e-6)


def test_class_model_binds_its_class(saved):
    path, unet, _ = saved["class"]
    model = diffusers_unet_model(path)
    assert model.conditioning == "class" and model.num_classes == 4
    x, k = _x(seed=2), torch.tensor([100, 700])
    with torch.no_grad():
        ref2 = unet(x, k, class_labels=torch.tensor([2, 2])).sample
        ref3 = unet(x, k, class_labels=torch.tensor([3, 3])).sample
    torch.testing.assert_close(model.denoiser(2)(x, k).eps, ref2, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(model.denoiser("3")(x, k).eps, ref3, atol=1e-6, rtol=1e-6)
    assert not torch.allclose(ref2, ref3)  # the class matters, so the check above is not vacuous


@pytest.mark.parametrize("condition", [None, 4, -1, "a photo of a dog"])
def test_class_model_refuses_bad_conditions(saved, condition):
    model = diffusers_unet_model(saved["class"][0])
    with pytest.raises(UserError):
        model.denoiser(condition)


def test_unconditional_model_refuses_a_class(saved):
    model = diffusers_unet_model(saved["bare-linear"][0])
    with pytest.raises(UserError):
        model.denoiser(1)


def test_not_a_unet2dmodel_is_refused(tmp_path, saved):
    path = _save_bare(tmp_path / "m", saved["bare-linear"][1], _scheduler())
    cfg = json.loads((path / "config.json").read_text())
    cfg["_class_name"] = "UNet2DConditionModel"
    (path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(UserError, match="UNet2DConditionModel"):
        diffusers_unet_model(path)


def test_missing_scheduler_config_is_refused(tmp_path, saved):
    path = _save_bare(tmp_path / "m", saved["bare-linear"][1], sched=None)
    with pytest.raises(UserError, match="scheduler_config.json"):
        diffusers_unet_model(path)


@pytest.mark.parametrize("prediction_type", ["v_prediction", "sample"])
def test_non_epsilon_prediction_is_refused(tmp_path, saved, prediction_type):
    path = _save_pipeline(tmp_path / "m", saved["bare-linear"][1], _scheduler(prediction_type=prediction_type))
    with pytest.raises(UserError, match=prediction_type):
        diffusers_unet_model(path)


def test_doubled_channels_without_learned_range_is_refused(tmp_path, saved):
    path = _save_bare(tmp_path / "m", saved["bare-cosine-learned"][1], _scheduler(variance_type="fixed_small"))
    with pytest.raises(UserError, match="learned_range"):
        diffusers_unet_model(path)


def test_missing_weights_is_a_user_error(tmp_path, saved):
    path = _save_bare(tmp_path / "m", saved["bare-linear"][1], _scheduler())
    for f in path.glob("diffusion_pytorch_model.*"):
        f.unlink()
    with pytest.raises(UserError):
        diffusers_unet_model(path)


def test_is_diffusers_dir(tmp_path, saved):
    assert is_diffusers_dir(saved["pipeline-linear"][0])
    assert is_diffusers_dir(saved["bare-cosine-learned"][0])
    assert is_diffusers_dir(str(saved["bare-linear"][0]))
    assert not is_diffusers_dir(tmp_path)  # empty
    (tmp_path / "run.json").write_text("{}")  # a fundiff training run
    assert not is_diffusers_dir(tmp_path)
    assert not is_diffusers_dir(tmp_path / "missing")
    assert not is_diffusers_dir(saved["pipeline-linear"][0] / "model_index.json")  # a file, not a directory


@pytest.mark.parametrize(("name", "variance"), [("bare-linear", "posterior"), ("bare-linear", "beta"),
                                                ("pipeline-cosine-learned", "learned")])
def test_sample_loop_end_to_end(saved, name, variance):
    model = diffusers_unet_model(saved[name][0])
    x = _x(seed=5)
    ts = strided_timesteps(model.schedule.T, 30)  # spec 1.4: 990, 960, ..., 0 (34 steps)
    seen = []
    out = sample_loop(model.denoiser(None), x, ts, model.schedule, torch.Generator().manual_seed(0),
                      "ddpm", variance, callback=lambda d: seen.append(d["k"]))
    assert seen == ts
    assert out.shape == x.shape and out.dtype == torch.float32
    assert torch.isfinite(out).all()
    again = sample_loop(model.denoiser(None), x, ts, model.schedule, torch.Generator().manual_seed(0),
                        "ddpm", variance)
    assert torch.equal(out, again)  # a seed reproduces the image


def test_class_model_takes_a_class_per_image_and_makes_anagrams(saved):
    """A class per image binds them all in one call (what anagrams and hybrids use: parta.joint_guided); with no null
    class an anagram samples at guidance 1, each view's estimate the conditional one."""
    from fundiff import parta

    path, unet, _ = saved["class"]
    model = diffusers_unet_model(path)
    x, k = _x(2), torch.tensor([10, 10])
    both = model.denoiser([1, 3])(x, k).value
    for i, c in enumerate((1, 3)):
        with torch.no_grad():
            alone = unet(x[i:i + 1], k[i:i + 1], class_labels=torch.tensor([c])).sample
        assert torch.allclose(both[i:i + 1], alone, atol=1e-5)
    out = parta.anagram(model, [1, 3], ["identity", "flip"], 2, guidance=1.0, sampling=parta.Sampling(steps=3))
    assert out.shape == (2, C, SIZE, SIZE) and torch.isfinite(out).all()

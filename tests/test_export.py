"""fundiff export: a run as a diffusers folder (unet/, scheduler/, model_index.json) with a Hugging Face model card.

What is compared, honestly:
- the exported tensors are the run's, bit for bit; diffusers' own ``from_pretrained`` / ``save_pretrained`` load and
  write them (fundiff's UNet is a diffusers ModelMixin + ConfigMixin);
- the DDPMScheduler's betas are fundiff's ``torch.linspace(beta_start, beta_end, T)`` (to float32 rounding), one
  ``scheduler.step`` is fundiff's ``ddpm_update`` with the beta variance given the same eps and noise, and the card's
  diffusers loop, fed the same initial noise and the same per-step noise (one generator, drawn in the same order),
  ends within 1e-3 of fundiff's full DDPM sampler (same net in float32, no clipping, the recipe's CFG): the only
  difference is diffusers' float32 alphas_cumprod against fundiff's float64 one;
- flow models: the FlowMatchEulerDiscreteScheduler loop of the card ends within 1e-4 of fundiff's Euler sampler;
- ``models.load(OUT)`` is the run's model: the same recipe, sampling defaults and byte-identical samples.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import fundiff_in_process, run_cli, tiny_recipe, train_run

diffusers = pytest.importorskip("diffusers")

from fundiff import models, parta  # noqa: E402
from fundiff.core.loop import ddpm_update  # noqa: E402
from fundiff.core.model import Prediction  # noqa: E402
from fundiff.core.sampling import Sampling  # noqa: E402
from fundiff.core.schedule import linear_schedule  # noqa: E402
from fundiff.errors import UserError  # noqa: E402
from fundiff.export import export_run  # noqa: E402
from fundiff.nets.hub import UNetModel  # noqa: E402
from fundiff.nets.unet import UNet, UNetConfig  # noqa: E402
from fundiff.train.checkpoint import build_net, load_model, unet_config  # noqa: E402

LAYOUT = ["model_index.json", "unet/config.json", "unet/diffusion_pytorch_model.safetensors",
          "scheduler/scheduler_config.json", "fundiff.json", "README.md"]
FULL_DDPM = Sampling(sampler="ddpm", stride=1, variance="beta", clip=False)
FULL_EULER = Sampling(sampler="euler", stride=1)


@pytest.fixture(scope="module")
def class_export(tmp_path_factory, class_run) -> Path:
    out = tmp_path_factory.mktemp("exports") / "class-digits"
    export_run(class_run, out, device="cpu")
    return out


@pytest.fixture(scope="module")
def flow_export(tmp_path_factory, flow_run) -> Path:
    out = tmp_path_factory.mktemp("exports") / "flow-digits"
    export_run(flow_run, out, samples=False, device="cpu")
    return out


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _state(net) -> dict[str, torch.Tensor]:
    return {k: v.detach().float().contiguous() for k, v in net.state_dict().items()}


def _assert_same_state(a, b) -> None:
    sa, sb = _state(a), _state(b)
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def _card_snippet(folder: Path) -> str:
    return re.search(r"```python\n(.*?)```", (folder / "README.md").read_text(), re.S).group(1)


def _run_snippet(folder: Path, monkeypatch) -> dict:
    """The card's diffusers code, run from the folder's parent (it names the folder relatively)."""
    monkeypatch.chdir(folder.parent)
    scope: dict = {}
    exec(compile(_card_snippet(folder), str(folder / "README.md"), "exec"), scope)  # noqa: S102 - our own card
    return scope


# ------------------------------------------------------------------------------------------------ the UNet class


def test_unet_is_a_diffusers_model_and_keeps_its_unetconfig():
    """UNetModel is the UNet (same parameters, same config) and a diffusers model; the plain UNet does not import
    diffusers."""
    cfg = UNetConfig(width=4, conditioning="class", num_classes=3)
    torch.manual_seed(0)
    a = UNetModel(cfg)
    torch.manual_seed(0)
    b = UNetModel(**{k: getattr(cfg, k) for k in ("width", "conditioning", "time_injection", "num_classes",
                                             "in_channels", "image_size")})
    assert isinstance(a, diffusers.ModelMixin) and isinstance(a, diffusers.ConfigMixin)
    assert a.config == b.config == cfg and a.config.depth == 2 and a.config.to_dict() == cfg.to_dict()
    assert dict(a._internal_dict) == {**cfg.to_dict(), "image_size": 28}
    _assert_same_state(a, b)
    torch.manual_seed(0)
    _assert_same_state(a, UNet(cfg))
    assert isinstance(a, UNet) and not isinstance(UNet(cfg), diffusers.ModelMixin)
    with pytest.raises(TypeError):
        UNetModel({"width": 4})
    plain = subprocess.run([sys.executable, "-c", "import sys, fundiff.nets.unet, fundiff.models; "
                            "print('diffusers' in sys.modules)"], capture_output=True, text=True)
    assert plain.stdout.strip() == "False", plain.stderr[-2000:]


def test_save_pretrained_round_trip(tmp_path):
    torch.manual_seed(0)
    net = UNetModel(UNetConfig(width=4, conditioning="time", time_injection="mul", image_size=16, in_channels=3))
    net.save_pretrained(tmp_path / "u")
    back = UNetModel.from_pretrained(tmp_path / "u", low_cpu_mem_usage=False)
    assert type(back) is UNetModel and back.config == net.config and not back.training
    _assert_same_state(net, back)
    x, t = torch.randn(2, 3, 16, 16), torch.rand(2)
    with torch.no_grad():
        assert torch.equal(net.eval()(x, t), back(x, t))


# ------------------------------------------------------------------------------------------------ the layout


def test_export_writes_the_diffusers_layout(class_export, class_run):
    files = _files(class_export)
    assert sorted(files) == sorted([*LAYOUT, "samples.png"])
    index = json.loads(files["model_index.json"])
    assert index["_class_name"] == "DDPMPipeline"
    assert index["unet"] == ["fundiff.nets.hub", "UNetModel"] and index["scheduler"] == ["diffusers", "DDPMScheduler"]
    record = json.loads(files["fundiff.json"])
    run_net, recipe, epoch = load_model(class_run)
    assert record["recipe"] == recipe.to_dict() and record["epoch"] == epoch
    assert record["files"] == [*LAYOUT[:-1], "samples.png", "README.md"]

    unet = UNetModel.from_pretrained(class_export / "unet", low_cpu_mem_usage=False)
    assert unet.config == unet_config(recipe)
    _assert_same_state(unet, run_net)  # the run's weights, bit for bit

    pipe = diffusers.DDPMPipeline.from_pretrained(class_export)
    assert isinstance(pipe.unet, UNetModel) and isinstance(pipe.scheduler, diffusers.DDPMScheduler)
    _assert_same_state(pipe.unet, run_net)
    ours = linear_schedule(recipe.T, recipe.beta_start, recipe.beta_end)
    torch.testing.assert_close(pipe.scheduler.betas.double(), ours.betas, atol=1e-8, rtol=0)
    torch.testing.assert_close(pipe.scheduler.alphas_cumprod.double(), ours.alphas_cumprod, atol=1e-5, rtol=0)


def test_the_layout_is_what_diffusers_save_pretrained_writes(class_export, tmp_path):
    pipe = diffusers.DDPMPipeline.from_pretrained(class_export)
    pipe.save_pretrained(tmp_path / "again")
    again = json.loads((tmp_path / "again" / "model_index.json").read_text())
    ours = json.loads((class_export / "model_index.json").read_text())
    assert {k: again[k] for k in ("_class_name", "unet", "scheduler")} == \
           {k: ours[k] for k in ("_class_name", "unet", "scheduler")}
    for name in ("unet/config.json", "scheduler/scheduler_config.json"):
        saved, exported = (json.loads((d / name).read_text()) for d in (tmp_path / "again", class_export))
        assert {k: v for k, v in saved.items() if not k.startswith("_")} == \
               {k: v for k, v in exported.items() if not k.startswith("_")}
    back = UNetModel.from_pretrained(tmp_path / "again" / "unet", low_cpu_mem_usage=False)
    _assert_same_state(back, pipe.unet)


# ------------------------------------------------------------------------------------------------ sampling


def test_one_scheduler_step_is_fundiffs_ddpm_step(class_export):
    sched = diffusers.DDPMScheduler.from_pretrained(class_export / "scheduler")
    recipe = models.load(class_export, "cpu").info["recipe"]
    ours = linear_schedule(recipe["T"], recipe["beta_start"], recipe["beta_end"])
    sched.set_timesteps(ours.T)
    g = torch.Generator().manual_seed(1)
    x, eps = torch.randn(3, 1, 28, 28, generator=g), torch.randn(3, 1, 28, 28, generator=g)
    for k in (ours.T - 1, 150, 1, 0):
        seed = torch.Generator().manual_seed(k)
        theirs = sched.step(eps, k, x, generator=seed).prev_sample
        noise = None if k == 0 else torch.randn(x.shape, generator=torch.Generator().manual_seed(k))
        mine, _ = ddpm_update(x, Prediction(eps), ours.abar(k).float(), ours.abar(k - 1).float(), noise, "beta")
        torch.testing.assert_close(theirs, mine, atol=2e-5, rtol=0)


def test_diffusers_loop_samples_as_fundiffs_ddpm_sampler(class_export, monkeypatch):
    """The card's snippet (class 3, CFG as the recipe, seed 0) against parta.generate with the full DDPM loop."""
    scope = _run_snippet(class_export, monkeypatch)
    assert isinstance(scope["scheduler"], diffusers.DDPMScheduler)
    model = models.load(class_export, "cpu", precision="fp32")  # the snippet runs in float32
    ours = parta.generate(model, scope["label"], scope["n"], seed=0, sampling=FULL_DDPM)
    assert model.sampling.guidance == scope["guidance"] == 5.0  # the recipe's CFG, on its interval, in both
    assert (ours - scope["images"]).abs().max() < 1e-3
    assert ours.std() > 0.05  # an image, not a constant


def test_flow_export_samples_as_fundiffs_euler_sampler(flow_export, monkeypatch):
    index = json.loads((flow_export / "model_index.json").read_text())
    assert index["scheduler"] == ["diffusers", "FlowMatchEulerDiscreteScheduler"]
    assert not (flow_export / "samples.png").exists()
    scope = _run_snippet(flow_export, monkeypatch)
    assert isinstance(scope["scheduler"], diffusers.FlowMatchEulerDiscreteScheduler)
    model = models.load(flow_export, "cpu", precision="fp32")
    ours = parta.generate(model, None, scope["n"], seed=0, sampling=FULL_EULER)
    assert (ours - scope["images"]).abs().max() < 1e-4


@pytest.mark.parametrize("kind", [("time", "ddpm"), ("class", "flow")])
def test_the_other_card_snippets_run(kind, tmp_path, small_digits, monkeypatch):
    """Time DDPM and class flow nets (T = 50 to stay quick): the card's loop is fundiff's sampler again."""
    run = tmp_path / "run"
    train_run(tiny_recipe(*kind, epochs=1, T=50, width=4), run, small_digits)
    out = tmp_path / "out"
    export_run(run, out, samples=False, device="cpu")
    scope = _run_snippet(out, monkeypatch)
    model = models.load(out, "cpu", precision="fp32")
    ours = parta.generate(model, scope.get("label"), scope["n"], seed=0,
                          sampling=FULL_EULER if kind[1] == "flow" else FULL_DDPM)
    assert (ours - scope["images"]).abs().max() < 1e-3


# ------------------------------------------------------------------------------------------------ --model OUT


def test_models_load_of_the_export_is_the_run(class_export, class_run):
    from_run, from_export = models.load(class_run, "cpu"), models.load(class_export, "cpu")
    assert from_export.info["recipe"] == from_run.info["recipe"]
    assert from_export.info["epoch"] == from_run.info["epoch"]
    assert from_export.sampling == from_run.sampling and from_export.schedule.T == from_run.schedule.T
    a = parta.generate(from_run, [0, 1, 2, 3], 4, seed=5)
    b = parta.generate(from_export, [0, 1, 2, 3], 4, seed=5)
    assert a.numpy().tobytes() == b.numpy().tobytes()


def test_a_broken_export_is_one_line(class_export, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    for f in ("fundiff.json", "model_index.json", "unet/config.json", "unet/diffusion_pytorch_model.safetensors",
              "scheduler/scheduler_config.json"):
        (bad / f).parent.mkdir(exist_ok=True)
        (bad / f).write_bytes((class_export / f).read_bytes())
    config = json.loads((bad / "unet/config.json").read_text())
    (bad / "unet/config.json").write_text(json.dumps({**config, "width": 16}))
    with pytest.raises(UserError, match="width") as e:
        models.load(bad, "cpu")
    assert "\n" not in str(e.value)
    (bad / "fundiff.json").write_text("{not json")
    with pytest.raises(UserError, match="unreadable"):
        models.load(bad, "cpu")


# ------------------------------------------------------------------------------------------------ refusals


def _refused(*args, match: str, **kw) -> str:
    with pytest.raises(UserError, match=match) as e:
        export_run(*args, **kw)
    assert "\n" not in str(e.value)
    return str(e.value)


def test_refusals_write_nothing(class_run, denoiser_run, class_export, tmp_path):
    out = tmp_path / "out"
    _refused(denoiser_run, out, match="single-step denoiser")
    _refused(tmp_path / "no-run", out, match="not a fundiff run directory")
    _refused(tmp_path, out, match="not a fundiff run directory")
    _refused(class_run, out, epoch=7, match="not 7")
    _refused(class_run, class_run / "export", match="inside the run")
    assert not out.exists() and not (class_run / "export").exists()
    before = _files(class_export)
    _refused(class_run, class_export, match="not empty; pass --force")
    assert _files(class_export) == before


def test_force_replaces_an_earlier_export(class_run, tmp_path):
    out = tmp_path / "again"
    export_run(class_run, out, device="cpu")
    (out / "mine.txt").write_text("not the export's")
    done = export_run(class_run, out, force=True, samples=False, device="cpu")
    assert not (out / "samples.png").exists()  # listed by the earlier export: removed
    assert (out / "mine.txt").is_file()  # not listed: left alone
    assert sorted(done.files) == sorted(LAYOUT) and "samples.png" not in (out / "README.md").read_text()


# ------------------------------------------------------------------------------------------------ the card


def test_model_card(class_export, class_run):
    text = (class_export / "README.md").read_text()
    yaml = pytest.importorskip("yaml")
    front = yaml.safe_load(text.split("---\n")[1])
    assert front["library_name"] == "diffusers" and front["license"] == "mit"
    assert {"fundiff", "diffusion", "ddpm", "class-conditional"} <= set(front["tags"])
    assert front["datasets"] == ["ylecun/mnist"]
    info = json.loads((class_run / "run.json").read_text())
    assert f"mean {info['history'][-1]['mean_loss']:.4g}" in text  # the measured numbers
    assert "| `guidance_interval` | 0.5, 0.9 |" in text and "![samples](samples.png)" in text
    assert info["data"]["source"] in text


def test_card_reports_an_evaluation_of_the_epoch(class_run, tmp_path):
    ev = tmp_path / "run"
    ev.mkdir()
    for p in class_run.rglob("*"):
        if p.is_file():
            (ev / p.relative_to(class_run)).parent.mkdir(parents=True, exist_ok=True)
            (ev / p.relative_to(class_run)).write_bytes(p.read_bytes())
    (ev / "eval-x").mkdir()
    (ev / "eval-x" / "eval.json").write_text(json.dumps({
        "epoch": 1, "sampler": "dpmpp-2m", "steps": 20, "guidance": 5.0, "per_class": 40,
        "accuracy": {"overall": 0.9975}, "frechet": 39.977, "frechet_real_vs_real": 19.442, "ratio": 2.056}))
    export_run(ev, tmp_path / "out", samples=False, device="cpu")
    assert "| dpmpp-2m | 20 | 5 | 40 | 0.9975 | 39.98 | 19.44 | 2.056 |" in (tmp_path / "out" / "README.md").read_text()


# ------------------------------------------------------------------------------------------------ the CLI


def test_cli_export(class_run, denoiser_run, tmp_path, monkeypatch, capsys):
    out = tmp_path / "cli"
    code, stdout, _ = fundiff_in_process(monkeypatch, capsys, "export", class_run, out, "--no-samples", "--epoch", 1,
                                         "--device", "cpu")
    assert code == 0, stdout
    assert f"-> {out}" in stdout and str(out / "unet" / "diffusion_pytorch_model.safetensors") in stdout
    assert models.load(out, "cpu").info["epoch"] == 1
    code, stdout, stderr = fundiff_in_process(monkeypatch, capsys, "export", class_run, out)
    assert code == 2 and stderr.startswith("fundiff: error:") and len(stderr.strip().splitlines()) == 1


def test_cli_export_refuses_a_denoiser_in_one_line(denoiser_run, tmp_path):
    proc = run_cli("export", denoiser_run, tmp_path / "out")
    assert proc.returncode == 2 and not (tmp_path / "out").exists()
    lines = proc.stderr.strip().splitlines()
    assert lines == [lines[0]] and lines[0].startswith("fundiff: error:") and "denoiser" in lines[0]


def test_build_net_still_loads_the_shipped_weights():
    """Parameter names did not change: the shipped digit model's tensors load into the UNet and its diffusers
    model."""
    from fundiff.train.checkpoint import read_weights

    state, recipe, _ = read_weights(models.shipped_path("digits"))
    net = build_net(recipe, state)
    assert net.config == unet_config(recipe)
    UNetModel.from_unet(net)  # load_state_dict is strict: the same names and shapes

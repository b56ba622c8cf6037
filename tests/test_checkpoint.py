"""train/checkpoint.py and io.py: self-describing weights, loading models, atomic writes."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import tiny_recipe
from safetensors.torch import save_file

from fundiff.errors import UserError
from fundiff.evaluate.judge import JudgeNet, save_judge
from fundiff.io.files import atomic_write, write_json
from fundiff.train.checkpoint import build_net, load_model, read_run, read_weights, save_weights, unet_config


def test_unet_config_for_each_recipe():
    assert unet_config(tiny_recipe("denoiser")).conditioning == "none"
    assert unet_config(tiny_recipe("time")).time_injection == "add"
    assert unet_config(tiny_recipe("time", "flow")).time_injection == "mul"  # the flow time-only net multiplies
    c = unet_config(tiny_recipe("class", "flow"))
    assert (c.conditioning, c.time_injection, c.width) == ("class", "add", 8)


def test_weights_roundtrip_with_metadata(tmp_path):
    r = tiny_recipe("class", "flow")
    net = build_net(r)
    p = tmp_path / "w.safetensors"
    save_weights(p, net.state_dict(), r, 7)
    state, recipe, epoch = read_weights(p)
    assert recipe == r and epoch == 7
    assert all(torch.equal(state[k], v) for k, v in net.state_dict().items())
    half = tmp_path / "half.safetensors"
    save_weights(half, net.state_dict(), r, 7, dtype=torch.bfloat16)
    state16, _, _ = read_weights(half)
    assert state16["out.weight"].dtype == torch.bfloat16
    assert state16["first.0.1.num_batches_tracked"].dtype == torch.int64  # integers stay integers
    rebuilt = build_net(r, state16)
    torch.testing.assert_close(rebuilt.out.weight, net.out.weight, atol=1e-2, rtol=1e-2)


def test_read_weights_rejects_other_files(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        read_weights(tmp_path / "missing.safetensors")
    plain = tmp_path / "plain.safetensors"
    save_file({"a": torch.zeros(3)}, str(plain))
    with pytest.raises(UserError, match="not a fundiff UNet weights file"):
        read_weights(plain)
    judge = tmp_path / "judge.safetensors"
    save_judge(judge, JudgeNet(), {})
    with pytest.raises(UserError, match="not a fundiff UNet weights file"):
        read_weights(judge)
    for junk in (b"", b"not a safetensors file at all", b"\x08\x00\x00\x00\x00\x00\x00\x00{}"):
        bad = tmp_path / "bad.safetensors"
        bad.write_bytes(junk)
        with pytest.raises(UserError):
            read_weights(bad)


def test_load_model_errors(tmp_path):
    with pytest.raises(UserError, match="not a fundiff run directory"):
        load_model(tmp_path)
    (tmp_path / "run.json").write_text("{not json")
    with pytest.raises(UserError, match="corrupt"):
        read_run(tmp_path)
    write_json(tmp_path / "run.json", {"kind": "something-else"})
    with pytest.raises(UserError):
        read_run(tmp_path)
    write_json(tmp_path / "run.json", {"kind": "fundiff-run"})
    with pytest.raises(UserError, match="not a fundiff run file"):  # no data record
        read_run(tmp_path)
    write_json(tmp_path / "run.json", {"kind": "fundiff-run", "data": {}})
    with pytest.raises(UserError, match="no saved weights"):
        load_model(tmp_path)


def test_load_model_picks_epochs(class_run):
    net, recipe, ep = load_model(class_run)
    assert ep == 1 and recipe.model == "class"
    assert load_model(class_run, 1)[2] == 1
    with pytest.raises(UserError, match="not 5"):
        load_model(class_run, 5)
    net2, _, _ = load_model(class_run / "weights" / "epoch_001.safetensors")
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), net2.state_dict().values()))


def test_atomic_write_leaves_the_old_file_on_failure(tmp_path):
    p = tmp_path / "sub" / "f.json"
    write_json(p, {"a": 1})

    def fail(tmp):
        tmp.write_text("half")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        atomic_write(p, fail)
    assert json.loads(p.read_text()) == {"a": 1}
    assert [x.name for x in p.parent.iterdir()] == ["f.json"]  # no temporary left behind

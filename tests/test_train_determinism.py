"""Same inputs, same bytes, in any process: every safetensors file fundiff writes (weights, checkpoints, the judge, the
prompt cache) has a canonical header, where the safetensors library writes its metadata map in an order that changes
from one process to the next. Two separate Python processes write the same tensors and metadata; the files must be
byte-identical, and still load with their metadata intact."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file

from fundiff.io.files import safetensors_bytes

WRITER = textwrap.dedent("""
    import sys
    from pathlib import Path

    import torch

    from fundiff.evaluate.judge import JudgeNet, save_judge
    from fundiff.io.files import save_safetensors
    from fundiff.models.deepfloyd.prompts import save_cache
    from fundiff.train.checkpoint import build_net, save_checkpoint, save_weights
    from fundiff.train.recipes import make_recipe

    out = Path(sys.argv[1])
    torch.manual_seed(0)
    meta = {f"key{i}": f"value {i} \\u00e9\\n" for i in range(12)}
    save_safetensors(out / "plain.safetensors", {"b": torch.arange(6.0).reshape(2, 3), "a": torch.ones(4).int()},
                     meta)
    r = make_recipe("class", "ddpm", "default", width=8, epochs=2, ema_decay=0.5)
    net = build_net(r)
    ema = build_net(r)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    net(torch.randn(2, 1, 28, 28), torch.rand(2), torch.eye(10)[:2]).mean().backward()
    opt.step()
    save_weights(out / "weights.safetensors", net.state_dict(), r, 1)
    save_checkpoint(out, 1, net, ema, opt)
    torch.manual_seed(1)
    save_judge(out / "judge.safetensors", JudgeNet(), {"epochs": 1, "held_out_accuracy": 0.5})
    save_cache(out / "prompts.safetensors", {"a photo of a dog": torch.randn(1, 77, 8), "a rocket": torch.randn(1, 77,
                                                                                                              8)})
""")
FILES = ["plain.safetensors", "weights.safetensors", "checkpoint_001.safetensors", "judge.safetensors",
         "prompts.safetensors"]


def _write_in_a_new_process(out: Path) -> dict[str, bytes]:
    out.mkdir()
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONHASHSEED="random")
    proc = subprocess.run([sys.executable, "-c", WRITER, str(out)], capture_output=True, text=True, env=env,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {name: (out / name).read_bytes() for name in FILES}


def test_two_processes_write_the_same_bytes(tmp_path):
    a = _write_in_a_new_process(tmp_path / "a")
    b = _write_in_a_new_process(tmp_path / "b")
    assert [n for n in FILES if a[n] != b[n]] == []
    plain = tmp_path / "a" / "plain.safetensors"
    with safe_open(str(plain), framework="pt") as f:
        meta = f.metadata()
    assert meta == {f"key{i}": f"value {i} \u00e9\n" for i in range(12)}
    t = load_file(str(plain))
    assert torch.equal(t["b"], torch.arange(6.0).reshape(2, 3)) and torch.equal(t["a"], torch.ones(4).int())
    for name in FILES:  # every file: a canonical header (sorted keys, compact), then spaces up to the data
        raw = a[name]
        (n,) = struct.unpack("<Q", raw[:8])
        header = raw[8:8 + n].rstrip(b" ")
        assert header == json.dumps(json.loads(header), sort_keys=True, separators=(",", ":"),
                                    ensure_ascii=False).encode(), name
        load_file(str(tmp_path / "a" / name))


def test_canonical_header_keeps_every_data_offset():
    tensors = {"z": torch.zeros(3, dtype=torch.bfloat16), "y": torch.ones(2, 2), "x": torch.arange(5)}
    meta = {"\u00fcber": "quote \" and backslash \\ and tab \t", "a": "1", "kind": "x" * 100}
    raw = safetensors_bytes(tensors, meta)
    from safetensors.torch import load, save

    lib = save(tensors, metadata=meta)
    assert len(raw) == len(lib) and raw[:8] == lib[:8]
    (n,) = struct.unpack("<Q", raw[:8])
    assert raw[8 + n:] == lib[8 + n:]  # the tensor bytes, untouched
    assert json.loads(raw[8:8 + n]) == json.loads(lib[8:8 + n])
    back = load(raw)
    assert all(torch.equal(back[k], v) for k, v in tensors.items())

"""evaluate/: Frechet distance, the judge's shift augmentation, accuracy tables."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fundiff.errors import UserError
from fundiff.evaluate.frechet import frechet_distance
from fundiff.evaluate.judge import (
    JudgeNet,
    load_judge,
    predict,
    random_far,
    random_shift,
    save_judge,
    shrink,
    shrunk_accuracy,
    train_judge,
)
from fundiff.evaluate.metrics import accuracy_table, frechet_report, stratified
from fundiff.train.data import Digits, split_holdout


def gaussian(n, d, seed, mean=0.0, scale=None):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, d, generator=g, dtype=torch.float64)
    return (z @ scale if scale is not None else z) + mean


def test_frechet_of_a_set_with_itself_is_zero():
    a = gaussian(500, 16, 0, scale=torch.randn(16, 16, generator=torch.Generator().manual_seed(1),
                                                dtype=torch.float64))
    assert abs(frechet_distance(a, a)) < 1e-6


def test_frechet_of_shifted_copies_is_the_squared_mean_difference():
    """Identical covariances: the trace terms cancel and FD = |mu_a - mu_b|^2 exactly."""
    a = gaussian(400, 8, 2, scale=torch.diag(torch.arange(1.0, 9.0, dtype=torch.float64)))
    delta = torch.linspace(-1, 2, 8, dtype=torch.float64)
    assert frechet_distance(a, a + delta) == pytest.approx(float(delta.pow(2).sum()), rel=1e-6)


def test_frechet_matches_scipy_reference_and_is_symmetric():
    linalg = pytest.importorskip("scipy.linalg")
    a = gaussian(300, 6, 3, scale=torch.randn(6, 6, generator=torch.Generator().manual_seed(4), dtype=torch.float64))
    b = gaussian(200, 6, 5, mean=0.5, scale=torch.eye(6, dtype=torch.float64) * 2)
    an, bn = a.numpy(), b.numpy()
    sa, sb = np.cov(an.T), np.cov(bn.T)
    ref = ((an.mean(0) - bn.mean(0)) ** 2).sum() + np.trace(sa + sb - 2 * linalg.sqrtm(sa @ sb).real)
    assert frechet_distance(a, b) == pytest.approx(ref, rel=1e-6)
    assert frechet_distance(b, a) == pytest.approx(frechet_distance(a, b), rel=1e-8)
    # float32 features give the same answer (computed in float64)
    assert frechet_distance(a.float(), b.float()) == pytest.approx(ref, rel=1e-4)


def test_frechet_of_independent_diagonal_gaussians():
    """Closed form for diagonal covariances: |dmu|^2 + sum (sqrt(va) - sqrt(vb))^2."""
    a = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 2.0], [0.0, -2.0]], dtype=torch.float64)
    b = 3 * a + 1
    va, vb = torch.cov(a.T).diag(), torch.cov(b.T).diag()
    expected = 2 * 1.0 + float(((va.sqrt() - vb.sqrt()) ** 2).sum())
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-9)


def shift(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """x moved by (dy, dx) pixels with zero fill."""
    out = torch.zeros_like(x)
    h, w = x.shape[-2:]
    out[..., max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
        x[..., max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
    return out


def test_random_shift_is_a_pure_translation():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(64, 1, 28, 28, generator=g)
    out = random_shift(x, torch.Generator().manual_seed(1))
    assert out.shape == x.shape and out.dtype == x.dtype
    used = set()
    for i in range(len(x)):
        matches = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3) if torch.equal(out[i], shift(x[i], dy, dx))]
        assert len(matches) == 1, i
        used.add(matches[0])
    assert len(used) > 10  # the offsets really vary (25 possible)
    assert torch.equal(out, random_shift(x, torch.Generator().manual_seed(1)))
    assert torch.equal(random_shift(x, g, max_shift=0), x)


class FakeJudge(nn.Module):
    """Reads pixel (0, 0) as the digit: class = round(9 * p); features = 100 x the first 4 pixels."""

    def forward(self, x):
        return F.one_hot((x[:, 0, 0, 0] * 9).round().long(), 10).float()

    def features(self, x):
        return 100 * x.flatten(1)[:, :4]


def images_reading(digits: list[int]) -> torch.Tensor:
    x = torch.zeros(len(digits), 1, 28, 28)
    x[:, 0, 0, 0] = torch.tensor(digits, dtype=torch.float32) / 9
    return x


def test_predict_and_accuracy_table_on_a_fake_judge():
    judge = FakeJudge()
    images = images_reading([0, 1, 1, 1, 2, 0])
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    assert predict(judge, images).tolist() == [0, 1, 1, 1, 2, 0]
    table = accuracy_table(judge, images, labels)
    assert table == {"overall": round(4 / 6, 4), "per_class": {"0": 0.5, "1": 1.0, "2": 0.5}}
    big = images_reading([3] * 1200)  # predict works in chunks of 500
    assert accuracy_table(judge, big, torch.full((1200,), 3))["overall"] == 1.0


def test_stratified_and_frechet_report_on_a_fake_judge():
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(200) % 10
    data = Digits(torch.rand(200, 1, 28, 28, generator=g), labels, "fake")
    s = stratified(data, 5)
    assert torch.bincount(s.labels).tolist() == [5] * 10
    assert torch.equal(stratified(data, 5).images, s.images)
    rep = frechet_report(FakeJudge(), torch.rand(40, 1, 28, 28, generator=g), data, data, per_class=8)
    assert rep["n_samples"] == 40 and rep["n_held_out"] == 80 and rep["n_real_baseline"] == 40
    assert rep["ratio"] == pytest.approx(rep["frechet"] / rep["frechet_real_vs_real"], rel=1e-2)


def test_judge_save_load_roundtrip(tmp_path):
    net = JudgeNet().eval()
    p = tmp_path / "judge.safetensors"
    save_judge(p, net, {"held_out_accuracy": 0.5})
    loaded, info = load_judge(p)
    assert info["held_out_accuracy"] == 0.5
    x = torch.rand(3, 1, 28, 28)
    torch.testing.assert_close(loaded(x), net(x))
    assert loaded.features(x).shape == (3, 128)
    with pytest.raises(UserError):
        load_judge(tmp_path / "missing.safetensors")


def test_judge_cache_path_per_data_set_and_data_dir(tmp_path, monkeypatch):
    from fundiff.evaluate.runs import default_judge_path

    monkeypatch.setenv("FUNDIFF_CACHE", str(tmp_path))
    assert default_judge_path("mnist") == tmp_path / "judge-mnist.safetensors"
    a, b = default_judge_path("mnist", tmp_path / "a"), default_judge_path("mnist", tmp_path / "b")
    assert a != b and a.parent == tmp_path and a.name.startswith("judge-mnist-")
    assert default_judge_path("mnist", tmp_path / "a") == a
    assert default_judge_path("mnist", far=True) == tmp_path / "judge-mnist-far.safetensors"
    far_a = default_judge_path("mnist", tmp_path / "a", far=True)
    assert far_a.name == a.name.replace(".safetensors", "-far.safetensors")


def test_far_augmentation_shrinks_about_half_the_images_to_7_to_14_px():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(400, 1, 28, 28)
    y = random_far(x, g)
    changed = [i for i in range(len(x)) if not torch.equal(x[i], y[i])]
    assert 150 < len(changed) < 250, "p = 0.5"
    for i in changed[:20]:
        assert any(torch.allclose(y[i:i + 1], shrink(x[i:i + 1], s)) for s in range(7, 15)), "a far copy, 7-14 px"
    assert torch.equal(random_far(x, torch.Generator().manual_seed(0)), y), "seeded"
    assert torch.equal(random_far(x, g, p=0.0), x)
    flat = torch.full((2, 1, 28, 28), 0.4)
    assert torch.allclose(shrink(flat, 9), flat, atol=1e-6), "a constant looks the same from far"


def test_a_far_judge_records_how_it_reads_digits_from_far(digits):
    train, held = split_holdout(digits, 50)
    net, info = train_judge(train.subset(torch.arange(256), "tiny"), held, epochs=1, progress=False, far=True)
    assert info["far"] and info["far_sizes"] == [7, 14]
    assert info["held_out_shrunk_accuracy"] == shrunk_accuracy(net, held)
    assert 0 <= info["held_out_shrunk_accuracy"] <= 1


def test_cli_judge_train_far_writes_a_far_judge_and_says_how_it_reads_from_far(tmp_path, monkeypatch, capsys):
    from helpers import fundiff_in_process

    out = tmp_path / "far.safetensors"
    code, stdout, stderr = fundiff_in_process(monkeypatch, capsys, "judge", "train", "--far", "--epochs", "1",
                                              "--out", out)
    assert code == 0, stderr
    net, info = load_judge(out)
    assert info["far"] and info["far_sizes"] == [7, 14] and 0 <= info["held_out_shrunk_accuracy"] <= 1
    assert "far judge: held-out accuracy" in stdout + stderr and "shrunk to 9 px" in stdout + stderr
    assert f"shipped judge (judge-mnist-far.safetensors); pass --judge {out}" in stdout + stderr


@pytest.mark.parametrize("data", ["mnist", "fashion"])
def test_the_shipped_judges_read_their_held_out_split_as_recorded(data, tmp_path, monkeypatch):
    """fundiff's judges of the offline digits and of Fashion-MNIST are used without training anything, and read the
    held-out images of the data they name as well as their record says."""
    from fundiff.evaluate.runs import SHIPPED_JUDGES, judge_for
    from fundiff.train.data import FASHION_DIR, load_digits

    if data == "fashion" and not FASHION_DIR.is_dir():
        pytest.skip("dataset-fashion-mnist is not installed")
    monkeypatch.setenv("FUNDIFF_CACHE", str(tmp_path))
    digits = load_digits(data)
    _, held = split_holdout(digits)
    for far in (False, True):
        net, info, path = judge_for(data, digits.source, None, far=far)
        assert path == SHIPPED_JUDGES / f"judge-{data}{'-far' if far else ''}.safetensors"
        assert info["data"] == digits.source and info["held_out_images"] == len(held)
        accuracy = float((predict(net, held.images) == held.labels).float().mean())
        assert accuracy == pytest.approx(info["held_out_accuracy"], abs=1e-6)
        assert accuracy >= (0.98 if data == "mnist" else 0.9)
    assert not any(tmp_path.iterdir())  # nothing trained into the cache


def test_a_shipped_judge_is_not_used_for_other_data(tmp_path, monkeypatch):
    from fundiff.evaluate.runs import shipped_judge
    from fundiff.train.data import load_digits

    source = load_digits("mnist").source
    assert shipped_judge("mnist", source) is not None
    assert shipped_judge("mnist", "torchvision MNIST in /somewhere (60,000 images)") is None
    assert shipped_judge("mnist", source, data_dir=tmp_path) is None
    assert shipped_judge("cifar10", "torchvision CIFAR-10") is None

"""fundiff.evaluate.parta and ``fundiff evaluate-parta``: Wilson intervals, rates against a hand count (a fake
sampler and a fake judge), the pairs, the far view, and one small run of the command on the shipped model."""

from __future__ import annotations

import dataclasses
import functools
import inspect
import json
import math
from collections import Counter
from itertools import permutations

import pytest
import torch
import torch.nn.functional as F
from helpers import fundiff_in_process
from torch import nn

from fundiff import parta as ops
from fundiff.core.views import make_view
from fundiff.errors import UserError
from fundiff.evaluate import parta, parta_suite
from fundiff.evaluate.drawings import draw_digit, sklearn_digits
from fundiff.models import load_diffusion_model
from fundiff.train.data import split_holdout

FAST = ops.Sampling(steps=12)
T, F_ = True, False


@pytest.fixture(scope="module")
def model():
    return load_diffusion_model("digits", "cpu")


class CentroidJudge(nn.Module):
    """Logits = minus the pixel distance to each class's mean held-out digit."""

    def __init__(self, held) -> None:
        super().__init__()
        self.c = torch.stack([held.images[held.labels == k].mean(0) for k in range(10)]).flatten(1)

    def forward(self, x):
        return -torch.cdist(x.flatten(1), self.c)


def code(c: int) -> float:
    return (c + 1) / 10


class PixelJudge(nn.Module):
    """Reads the class written into pixel (0, 14) as (c + 1) / 10 (a blank pixel reads 0)."""

    def forward(self, x):
        return F.one_hot(((x[:, 0, 0, 14] * 10).round().long() - 1).clamp(0, 9), 10).float()


def marked(readings: dict[str, int]) -> torch.Tensor:
    """One image that PixelJudge reads as ``readings[view]`` under each view."""
    x = torch.zeros(1, 1, 28, 28)
    for view, c in readings.items():
        mark = torch.zeros(1, 1, 28, 28)
        mark[..., 0, 14] = code(c)
        x = x + make_view(view, 28).inverse_view(mark)
    return x


def wrong(c: int, ok: bool) -> int:
    return c if ok else (c + 1) % 10


class FakeSampler:
    """Stands in for ops.anagram / ops.hybrid: the k-th image asked of a set of classes follows plan[set][k]
    (which readings come out right), whatever the chunk it falls in; records every call."""

    def __init__(self, plan: dict, draw) -> None:
        self.plan, self.draw, self.calls, self.seen = plan, draw, [], Counter()

    def images(self, conditions, n):
        out = []
        for j in range(n):
            classes = tuple(col[j] for col in conditions)
            oks = self.plan[classes][self.seen[classes]]
            self.seen[classes] += 1
            out.append(self.draw(classes, oks))
        return torch.cat(out)


def test_wilson_matches_the_formula_by_hand():
    def by_hand(h, n, z=1.96):
        p = h / n
        centre = (p + z * z / (2 * n)) / (1 + z * z / n)
        half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
        return centre - half, centre + half

    for h in (0, 5, 10):
        assert parta.wilson(h, 10) == pytest.approx(by_hand(h, 10), abs=1e-12)
    assert parta.wilson(0, 10)[0] == 0 and parta.wilson(0, 10)[1] == pytest.approx(3.8416 / 13.8416)
    assert parta.wilson(10, 10)[1] == pytest.approx(1) and parta.wilson(10, 10)[0] == pytest.approx(10 / 13.8416)
    lo, hi = parta.wilson(5, 10)
    assert lo + hi == pytest.approx(1) and lo == pytest.approx(0.2366, abs=1e-4)
    assert parta.wilson(0, 0) == (0.0, 1.0)
    assert parta.rate_record(torch.tensor([T, F_, T, T])) == {
        "rate": 0.75, "hits": 3, "images": 4, "ci95": [round(x, 4) for x in parta.wilson(3, 4)]}


def test_class_pairs_are_all_ordered_pairs_once_and_subsets_are_seeded():
    every = parta.class_pairs(90)
    assert len(every) == 90 and set(every) == set(permutations(range(10), 2))
    assert set(parta.class_pairs()) == set(every) and len(parta.class_pairs(500)) == 90
    some = parta.class_pairs(30, seed=1)
    assert len(set(some)) == 30 and all(a != b for a, b in some) and some == parta.class_pairs(30, seed=1)
    assert some == parta.class_pairs(90, seed=1)[:30], "a subset is a prefix of the seeded order"
    triples = parta.class_triples(90)
    assert len(set(triples)) == 90 and all(len(set(t)) == 3 for t in triples)


@pytest.mark.parametrize("view", parta.ANAGRAM_VIEWS)
def test_anagram_rates_match_a_hand_count(monkeypatch, model, view):
    plan = {(1, 2): [(T, T), (T, F_), (F_, F_)], (3, 4): [(T, T), (T, T), (F_, T)]}
    fake = FakeSampler(plan, lambda cs, oks: marked({"identity": wrong(cs[0], oks[0]), view: wrong(cs[1], oks[1])}))

    def anagram(m, conditions, views, n, *, guidance=None, seed=0, sampling=None):
        assert m is model and list(views) == ["identity", view]
        fake.calls.append((n, seed, guidance, sampling))
        return fake.images(conditions, n)

    monkeypatch.setattr(ops, "anagram", anagram)
    monkeypatch.setattr(parta, "CHUNK", 4)
    r = parta.anagram_rate(model, PixelJudge(), view, [(1, 2), (3, 4)], n=3, guidance=2.5, seed=7)
    assert fake.calls == [(4, 7, 2.5, None), (2, 8, 2.5, None)], "chunks of CHUNK, seed + chunk, no sampling"
    assert r["images"] == 6 and r["pairs"] == 2 and r["images_per_pair"] == 3
    assert {k: (r[k]["hits"], r[k]["images"]) for k in ("upright", "viewed", "both")} == {
        "upright": (4, 6), "viewed": (4, 6), "both": (3, 6)}
    assert r["both"]["rate"] == 0.5 and r["both"]["ci95"] == [round(x, 4) for x in parta.wilson(3, 6)]
    assert r["per_pair"] == {"1-2": 0.3333, "3-4": 0.6667}
    assert r["examples"].shape == (4, 1, 28, 28), "(image, its view) for the first image of each pair"
    assert torch.equal(r["examples"][2], fake.draw((3, 4), (T, T))[0])


def test_three_view_rates_match_a_hand_count(monkeypatch, model):
    views = parta.THREE_VIEWS
    plan = {(1, 2, 3): [(T, T, T), (T, F_, T)], (4, 5, 6): [(F_, T, T), (T, T, F_)]}
    fake = FakeSampler(plan, lambda cs, oks: marked({v: wrong(c, ok) for v, c, ok in zip(views, cs, oks)}))
    monkeypatch.setattr(ops, "anagram", lambda m, conditions, vs, n, **kw: fake.images(conditions, n))
    r = parta.anagram3_rate(model, PixelJudge(), [(1, 2, 3), (4, 5, 6)], n=2)
    assert [r[v]["hits"] for v in views] == [3, 3, 3] and r["all"]["hits"] == 1 and r["all"]["images"] == 4
    assert r["per_triple"] == {"1-2-3": 0.5, "4-5-6": 0.0} and r["examples"].shape == (6, 1, 28, 28)


def test_hybrid_rates_match_a_hand_count_with_the_hybrids_defaults(monkeypatch, model):
    # pixel (0, 14) holds the near reading, (0, 15) what the shrunk far view reads, (0, 16) the low-pass one
    def draw(cs, oks):
        x = torch.zeros(1, 1, 28, 28)
        x[..., 0, 14], x[..., 0, 15], x[..., 0, 16] = (code(wrong(c, ok)) for c, ok in zip(
            (cs[1], cs[0], cs[0]), oks))
        return x

    def moved(col):
        def view(x, *args):
            lowpass_args.extend([args] if args else [])
            y = torch.zeros_like(x)
            y[..., 0, 14] = x[..., 0, col]
            return y
        return view

    plan = {(1, 2): [(T, T, F_), (T, F_, T)], (3, 4): [(F_, T, T), (T, T, F_)]}
    fake, lowpass_args = FakeSampler(plan, draw), []

    @functools.wraps(ops.hybrid)  # keeps its signature: the code reads the default kernel from it
    def hybrid(m, conditions, n, **kw):
        fake.calls.append(kw)
        return fake.images(conditions, n)

    monkeypatch.setattr(ops, "hybrid", hybrid)
    monkeypatch.setattr(parta, "shrink_far", moved(15))
    monkeypatch.setattr(ops, "lowpass_view", moved(16))
    r = parta.hybrid_rate(model, PixelJudge(), [(1, 2), (3, 4)], n=2, seed=3)
    assert fake.calls == [{"guidance": None, "seed": 3, "sampling": None}], "no kernel, sigma or sampling given"
    kernel = inspect.signature(ops.hybrid).parameters["kernel"].default
    assert (r["kernel"], r["sigma"]) == (kernel, ops.check_hybrid(model, [1, 2], kernel, None)[0])
    assert lowpass_args == [(r["kernel"], r["sigma"])], "the far low-pass copy uses the hybrid's own Gaussian"
    hits = {k: r[k]["hits"] for k in ("near", "far_shrunk", "far_lowpass", "both_shrunk", "both_lowpass")}
    assert hits == {"near": 3, "far_shrunk": 3, "far_lowpass": 2, "both_shrunk": 2, "both_lowpass": 1}
    assert r["images"] == 4 and r["both_shrunk"]["images"] == 4 and r["headline"] == "both_shrunk"
    assert r["per_pair"] == {"1-2": 0.5, "3-4": 0.5} and r["per_pair_lowpass"] == {"1-2": 0.5, "3-4": 0.0}
    assert r["examples"].shape == (6, 1, 28, 28), "(image, shrunk far, low-pass far) for the first images"


class ConstantJudge(nn.Module):
    """Reads every image as class ``c``."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.c = c

    def forward(self, x):
        return F.one_hot(torch.full((x.shape[0],), self.c), 10).float()


def test_hybrids_are_read_from_far_by_the_far_judge(monkeypatch, model):
    # every hybrid reads (near, far) right to PixelJudge; a far judge that always says 1 gets the far readings
    plan = {(1, 2): [(T, T, T)], (3, 4): [(T, T, T)]}

    def draw(cs, oks):
        x = torch.zeros(1, 1, 28, 28)
        x[..., 0, 14] = code(cs[1])
        return x

    fake = FakeSampler(plan, draw)
    monkeypatch.setattr(ops, "hybrid", functools.wraps(ops.hybrid)(lambda m, conditions, n, **kw:
                                                                     fake.images(conditions, n)))
    monkeypatch.setattr(parta, "shrink_far", lambda x: x)
    r = parta.hybrid_rate(model, PixelJudge(), [(1, 2), (3, 4)], n=1, far_judge=ConstantJudge(1))
    assert r["near"]["hits"] == 2, "near is the sharp judge's reading"
    assert r["far_shrunk"]["hits"] == 1 and r["far_lowpass"]["hits"] == 1, "both far copies: the far judge's"
    assert r["per_pair"] == {"1-2": 1.0, "3-4": 0.0}


def test_shrink_far_keeps_a_constant_and_blurs_a_stroke():
    x = torch.full((2, 1, 28, 28), 0.37)
    assert torch.allclose(parta.shrink_far(x), x, atol=1e-6)
    line = torch.zeros(1, 1, 28, 28)
    line[..., :, 13] = 1.0
    far = parta.shrink_far(line)
    assert far.shape == line.shape and far.max() < 0.6, "a one-pixel stroke fades when seen from far"
    assert (far[0, 0, 14] > 0.01).sum() >= 3, "and spreads over its neighbours"


def test_edit_scores_are_rates_with_intervals(digits, model):
    held = split_holdout(digits, 50)[1]
    e = parta.edit_rate(model, CentroidJudge(held), held, 4, per_target=2, sampling=FAST)
    assert e["edits"] == e["images"] == 20 and e["examples"].shape == (40, 1, 28, 28)
    assert e["hits"] == round(e["rate"] * 20) and e["ci95"][0] <= e["rate"] <= e["ci95"][1]
    assert e["rate"] >= 0.5, "edits toward a class from a late start read as that class"


def test_drawings_are_real_external_digits():
    x, y = sklearn_digits(3)
    assert x.shape == (30, 1, 28, 28) and y.tolist() == [c for c in range(10) for _ in range(3)]
    assert x[..., :4, :].abs().max() == 0 and 0.9 < x.max() <= 1.0, "MNIST layout: a blank border, light ink"
    a, b = draw_digit(7, seed=0), draw_digit(7, seed=1)
    assert a.size == (256, 256) and a.tobytes() != b.tobytes() and a.tobytes() == draw_digit(7, seed=0).tobytes()


def test_models_other_than_ten_class_28px_are_one_line_and_keys_are_folder_names(model):
    parta_suite.check_model(model, "digits")
    for bad in (dataclasses.replace(model, num_classes=3), dataclasses.replace(model, conditioning="none"),
                dataclasses.replace(model, image_size=64)):
        with pytest.raises(UserError, match="28x28 one-channel images with 10 classes"):
            parta_suite.check_model(bad, "x")
    assert parta_suite.model_key("digits") == "digits"
    assert parta_suite.model_key("runs/a b/weights.safetensors", ["x"]) == "weights"
    assert parta_suite.model_key("runs/digits/", ["digits", "digits-2"]) == "digits-3"
    assert "digits" in parta_suite.default_models()


def test_cli_evaluate_parta_end_to_end(tmp_path, monkeypatch, capsys, digits):
    # fast: a centroid judge instead of a trained one, and few sampling steps on the model's card
    held = split_holdout(digits, 50)[1]
    monkeypatch.setattr(parta_suite, "judge_for",
                        lambda data, source, judge, far=False: (CentroidJudge(held), {"data": source}, None))
    load, spec = parta_suite.load_diffusion_model, ops.spec_part_a
    few = lambda m: dataclasses.replace(m, sampling=dataclasses.replace(m.sampling, steps=5, stride=None),  # noqa: E731
                                        illusion_sampling=dataclasses.replace(m.illusions(), steps=5, stride=None))
    monkeypatch.setattr(parta_suite, "load_diffusion_model", lambda name, device: few(load(name, device)))
    monkeypatch.setattr(ops, "spec_part_a", lambda m: dataclasses.replace(spec(m), steps=12, stride=None))
    monkeypatch.setattr(parta_suite, "sklearn_digits", lambda n: sklearn_digits(1))
    out = tmp_path / "pa"
    code_, stdout, stderr = fundiff_in_process(monkeypatch, capsys, "evaluate-parta", "--model", "digits", "--pairs",
                                               "2", "--per-pair", "1", "--per-target", "1", "--out", out)
    assert code_ == 0, stderr
    record = json.loads((out / "parta_eval.json").read_text())
    assert list(record["results"]) == ["digits"] and record["pairs"] == 2
    res = record["results"]["digits"]
    assert set(res) == {"edit", *(f"anagram_{v}" for v in parta.ANAGRAM_VIEWS), "anagram_3view", "hybrid",
                        "drawn", "sklearn_8x8"}
    assert record["models"]["digits"]["sampling"]["steps"] == 5, "anagrams and hybrids sample with the card"
    for v in parta.ANAGRAM_VIEWS:
        a = res[f"anagram_{v}"]
        assert a["images"] == 2 and set(a["both"]) == {"rate", "hits", "images", "ci95"} and len(a["per_pair"]) == 2
    h = res["hybrid"]
    assert h["images"] == 2 and h["both_shrunk"]["hits"] <= min(h["near"]["hits"], h["far_shrunk"]["hits"])
    assert res["anagram_3view"]["images"] == 2 and res["edit"]["images"] == 10 and res["drawn"]["images"] == 30
    assert all((out / "digits" / f"{k}.png").is_file() for k in res)
    assert len(list((out / "digits" / "drawings").glob("drawn_*.png"))) == 30
    printed = stdout + stderr
    assert "digits: hybrid" in printed and "95% CI" in printed and "anagram rotate_180, both" in printed

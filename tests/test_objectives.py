"""train/objectives.py and the loop's helpers: each loss is zero for its oracle, EMA, LR schedules."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from fundiff.core.schedule import linear_schedule
from fundiff.nets.unet import UNet, UNetConfig
from fundiff.train.loop import (
    batch_loss,
    ema_update,
    ema_warmup_note,
    ema_warmup_steps,
    epoch_generator,
    make_scheduler,
)
from fundiff.train.objectives import ddpm_loss, denoiser_loss, flow_loss, one_hot_with_dropout
from fundiff.train.recipes import make_recipe


class Stub(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn, self.calls = fn, []

    def forward(self, x, t=None, c=None):
        self.calls.append((x, t, c))
        return self.fn(x, t, c)


def g(seed=0):
    return torch.Generator().manual_seed(seed)


def test_ddpm_loss_is_zero_for_the_oracle_of_x0_zero():
    """With x0 = 0, x_t = sqrt(1 - abar_t) eps, so eps = x_t / sqrt(1 - abar_t) where the net reads
    abar_t from its time input t / T alone: zero loss only if the time the net sees and the abar
    used to noise agree (the t = k + 1 convention)."""
    s = linear_schedule(300)

    def oracle(x, t, c):
        k = (t * s.T).round().long() - 1
        return x / (1 - s.abar(k).float()).sqrt().reshape(-1, 1, 1, 1)

    net = Stub(oracle)
    loss = ddpm_loss(net, torch.zeros(512, 1, 28, 28), None, s, g())
    assert loss.item() < 1e-10
    t = net.calls[0][1]
    assert t.min() >= 1 / 300 - 1e-7 and t.max() <= 1.0
    assert len(torch.unique(t)) > 200  # t ~ U{1..T}: many distinct values in 512 draws


def test_ddpm_loss_target_is_the_noise():
    """A net answering zeros has loss E[eps^2] = 1."""
    loss = ddpm_loss(Stub(lambda x, t, c: torch.zeros_like(x)), torch.rand(64, 1, 28, 28), None,
                     linear_schedule(300), g())
    assert loss.item() == pytest.approx(1.0, abs=0.02)


def test_ddpm_loss_passes_the_class_vector():
    c = torch.eye(10)[torch.arange(8) % 10]
    net = Stub(lambda x, t, c: torch.zeros_like(x))
    ddpm_loss(net, torch.rand(8, 1, 28, 28), c, linear_schedule(300), g())
    assert net.calls[0][2] is c


def test_flow_loss_is_zero_for_the_oracle_of_x1_zero():
    """x1 = 0: x_t = (1 - t) x0 and the target x1 - x0 = -x_t / (1 - t)."""
    net = Stub(lambda x, t, c: -x / (1 - t).reshape(-1, 1, 1, 1))
    loss = flow_loss(net, torch.zeros(256, 1, 28, 28), None, g())
    assert loss.item() < 1e-8
    t = net.calls[0][1]
    assert t.min() >= 0 and t.max() < 1 and t.std() > 0.2  # t ~ U[0, 1]


def test_flow_loss_target_is_the_velocity():
    x1 = torch.full((128, 1, 28, 28), 0.5)
    loss = flow_loss(Stub(lambda x, t, c: torch.zeros_like(x)), x1, None, g())
    assert loss.item() == pytest.approx(1.25, abs=0.02)  # E[(x1 - x0)^2] = 0.25 + 1


def test_denoiser_loss():
    x = torch.rand(64, 1, 28, 28)
    identity = Stub(lambda z, t, c: z)
    assert denoiser_loss(identity, x, 0.0, False, g()).item() == 0.0
    assert denoiser_loss(identity, x, 0.5, False, g()).item() == pytest.approx(0.25, abs=0.01)
    zeros = Stub(lambda z, t, c: torch.zeros_like(z))
    assert denoiser_loss(zeros, x, 0.5, True, g()).item() == pytest.approx(x.pow(2).mean().item(), rel=1e-5)
    denoiser_loss(identity, x, 0.5, True, g())
    assert identity.calls[-1][0].std() == pytest.approx(1.0, abs=0.02)  # pure noise input, no digit


def test_one_hot_with_dropout():
    labels = torch.arange(10_000) % 10
    c = one_hot_with_dropout(labels, 0.0, g())
    assert torch.equal(c, torch.eye(10)[labels])
    c = one_hot_with_dropout(labels, 0.1, g())
    zero = c.sum(1) == 0
    assert zero.float().mean().item() == pytest.approx(0.1, abs=0.015)
    assert torch.equal(c[~zero], torch.eye(10)[labels[~zero]])


def test_batch_loss_dispatch_uses_the_right_net_inputs():
    x, y = torch.rand(4, 1, 28, 28), torch.tensor([1, 2, 3, 4])
    for model, objective, cond in [("denoiser", "ddpm", "none"), ("time", "ddpm", "time"),
                                   ("class", "flow", "class")]:
        r = make_recipe(model, objective, width=8)
        net = Stub(lambda x, t, c: torch.zeros_like(x))
        batch_loss(net, r, x, y, g())
        _, t, c = net.calls[0]
        assert (t is None) == (cond == "none")
        assert (c is None) == (cond != "class")


def test_ema_update_warmup_and_buffers():
    net, ema = UNet(UNetConfig(width=1)), UNet(UNetConfig(width=1))
    with torch.no_grad():
        for p in ema.parameters():
            p.zero_()
        for p in net.parameters():
            p.fill_(1.0)
        net.first[0][1].running_mean.fill_(3.0)
    ema_update(ema, net, 0.999, step=1)  # d = min(0.999, 2 / 11)
    for p in ema.parameters():
        torch.testing.assert_close(p, torch.full_like(p, 1 - 2 / 11))
    assert torch.equal(ema.first[0][1].running_mean, net.first[0][1].running_mean)
    ema_update(ema, net, 0.5, step=10**6)  # late: d = decay
    for p in ema.parameters():
        torch.testing.assert_close(p, torch.full_like(p, 1 - 0.5 * 2 / 11))


@pytest.mark.parametrize("decay", [0.5, 0.9, 0.99, 0.995, 0.998, 0.999, 0.9999])
def test_ema_warmup_steps_is_the_first_step_that_reaches_the_decay(decay):
    n = ema_warmup_steps(decay)
    assert (1 + n) / (10 + n) >= decay
    assert n == 0 or n / (9 + n) < decay  # step n - 1 falls short


def test_ema_warmup_note_says_when_the_decay_is_never_reached():
    assert ema_warmup_steps(0.998) == 4490
    note = ema_warmup_note(0.999, 2538)  # the default's 9 epochs of 282 steps
    assert "never reached" in note and "8,990 steps" in note and "2,538" in note and "0.9965" in note
    assert ema_warmup_note(0.5, 100) is None and ema_warmup_note(0.0, 5) is None


@pytest.mark.parametrize(("schedule", "final"), [("exponential", 0.1), ("cosine", 0.01), ("constant", 1.0)])
def test_lr_schedules_over_the_epochs(schedule, final):
    r = make_recipe("class", epochs=4, lr=1e-3, lr_schedule=schedule)
    opt = torch.optim.Adam([nn.Parameter(torch.zeros(1))], lr=r.lr)
    sched = make_scheduler(opt, r)
    for _ in range(4):
        opt.step()
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-3 * final, rel=1e-6)


def test_epoch_generators_are_distinct_and_reproducible():
    a = torch.randperm(100, generator=epoch_generator(0, 1))
    assert torch.equal(a, torch.randperm(100, generator=epoch_generator(0, 1)))
    assert not torch.equal(a, torch.randperm(100, generator=epoch_generator(0, 2)))
    assert not torch.equal(a, torch.randperm(100, generator=epoch_generator(1, 1)))


def test_min_snr_weight_caps_the_easy_noise_levels():
    """w = min(SNR, 5) / SNR: 1 where SNR <= 5 (noisy levels), 5 / SNR below, so clean levels weigh less."""
    from fundiff.train.objectives import min_snr_weight

    abar = torch.tensor([0.01, 5 / 6, 0.99])  # SNR 1/99, 5, 99
    assert torch.allclose(min_snr_weight(abar), torch.tensor([1.0, 1.0, 5 / 99]), atol=1e-5)


def test_min_snr_loss_weighs_each_image_by_its_level():
    """A net answering zeros: the uniform loss is E[eps^2] = 1, the min-SNR loss E[w_t] < 1, as computed."""
    s = linear_schedule(300)
    zeros = Stub(lambda x, t, c: torch.zeros_like(x))
    x = torch.rand(4096, 1, 4, 4)
    weighted = ddpm_loss(zeros, x, None, s, g(), weighting="min-snr")
    k = torch.randint(0, s.T, (4096,), generator=g())  # the same draw ddpm_loss made first
    from fundiff.train.objectives import min_snr_weight

    expected = min_snr_weight(s.abar(k).float()).mean()
    assert weighted.item() == pytest.approx(expected.item(), rel=0.03)
    assert weighted.item() < 0.9 * ddpm_loss(zeros, x, None, s, g()).item()


def test_logit_normal_flow_times_gather_in_the_middle():
    from fundiff.train.objectives import flow_times

    u, ln = flow_times(20_000, g()), flow_times(20_000, g(), "logit-normal")
    assert 0 < ln.min() and ln.max() < 1
    assert ln.median().item() == pytest.approx(0.5, abs=0.02)
    middle = lambda t: ((t > 0.25) & (t < 0.75)).float().mean().item()  # noqa: E731
    assert middle(u) == pytest.approx(0.5, abs=0.02) and middle(ln) > 0.65  # P(|z| < ln 3) = 0.73
    torch.testing.assert_close(flow_times(8, g(), "logit-normal"), flow_times(8, g(), "logit-normal"))

"""models/fundiff_unet.py: the UNet adapter's time convention and class vectors."""

from __future__ import annotations

import torch
from torch import nn

from fundiff.core.contract import Velocity
from fundiff.core.schedule import linear_schedule
from fundiff.models.fundiff_unet import class_vector, unet_denoiser, unet_velocity
from fundiff.nets.unet import UNetConfig


class Recorder(nn.Module):
    """Stands in for a UNet: records its inputs, returns x + 1."""

    def __init__(self, conditioning: str) -> None:
        super().__init__()
        self.config = UNetConfig(width=1, conditioning=conditioning)
        self.calls: list[tuple] = []

    def forward(self, x, t=None, c=None):
        self.calls.append((x, t, c))
        return x + 1


def test_class_vector():
    assert torch.equal(class_vector(None, 3), torch.zeros(3, 10))
    v = class_vector(torch.tensor([0, 9, 4]), 3)
    assert torch.equal(v, torch.eye(10)[[0, 9, 4]])


def test_ddpm_adapter_feeds_model_time_k_plus_one_over_T():
    s = linear_schedule(300)
    net = Recorder("time")
    x = torch.zeros(3, 1, 28, 28)
    pred = unet_denoiser(net, s)(x, torch.tensor([0, 149, 299]))
    _, t, c = net.calls[0]
    torch.testing.assert_close(t, torch.tensor([1 / 300, 150 / 300, 1.0]))
    assert c is None
    torch.testing.assert_close(pred.eps, x + 1)
    assert pred.variance is None


def test_flow_adapter_passes_continuous_time_and_class_vectors():
    net = Recorder("class")
    x = torch.zeros(2, 1, 28, 28)
    out = unet_velocity(net, torch.tensor([3, 7]))(x, torch.tensor([0.25, 0.25]))
    _, t, c = net.calls[0]
    torch.testing.assert_close(t, torch.tensor([0.25, 0.25]))
    assert torch.equal(c, torch.eye(10)[[3, 7]])
    assert isinstance(out, Velocity)
    torch.testing.assert_close(out.v, x + 1)
    unet_velocity(net, None)(x, torch.tensor([0.5, 0.5]))
    assert torch.equal(net.calls[1][2], torch.zeros(2, 10))  # the null class


def test_unconditional_net_gets_no_time():
    net = Recorder("none")
    unet_denoiser(net, linear_schedule(300))(torch.zeros(1, 1, 28, 28), torch.tensor([10]))
    assert net.calls[0][1] is None and net.calls[0][2] is None

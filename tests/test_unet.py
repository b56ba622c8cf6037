"""nets/unet.py and nets/blocks.py: shapes, exact parameter counts from the spec, conditioning."""

from __future__ import annotations

import pytest
import torch

from fundiff.nets.blocks import FCBlock
from fundiff.nets.unet import UNet, UNetConfig

# ---- parameter counts derived by hand from spec.md Part B ------------------------------------------
# Conv2d(k, c_in, c_out) has k*k*c_in*c_out weights + c_out biases; BatchNorm2d(c) has 2c (gamma, beta).


def conv(c_in, c_out):  # Conv = Conv2d(k3) + BN + GELU  (DownConv has the same count)
    return 9 * c_in * c_out + c_out + 2 * c_out


def up_conv(c_in, c_out):  # UpConv = ConvTranspose2d(k4) + BN + GELU
    return 16 * c_in * c_out + c_out + 2 * c_out


def unflatten(c):  # ConvTranspose2d(k7, c -> c) + BN + GELU; Flatten (AvgPool + GELU) has none
    return 49 * c * c + c + 2 * c


def conv_block(c_in, c_out):
    return conv(c_in, c_out) + conv(c_out, c_out)


def down_block(c_in, c_out):
    return conv(c_in, c_out) + conv_block(c_out, c_out)


def up_block(c_in, c_out):
    return up_conv(c_in, c_out) + conv_block(c_out, c_out)


def fc_block(f_in, f_out):  # Linear(F_in, F_out), GELU, Linear(F_out, F_out)
    return f_in * f_out + f_out + f_out * f_out + f_out


def spec_param_count(d: int, conditioning: str) -> int:
    n = (conv_block(1, d) + down_block(d, d) + down_block(d, 2 * d) + unflatten(2 * d)
         + up_block(4 * d, d) + up_block(2 * d, d) + conv_block(2 * d, d) + 9 * d * 1 + 1)
    if conditioning in ("time", "class"):
        n += fc_block(1, 2 * d) + fc_block(1, d)
    if conditioning == "class":
        n += fc_block(10, 2 * d) + fc_block(10, d)
    return n


def test_hand_formula_closed_form():
    """The block sums above reduce to 481 D^2 + 81 D + 1 (+ 5 D^2 + 9 D time, + 5 D^2 + 36 D class)."""
    for d in (1, 8, 64, 128):
        assert spec_param_count(d, "none") == 481 * d * d + 81 * d + 1
        assert spec_param_count(d, "time") == 486 * d * d + 90 * d + 1
        assert spec_param_count(d, "class") == 491 * d * d + 126 * d + 1


@pytest.mark.parametrize("conditioning", ["none", "time", "class"])
@pytest.mark.parametrize("d", [8, 64, 128])
def test_parameter_counts_match_the_spec(d, conditioning):
    net = UNet(UNetConfig(width=d, conditioning=conditioning))
    assert sum(p.numel() for p in net.parameters()) == spec_param_count(d, conditioning)


def test_spec_sizes_in_numbers():
    assert spec_param_count(128, "none") == 7_891_073  # the single-step denoiser, D = 128
    assert spec_param_count(64, "time") == 1_996_417
    assert spec_param_count(64, "class") == 2_019_201


def _inputs(b=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 1, 28, 28, generator=g), torch.rand(b, generator=g), torch.eye(10)[torch.tensor([1, 5, 9])]


@pytest.mark.parametrize("conditioning", ["none", "time", "class"])
def test_output_shape(conditioning):
    net = UNet(UNetConfig(width=8, conditioning=conditioning)).eval()
    x, t, c = _inputs()
    out = net(x, t if conditioning != "none" else None, c if conditioning == "class" else None)
    assert out.shape == (3, 1, 28, 28)
    assert torch.isfinite(out).all()


def test_intermediate_shapes_follow_the_spec():
    d = 8
    net = UNet(UNetConfig(width=d)).eval()
    shapes = {}
    for name in ("first", "down1", "down2", "flatten", "unflatten", "up1", "up2", "last", "out"):
        getattr(net, name).register_forward_hook(lambda m, i, o, name=name: shapes.__setitem__(name, o.shape[1:]))
    net(torch.rand(2, 1, 28, 28))
    assert shapes == {"first": (d, 28, 28), "down1": (d, 14, 14), "down2": (2 * d, 7, 7),
                      "flatten": (2 * d, 1, 1), "unflatten": (2 * d, 7, 7), "up1": (d, 14, 14),
                      "up2": (d, 28, 28), "last": (d, 28, 28), "out": (1, 28, 28)}


def test_class_net_with_null_class_and_labels_matter():
    torch.manual_seed(0)
    net = UNet(UNetConfig(width=8, conditioning="class")).eval()
    x, t, c = _inputs()
    null = net(x, t, torch.zeros(3, 10))
    assert null.shape == (3, 1, 28, 28) and torch.isfinite(null).all()
    assert not torch.allclose(null, net(x, t, c))
    assert not torch.allclose(net(x, t, c), net(x, torch.rand(3), c))
    with pytest.raises(ValueError):
        net(x, t, None)
    with pytest.raises(ValueError):
        net(x, None, c)


def test_injection_rules():
    """Time adds ("add") or multiplies ("mul"); the class net computes c * h + t."""
    torch.manual_seed(0)
    h = torch.randn(3, 16, 7, 7)
    t = torch.rand(3)
    c = torch.eye(10)[[0, 3, 7]]
    add = UNet(UNetConfig(width=8, conditioning="time", time_injection="add"))
    mul = UNet(UNetConfig(width=8, conditioning="time", time_injection="mul"))
    mul.load_state_dict(add.state_dict())  # same weights: only the rule differs
    tt = add.fc1_t(t[:, None])
    torch.testing.assert_close(add._inject(h, t, None, "fc1"), h + tt)
    torch.testing.assert_close(mul._inject(h, t, None, "fc1"), h * tt)
    cls = UNet(UNetConfig(width=8, conditioning="class", time_injection="mul"))  # class ignores "mul"
    torch.testing.assert_close(cls._inject(h, t, c, "fc1"), cls.fc1_c(c) * h + cls.fc1_t(t[:, None]))
    x, t3, _ = _inputs()
    assert not torch.allclose(add.eval()(x, t3), mul.eval()(x, t3))


def test_fc_block_shape():
    out = FCBlock(10, 16)(torch.zeros(4, 10))
    assert out.shape == (4, 16, 1, 1)


@pytest.mark.parametrize("bad", [dict(width=0), dict(width=-1), dict(conditioning="text"),
                                 dict(time_injection="concat")])
def test_config_rejects_bad_values(bad):
    with pytest.raises(ValueError):
        UNetConfig(**bad)


def test_config_to_dict_roundtrip():
    cfg = UNetConfig(width=8, conditioning="class")
    assert UNetConfig(**cfg.to_dict()) == cfg

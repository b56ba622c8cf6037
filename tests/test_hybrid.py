"""core/bands.py: Gaussian low-pass, frequency bands that sum to the identity, and the hybrid denoiser."""

from __future__ import annotations

import pytest
import torch
import torchvision.transforms.functional as TF

from fundiff.core.bands import frequency_bands, gaussian_lowpass, hybrid_denoiser
from fundiff.core.model import Prediction
from fundiff.errors import UserError

K = torch.tensor([10, 10])


def rand(shape, seed=0):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("sigmas", [[2.0], [1.0, 4.0], [4.0, 2.0, 0.5]])
@pytest.mark.parametrize("shape", [(2, 1, 28, 28), (2, 3, 64, 64)])
def test_bands_sum_to_the_identity(sigmas, shape):
    x = rand(shape)
    bands = frequency_bands(33, sigmas)
    assert len(bands) == len(sigmas) + 1
    torch.testing.assert_close(sum(band(x) for band in bands), x, atol=1e-5, rtol=0)


def test_two_and_three_way_bands_are_the_spec_filters():
    x = rand((1, 1, 28, 28))
    low, high = frequency_bands(33, [2.0])
    torch.testing.assert_close(low(x), gaussian_lowpass(x, 33, 2.0))
    torch.testing.assert_close(high(x), x - gaussian_lowpass(x, 33, 2.0))
    b1, b2, b3 = frequency_bands(9, [1.0, 3.0])  # given in any order: sorted widest first
    torch.testing.assert_close(b1(x), gaussian_lowpass(x, 9, 3.0))
    torch.testing.assert_close(b2(x), gaussian_lowpass(x, 9, 1.0) - gaussian_lowpass(x, 9, 3.0))
    torch.testing.assert_close(b3(x), x - gaussian_lowpass(x, 9, 1.0))


@pytest.mark.parametrize("kernel", [1, 5, 33, 55, 81])
def test_lowpass_keeps_constants_and_highpass_removes_them(kernel):
    x = torch.full((2, 3, 28, 28), 0.7)
    torch.testing.assert_close(gaussian_lowpass(x, kernel, 2.0), x)
    low, high = frequency_bands(kernel, [2.0])
    torch.testing.assert_close(high(x), torch.zeros_like(x), atol=1e-6, rtol=0)


def test_lowpass_matches_torchvision_and_smooths():
    x = rand((2, 1, 28, 28))
    y = gaussian_lowpass(x)  # kernel 33 on 28x28: 16 < 28, torchvision's padding suffices
    assert y.shape == x.shape
    torch.testing.assert_close(y, TF.gaussian_blur(x, [33, 33], [2.0, 2.0]))
    assert y.std() < 0.5 * x.std()


def test_large_kernels_agree_with_mirror_padding():
    """A kernel wider than the image uses repeated reflection; on a big image both paths agree in the middle."""
    x = rand((1, 1, 8, 8))
    y = gaussian_lowpass(x, kernel=21, sigma=1.5)  # pad 10 >= 8: the fallback
    assert y.shape == x.shape and torch.isfinite(y).all()
    big = torch.nn.functional.pad(x, (7, 7, 7, 7), mode="reflect")  # 22x22: torchvision's own path
    torch.testing.assert_close(y, gaussian_lowpass(big, kernel=21, sigma=1.5)[..., 7:15, 7:15])
    torch.testing.assert_close(gaussian_lowpass(torch.ones(1, 1, 1, 1), 5, 1.0), torch.ones(1, 1, 1, 1))


@pytest.mark.parametrize("kernel,sigma", [(0, 2.0), (4, 2.0), (-3, 2.0), (33, 0.0), (33, -1.0)])
def test_bad_kernel_or_sigma_is_a_user_error(kernel, sigma):
    with pytest.raises(UserError):
        gaussian_lowpass(torch.zeros(1, 1, 28, 28), kernel, sigma)
    with pytest.raises(UserError):
        frequency_bands(kernel, [sigma])


def test_bad_sigma_lists_are_user_errors():
    with pytest.raises(UserError, match="at least one sigma"):
        frequency_bands(33, [])
    with pytest.raises(UserError, match="distinct"):
        frequency_bands(33, [2.0, 2.0])


def test_hybrid_is_lowpass_of_one_plus_highpass_of_the_other():
    x, y1, y2 = rand((2, 1, 28, 28)), rand((2, 1, 28, 28), 1), rand((2, 1, 28, 28), 2)
    v1, v2 = torch.full_like(x, 0.5), torch.linspace(-1, 1, 28).expand(2, 1, 28, 28)
    seen = []

    def f1(x_t, k):
        seen.append((x_t, k))
        return Prediction(y1 + x_t, v1)

    def f2(x_t, k):
        seen.append((x_t, k))
        return Prediction(y2, v2)

    out = hybrid_denoiser([f1, f2], frequency_bands(33, [2.0]))(x, K)
    assert all(x_t is x and k is K for x_t, k in seen)
    expected = gaussian_lowpass(y1 + x) + (y2 - gaussian_lowpass(y2))
    torch.testing.assert_close(out.eps, expected)
    torch.testing.assert_close(out.variance, (v1 + v2) / 2)  # averaged, not filtered


def test_hybrid_of_one_denoiser_everywhere_is_that_denoiser():
    x, y = rand((2, 3, 28, 28)), rand((2, 3, 28, 28), 1)
    fn = [lambda x_t, k: Prediction(y + x_t)] * 3
    out = hybrid_denoiser(fn, frequency_bands(33, [1.0, 3.0]))(x, K)
    torch.testing.assert_close(out.eps, y + x, atol=1e-5, rtol=0)
    assert out.variance is None


def test_hybrid_needs_one_denoiser_per_band():
    fn = [lambda x_t, k: Prediction(x_t)]
    with pytest.raises(UserError, match="at least 2 bands"):
        hybrid_denoiser(fn, frequency_bands(33, [2.0])[:1])
    with pytest.raises(UserError, match="2 denoisers and 3 bands"):
        hybrid_denoiser(fn * 2, frequency_bands(33, [1.0, 2.0]))


def test_hybrid_of_velocities_is_a_velocity():
    """Flow models: the same bands, on velocities."""
    from fundiff.core.contract import Velocity

    x, y1, y2 = rand((2, 1, 28, 28)), rand((2, 1, 28, 28), 1), rand((2, 1, 28, 28), 2)
    out = hybrid_denoiser([lambda x_t, t: Velocity(y1 + x_t), lambda x_t, t: Velocity(y2 + x_t)],
                          frequency_bands(33, [2.0]))(x, torch.tensor([0.5, 0.5]))
    assert isinstance(out, Velocity) and out.variance is None
    low = gaussian_lowpass(y1 + x, 33, 2.0)
    torch.testing.assert_close(out.v, low + (y2 + x) - gaussian_lowpass(y2 + x, 33, 2.0))

"""fundiff.io.images: any user file reaches the model the same way (formats, EXIF, alpha, crop, fit, masks)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from fundiff.errors import UserError
from fundiff.io.images import box_mask, image_size_of, load_image, load_mask, save_image


def gradient(w: int = 40, h: int = 30) -> np.ndarray:
    """A smooth (h, w, 3) uint8 picture (no two edges alike)."""
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 255 // (w - 1), y * 255 // (h - 1), (x + y) * 255 // (w + h - 2)], -1).astype(np.uint8)


def save(tmp_path: Path, img: Image.Image, name: str, **kw) -> Path:
    p = tmp_path / name
    img.save(p, **kw)
    return p


def drawing(w: int = 100, h: int = 80, box=(10, 10, 40, 60)) -> Image.Image:
    """Dark ink (a thick ellipse) on white paper, off centre."""
    img = Image.new("L", (w, h), 255)
    ImageDraw.Draw(img).ellipse(box, outline=0, width=5)
    return img


def centre_of_mass(x: torch.Tensor) -> tuple[float, float]:
    w = x[0, 0].double()
    ys = torch.arange(w.shape[0], dtype=torch.float64) + 0.5
    return float(w.sum(1) @ ys / w.sum()), float(w.sum(0) @ ys / w.sum())


@pytest.mark.parametrize("fmt, tol", [("png", 1e-6), ("jpeg", 0.06), ("webp", 0.08)])
def test_formats_load_alike(tmp_path, fmt, tol):
    img = Image.fromarray(gradient())
    ref = torch.from_numpy(gradient()[:, 5:35].transpose(2, 0, 1) / 255.0).float()[None]
    x = load_image(save(tmp_path, img, f"a.{fmt}", quality=95), 30, 3)
    assert x.shape == (1, 3, 30, 30) and x.dtype == torch.float32
    assert 0 <= x.min() and x.max() <= 1
    assert (x - ref).abs().mean() < tol


def test_channels_grey_and_colour(tmp_path):
    rgb = save(tmp_path, Image.fromarray(gradient()), "rgb.png")
    grey = load_image(rgb, 16, 1)
    expected = load_image(save(tmp_path, Image.fromarray(gradient()).convert("L"), "l.png"), 16, 1)
    assert grey.shape == (1, 1, 16, 16) and torch.allclose(grey, expected)
    three = load_image(tmp_path / "l.png", 16, 3)
    assert three.shape == (1, 3, 16, 16) and torch.equal(three[:, 0], three[:, 2])
    with pytest.raises(UserError, match="1 or 3 channels"):
        load_image(rgb, 16, 4)


def test_sixteen_bit_and_float_keep_precision(tmp_path):
    a = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000)
    x = load_image(save(tmp_path, Image.fromarray(a), "deep.png"), 8, 1)
    assert torch.allclose(x[0, 0], torch.from_numpy(a / 65535.0).float(), atol=1e-6)
    f = np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)
    y = load_image(save(tmp_path, Image.fromarray(f), "float.tif"), 8, 3)
    assert y.shape == (1, 3, 8, 8) and torch.allclose(y[0, 1], torch.from_numpy(f), atol=1e-6)


def test_palette_and_cmyk(tmp_path):
    img = Image.fromarray(gradient())
    p = load_image(save(tmp_path, img.convert("P", palette=Image.Palette.ADAPTIVE), "p.png"), 16, 3)
    ref = load_image(save(tmp_path, img, "ref.png"), 16, 3)
    assert (p - ref).abs().mean() < 0.03
    cmyk = load_image(save(tmp_path, img.convert("CMYK"), "c.jpg", quality=95), 16, 3)
    assert (cmyk - ref).abs().mean() < 0.06


def test_transparent_drawing_composited_over_white(tmp_path):
    img = Image.new("RGBA", (40, 40), (0, 0, 0, 0))  # transparent *black* background
    ImageDraw.Draw(img).line((5, 20, 35, 20), fill=(0, 0, 0, 255), width=4)
    p = save(tmp_path, img, "strokes.png")
    x = load_image(p, 40, 1, light_on_dark=True)
    assert x[0, 0, 20, 5:35].min() > 0.9  # light strokes
    assert x[0, 0, :10].max() < 0.05 and x[0, 0, 30:].max() < 0.05  # dark background
    pal = load_image(save(tmp_path, img.convert("P"), "pal.png", transparency=0), 40, 1)
    assert pal[0, 0, :10].min() > 0.95  # a transparent palette entry is white too


@pytest.mark.parametrize("fmt", ["png", "jpeg"])
def test_exif_orientation_comes_out_upright(tmp_path, fmt):
    a = gradient(20, 10)  # 20 wide, 10 tall as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    p = save(tmp_path, Image.fromarray(a), f"phone.{fmt}", exif=exif, quality=95)
    assert image_size_of(p) == (10, 20)
    upright = np.rot90(a, k=-1)[5:15]  # 10 wide, 20 tall, centre square
    x = load_image(p, 10, 3)
    ref = torch.from_numpy(upright.transpose(2, 0, 1) / 255.0).float()
    assert (x[0] - ref).abs().mean() < (1e-6 if fmt == "png" else 0.05)


def test_non_square_is_centre_cropped(tmp_path):
    a = np.zeros((10, 30), np.uint8)
    a[:, 10:20] = 200
    a[:, 12] = 255
    x = load_image(save(tmp_path, Image.fromarray(a), "wide.png"), 10, 1)
    assert torch.allclose(x[0, 0], torch.from_numpy(a[:, 10:20] / 255.0).float())
    tall = load_image(save(tmp_path, Image.fromarray(a.T.copy()), "tall.png"), 10, 1)
    assert torch.allclose(tall[0, 0], x[0, 0].T)


def test_invert_choices(tmp_path):
    p = save(tmp_path, drawing(), "ink.png")
    plain = load_image(p, 28, 1)
    assert plain.mean() > 0.5
    assert torch.allclose(load_image(p, 28, 1, light_on_dark=True), 1 - plain)
    assert torch.allclose(load_image(p, 28, 1, light_on_dark=True, invert="no"), plain)
    dark = save(tmp_path, Image.new("L", (10, 10), 30), "dark.png")
    assert load_image(dark, 10, 1, light_on_dark=True).max() < 0.2
    assert load_image(dark, 10, 1, light_on_dark=True, invert="yes").min() > 0.8
    with pytest.raises(UserError, match="invert must be one of"):
        load_image(p, 28, 1, invert="maybe")


@pytest.mark.parametrize("box", [(10, 10, 40, 60), (55, 5, 95, 30), (30, 20, 38, 75)])
def test_fit_frames_like_mnist(tmp_path, box):
    p = save(tmp_path, drawing(box=box), "ink.png")
    x = load_image(p, 28, 1, light_on_dark=True, fit=True)
    assert x.shape == (1, 1, 28, 28) and 0 <= x.min() and x.max() <= 1
    cy, cx = centre_of_mass(x)
    assert abs(cy - 14) <= 1 and abs(cx - 14) <= 1
    ink = x[0, 0] > 0.1 * x.max()
    rows, cols = ink.any(1).nonzero().flatten(), ink.any(0).nonzero().flatten()
    longer = max(int(rows[-1] - rows[0]) + 1, int(cols[-1] - cols[0]) + 1)
    assert 19 <= longer <= 21
    assert torch.equal(x, load_image(p, 28, 1, light_on_dark=True, fit=True))  # deterministic


def test_fit_without_ink_is_a_user_error(tmp_path):
    p = save(tmp_path, Image.new("L", (30, 30), 255), "blank.png")
    with pytest.raises(UserError, match="no ink"):
        load_image(p, 28, 1, light_on_dark=True, fit=True)


def test_unreadable_files_are_one_line_user_errors(tmp_path):
    text = tmp_path / "notes.png"
    text.write_text("not an image\n")
    noise = np.random.default_rng(0).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    whole = save(tmp_path, Image.fromarray(noise), "ok.png").read_bytes()
    truncated = tmp_path / "cut.png"
    truncated.write_bytes(whole[: len(whole) // 2])
    garbage = tmp_path / "garbage.jpg"
    garbage.write_bytes(b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4)
    for p in [text, truncated, garbage, tmp_path / "missing.png", tmp_path]:
        with pytest.raises(UserError) as err:
            load_image(p, 16, 1)
        msg = str(err.value)
        assert msg.startswith(f"cannot read image {p}: ") and "\n" not in msg
    with pytest.raises(UserError, match="no such file"):
        image_size_of(tmp_path / "missing.png")


def test_mask_matches_image_after_crop_and_resize(tmp_path):
    a = np.zeros((20, 30), np.uint8)  # 30 wide: the centre square is columns 5..25
    a[4:10, 9:15] = 255
    img = save(tmp_path, Image.fromarray(a), "img.png")
    mask = save(tmp_path, Image.fromarray(a).convert("1"), "mask.png")
    m = load_mask(mask, 10, image_size_of(img))
    assert m.shape == (1, 1, 10, 10) and m.dtype == torch.float32
    assert set(m.unique().tolist()) == {0.0, 1.0}
    x = load_image(img, 10, 1)
    assert torch.equal(m.bool(), x > 0.5)
    assert m[0, 0, 2:5, 2:5].all() and m.sum() == 9


def test_mask_zero_one_values_and_exif(tmp_path):
    a = np.zeros((10, 20), np.uint8)
    a[:, 8:12] = 1
    exif = Image.Exif()
    exif[0x0112] = 6
    p = save(tmp_path, Image.fromarray(a), "m01.png", exif=exif)
    m = load_mask(p, 10, (10, 20))
    assert torch.equal(m[0, 0], torch.from_numpy(np.rot90(a, k=-1)[5:15].copy()).float())


def test_mask_errors(tmp_path):
    grey = save(tmp_path, Image.fromarray(gradient()).convert("L"), "grey.png")
    with pytest.raises(UserError, match="not binary"):
        load_mask(grey, 16)
    ok = np.zeros((30, 40), np.uint8)
    ok[10:20, 10:30] = 255
    p = save(tmp_path, Image.fromarray(ok), "ok.png")
    with pytest.raises(UserError, match="40x30 but its image is 64x48"):
        load_mask(p, 16, (64, 48))
    with pytest.raises(UserError, match="no white"):
        load_mask(save(tmp_path, Image.new("L", (40, 30), 0), "empty.png"), 16)
    outside = np.zeros((10, 40), np.uint8)
    outside[:, :3] = 255  # only in the cropped-away margin
    with pytest.raises(UserError, match="no white"):
        load_mask(save(tmp_path, Image.fromarray(outside), "outside.png"), 10)
    with pytest.raises(UserError, match="cannot read image"):
        load_mask(tmp_path / "missing.png", 16)


def test_box_mask():
    m = box_mask([2, 1, 5, 3], 8)  # columns 2..4, rows 1..2
    assert m.shape == (1, 1, 8, 8) and m.sum() == 6
    assert m[0, 0, 1, 2] == 1 and m[0, 0, 2, 4] == 1 and m[0, 0, 3, 2] == 0 and m[0, 0, 1, 5] == 0
    assert box_mask((0, 0, 8, 8), 8).all()
    for bad in [(0, 0, 8), (3, 0, 3, 4), (0, 0, 9, 4), (-1, 0, 2, 2), (0, 4, 2, 2), (0.5, 0, 2, 2), "abcd"]:
        with pytest.raises(UserError, match="box"):
            box_mask(bad, 8)


def test_save_image_round_trip(tmp_path):
    x = torch.rand(1, 3, 6, 5, generator=torch.Generator().manual_seed(0))
    p = save_image(x, tmp_path / "out" / "x.png", scale=3)
    assert p == tmp_path / "out" / "x.png" and [f.name for f in p.parent.iterdir()] == ["x.png"]
    with Image.open(p) as img:
        assert img.size == (15, 18) and img.mode == "RGB"
        a = np.asarray(img)
    assert np.array_equal(a[::3, ::3], (x[0].permute(1, 2, 0) * 255).round().byte().numpy())
    grey = save_image(torch.full((1, 4, 4), 0.5), tmp_path / "g.png")
    with Image.open(grey) as img:
        assert img.mode == "L" and np.asarray(img).max() == 128


def test_real_photo_from_skimage(tmp_path):
    data = pytest.importorskip("skimage.data")
    photo = Image.fromarray(data.astronaut())  # 512 x 512 RGB
    p = save(tmp_path, photo.crop((0, 0, 512, 400)), "astronaut.jpg", quality=90)
    x = load_image(p, 64, 3)
    ref = np.asarray(photo.crop((56, 0, 456, 400)).resize((64, 64), Image.Resampling.LANCZOS)) / 255.0
    assert x.shape == (1, 3, 64, 64)
    assert np.abs(x[0].permute(1, 2, 0).numpy() - ref).mean() < 0.03

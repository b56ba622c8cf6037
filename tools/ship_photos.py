"""Write the 256 px photos fundiff ships (src/fundiff/assets/photos) from scikit-image's data set."""

from pathlib import Path

from PIL import Image
from skimage import data

OUT = Path(__file__).resolve().parents[1] / "src" / "fundiff" / "assets" / "photos"


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for name in ("rocket", "astronaut", "chelsea", "coffee"):
        img = Image.fromarray(getattr(data, name)()).convert("RGB")
        w, h = img.size
        s = min(w, h)
        top = 0 if name == "rocket" else (h - s) // 2  # keep the rocket's top
        img = img.crop(((w - s) // 2, top, (w - s) // 2 + s, top + s)).resize((256, 256), Image.Resampling.LANCZOS)
        img.save(OUT / f"{name}.jpg", quality=88)
        print(OUT / f"{name}.jpg")


if __name__ == "__main__":
    main()

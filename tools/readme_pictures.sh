#!/usr/bin/env bash
# Rebuild the README's pictures in docs/ from the shipped model and runs in RUNS (default runs/).
#   bash tools/readme_pictures.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-runs}
tmp=$(mktemp -d)
shipped=$(python -c "from fundiff.models import shipped_path; print(shipped_path('digits'))")
python - "$tmp" <<'PY'
import sys
from pathlib import Path
import numpy as np
from PIL import Image
from fundiff.evaluate.drawings import draw_digit
from fundiff.train.data import load_digits, split_holdout
held = split_holdout(load_digits("mnist"))[1]
three = held.images[(held.labels == 3).nonzero()[0, 0], 0].numpy()
Image.fromarray((three * 255).astype(np.uint8)).save(Path(sys.argv[1]) / "three.png")
draw_digit(7, seed=2).save(Path(sys.argv[1]) / "drawn7.png")
PY
fundiff sample "$shipped" --per-class 4 --out "$tmp/samples"
fundiff denoise "$tmp/three.png" --t 75 150 225 --class 3 --out "$tmp/denoise"
fundiff edit "$tmp/drawn7.png" --i-start 1 3 5 7 10 20 --class 7 --out "$tmp/edit"
fundiff inpaint "$tmp/three.png" --box 0 0 28 13 --class 5 --out "$tmp/inpaint"
fundiff anagram --prompt 6 --prompt 9 --views rotate_180 --n 4 --out "$tmp/anagram"
fundiff hybrid --low 0 --high 1 --n 4 --out "$tmp/hybrid"
mkdir -p docs
cp "$tmp/samples/samples.png" docs/class_samples.png
cp "$tmp/denoise/comparison.png" docs/denoise.png
cp "$tmp/denoise/strip_t225.png" docs/denoise_strip.png
cp "$tmp/edit/edits.png" docs/edit_drawing.png
cp "$tmp/inpaint/comparison.png" docs/inpaint.png
cp "$tmp/anagram/anagram.png" docs/anagram.png
cp "$tmp/hybrid/hybrid.png" docs/hybrid.png
cp "$runs/class-final/loss.png" docs/class_loss.png
echo "pictures in docs/"

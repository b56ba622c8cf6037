#!/usr/bin/env bash
# Vendor KaTeX (from the npm registry) into src/fundiff/report/assets/katex/ so HTML reports render maths offline.
#   bash tools/vendor_katex.sh [VERSION]     (default: the version in assets/katex/VERSION, else 0.19.1)
# Keeps only katex.min.js, katex.min.css (patched to reference woff2 fonts only), contrib/auto-render.min.js,
# fonts/*.woff2 and LICENSE.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=src/fundiff/report/assets/katex
version=${1:-$(cat "$dest/VERSION" 2>/dev/null || echo 0.19.1)}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent "katex@$version" >/dev/null && tar xzf "katex-$version.tgz")
src="$tmp/package"
[ -f "$src/dist/contrib/auto-render.min.js" ] || { echo "katex@$version has no dist/contrib/auto-render.min.js" >&2; exit 1; }
rm -rf "$dest"
mkdir -p "$dest/fonts"
cp "$src/dist/katex.min.js" "$src/dist/katex.min.css" "$src/dist/contrib/auto-render.min.js" "$src/LICENSE" "$dest/"
cp "$src"/dist/fonts/*.woff2 "$dest/fonts/"
# Drop the woff/ttf alternatives from every @font-face src list: only the woff2 files ship.
sed -E -i 's/,url\([^)]*\.(woff|ttf)\) format\("(woff|truetype)"\)//g' "$dest/katex.min.css"
if grep -Eq '\.(woff|ttf)\)' "$dest/katex.min.css"; then
  echo "katex.min.css still references woff/ttf fonts" >&2
  exit 1
fi
echo "$version" >"$dest/VERSION"
echo "vendored katex $version into $dest ($(du -sk "$dest" | cut -f1) KB)"

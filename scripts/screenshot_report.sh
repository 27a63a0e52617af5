#!/usr/bin/env bash
# Render the HTML energy report of every shipped model in headless Chromium and check the PNG.
#
#   scripts/screenshot_report.sh [OUT_DIR] [ENERGY_MODEL]
#
# For each shipped checkpoint of `neurocompile zoo`: export a bundle, write its HTML report
# (`neurocompile report --format html`), render it with Debian's chromium (installed with apt-get
# when missing; needs root), and fail unless the screenshot exists and is non-trivial (bigger than
# 20 kB, and not one flat colour). Leaves OUT_DIR/<model>.html and OUT_DIR/<model>.png.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${1:-$ROOT/build/report_screenshots}"
MODEL="${2:-loihi_full}"
PY="$ROOT/.venv/bin/python"
NC="$ROOT/.venv/bin/neurocompile"
SAMPLES="${SAMPLES:-100}"

browser() {
    for b in chromium chromium-browser google-chrome; do
        command -v "$b" >/dev/null 2>&1 && { echo "$b"; return 0; }
    done
    return 1
}

if ! BROWSER="$(browser)"; then
    echo "chromium not found: installing Debian's chromium (apt-get install -y chromium)" >&2
    if [ "$(id -u)" -ne 0 ]; then
        echo "error: need root to apt-get install chromium" >&2
        exit 2
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    BROWSER="$(browser)"
fi

mkdir -p "$OUT"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

# every zoo entry whose checkpoint is present (an entry still being trained has no file yet)
MODELS="$("$PY" -c 'from neurocompile.zoo.registry import ZOO, zoo_path
print(" ".join(n for n in sorted(ZOO) if zoo_path(n).is_file()))')"
[ -n "$MODELS" ] || { echo "error: no shipped checkpoint found" >&2; exit 2; }
status=0
for name in $MODELS; do
    bundle="$WORK/$name"
    html="$OUT/$name.html"
    png="$OUT/$name.png"
    "$NC" export "$name" -o "$bundle" >/dev/null
    "$NC" report "$bundle" --samples "$SAMPLES" --format html --energy-model "$MODEL" -o "$html"
    rm -f "$png"
    profile="$(mktemp -d)"
    timeout 120 "$BROWSER" --headless --no-sandbox --disable-gpu --disable-background-networking \
        --disable-component-update --disable-sync --no-first-run --hide-scrollbars \
        --user-data-dir="$profile" --screenshot="$png" --window-size=1280,2400 \
        "file://$html" >/dev/null 2>&1 || true
    rm -rf "$profile"
    if ! "$PY" - "$png" <<'PYEOF'
import sys
from pathlib import Path

import matplotlib.image as mpimg

path = Path(sys.argv[1])
if not path.is_file():
    sys.exit(f"{path}: no screenshot")
size = path.stat().st_size
image = mpimg.imread(path)
if size < 20_000 or image.std() < 0.02:
    sys.exit(f"{path}: trivial screenshot ({size} bytes, pixel std {image.std():.4f})")
print(f"{path}: {image.shape[1]}x{image.shape[0]} px, {size:,} bytes")
PYEOF
    then
        status=1
    fi
done
exit $status

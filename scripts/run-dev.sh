#!/usr/bin/env bash
# `make run`: the appliance's main job with embedded defaults, on a development machine or a box.
# - data (SQLite, originals, PDFs) under ./var unless APPLIANCE_DATA_DIR says otherwise;
# - the SANE test scanner when no real scanner is attached;
# - writes a generated Vietnamese sample page (scan and camera photo) to try;
# - then runs the whole loop (scripts/dev_loop.py): dev token, broker, province receiver, sender, web UI.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
export APPLIANCE_DATA_DIR="${APPLIANCE_DATA_DIR:-$PWD/var}"
export OMP_THREAD_LIMIT=1
out="$APPLIANCE_DATA_DIR/out"
mkdir -p "$out"

if [ -z "${SANE_CONFIG_DIR:-}" ] && ! scanimage -L 2>/dev/null | grep -q "^device"; then
  # No real scanner: enable only SANE's `test` backend, with A4 geometry, in a private config dir.
  export SANE_CONFIG_DIR="$APPLIANCE_DATA_DIR/sane"
  mkdir -p "$SANE_CONFIG_DIR"
  echo test > "$SANE_CONFIG_DIR/dll.conf"
  sed 's/^geometry_max .*/geometry_max 300.0/' /etc/sane.d/test.conf > "$SANE_CONFIG_DIR/test.conf"
  echo "no scanner attached: using the SANE test scanner (test:0)"
fi

$PY -m appliance db upgrade

echo "== generating a sample Vietnamese administrative page (scan and camera photo)"
$PY - "$out" <<'PY'
import sys
from pathlib import Path

from PIL import Image

from bench.corpus import camera_photo, degrade_scan, render_page

out = Path(sys.argv[1])
page, _ = render_page(seed=7, dpi=300, seal=True)
Image.fromarray(degrade_scan(page, skew_deg=1.5, seed=7)).save(out / "sample-scan.png", dpi=(300, 300))
Image.fromarray(camera_photo(page, seed=7)).save(out / "sample-photo.jpg", quality=92)
PY

echo "sample pages to upload or digitize: $out/sample-scan.png, $out/sample-photo.jpg"
echo "   (try: .venv/bin/appliance digitize $out/sample-scan.png -o $out/sample.pdf --json)"
echo
echo "== starting the whole loop: development token, broker, province receiver, outbox sender, web UI"
exec $PY scripts/dev_loop.py

#!/usr/bin/env bash
# End to end, side by side in one run: bgstream vs the PyTorch DataLoader + Pillow baseline
# (benches/python_baseline.py) on the same shards, model, variants, batch and worker count.
#   benches/e2e.sh [MODEL_NAME] [COPIES]    (default: tiny, 4 copies of the 66 real JPEGs)
# MODEL_NAME: tiny, efficientnet-lite0, or any timm name (exported with random weights).
# Set DEVICE=cuda and PRECISION=bf16 on a GPU machine.
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:-tiny}
copies=${2:-4}
device=${DEVICE:-cpu}
precision=${PRECISION:-fp32}
workers=${WORKERS:-$(nproc)}
batch=${BATCH:-64}
data=../shared/data/imagenet-val
[ -d "$data" ] || { echo "needs ../shared/data/imagenet-val (the 66 real JPEGs)"; exit 1; }
[ -x target/release/bgstream ] || scripts/setup
[ -f "models/$model.pt" ] || .venv/bin/python examples/export_models.py --out models --random-weights "$model"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# COPIES copies of every real image (keys suffixed), 4 shards.
.venv/bin/python benches/make_shards.py "$data" "$work" "$copies" 4 e2e
variants=original,bg_only,fg_white,fg_gauss,fg_uniform,fg_color:green,fg_color:yellow,fg_color:grey
start=$(date +%s.%N)
target/release/bgstream --shards "$work/e2e-*.tar" --model "models/$model.pt" --variants "$variants" \
  --device "$device" --precision "$precision" --batch-size "$batch" --workers "$workers" \
  --out "$work/bg" --summary-json "$work/bg.json" --no-progress >/dev/null
end=$(date +%s.%N)
py=$(.venv/bin/python benches/python_baseline.py --shards "$work/e2e-*.tar" --model "models/$model.pt" \
  --out "$work/py" --workers "$workers" --batch-size "$batch" --device "$device" --precision "$precision")
.venv/bin/python - "$work/bg.json" "$start" "$end" "$py" "$model" "$workers" "$device" <<'PY'
import json, sys
s = json.load(open(sys.argv[1])); wall = float(sys.argv[3]) - float(sys.argv[2]); py = json.loads(sys.argv[4])
bg_rate = s["predicted_images"] / wall
print(f"\nend to end, {sys.argv[5]}, {sys.argv[7]}, {sys.argv[6]} workers, 8 variants, {s['predicted_images']} images after the filter")
print(f"{'pipeline':<40} {'images/s':>9} {'variant-images/s':>17} {'seconds':>8}")
print(f"{'bgstream (process wall time)':<40} {bg_rate:>9.1f} {bg_rate * 8:>17.1f} {wall:>8.1f}")
print(f"{'PyTorch DataLoader + Pillow workers':<40} {py['images_per_s']:>9.1f} {py['variant_images_per_s']:>17.1f} {py['seconds']:>8.1f}")
print(f"bgstream / python: {bg_rate / py['images_per_s']:.2f}x  (python time excludes its start-up and model load; bgstream's includes them)")
PY

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
.venv/bin/python - "$data" "$work" "$copies" <<'PY'
import csv, io, json, os, sys, tarfile
data, work, copies = sys.argv[1], sys.argv[2], int(sys.argv[3])
rows = {int(r["val_index"]): r for r in csv.DictReader(open(os.path.join(data, "annotations.csv")))}
samples = []
for name in sorted(os.listdir(os.path.join(data, "images"))):
    r = rows[int(name.split("_")[-1].split(".")[0])]
    boxes = [[float(v) for v in b.split()] for b in r["boxes"].split(";")]
    for c in range(copies):
        samples.append((f"{name.split('.')[0]}c{c}", os.path.join(data, "images", name), int(r["label"]), boxes))
for s in range(4):
    with tarfile.open(os.path.join(work, f"e2e-{s:06}.tar"), "w") as t:
        for key, path, label, boxes in samples[s::4]:
            for ext, payload in (("jpg", open(path, "rb").read()), ("cls", str(label).encode()),
                                 ("json", json.dumps({"label": label, "boxes": boxes}).encode())):
                info = tarfile.TarInfo(f"{key}.{ext}"); info.size = len(payload)
                t.addfile(info, io.BytesIO(payload))
PY
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

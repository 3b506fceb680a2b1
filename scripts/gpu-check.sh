#!/usr/bin/env bash
# Runs on the GPU machine from inside a kit made by scripts/gpu-kit (no build there):
# refills the zeroed models with random weights, freezes some (freeze_model.py), then for each model prints pure forward
# vs end-to-end throughput (bgstream bench) and the PyTorch DataLoader baseline on the same
# shards. Ends with one table. DEVICE=cpu makes it a dry run on a CPU machine.
#   cd gpu-kit && bash gpu-check.sh
set -euo pipefail
cd "$(dirname "$0")"
device=${DEVICE:-cuda}
precision=${PRECISION:-bf16}
batch=${BATCH:-256}
iters=${ITERS:-30}
workers=${WORKERS:-$(nproc)}
py=${PYTHON:-python3}
torch_lib=$("$py" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
export LD_LIBRARY_PATH="$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
[ -x bgstream ] || { gunzip -k bgstream.gz && chmod +x bgstream; }
"$py" - <<'PY'
import glob, gzip, os, torch
torch.manual_seed(0)
for gz in glob.glob("models/*.pt.gz"):
    pt = gz[:-3]
    with gzip.open(gz) as f, open(pt, "wb") as g:
        g.write(f.read())
    m = torch.jit.load(pt)
    if "lite0" not in pt:
        with torch.no_grad():
            for name, t in m.named_parameters():
                t.normal_(0, 0.02) if t.dim() > 1 else t.fill_(1.0 if name.endswith("weight") else 0.0)
            for name, b in m.named_buffers():
                if name.endswith("running_var"):
                    b.fill_(1.0)
    m.save(pt)
PY
# Frozen exports (weights as constants, conv+BN folded, fused ops) pay for some models and
# not others; bench them beside the plain traced ones.
for name in ${FREEZE-resnet50 mobilenetv3_large_100}; do
  [ -f "models/$name.pt" ] && "$py" freeze_model.py "models/$name.pt" --precision "$precision" --device "$device" 2>/dev/null \
    || echo "freeze $name failed" >&2
done
variants=original,bg_only,fg_white,fg_gauss,fg_uniform,fg_color:green,fg_color:yellow,fg_color:grey
table=$(mktemp)
for m in models/*.pt; do
  name=$(basename "$m" .pt)
  ./bgstream bench --shards 'shards/*.tar' --model "$m" --variants "$variants" --device "$device" \
    --precision "$precision" --batch-size "$batch" --forward-iters "$iters" --no-progress \
    --out scratch 2>/dev/null | tee -a "$table.raw" | grep "^$name " >> "$table" || echo "$name bench-failed" >> "$table"
  base=$("$py" python_baseline.py --shards 'shards/*.tar' --model "$m" --out scratch/py-$name \
    --workers "$workers" --batch-size "$batch" --device "$device" --precision "$precision" 2>/dev/null \
    | "$py" -c 'import json,sys; print(round(json.load(sys.stdin)["variant_images_per_s"], 1))' || echo failed)
  echo "$name python $base" >> "$table"
done
# Equal predictions: Lite0 (real weights) on two shards, CPU fp32 against this device and
# precision; top-1 must agree on >= 99.5% of rows (bf16 may flip near-ties).
agree="n/a"
if [ -f models/efficientnet-lite0.pt ]; then
  two=$(ls shards/*.tar | head -2 | tr '\n' ' ')
  for side in "cpu fp32 agree-ref" "$device $precision agree-dev"; do
    set -- $side
    ./bgstream --shards $two --model models/efficientnet-lite0.pt --variants "$variants" \
      --device "$1" --precision "$2" --no-progress --overwrite --out "scratch/$3" >/dev/null 2>&1 || true
  done
  agree=$("$py" - <<'PY' 2>/dev/null || echo "n/a (needs pyarrow)"
import glob, pyarrow.parquet as pq
def top1(d):
    out = {}
    for f in glob.glob(f"scratch/{d}/*.parquet"):
        t = pq.read_table(f, columns=["key", "variant", "top5_classes"]).to_pylist()
        out.update({(r["key"], r["variant"]): r["top5_classes"][0] for r in t if r["top5_classes"]})
    return out
a, b = top1("agree-ref"), top1("agree-dev")
same = sum(a[k] == b.get(k) for k in a)
print(f"{100 * same / max(len(a), 1):.2f}% of {len(a)} rows")
PY
)
fi
echo
grep -m1 "CPU stage" "$table.raw" || true
echo "top-1 agreement, Lite0 $device $precision vs cpu fp32: $agree"
printf '%-24s %14s %14s %8s %14s %9s\n' model forward_img/s bgstream_vi/s ratio python_vi/s bg/py
awk '$2 == "python" { py[$1] = $3; next } { fw[$1] = $2; e2e[$1] = $3; r[$1] = $4; order[++n] = $1 }
     END { for (i = 1; i <= n; i++) { m = order[i]; p = py[m];
           printf "%-24s %14s %14s %8s %14s %9s\n", m, fw[m], e2e[m], r[m], p, (p + 0 > 0 ? sprintf("%.2f", e2e[m] / p) : "-") } }' "$table"
rm -f "$table" "$table.raw"

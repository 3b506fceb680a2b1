#!/usr/bin/env bash
# Runs on the GPU machine from inside a kit made by scripts/gpu-kit (nothing is built there;
# it needs python3 with torch 2.11 and pyarrow). Per model: pure forward vs end-to-end
# throughput (`bgstream bench`, each end-to-end run stopped after E2E_SECONDS), the PyTorch
# DataLoader baseline on the same shards, SM utilisation during the first model's bench, and
# Lite0's top-1 agreement with CPU fp32 (fp32 without and with TF32, bf16). Every step runs
# under a timeout; a failed step prints the tail of its log and the rest still run. Ends with
# one table, also written to $OUT/summary.txt with the logs in $OUT/logs.tar.gz (OUT defaults
# to WORK/out; WORK, default /tmp/bgstream-gpu-check, holds everything unpacked or written).
#   bash gpu-kit/gpu-check.sh                     (on the GPU machine)
#   DEVICE=cpu bash gpu-kit/gpu-check.sh          (a dry run here: small settings)
set -uo pipefail
cd "$(dirname "$0")"
kit=$(pwd)
device=${DEVICE:-cuda}
if [ "$device" = cpu ]; then
  : "${BATCH:=16}" "${ITERS:=2}" "${E2E_SECONDS:=5}" "${COPIES:=4}" "${PRECISION:=fp32}"
  : "${MODELS:=resnet18 efficientnet-lite0}" "${PYTHON_MODELS:=resnet18}" "${FREEZE:=}"
fi
precision=${PRECISION:-bf16}
batch=${BATCH:-256}
iters=${ITERS:-30}
seconds=${E2E_SECONDS:-30}
copies=${COPIES:-400}
models=${MODELS:-resnet50 resnet50-frozen-$precision resnet18 mobilenetv3_large_100 mobilenetv3_large_100-frozen-$precision efficientnet_b1}
python_models=${PYTHON_MODELS-resnet50 resnet18}
freeze=${FREEZE-resnet50 mobilenetv3_large_100}
cores=$(nproc)
workers=${WORKERS:-$((cores > 1 ? cores - 1 : 1))}
py=${PYTHON:-python3}
export PYTHON=$py
# Everything unpacked or written goes to WORK, so the kit itself stays small and unchanged.
work=${WORK:-${TMPDIR:-/tmp}/bgstream-gpu-check}
out=${OUT:-$work/out}
rm -rf "$work" && mkdir -p "$out" "$work/logs" "$work/shards" "$work/models"
variants=original,bg_only,fg_white,fg_gauss,fg_uniform,fg_color:green,fg_color:yellow,fg_color:grey
failed=()

# step NAME SECONDS CMD...: runs CMD under a timeout, output in work/logs/NAME.log.
step() {
  local name=$1 limit=$2 rc
  shift 2
  timeout "$limit" "$@" >"$work/logs/$name.log" 2>&1
  rc=$?
  if [ $rc -ne 0 ]; then
    failed+=("$name")
    {
      echo "step $name failed: exit $rc$([ $rc -eq 124 ] && echo ", timed out after ${limit}s")"
      tail -n 15 "$work/logs/$name.log" | sed 's/^/    /'
    } >&2
  fi
  return $rc
}
finish() {
  tar -czf "$out/logs.tar.gz" -C "$work" logs
}
trap finish EXIT

# 1. Set up: the binary, random weights in the zeroed models, frozen exports, shards.
gunzip -c bgstream.bin.gz >"$work/bgstream.bin" && chmod +x "$work/bgstream.bin"
cp bgstream "$work/bgstream"
cp models/*.json models/*.pt "$work/models/" 2>/dev/null
bgstream=$work/bgstream
step version 60 "$bgstream" --version
step refill 300 "$py" - "$work/models" <<'PY'
import glob, gzip, os, sys, torch
torch.manual_seed(0)
for gz in sorted(glob.glob("models/*.pt.gz")):
    pt = os.path.join(sys.argv[1], os.path.basename(gz)[:-3])
    with gzip.open(gz) as f, open(pt, "wb") as g:
        g.write(f.read())
    m = torch.jit.load(pt)
    with torch.no_grad():
        for name, t in m.named_parameters():
            t.normal_(0, 0.02) if t.dim() > 1 else t.fill_(1.0 if name.endswith("weight") else 0.0)
        for name, b in m.named_buffers():
            if name.endswith("running_var"):
                b.fill_(1.0)
    m.save(pt)
    print("refilled", pt)
PY
for name in $freeze; do
  [ -f "$work/models/$name.pt" ] && step "freeze-$name" 300 "$py" freeze_model.py "$work/models/$name.pt" \
    --precision "$precision" --device "$device"
done
# Shards: the 4 kit shards (66 real JPEGs) as COPIES hard links each, enough that no
# end-to-end run ends before E2E_SECONDS, and many more shards than DataLoader workers.
for s in shards/*.tar; do
  for c in $(seq 1 "$copies"); do
    ln "$s" "$work/shards/$(basename "$s" .tar)-c$c.tar" 2>/dev/null || cp "$s" "$work/shards/$(basename "$s" .tar)-c$c.tar"
  done
done

# 2. Per model: bgstream bench (forward and end to end), then the Python baseline.
gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)
torch_version=$("$py" -c 'import torch; print(torch.__version__)' 2>/dev/null)
declare -A fwd e2e ratio secs pyrate sm
first=1
for m in $models; do
  [ -f "$work/models/$m.pt" ] || { echo "no models/$m.pt: skipped" >&2; continue; }
  dmon=
  if [ $first = 1 ] && [ "$device" != cpu ] && command -v nvidia-smi >/dev/null; then
    nvidia-smi dmon -s u -d 1 >"$work/logs/dmon-$m.log" 2>&1 &
    dmon=$!
  fi
  step "bench-$m" $((seconds + 240)) "$bgstream" bench --shards "$work/shards/*.tar" --model "$work/models/$m.pt" \
    --variants "$variants" --device "$device" --precision "$precision" --batch-size "$batch" \
    --workers "$workers" --forward-iters "$iters" --e2e-seconds "$seconds" --no-progress --out "$work/scratch"
  if [ -n "$dmon" ]; then
    kill "$dmon" 2>/dev/null
    wait "$dmon" 2>/dev/null
    # Median SM % over the samples (start-up and drain are a few of ~seconds+10).
    sm[$m]=$(awk '$1 !~ /^#/ && $2 ~ /^[0-9]+$/ { print $2 }' "$work/logs/dmon-$m.log" | sort -n \
      | awk '{ v[NR] = $1 } END { if (NR) printf "%d%% (median of %d)", v[int((NR + 1) / 2)], NR }')
  fi
  first=0
  # The row under bench's header (one model per bench; its name is the sidecar's, e.g.
  # resnet50.a1_in1k for the file resnet50.pt).
  read -r _ f e r s < <(awk '/^model /{h=1; next} h && NF == 5 {print; exit}' "$work/logs/bench-$m.log") || true
  fwd[$m]=${f:--} e2e[$m]=${e:--} ratio[$m]=${r:--} secs[$m]=${s:--}
  if [[ " $python_models " == *" $m "* ]]; then
    if step "python-$m" $((seconds + 240)) "$py" python_baseline.py --shards "$work/shards/*.tar" \
      --model "$work/models/$m.pt" --out "$work/py-$m" --workers "$workers" --batch-size "$batch" \
      --device "$device" --precision "$precision" --seconds "$seconds"; then
      pyrate[$m]=$(tail -1 "$work/logs/python-$m.log" | "$py" -c \
        'import json, sys; print(round(json.load(sys.stdin)["variant_images_per_s"], 1))' 2>/dev/null || echo -)
    else
      pyrate[$m]=failed
    fi
  fi
done

# 3. Agreement: Lite0 (real weights) on two shards, CPU fp32 against the device in fp32
# without TF32 (the default), fp32 with --allow-tf32, and bf16.
agree_run() { # NAME DEVICE PRECISION [ARGS...]
  local name=$1 dev=$2 prec=$3
  shift 3
  step "agree-$name" 600 "$bgstream" --shards shards/kit-000000.tar shards/kit-000001.tar \
    --model "$work/models/efficientnet-lite0.pt" --variants "$variants" --device "$dev" --precision "$prec" \
    --no-progress --overwrite --out "$work/agree-$name" "$@"
}
agree_run ref cpu fp32
agree_run fp32 "$device" fp32
agree_run tf32 "$device" fp32 --allow-tf32
agree_run bf16 "$device" bf16
# Exit 3 (some rows failed) still leaves rows to compare; a run that wrote nothing is an error.
agreement=$("$py" - "$work" <<'PY' 2>&1
import glob, os, sys
import pyarrow.parquet as pq
work = sys.argv[1]
def top1(name):
    files = glob.glob(f"{work}/agree-{name}/*.parquet")
    if not files:
        log = open(f"{work}/logs/agree-{name}.log").read().strip().splitlines()
        return None, (log[-1] if log else "no output")
    rows = {}
    for f in files:
        for r in pq.read_table(f, columns=["key", "variant", "top5_classes"]).to_pylist():
            if r["top5_classes"]:
                rows[(r["key"], r["variant"])] = r["top5_classes"][0]
    return rows, None
ref, err = top1("ref")
if ref is None:
    print(f"  CPU fp32 reference failed: {err}")
    sys.exit()
targets = {"fp32": ("fp32, no TF32", 99.5), "tf32": ("fp32 with TF32", None), "bf16": ("bf16", None)}
for name, (label, target) in targets.items():
    dev, err = top1(name)
    if dev is None:
        print(f"  {label:<16} error: {err}")
        continue
    same = sum(ref[k] == dev.get(k) for k in ref)
    pct = 100 * same / max(len(ref), 1)
    verdict = (f"target >= {target}%: " + ("pass" if pct >= target else "FAIL")) if target else "reported, not judged"
    print(f"  {label:<16} {pct:6.2f}% of {len(ref)} rows ({verdict})")
PY
)

# 4. One table.
{
  echo "bgstream GPU check: ${gpu:-no GPU} (torch ${torch_version:-?}), device $device, $precision, batch $batch,"
  echo "  $workers CPU workers of $cores cores, end to end stopped after ${seconds}s, $((4 * copies)) shards of the 66 real JPEGs"
  grep -h -m1 "CPU stage" "$work"/logs/bench-*.log 2>/dev/null | head -1 | sed 's/^/  /'
  printf '%-34s %12s %12s %8s %7s %12s %7s  %s\n' model forward_img/s e2e_vi/s e2e/fwd seconds python_vi/s bg/py sm_util
  for m in $models; do
    [ -f "$work/models/$m.pt" ] || continue
    p=${pyrate[$m]:--}
    r=-
    [[ $p =~ ^[0-9.]+$ && ${e2e[$m]} =~ ^[0-9.]+$ ]] && r=$(awk -v a="${e2e[$m]}" -v b="$p" 'BEGIN { printf "%.2f", a / b }')
    printf '%-34s %12s %12s %8s %7s %12s %7s  %s\n' "$m" "${fwd[$m]}" "${e2e[$m]}" "${ratio[$m]}" "${secs[$m]}" "$p" "$r" "${sm[$m]:--}"
  done
  echo "top-1 agreement of Lite0 with CPU fp32:"
  echo "$agreement"
  if [ ${#failed[@]} -eq 0 ]; then echo "steps failed: none"; else echo "steps failed: ${failed[*]} (logs.tar.gz)"; fi
} | tee "$out/summary.txt"

#!/usr/bin/env bash
# The one device script. Runs on the GPU machine from inside a kit made by scripts/gpu-kit
# (nothing is built there; it needs python3 with torch 2.11 and pyarrow), in at most
# BUDGET seconds (default 480: 8 minutes), and prints one table:
#   * per model x precision (ResNet-50, ResNet-18, Lite0; fp32 and bf16; ResNet-50 frozen in
#     bf16 when time is left): pure-forward img/s and end-to-end variant-images/s with 8
#     variants for E2E_SECONDS (30) each (`bgstream bench`, channels-last exports), their
#     ratio, GPU utilisation (median SM %) and peak GPU memory from `nvidia-smi dmon`;
#   * the careful PyTorch baseline (benches/python_baseline.py: DataLoader workers with
#     prefetch, pinned, non-blocking, asynchronous readback) for ResNet-50 bf16, timed the
#     same way, and bgstream / Python;
#   * agreement: Lite0 (real weights) in fp32 (TF32 off) over at least 9 full batches,
#     bgstream's logits against PyTorch's on the very same frames (max |Δ logit| <= 1e-3,
#     top-1 equal), and the TF32 detector (scripts/agree_logits.py).
# Targets (README, Throughput) are printed as targets. Exits 1 when a check fails (a step
# failed, or the agreement), 0 otherwise; the table goes to $OUT/summary.txt, every log to
# $OUT/logs.tar.gz (OUT defaults to WORK/out; WORK, default /tmp/bgstream-gpu-check, holds
# everything unpacked or written).
#   bash gpu-kit/gpu-check.sh                     (on the GPU machine)
#   DEVICE=cpu bash gpu-kit/gpu-check.sh          (a dry run here: small settings, CUDA steps
#                                                  say "no device")
set -uo pipefail
cd "$(dirname "$0")"
kit=$(pwd)
began=$(date +%s)
device=${DEVICE:-cuda}
if [ "$device" = cpu ]; then
  : "${BATCH:=16}" "${E2E_SECONDS:=3}" "${MIN_SECONDS:=1}" "${COPIES:=8}" "${PRECISIONS:=fp32}"
  : "${MODELS:=resnet18 efficientnet-lite0}" "${BUDGET:=420}"
fi
budget=${BUDGET:-480}
batch=${BATCH:-256}
seconds=${E2E_SECONDS:-30}
min_seconds=${MIN_SECONDS:-5}
copies=${COPIES:-5000}
precisions=${PRECISIONS:-fp32 bf16}
models=${MODELS:-resnet50 resnet18 efficientnet-lite0}
cores=$(nproc)
workers=${WORKERS:-$((cores > 1 ? cores - 1 : 1))}
py=${PYTHON:-python3}
export PYTHON=$py
work=${WORK:-${TMPDIR:-/tmp}/bgstream-gpu-check}
out=${OUT:-$work/out}
rm -rf "$work" && mkdir -p "$out" "$work/logs" "$work/shards" "$work/models"
variants=original,bg_only,fg_white,fg_gauss,fg_uniform,fg_color:green,fg_color:yellow,fg_color:grey
failed=()
notes=()
has_gpu=0
[ "$device" != cpu ] && command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1 && has_gpu=1

left() { echo $((budget - ($(date +%s) - began))); }
# step NAME SECONDS CMD...: runs CMD under a timeout (never past the budget), output in
# work/logs/NAME.log; a failure is recorded and its log tail shown. OK_EXIT: one more exit
# code that is not a failure (bench's 4, a measurement too short to trust).
step() {
  local name=$1 limit=$2 rc
  shift 2
  [ "$limit" -gt "$(left)" ] && limit=$(left)
  if [ "$limit" -le 5 ]; then
    failed+=("$name (no time left)")
    echo "step $name: skipped, the ${budget}s budget is spent" >&2
    return 124
  fi
  timeout "$limit" "$@" >"$work/logs/$name.log" 2>&1
  rc=$?
  if [ $rc -ne 0 ] && [ "$rc" != "${OK_EXIT:-}" ]; then
    failed+=("$name")
    {
      echo "step $name failed: exit $rc$([ $rc -eq 124 ] && echo ", timed out after ${limit}s")"
      tail -n 15 "$work/logs/$name.log" | sed 's/^/    /'
    } >&2
  fi
  return $rc
}
finish() {
  tar -czf "$out/logs.tar.gz" -C "$work" logs 2>/dev/null
}
trap finish EXIT

# GPU sampling around a command: median SM % and peak memory (MiB) from nvidia-smi dmon.
dmon_start() {
  dmon_pid=
  [ $has_gpu = 1 ] || return 0
  nvidia-smi dmon -s um -d 1 >"$work/logs/dmon-$1.log" 2>&1 &
  dmon_pid=$!
}
dmon_stop() { # NAME -> sets util and peak
  util="no device" peak="no device"
  [ -n "${dmon_pid:-}" ] || return 0
  kill "$dmon_pid" 2>/dev/null
  wait "$dmon_pid" 2>/dev/null
  # Columns by their header names (they differ between driver versions): sm %, fb MiB.
  awk '/^# *gpu/ { for (i = 2; i <= NF; i++) col[$i] = i; next } /^#/ { next }
       col["sm"] && $col["sm"] ~ /^[0-9]+$/ { print $col["sm"], (col["fb"] ? $col["fb"] : 0) }' \
    "$work/logs/dmon-$1.log" >"$work/logs/dmon-$1.values"
  local n
  n=$(wc -l <"$work/logs/dmon-$1.values")
  [ "$n" -gt 0 ] || { util=- peak=-; return 0; }
  util="$(cut -d' ' -f1 "$work/logs/dmon-$1.values" | sort -n | sed -n "$(((n + 1) / 2))p")%"
  peak="$(cut -d' ' -f2 "$work/logs/dmon-$1.values" | sort -n | tail -1)MiB"
}
# 1. Set up: the binary, random weights in the zeroed models, shards as hard links.
gunzip -c bgstream.bin.gz >"$work/bgstream.bin" && chmod +x "$work/bgstream.bin"
cp bgstream "$work/bgstream"
cp models/*.json models/*.pt "$work/models/" 2>/dev/null
bgstream=$work/bgstream
step version 60 "$bgstream" --version
step refill 120 "$py" - "$work/models" <<'PY'
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
# COPIES hard links of each of the 4 kit shards (66 real JPEGs): more than the fastest
# end-to-end run reads in E2E_SECONDS, so no run ends for want of data.
step links 60 "$py" - "$work/shards" "$copies" <<'PY'
import glob, os, shutil, sys
dst, copies = sys.argv[1], int(sys.argv[2])
for s in sorted(glob.glob("shards/*.tar")):
    base = os.path.basename(s)[:-4]
    for c in range(copies):
        t = os.path.join(dst, f"{base}-c{c:05}.tar")
        try:
            os.link(s, t)
        except OSError:
            shutil.copy(s, t)
print(len(os.listdir(dst)), "shards")
PY
gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)
torch_version=$("$py" -c 'import torch; print(torch.__version__)' 2>/dev/null)

# 2. Agreement first (it is the check that decides the exit code): Lite0 in fp32 without
# TF32, at the full batch size, over at least 9 full batches: 10 batches of rows need
# 10 x BATCH / 8 images, and a kit shard keeps about 11 of its 16.5 after the filter.
agree=$work/agree
agree_n=$(( (10 * batch / 8 + 10) / 11 + 1 ))
mapfile -t agree_shards < <(ls "$work"/shards/*.tar | head -"$agree_n")
if BGSTREAM_LOG=error step agree-run 180 "$bgstream" --shards "${agree_shards[@]}" --model "$work/models/efficientnet-lite0.pt" \
  --variants "$variants" --device "$device" --precision fp32 --batch-size "$batch" --no-progress \
  --out "$agree/out" --dump-inputs "$agree/in" --dump-logits "$agree/logits"; then
  step agree-check 180 "$py" agree_logits.py --logits "$agree/logits/efficientnet-lite0" --inputs "$agree/in" \
    --model "$work/models/efficientnet-lite0.pt" --batch-size "$batch" --device "$device" --min-batches 9
fi
agreement=$(head -1 "$work/logs/agree-check.log" 2>/dev/null || echo "  not run (agree-run failed)")
[ $has_gpu = 1 ] || agreement="$agreement (TF32 detector: no device)"

# 3. Per model x precision: bgstream bench (forward, then end to end for E2E_SECONDS).
declare -A fwd e2e ratio win util_of peak_of short
rows=()
bench() { # ROW MODEL_FILE PRECISION
  local row=$1 file=$2 prec=$3
  dmon_start "$row"
  # Quiet: the hard-linked copies share their keys, which a run warns about.
  BGSTREAM_LOG=error OK_EXIT=4 step "bench-$row" $((seconds + 150)) "$bgstream" bench --shards "$work/shards/*.tar" --model "$file" \
    --variants "$variants" --device "$device" --precision "$prec" --batch-size "$batch" \
    --workers "$workers" --e2e-seconds "$seconds" --min-seconds "$min_seconds" \
    --out "$work/bench-$row" --summary-json "$work/bench-$row.json"
  local rc=$?
  dmon_stop "$row"
  rows+=("$row")
  util_of[$row]=$util peak_of[$row]=$peak
  # Exit 4 (a measurement too short) still has figures; the note says so.
  if [ $rc -ne 0 ] && [ $rc -ne 4 ]; then fwd[$row]=failed; return; fi
  if [ $rc -eq 4 ]; then short[$row]="TOO SHORT (see bench-$row.log)"; fi
  read -r fwd[$row] e2e[$row] ratio[$row] win[$row] < <("$py" - "$work/bench-$row.json" <<'PY'
import json, sys
r = {x["mode"]: x for x in json.load(open(sys.argv[1]))}
f, e = r["forward"], r["end_to_end"]
print(f"{f['rate']:.1f} {e['rate']:.1f} {e['rate'] / f['rate']:.2f} {e['seconds']:.1f}")
PY
)
}
for prec in $precisions; do
  for m in $models; do
    [ -f "$work/models/$m.pt" ] || { echo "no models/$m.pt: skipped" >&2; continue; }
    bench "$m-$prec" "$work/models/$m.pt" "$prec"
  done
done

# 4. The careful Python baseline on the target configuration (ResNet-50, bf16 on a GPU).
base_model=resnet50 base_prec=bf16
[ "$device" = cpu ] && base_model=${models%% *} base_prec=fp32
pyrate=-
if step "python-$base_model-$base_prec" $((seconds + 120)) "$py" python_baseline.py --shards "$work/shards/*.tar" \
  --model "$work/models/$base_model.pt" --out "$work/py" --workers "$workers" --batch-size "$batch" \
  --device "$device" --precision "$base_prec" --seconds "$seconds"; then
  pyrate=$(tail -1 "$work/logs/python-$base_model-$base_prec.log" | "$py" -c \
    'import json, sys; print(round(json.load(sys.stdin)["window_variant_images_per_s"], 1))' 2>/dev/null || echo -)
fi

# 5. With time left: ResNet-50 frozen in bf16 (freezing helped ResNet-50 1.55x on an H200).
if [ $has_gpu = 1 ] && [ "$(left)" -gt $((seconds + 90)) ]; then
  if step freeze-resnet50 120 "$py" freeze_model.py "$work/models/resnet50.pt" --precision bf16 --device cuda; then
    bench resnet50-frozen-bf16 "$work/models/resnet50-frozen-bf16.pt" bf16
  fi
else
  notes+=("resnet50 frozen bf16: $([ $has_gpu = 1 ] && echo "skipped, under $((seconds + 90)) s left" || echo "no device")")
fi

# 6. One table.
{
  echo "bgstream GPU check: ${gpu:-no device} (torch ${torch_version:-?}), device $device, batch $batch, 8 variants,"
  echo "  $workers CPU workers of $cores cores, end to end stopped after ${seconds}s, $(ls "$work/shards" | wc -l) shards of the 66 real JPEGs, $(( $(date +%s) - began ))s of ${budget}s"
  printf '%-26s %12s %12s %8s %8s %8s %10s  %s\n' config forward_img/s e2e_vi/s e2e/fwd window_s sm_util peak_mem note
  for r in "${rows[@]}"; do
    printf '%-26s %12s %12s %8s %8s %8s %10s  %s\n' "$r" "${fwd[$r]:--}" "${e2e[$r]:--}" "${ratio[$r]:--}" \
      "${win[$r]:--}" "${util_of[$r]:--}" "${peak_of[$r]:--}" "${short[$r]:-}"
  done
  b=$base_model-$base_prec
  vs=-
  [[ $pyrate =~ ^[0-9.]+$ && ${e2e[$b]:-} =~ ^[0-9.]+$ ]] && vs=$(awk -v a="${e2e[$b]}" -v p="$pyrate" 'BEGIN { printf "%.2f", a / p }')
  echo "careful PyTorch baseline, $b: $pyrate variant-images/s; bgstream / Python: $vs"
  echo "targets (not results): $b end to end >= 0.90 x forward (now ${ratio[$b]:--}), >= 2x the Python baseline (now $vs)"
  echo "agreement, Lite0 fp32 (TF32 off) vs PyTorch on the same frames:"
  echo "$agreement"
  for n in "${notes[@]}"; do echo "note: $n"; done
  if [ ${#failed[@]} -eq 0 ]; then echo "checks failed: none"; else echo "checks failed: ${failed[*]} (logs.tar.gz)"; fi
} | tee "$out/summary.txt"
[ ${#failed[@]} -eq 0 ]

#!/usr/bin/env bash
# One node, all its GPUs: torchrun starts one bgstream per GPU with RANK / WORLD_SIZE /
# LOCAL_RANK set (--no-python runs a binary). Several nodes: the same line on each node with
# --nnodes N --node-rank K --master-addr HOST (torchrun needs the rendezvous; bgstream itself
# never talks to the other ranks).
#
#   examples/slurm/torchrun.sh 'shards/imagenet-val-*.tar' results/ models/resnet50.pt ...
set -euo pipefail
shards=$1 out=$2
shift 2
models=()
for m in "$@"; do models+=(--model "$m"); done
# The launcher finds torch's lib/ (the checkout's venv, else python3's torch), so this also
# works with the binary copied to a machine that did not build it.
bgstream=${BGSTREAM:-$(dirname "$0")/../../scripts/bgstream}
gpus=$(nvidia-smi -L | wc -l)
# Each process decodes for its own GPU: its share of the cores, one left for its inference
# thread and writer.
workers=$(( $(nproc) / gpus - 1 ))
[ "$workers" -ge 1 ] || workers=1
torchrun --standalone --nproc-per-node "$gpus" --no-python \
  "$bgstream" --shards "$shards" "${models[@]}" --device cuda --workers "$workers" \
  --no-progress --out "$out"
"$bgstream" aggregate --in "$out"

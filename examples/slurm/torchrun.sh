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
gpus=$(nvidia-smi -L | wc -l)
torchrun --standalone --nproc-per-node "$gpus" --no-python \
  target/release/bgstream --shards "$shards" "${models[@]}" --device cuda --no-progress --out "$out"
target/release/bgstream aggregate --in "$out"

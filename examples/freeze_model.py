#!/usr/bin/env python3
"""Freeze an exported TorchScript model for inference: weights cast to one precision and
channels-last, folded into constants (torch.jit.freeze folds conv+BN), then, on CUDA,
optimize_for_inference (fused ops). On CPU that last pass swaps in MKL-DNN constants that
torch.jit.load cannot read back, so it is skipped there. Writes OUT.pt and its sidecar OUT.json, named NAME-frozen-PREC
unless --name is given, with "frozen_precision" set: bgstream runs it only with that
--precision.

Whether this pays depends on the model; on an H200 it took ResNet-50 bf16 from 15.5k to
24.1k images/s but halved MobileNetV3 — measure it (scripts/gpu-check.sh runs both).

    python examples/freeze_model.py models/resnet50.pt --precision bf16 --device cuda
"""
import argparse
import json
import os
import sys

import torch

from runtime_conv import make_runtime, mark

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def freeze(src, dst, precision, device, name=None):
    with open(os.path.splitext(src)[0] + ".json") as f:
        meta = json.load(f)
    size = meta["input_size"]
    dtype = DTYPES[precision]
    m = torch.jit.load(src, map_location=device).eval()
    m = m.to(device=device, dtype=dtype).to(memory_format=torch.channels_last)
    with torch.no_grad():
        frozen = torch.jit.freeze(m)
        if torch.device(device).type == "cuda":
            frozen = torch.jit.optimize_for_inference(frozen)
    # Freezing keeps the nodes it is given; a model exported before runtime_conv.py still
    # has baked flags, rewritten here.
    mark(meta, make_runtime(frozen))
    frozen.save(dst + ".tmp")
    # Load it back and run it once: a module that cannot be read or take this input fails
    # here, not in bgstream.
    with torch.no_grad():
        x = torch.zeros(2, 3, size, size, device=device, dtype=dtype).to(memory_format=torch.channels_last)
        out = torch.jit.load(dst + ".tmp", map_location=device)(x)
    assert tuple(out.shape) == (2, meta["num_classes"]), out.shape
    meta["name"] = name or f"{meta['name']}-frozen-{precision}"
    meta["frozen_precision"] = precision
    meta["frozen_device"] = torch.device(device).type
    meta["channels_last"] = True
    os.replace(dst + ".tmp", dst)
    with open(os.path.splitext(dst)[0] + ".json", "w") as f:
        json.dump(meta, f, indent=2)
        f.write("\n")
    print(f"froze {src} -> {dst} ({precision}, {device})", file=sys.stderr)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", help="an exported NAME.pt with its NAME.json beside it")
    ap.add_argument("--precision", choices=sorted(DTYPES), default="bf16")
    ap.add_argument("--device", default="cuda", help="cuda or cpu: frozen constants live there")
    ap.add_argument("--out", help="output .pt (default: beside the input, NAME-frozen-PREC.pt)")
    ap.add_argument("--name", help="model name in the sidecar (default NAME-frozen-PREC)")
    args = ap.parse_args()
    base = os.path.splitext(os.path.basename(args.model))[0]
    out = args.out or os.path.join(os.path.dirname(args.model), f"{base}-frozen-{args.precision}.pt")
    freeze(args.model, out, args.precision, args.device, args.name)


if __name__ == "__main__":
    main()

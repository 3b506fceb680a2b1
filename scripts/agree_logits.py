#!/usr/bin/env python3
"""Agreement of bgstream's logits with PyTorch's on the very same input batches.

bgstream run with --dump-inputs IN --dump-logits LOG writes every batched frame and every
batch's logits; this loads the TorchScript model in PyTorch, rebuilds each batch from the
frames (the full batch shape, as bgstream runs it), and compares:

  * fp32 with TF32 off (cuDNN and matmul): max |logit difference| <= --tolerance over every
    row of at least --min-batches full batches, and top-1 equal on every row;
  * the TF32 detector (CUDA only): the same batches with TF32 forced on. If PyTorch's TF32
    logits differ from its fp32 ones by far more than bgstream's differ from fp32, bgstream
    did not run TF32; if bgstream sits closer to TF32 than to fp32, it did (FAIL); if TF32
    changes nothing measurable, the script says it cannot tell.

    python agree_logits.py --logits LOG/MODEL --inputs IN --model M.pt --batch-size 256 \\
        [--device cuda] [--tolerance 1e-3] [--min-batches 9]

Prints one JSON line (the figures) after a readable summary; exits 1 when a check fails.
"""
import argparse
import glob
import json
import os
import sys

import numpy as np
import torch


def batches(logdir):
    for index in sorted(glob.glob(os.path.join(logdir, "*.json"))):
        meta = json.load(open(index))
        raw = np.fromfile(index[:-5] + ".f32", dtype="<f4")
        yield meta, raw.reshape(meta["rows"], meta["classes"])


def frames(inputs, meta, size, batch):
    x = np.zeros((batch, size, size, 3), dtype=np.uint8)
    for i, name in enumerate(meta["frames"]):
        x[i] = np.fromfile(os.path.join(inputs, name), dtype=np.uint8).reshape(size, size, 3)
    return x


def set_tf32(on):
    torch.backends.cudnn.allow_tf32 = on
    torch.backends.cuda.matmul.allow_tf32 = on


def forward(model, x, scale, bias, device):
    t = torch.from_numpy(x).to(device).permute(0, 3, 1, 2)
    # bgstream's normalisation: x * scale + bias in f32, channels-last memory.
    t = torch.addcmul(bias, t.float(), scale).contiguous(memory_format=torch.channels_last)
    return model(t).float().cpu().numpy()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--logits", required=True, help="bgstream's --dump-logits folder of one model")
    ap.add_argument("--inputs", required=True, help="bgstream's --dump-inputs folder")
    ap.add_argument("--model", required=True)
    ap.add_argument("--batch-size", type=int, required=True)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--tolerance", type=float, default=1e-3)
    ap.add_argument("--min-batches", type=int, default=9)
    args = ap.parse_args()
    torch.set_grad_enabled(False)
    torch.backends.cudnn.benchmark = False
    side = json.load(open(os.path.splitext(args.model)[0] + ".json"))
    size = side["input_size"]
    model = torch.jit.load(args.model, map_location=args.device).eval()
    mean = torch.tensor(side["mean"], device=args.device).view(1, 3, 1, 1)
    std = torch.tensor(side["std"], device=args.device).view(1, 3, 1, 1)
    scale, bias = 1.0 / (255.0 * std), -mean / std
    cuda = args.device.startswith("cuda")
    full = rows = top1_diff = 0
    d_fp32 = d_tf32_ours = d_tf32_torch = 0.0
    for meta, ours in batches(args.logits):
        x = frames(args.inputs, meta, size, args.batch_size)
        n = meta["rows"]
        full += n == args.batch_size
        rows += n
        set_tf32(False)
        ref = forward(model, x, scale, bias, args.device)[:n]
        d_fp32 = max(d_fp32, float(np.abs(ours - ref).max()))
        top1_diff += int((ours.argmax(1) != ref.argmax(1)).sum())
        if cuda:
            set_tf32(True)
            tf32 = forward(model, x, scale, bias, args.device)[:n]
            d_tf32_ours = max(d_tf32_ours, float(np.abs(ours - tf32).max()))
            d_tf32_torch = max(d_tf32_torch, float(np.abs(ref - tf32).max()))
    set_tf32(False)
    problems = []
    if full < args.min_batches:
        problems.append(f"{full} full batches compared, fewer than {args.min_batches}")
    if d_fp32 > args.tolerance:
        problems.append(f"max |logit difference| {d_fp32:.2e} > {args.tolerance:g}")
    if top1_diff:
        problems.append(f"top-1 differs on {top1_diff} of {rows} rows")
    if not cuda:
        tf32 = "not applicable on CPU"
    elif d_tf32_torch <= 10 * max(d_fp32, 1e-7):
        tf32 = f"cannot tell: TF32 moves PyTorch's logits by {d_tf32_torch:.2e}, no more than ours differ"
    elif d_tf32_ours < d_fp32:
        tf32 = "FAIL: bgstream's fp32 logits sit closer to TF32 than to fp32"
        problems.append("bgstream's fp32 ran as TF32")
    else:
        tf32 = f"TF32 off confirmed (TF32 would move logits by {d_tf32_torch:.2e}; ours differ by {d_fp32:.2e})"
    print(f"  {full} full batches, {rows} rows: max |Δ logit| {d_fp32:.2e} (<= {args.tolerance:g}), "
          f"top-1 differs on {top1_diff}; TF32 detector: {tf32}; "
          + ("pass" if not problems else "FAIL: " + "; ".join(problems)))
    print(json.dumps({"full_batches": full, "rows": rows, "max_abs_logit_diff": d_fp32, "top1_differs": top1_diff,
                      "tf32_shift_torch": d_tf32_torch, "ours_vs_tf32": d_tf32_ours, "tf32": tf32,
                      "problems": problems}))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

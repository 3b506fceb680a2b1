#!/usr/bin/env python3
"""The same experiment as `bgstream`, done the way a researcher would in PyTorch: a
DataLoader whose Pillow workers read the tar shards, decode, resize + centre-crop and build
the variants with numpy; the model runs in the main process; predictions go to Parquet with
pyarrow. Used by benches/e2e.sh to compare end-to-end throughput in the same run.

    python benches/python_baseline.py --shards 'shards/*.tar' --model models/resnet18.pt \\
        --out py-out --workers 2 --batch-size 64 [--device cpu|cuda] [--precision fp32|bf16]

Prints one JSON line: images, variant-images, seconds, images/s, variant-images/s. Timed
from the first batch requested (worker start-up included, model warm-up not) to the last
forward read back; writing the Parquet file comes after. `--seconds` stops early.
Variants: original, bg_only, fg_white, fg_gauss, fg_uniform, fg_color green/yellow/grey
(fg_texture is left out: a researcher would need to ship texture files to the workers).
"""
import argparse
import glob
import io
import json
import math
import os
import sys
import tarfile
import time

import numpy as np
import torch
from PIL import Image

VARIANTS = ["original", "bg_only", "fg_white", "fg_gauss", "fg_uniform", "fg_color:green", "fg_color:yellow", "fg_color:grey"]
COLOURS = {"fg_color:green": (0, 255, 0), "fg_color:yellow": (255, 255, 0), "fg_color:grey": (128, 128, 128)}
FILTERS = {"bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR, "nearest": Image.NEAREST}


def samples(path):
    """WebDataset grouping: consecutive members sharing a key."""
    current, key = {}, None
    with tarfile.open(path) as t:
        for m in t:
            if not m.isfile():
                continue
            k, _, ext = m.name.partition(".")
            if k != key and current:
                yield key, current
                current = {}
            key = k
            current[ext.lower()] = t.extractfile(m).read()
    if current:
        yield key, current


class Shards(torch.utils.data.IterableDataset):
    def __init__(self, paths, meta, min_fg=0.05, max_fg=0.70):
        self.paths, self.meta, self.min_fg, self.max_fg = paths, meta, min_fg, max_fg

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        paths = self.paths if info is None else self.paths[info.id :: info.num_workers]
        size, pct = self.meta["input_size"], self.meta["crop_pct"]
        short = math.floor(size / pct)  # timm's eval transform
        for path in paths:
            for key, m in samples(path):
                ann = json.loads(m["json"])
                label = int(m["cls"]) if "cls" in m else ann["label"]
                img = Image.open(io.BytesIO(m.get("jpg") or m.get("jpeg") or m["png"])).convert("RGB")
                w, h = img.size
                mask_full = np.zeros((h, w), dtype=bool)
                for x0, y0, x1, y1 in ann["boxes"]:
                    mask_full[int(y0) : int(y1), int(x0) : int(x1)] = True
                fg = mask_full.mean()
                if fg < self.min_fg or fg > self.max_fg:
                    continue
                rw, rh = (short, int(short * h / w)) if w <= h else (int(short * w / h), short)
                cx, cy = int(round((rw - size) / 2)), int(round((rh - size) / 2))
                crop = np.asarray(img.resize((rw, rh), FILTERS[self.meta["interpolation"]]).crop((cx, cy, cx + size, cy + size)))
                mask = np.asarray(Image.fromarray(mask_full).resize((rw, rh), Image.NEAREST).crop((cx, cy, cx + size, cy + size)))[..., None]
                rng = np.random.default_rng(abs(hash(key)) % (2**32))
                out = []
                for v in VARIANTS:
                    if v == "original":
                        out.append(crop)
                    elif v == "bg_only":
                        out.append(np.where(mask, np.uint8(255), crop))
                    elif v == "fg_white":
                        out.append(np.where(mask, crop, np.uint8(255)))
                    elif v == "fg_gauss":
                        out.append(np.where(mask, crop, np.clip(rng.normal(128, 64, crop.shape).round(), 0, 255).astype(np.uint8)))
                    elif v == "fg_uniform":
                        out.append(np.where(mask, crop, rng.integers(0, 256, crop.shape, dtype=np.uint8)))
                    else:
                        out.append(np.where(mask, crop, np.array(COLOURS[v], dtype=np.uint8)))
                yield os.path.basename(path), key, label, torch.from_numpy(np.stack(out))


def collate(items):
    shards, keys, labels, pixels = zip(*items)
    return list(shards), list(keys), torch.tensor(labels), torch.stack(pixels)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shards", required=True)
    ap.add_argument("--model", action="append", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--workers", type=int, default=os.cpu_count())
    ap.add_argument("--batch-size", type=int, default=64, help="variant-images per forward pass")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    ap.add_argument("--cudnn-benchmark", default="auto", choices=["auto", "on", "off"],
                    help="as bgstream's: auto = off for fp32, on for bf16")
    ap.add_argument("--allow-tf32", action="store_true", help="as bgstream's (fp32 only)")
    ap.add_argument("--seconds", type=float, default=0,
                    help="stop after this long (0: every shard); give more shards than that needs")
    args = ap.parse_args()
    torch.set_grad_enabled(False)
    # The same numerics as bgstream: fp32 without TF32 unless allowed, the same autotuning.
    torch.backends.cudnn.benchmark = {"auto": args.precision != "fp32", "on": True, "off": False}[args.cudnn_benchmark]
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = args.allow_tf32
    models = []
    for p in args.model:
        meta = json.load(open(os.path.splitext(p)[0] + ".json"))
        m = torch.jit.load(p, map_location=args.device).eval()
        dtype = torch.bfloat16 if args.precision == "bf16" else torch.float32
        m = m.to(dtype).to(memory_format=torch.channels_last)
        mean = torch.tensor(meta["mean"], device=args.device).view(1, 3, 1, 1)
        std = torch.tensor(meta["std"], device=args.device).view(1, 3, 1, 1)
        models.append((meta, m, mean, std, dtype))
    meta0 = models[0][0]
    if any(m[0]["input_size"] != meta0["input_size"] for m in models):
        raise SystemExit("this baseline handles one preprocessing; pass models of one input size")
    paths = sorted(glob.glob(args.shards))
    if len(paths) < args.workers:
        print(f"python_baseline: {len(paths)} shards for {args.workers} workers: "
              "DataLoader splits by shard, so some workers idle", file=sys.stderr)
    per_batch = max(1, args.batch_size // len(VARIANTS))
    # Warm-up outside the timing, at the full batch shape (as bgstream's forward figure).
    size = meta0["input_size"]
    probe = torch.zeros(per_batch * len(VARIANTS), 3, size, size, device=args.device)
    for meta, m, mean, std, dtype in models:
        for _ in range(3):
            m(probe.to(dtype).contiguous(memory_format=torch.channels_last)).float().softmax(-1).cpu()
    loader = torch.utils.data.DataLoader(
        Shards(paths, meta0), batch_size=per_batch, num_workers=args.workers, collate_fn=collate,
        pin_memory=args.device.startswith("cuda"), persistent_workers=False,
    )
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = {k: [] for k in ["shard", "key", "label", "variant", "model", "top5_classes", "top5_probs", "p_true", "top1_correct", "top5_correct"]}
    start, images = time.perf_counter(), 0
    for shards, keys, labels, pixels in loader:
        b, v = pixels.shape[:2]
        x = pixels.to(args.device, non_blocking=True).reshape(b * v, *pixels.shape[2:]).permute(0, 3, 1, 2)
        lab = labels.repeat_interleave(v).to(args.device)
        for meta, m, mean, std, dtype in models:
            xin = ((x.float() / 255 - mean) / std).to(dtype).contiguous(memory_format=torch.channels_last)
            probs = m(xin).float().softmax(-1)
            p5, c5 = probs.topk(5, -1)
            pt = probs.gather(1, lab[:, None])[:, 0]
            c5, p5, pt, labs = c5.cpu().tolist(), p5.cpu().tolist(), pt.cpu().tolist(), lab.cpu().tolist()
            for i in range(b * v):
                rows["shard"].append(shards[i // v]); rows["key"].append(keys[i // v]); rows["label"].append(labs[i])
                rows["variant"].append(VARIANTS[i % v]); rows["model"].append(meta["name"])
                rows["top5_classes"].append(c5[i]); rows["top5_probs"].append(p5[i]); rows["p_true"].append(pt[i])
                rows["top1_correct"].append(c5[i][0] == labs[i]); rows["top5_correct"].append(labs[i] in c5[i])
        images += b
        if args.seconds and time.perf_counter() - start >= args.seconds:
            break
    secs = time.perf_counter() - start
    os.makedirs(args.out, exist_ok=True)
    pq.write_table(pa.table(rows), os.path.join(args.out, "predictions.parquet"))
    print(json.dumps({"images": images, "variant_images": images * len(VARIANTS), "models": len(models),
                      "seconds": secs, "images_per_s": images / secs,
                      "variant_images_per_s": images * len(VARIANTS) / secs}))


if __name__ == "__main__":
    main()

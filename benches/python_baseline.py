#!/usr/bin/env python3
"""The same experiment as `bgstream`, done the way a researcher would in PyTorch: a
DataLoader whose Pillow workers read the tar shards, decode, resize + centre-crop and build
the variants with numpy; the model runs in the main process; predictions go to Parquet with
pyarrow. Used by benches/e2e.sh to compare end-to-end throughput in the same run.

    python benches/python_baseline.py --shards 'shards/*.tar' --model models/resnet18.pt \\
        --out py-out --workers 2 --batch-size 64 [--device cpu|cuda] [--precision fp32|bf16]

The careful way: DataLoader workers with prefetch, pinned batches uploaded without
blocking, results copied back asynchronously into pinned memory while the next batch
computes (one batch in flight, as bgstream), rows kept as arrays until one Parquet write.

Prints one JSON line: images, variant-images, seconds, images/s, variant-images/s over the
whole loop (worker start-up included, model warm-up not), and the window figures timed as
`bgstream bench` times its end-to-end window (first batch read back to the last).
`--seconds` stops at the first batch after that long.
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
    cuda = args.device.startswith("cuda")
    # The careful way: workers prefetch, batches arrive pinned and go up without blocking,
    # results come back asynchronously into pinned memory while the next batch computes,
    # and rows are kept as arrays (no per-row Python) until the one Parquet write.
    loader = torch.utils.data.DataLoader(
        Shards(paths, meta0), batch_size=per_batch, num_workers=args.workers, collate_fn=collate,
        pin_memory=cuda, persistent_workers=args.workers > 0, prefetch_factor=4 if args.workers > 0 else None,
    )
    import pyarrow as pa
    import pyarrow.parquet as pq

    kept = {k: [] for k in ["shard", "key", "label", "variant", "model", "top5_classes", "top5_probs", "p_true"]}

    def keep(pending):
        """Waits for a batch's results (already on their way to pinned memory) and stores them."""
        event, shards, keys, v, per_model = pending
        if event is not None:
            event.synchronize()
        for name, c5, p5, pt, lab in per_model:
            n = c5.shape[0]
            kept["shard"] += [shards[i // v] for i in range(n)]
            kept["key"] += [keys[i // v] for i in range(n)]
            kept["variant"] += [VARIANTS[i % v] for i in range(n)]
            kept["model"] += [name] * n
            kept["label"].append(lab.numpy().copy())
            kept["top5_classes"].append(c5.numpy().copy())
            kept["top5_probs"].append(p5.numpy().copy())
            kept["p_true"].append(pt.numpy().copy())

    def launch(shards, keys, labels, pixels):
        b, v = pixels.shape[:2]
        x = pixels.to(args.device, non_blocking=True).reshape(b * v, *pixels.shape[2:]).permute(0, 3, 1, 2)
        lab = labels.repeat_interleave(v).to(args.device, non_blocking=True)
        per_model = []
        for meta, m, mean, std, dtype in models:
            xin = ((x.float() / 255 - mean) / std).to(dtype).contiguous(memory_format=torch.channels_last)
            probs = m(xin).float().softmax(-1)
            p5, c5 = probs.topk(5, -1)
            pt = probs.gather(1, lab[:, None])[:, 0]
            host = [t.to("cpu", non_blocking=True) for t in (c5, p5, pt, lab)]
            per_model.append((meta["name"], *host))
        event = None
        if cuda:
            event = torch.cuda.Event()
            event.record()
        return event, shards, keys, v, per_model

    # Timed as bgstream bench times its end-to-end window: from the first batch read back
    # to the last, so worker start-up and the first batch's latency are outside both.
    start, pending, images, t0, counted = time.perf_counter(), None, 0, None, 0
    for shards, keys, labels, pixels in loader:
        nxt = launch(shards, keys, labels, pixels)
        if pending is not None:
            keep(pending)
            now = time.perf_counter()
            if t0 is None:
                t0 = now
            else:
                counted += len(pending[2])
        pending = nxt
        images += len(keys)
        if args.seconds and time.perf_counter() - start >= args.seconds:
            break
    if pending is not None:
        keep(pending)
        if t0 is not None:
            counted += len(pending[2])
    end = time.perf_counter()
    secs, window = end - start, (end - t0 if t0 is not None else 0.0)
    os.makedirs(args.out, exist_ok=True)
    table = {k: (np.concatenate(kept[k]).tolist() if k in ("label", "top5_classes", "top5_probs", "p_true") and kept[k] else kept[k])
             for k in kept}
    c5, lab = np.array(table["top5_classes"]).reshape(-1, 5), np.array(table["label"])
    table["top1_correct"] = (c5[:, 0] == lab).tolist() if len(lab) else []
    table["top5_correct"] = (c5 == lab[:, None]).any(1).tolist() if len(lab) else []
    pq.write_table(pa.table(table), os.path.join(args.out, "predictions.parquet"))
    v = len(VARIANTS)
    print(json.dumps({"images": images, "variant_images": images * v, "models": len(models),
                      "seconds": secs, "images_per_s": images / secs, "variant_images_per_s": images * v / secs,
                      "window_seconds": window, "window_variant_images": counted * v,
                      "window_variant_images_per_s": counted * v / window if window > 0 else 0.0}))


if __name__ == "__main__":
    main()

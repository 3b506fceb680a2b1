#!/usr/bin/env python3
"""The CPU stage done the way a Python researcher would, on one core, for the comparison
printed by `cargo bench --bench cpu_stage`.

Reads a JSON list of {"path", "key", "boxes"} on stdin; prints JSON with images/s for:
  per_variant   one dataset per variant (as experiment code is usually written): for each
                variant, Pillow opens and decodes the JPEG, numpy applies the variant at full
                resolution, Pillow resizes (bicubic) and centre-crops.
  decode_once   the optimised Python way: decode + resize + crop once, then every variant
                composed with numpy on the 224x224 crop.
"""
import json
import sys
import time

import numpy as np
from PIL import Image

SIZE, SHORT = 224, 256
VARIANTS = ["original", "bg_only", "fg_white", "fg_texture", "fg_gauss", "fg_uniform", "fg_color:green", "fg_color:grey"]
COLOURS = {"fg_color:green": (0, 255, 0), "fg_color:grey": (128, 128, 128)}


def resize_crop(img):
    w, h = img.size
    if w <= h:
        rw, rh = SHORT, int(SHORT * h / w)
    else:
        rw, rh = int(SHORT * w / h), SHORT
    cx, cy = int(round((rw - SIZE) / 2)), int(round((rh - SIZE) / 2))
    return img.resize((rw, rh), Image.BICUBIC).crop((cx, cy, cx + SIZE, cy + SIZE)), (w, h, rw, rh, cx, cy)


def box_mask(boxes, shape):
    m = np.zeros(shape, dtype=bool)
    for x0, y0, x1, y1 in boxes:
        m[int(y0):int(y1), int(x0):int(x1)] = True
    return m


def apply(variant, arr, mask, rng, texture):
    m = mask[..., None]
    if variant == "original":
        return arr
    if variant == "bg_only":
        return np.where(m, np.uint8(255), arr)
    if variant == "fg_white":
        return np.where(m, arr, np.uint8(255))
    if variant == "fg_texture":
        return np.where(m, arr, texture[: arr.shape[0], : arr.shape[1]])
    if variant == "fg_gauss":
        return np.where(m, arr, np.clip(np.round(rng.normal(128, 64, arr.shape)), 0, 255).astype(np.uint8))
    if variant == "fg_uniform":
        return np.where(m, arr, rng.integers(0, 256, arr.shape, dtype=np.uint8))
    return np.where(m, arr, np.array(COLOURS[variant], dtype=np.uint8))


def per_variant(items, texture_full):
    out = 0
    for v in VARIANTS:
        for it in items:
            rng = np.random.default_rng(hash((it["key"], v)) & 0xFFFFFFFF)
            arr = np.asarray(Image.open(it["path"]).convert("RGB"))
            mask = box_mask(it["boxes"], arr.shape[:2])
            tex = np.resize(texture_full, arr.shape) if v == "fg_texture" else None
            img, _ = resize_crop(Image.fromarray(apply(v, arr, mask, rng, tex)))
            out += int(np.asarray(img)[0, 0, 0])
    return out


def decode_once(items, texture_crop):
    out = 0
    for it in items:
        rng = np.random.default_rng(hash(it["key"]) & 0xFFFFFFFF)
        img, (w, h, rw, rh, cx, cy) = resize_crop(Image.open(it["path"]).convert("RGB"))
        arr = np.asarray(img)
        u = np.arange(SIZE)
        xs, ys = (u + cx + 0.5) * (w / rw), (u + cy + 0.5) * (h / rh)
        mask = np.zeros((SIZE, SIZE), dtype=bool)
        for x0, y0, x1, y1 in it["boxes"]:
            mask |= ((ys >= y0) & (ys < y1))[:, None] & ((xs >= x0) & (xs < x1))[None, :]
        for v in VARIANTS:
            out += int(apply(v, arr, mask, rng, texture_crop)[0, 0, 0])
    return out


def timed(fn, *args, min_seconds):
    n, start = 0, time.perf_counter()
    while True:
        fn(*args)
        n += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return n, elapsed


def main():
    items = json.load(sys.stdin)
    min_seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 3.0
    texture_full = np.random.default_rng(0).integers(0, 256, (512, 512, 3), dtype=np.uint8)
    texture_crop = texture_full[:SIZE, :SIZE]
    result = {"images": len(items), "variants": len(VARIANTS)}
    for name, fn, arg in (("per_variant", per_variant, texture_full), ("decode_once", decode_once, texture_crop)):
        reps, elapsed = timed(fn, items, arg, min_seconds=min_seconds)
        result[name] = reps * len(items) / elapsed
    print(json.dumps(result))


if __name__ == "__main__":
    main()

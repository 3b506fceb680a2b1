#!/usr/bin/env python3
"""Foreground masks, written and checked independently of bgstream (numpy, Pillow).

  make OUT SRC_IMAGES ANNOTATIONS.csv   real photos with masks in every input form bgstream
                                        takes: mask PNGs and polygons in a manifest, an
                                        ImageNet-9-style fg_mask/ folder of .npy files, and
                                        broken ones; writes OUT/cases.json
  check OUT DUMP PARQUET_DIR MODEL.json VARIANT,...
                                        every frame the run fed its model (--dump-inputs)
                                        against masks rebuilt here from the files, pixel for
                                        pixel, and the rows' status / fg_source / fg_fraction

Masks follow schemas/sample-annotation.schema.json: an output pixel is foreground when its
centre mapped back to the original image falls on a nonzero mask pixel or inside a polygon
(even-odd rule per polygon, union of polygons and mask).
"""
import glob
import json
import os
import re
import shutil
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from reference import mask_from_boxes, resize_geometry, tiled  # noqa: E402


def star(box, points=7, inner=0.45):
    """A concave star polygon inside box [x0, y0, x1, y1], as COCO's flat list."""
    x0, y0, x1, y1 = box
    cx, cy, rx, ry = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2, (y1 - y0) / 2
    out = []
    for i in range(points * 2):
        a = np.pi * i / points
        r = 1.0 if i % 2 == 0 else inner
        out += [round(cx + r * rx * np.sin(a), 3), round(cy - r * ry * np.cos(a), 3)]
    return out


def ellipse(w, h, box, extra=None):
    """A boolean (h, w) ellipse inscribed in box, plus a square blob at extra (x, y, side)."""
    x0, y0, x1, y1 = box
    yy, xx = np.mgrid[0:h, 0:w] + 0.5
    cx, cy, rx, ry = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2, (y1 - y0) / 2
    m = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1.0
    if extra:
        x, y, s = extra
        m[y:y + s, x:x + s] = True
    return m


def cmd_make(out, src, csv_path):
    from PIL import Image

    rows = {}
    with open(csv_path) as f:
        next(f)
        for line in f:
            idx, label, w, h, boxes = line.strip().split(",", 4)
            # ImageNet's inclusive numbers -> bgstream's exclusive boxes
            bx = [[float(v) for v in b.split()] for b in boxes.split(";")]
            rows[int(idx)] = (int(label), int(w), int(h), [[a, b, c + 1, d + 1] for a, b, c, d in bx])
    present = {int(n[15:23]) for n in os.listdir(src) if n.endswith(".JPEG")}
    ids = sorted(i for i in rows if i in present)[:18]
    images = os.path.join(out, "images")
    os.makedirs(images)
    samples, cases = [], {}

    def add(i, kind, **extra):
        label, w, h, boxes = rows[i]
        name = f"ILSVRC2012_val_{i:08d}.JPEG"
        shutil.copy(os.path.join(src, name), os.path.join(images, name))
        key = name.split(".")[0]
        s = {"path": name, "label": label, "boxes": boxes}
        s.update(extra)
        if s.get("boxes") is None:
            del s["boxes"]  # a polygon alone: shard writes its bounding box
        samples.append(s)
        case = {"kind": kind, "image": os.path.join(images, name), "boxes": boxes,
                "polygons": extra.get("polygons", [])}
        if "mask" in extra:
            case["mask"] = os.path.join(images, extra["mask"])
        cases[key] = case
        return key, label, w, h, boxes

    def png(name, array, mode="L"):
        Image.fromarray(array).convert(mode).save(os.path.join(images, name))
        return name

    # Mask PNGs: 8-bit 0/255, 1-bit, 8-bit value 1 with a blob outside the box.
    for n, i in enumerate(ids[0:3]):
        label, w, h, boxes = rows[i]
        m = ellipse(w, h, boxes[0], extra=(2, 3, 20) if n == 2 else None)
        arr = (m * (1 if n == 2 else 255)).astype(np.uint8)
        add(i, "mask", mask=png(f"m{i}.png", arr, mode="1" if n == 1 else "L"))
    # Polygons: a star; two polygons (star + a triangle in a corner); one reaching past
    # the image's right edge.
    for n, i in enumerate(ids[3:6]):
        label, w, h, boxes = rows[i]
        polys = [star(boxes[0])]
        if n == 1:
            polys.append([1.0, 1.0, 60.5, 4.25, 8.0, 50.0])
        if n == 2:
            polys = [[w * 0.3, h * 0.2, w + 40.0, h * 0.5, w * 0.3, h * 0.8, w * 0.5, h * 0.5]]
            add(i, "polygons", polygons=polys, boxes=None)
            continue
        add(i, "polygons", polygons=polys)
    # Mask PNG and polygon together: their union.
    i = ids[6]
    label, w, h, boxes = rows[i]
    add(i, "mask+polygons", mask=png(f"m{i}.png", (ellipse(w, h, boxes[0]) * 255).astype(np.uint8)),
        polygons=[[0.0, 0.0, 40.0, 0.0, 0.0, 30.0]])
    # Boxes only (only_fg / no_fg are no_mask rows).
    for i in ids[7:9]:
        add(i, "boxes")
    # Broken: a mask of the wrong size, a degenerate polygon, a colour mask PNG.
    i = ids[9]
    add(i, "bad_mask", mask=png(f"m{i}.png", np.full((10, 12), 255, np.uint8)))
    add(ids[10], "bad_polygon", polygons=[[0, 0, 10, 10, 20, 20]])
    i = ids[11]
    label, w, h, boxes = rows[i]
    add(i, "bad_mask", mask=png(f"m{i}.png", np.zeros((h, w, 3), np.uint8), mode="RGB"))
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump({"samples": samples}, f)

    # ImageNet-9 layout: original/val/<class>/<image>.JPEG + fg_mask/val/<class>/<image>.npy
    in9 = os.path.join(out, "in9")
    forms = [("00_dog", "bool"), ("00_dog", "uint8-hw3"), ("01_bird", "float-fortran"),
             ("01_bird", "broken")]
    for (cls, form), i in zip(forms, ids[12:16]):
        label, w, h, boxes = rows[i]
        name = f"ILSVRC2012_val_{i:08d}"
        for d in ("original", "fg_mask"):
            os.makedirs(os.path.join(in9, d, "val", cls), exist_ok=True)
        image = os.path.join(in9, "original", "val", cls, name + ".JPEG")
        shutil.copy(os.path.join(src, name + ".JPEG"), image)
        npy = os.path.join(in9, "fg_mask", "val", cls, name + ".npy")
        m = ellipse(w, h, boxes[0], extra=(w - 30, h - 25, 18))
        if form == "bool":
            np.save(npy, m)
        elif form == "uint8-hw3":
            a = np.zeros((h, w, 3), np.uint8)
            a[..., 1] = m * 7  # nonzero in one channel only
            np.save(npy, a)
        elif form == "float-fortran":
            np.save(npy, np.asfortranarray(m.astype(np.float64) * 0.5))
        else:
            with open(npy, "wb") as f:
                f.write(b"\x93NUMPY not really")
        key = f"{cls}/{name}"
        cases[key] = {"kind": "bad_mask" if form == "broken" else "npy", "image": image,
                      "npy": npy, "boxes": [], "polygons": [],
                      "label": ["00_dog", "01_bird"].index(cls)}
    # An image without a mask and a mask without an image: left out and listed.
    i = ids[16]
    shutil.copy(os.path.join(src, f"ILSVRC2012_val_{i:08d}.JPEG"),
                os.path.join(in9, "original", "val", "01_bird", f"ILSVRC2012_val_{i:08d}.JPEG"))
    np.save(os.path.join(in9, "fg_mask", "val", "00_dog", "n00000000_1.npy"), np.ones((4, 4), bool))
    with open(os.path.join(out, "cases.json"), "w") as f:
        json.dump(cases, f, indent=1)
    print(json.dumps({"manifest": len(samples), "in9": 4,
                      "unannotated": f"01_bird/ILSVRC2012_val_{i:08d}",
                      "missing": "00_dog/n00000000_1"}))
    return 0


def inside_polygons(polygons, xs, ys):
    """(len(ys), len(xs)) grid: inside any polygon by the even-odd crossing test."""
    X, Y = np.meshgrid(np.asarray(xs, float), np.asarray(ys, float))
    out = np.zeros(X.shape, bool)
    for flat in polygons:
        pts = np.asarray(flat, float).reshape(-1, 2)
        c = np.zeros(X.shape, bool)
        for i in range(len(pts)):
            (xi, yi), (xj, yj) = pts[i], pts[i - 1]
            cond = (yi > Y) != (yj > Y)
            with np.errstate(divide="ignore", invalid="ignore"):
                xint = (xj - xi) * (Y - yi) / (yj - yi) + xi
            c ^= cond & (X < xint)
        out |= c
    return out


def source_bitmap(case):
    """The (h, w) nonzero-mask of the case's PNG or .npy, or None."""
    from PIL import Image

    if case.get("mask"):
        return np.asarray(Image.open(case["mask"])) != 0
    if case.get("npy"):
        a = np.load(case["npy"])
        return (a != 0).any(axis=2) if a.ndim == 3 else a != 0
    return None


def mask_at(case, bitmap, w, h, xs, ys):
    """Foreground at the points xs x ys (original pixel coordinates)."""
    m = np.zeros((len(ys), len(xs)), bool)
    if bitmap is not None:
        cols = np.clip(np.floor(xs).astype(int), 0, w - 1)
        rows = np.clip(np.floor(ys).astype(int), 0, h - 1)
        m |= bitmap[rows][:, cols]
    if case["polygons"]:
        m |= inside_polygons(case["polygons"], xs, ys)
    return m


def cmd_check(out, dump, parquet_dir, model_json, variants):
    import duckdb
    from PIL import Image

    with open(os.path.join(out, "cases.json")) as f:
        cases = json.load(f)
    with open(model_json) as f:
        meta = json.load(f)
    size = meta["input_size"]
    variants = variants.split(",")
    con = duckdb.connect()
    con.execute(f"create view rows as select * from read_parquet('{parquet_dir}/*.parquet')")
    rows = con.execute("select key, variant, status, fg_source, fg_fraction, background "
                       "from rows where model = ?", [meta["name"]]).fetchall()
    by_key = {}
    for key, variant, status, src, fg, bg in rows:
        by_key.setdefault(key, {})[variant] = (status, src, fg, bg)
    report = {"frames_equal": 0, "frames_differ": [], "rows": [], "no_mask_rows": 0,
              "bad": {}, "fg_pixels": {}}
    failed = False
    crops, masks = {}, {}

    def key_dir(key):
        # bgstream's file stem: the key itself when it is a safe name, else its safe
        # characters, "~" and a hash of the key (item::file_stem).
        safe = re.sub(r"[^A-Za-z0-9._-]", "_", key)
        if safe == key and key not in ("", ".", ".."):
            return os.path.join(dump, key)
        found = glob.glob(os.path.join(glob.escape(dump), glob.escape(safe[:120]) + "~*"))
        return found[0] if len(found) == 1 else os.path.join(dump, safe)

    def load(key, slot):
        p = os.path.join(key_dir(key), f"{slot:02d}-{size}px.rgb")
        return np.fromfile(p, np.uint8).reshape(size, size, 3) if os.path.exists(p) else None

    for key, case in cases.items():
        got = by_key.get(key)
        if got is None or set(got) != set(variants):
            failed = True
            report["rows"].append({"key": key, "variants": sorted(got or [])})
            continue
        statuses = {s for s, _, _, _ in got.values()}
        if case["kind"] in ("bad_mask", "bad_polygon"):
            report["bad"][key] = sorted(statuses)
            if statuses != {case["kind"]}:
                failed = True
            continue
        img = Image.open(case["image"])
        w, h = img.size
        bitmap = source_bitmap(case)
        rw, rh, cx, cy = resize_geometry(w, h, size, meta["crop_pct"])
        xs = (np.arange(size) + cx + 0.5) * (w / rw)
        ys = (np.arange(size) + cy + 0.5) * (h / rh)
        if case["kind"] == "boxes":
            m, want_src = mask_from_boxes(case["boxes"], w, h, rw, rh, cx, cy, size), "boxes"
            area = None
        else:
            m, want_src = mask_at(case, bitmap, w, h, xs, ys), "mask"
            full = mask_at(case, bitmap, w, h, np.arange(w) + 0.5, np.arange(h) + 0.5)
            area = np.float32(full.sum() / (w * h))
        for v, (status, src, fg, _) in got.items():
            want_status = "no_mask" if want_src == "boxes" and v in ("only_fg", "no_fg") else "ok"
            report["no_mask_rows"] += want_status == "no_mask"
            if status != want_status or src != want_src or (area is not None and np.float32(fg) != area):
                failed = True
                report["rows"].append({"key": key, "variant": v, "status": status, "fg_source": src,
                                       "fg_fraction": fg, "want_fraction": None if area is None else float(area)})
        report["fg_pixels"][key] = int(m.sum())
        crops[key] = load(key, variants.index("original"))
        masks[key] = m
    for key, m in masks.items():
        crop = crops[key]
        black, white = np.uint8(0), np.uint8(255)
        expected = {
            "bg_only": np.where(m[..., None], white, crop),
            "bg_only_black": np.where(m[..., None], black, crop),
            "no_fg": np.where(m[..., None], black, crop),
            "only_fg": np.where(m[..., None], crop, black),
            "fg_white": np.where(m[..., None], crop, white),
            "fg_color:green": np.where(m[..., None], crop, np.array([0, 255, 0], np.uint8)),
            "bg_tiled": tiled(crop, m),
        }
        for slot, v in enumerate(variants):
            frame = load(key, slot)
            if v.startswith("mixed_"):
                bg = by_key[key][v][3]
                donor = bg.split(":", 1)[1]
                expected[v] = np.where(m[..., None], crop, tiled(crops[donor], masks[donor]))
            if v == "original" or v not in expected:
                continue
            if cases[key]["kind"] == "boxes" and v in ("only_fg", "no_fg"):
                if frame is not None:
                    failed = True
                    report["frames_differ"].append({"key": key, "variant": v, "why": "fed a no_mask slot"})
                continue
            bad = None if frame is None else np.argwhere(np.any(frame != expected[v], axis=-1))
            if frame is None or len(bad):
                failed = True
                report["frames_differ"].append({"key": key, "variant": v,
                                                "pixels": None if bad is None else int(len(bad)),
                                                "first": None if bad is None else bad[:3].tolist()})
            else:
                report["frames_equal"] += 1
    print(json.dumps(report))
    return 1 if failed else 0


def main(argv):
    cmds = {"make": cmd_make, "check": cmd_check}
    if len(argv) < 2 or argv[1] not in cmds:
        print(__doc__, file=sys.stderr)
        return 2
    return cmds[argv[1]](*argv[2:])


if __name__ == "__main__":
    sys.exit(main(sys.argv))

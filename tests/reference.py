#!/usr/bin/env python3
"""Independent Python references for bgstream's Rust tests (Pillow, numpy, torch, DuckDB,
Polars). Each subcommand prints a JSON report on stdout and exits 1 when a check fails, so
the Rust test shows exactly what differed.

  logits MODEL.pt OUT.json IMAGE...    Pillow preprocessing (torchvision rules) + TorchScript
  logits-raw MODEL.pt SIZE RAW...      the model on pixels Rust prepared (uint8 HWC files)
  variants WORKDIR                     masks, fills and resize vs Rust's files in WORKDIR
  bg-model OUTDIR                      a TorchScript model that reads only the background
  clients PARQUET_DIR SUMMARY.json     DuckDB and Polars read the output, numbers must match
  make-images DIR                      CMYK / progressive / 16-bit / palette / 1x1 test images
  recast FILE.parquet OUT_DIR           the file as Polars and pyarrow store it (large, view strings)
  aggregate-clients DIR SUMMARY.parquet BASELINE
                                       examples/aggregate.sql and aggregate_polars.py vs bgstream
"""
import hashlib
import json
import math
import os
import sys

import numpy as np


def sidecar(model_path):
    with open(os.path.splitext(model_path)[0] + ".json") as f:
        return json.load(f)


PIL_FILTER = {"bicubic": 3, "bilinear": 2, "nearest": 0}


def resize_geometry(w, h, input_size, crop_pct):
    """torchvision Resize(int) + CenterCrop, written out independently of the Rust code."""
    short_target = math.floor(input_size / crop_pct)  # timm's eval transform
    if w <= h:
        rw, rh = short_target, int(short_target * h / w)
    else:
        rw, rh = int(short_target * w / h), short_target
    cx = int(round((rw - input_size) / 2.0))  # Python's round: half to even, as torchvision
    cy = int(round((rh - input_size) / 2.0))
    return rw, rh, cx, cy


def pillow_crop(img, meta):
    from PIL import Image

    img = img.convert("RGB")
    w, h = img.size
    s = meta["input_size"]
    rw, rh, cx, cy = resize_geometry(w, h, s, meta["crop_pct"])
    r = img.resize((rw, rh), PIL_FILTER[meta["interpolation"]])
    return np.asarray(r.crop((cx, cy, cx + s, cy + s)), dtype=np.uint8)


def run_model(model_path, batch_hwc_u8):
    import torch

    meta = sidecar(model_path)
    m = torch.jit.load(model_path).eval()
    x = torch.from_numpy(np.stack(batch_hwc_u8)).float().div(255.0)
    mean = torch.tensor(meta["mean"]).view(1, 1, 1, 3)
    std = torch.tensor(meta["std"]).view(1, 1, 1, 3)
    x = ((x - mean) / std).permute(0, 3, 1, 2).contiguous()
    with torch.no_grad():
        return m(x).numpy()


def cmd_logits(model_path, out, *images):
    from PIL import Image

    meta = sidecar(model_path)
    crops = [pillow_crop(Image.open(p), meta) for p in images]
    logits = run_model(model_path, crops)
    with open(out, "w") as f:
        json.dump({"images": list(images), "logits": logits.tolist()}, f)
    print(json.dumps({"images": len(images), "out": out}))
    return 0


def cmd_logits_raw(model_path, size, *raws):
    size = int(size)
    crops = [np.fromfile(p, dtype=np.uint8).reshape(size, size, 3) for p in raws]
    print(json.dumps({"logits": run_model(model_path, crops).tolist()}))
    return 0


def mask_from_boxes(boxes, w, h, rw, rh, cx, cy, size):
    """Foreground = output pixels whose centre, mapped back to the original image, lies in
    [x0, x1) x [y0, y1) of some box (schemas/sample-annotation.schema.json)."""
    u = np.arange(size)
    xs = (u + cx + 0.5) * (w / rw)
    ys = (u + cy + 0.5) * (h / rh)
    mask = np.zeros((size, size), dtype=bool)
    for x0, y0, x1, y1 in boxes:
        mx = (xs >= x0) & (xs < x1)
        my = (ys >= y0) & (ys < y1)
        mask |= my[:, None] & mx[None, :]
    return mask


def largest_free_rect(mask):
    """Brute force over row spans: for rows y0..y1 the columns free in all of them form
    runs; each run is a candidate. Largest area, ties to the smallest (y0, x0, y1, x1)."""
    size = mask.shape[0]
    free = ~mask
    best = None
    for y0 in range(size):
        cols = np.ones(size, dtype=bool)
        for y1 in range(y0 + 1, size + 1):
            cols &= free[y1 - 1]
            if not cols.any():
                break
            padded = np.concatenate(([False], cols, [False])).astype(np.int8)
            edges = np.flatnonzero(np.diff(padded))
            for x0, x1 in zip(edges[::2], edges[1::2]):
                key = (-(x1 - x0) * (y1 - y0), y0, int(x0), y1, int(x1))
                if best is None or key < best:
                    best = key
    if best is None:
        return None
    _, y0, x0, y1, x1 = best
    return x0, y0, x1, y1


def tiled(crop, mask):
    rect = largest_free_rect(mask)
    if rect is None:
        return np.zeros_like(crop)
    x0, y0, x1, y1 = rect
    size = crop.shape[0]
    ys = y0 + (np.arange(size) - y0) % (y1 - y0)
    xs = x0 + (np.arange(size) - x0) % (x1 - x0)
    return np.where(mask[..., None], crop[ys][:, xs], crop)


COLOURS = {"green": (0, 255, 0), "yellow": (255, 255, 0), "grey": (128, 128, 128)}


def cmd_variants(workdir):
    """WORKDIR/manifest.json lists images Rust processed: its crop, its variants, the texture
    it used. The reference rebuilds crop (Pillow), mask and every deterministic variant."""
    from PIL import Image

    with open(os.path.join(workdir, "manifest.json")) as f:
        manifest = json.load(f)
    report = {"images": 0, "mask_mismatch": [], "fill_mismatch": [], "resize": []}
    failed = False
    tiled_of = {}
    for item in manifest["items"]:
        size = item["size"]
        meta = {"input_size": size, "crop_pct": item["crop_pct"], "interpolation": item["interpolation"]}
        img = Image.open(item["image"])
        w, h = img.size
        rw, rh, cx, cy = resize_geometry(w, h, size, meta["crop_pct"])
        if [rw, rh, cx, cy] != item["geometry"]:
            report["fill_mismatch"].append({"key": item["key"], "geometry": [rw, rh, cx, cy], "rust": item["geometry"]})
            failed = True
        ref_crop = pillow_crop(img, meta).astype(np.int16)
        load = lambda name: np.fromfile(os.path.join(workdir, f"{item['key']}.{name}.raw"), dtype=np.uint8).reshape(size, size, 3)
        crop = load("original")
        diff = np.abs(crop.astype(np.int16) - ref_crop)
        report["resize"].append({"key": item["key"], "mean_abs": float(diff.mean()), "max_abs": int(diff.max()), "p99": float(np.percentile(diff, 99))})
        mask = mask_from_boxes(item["boxes"], w, h, rw, rh, cx, cy, size)
        texture = None
        if item.get("texture"):
            texture = np.fromfile(item["texture"], dtype=np.uint8).reshape(size, size, 3)
        tiled_of[item["key"]] = tiled(crop, mask)
        expected = {
            "bg_only": np.where(mask[..., None], np.uint8(255), crop),
            "bg_only_black": np.where(mask[..., None], np.uint8(0), crop),
            "bg_tiled": tiled_of[item["key"]],
            "fg_white": np.where(mask[..., None], crop, np.uint8(255)),
        }
        for name, rgb in COLOURS.items():
            expected[f"fg_color:{name}"] = np.where(mask[..., None], crop, np.array(rgb, dtype=np.uint8))
        if texture is not None:
            expected["fg_texture"] = np.where(mask[..., None], crop, texture)
        for name, exp in expected.items():
            got = load(name.replace(":", "_"))
            bad = np.argwhere(np.any(got != exp, axis=-1))
            if len(bad):
                failed = True
                report["fill_mismatch"].append({"key": item["key"], "variant": name, "pixels": int(len(bad)), "first": bad[:3].tolist()})
        # Noise variants: foreground exact, background statistically right.
        for name in ("fg_gauss", "fg_uniform"):
            got = load(name)
            if not np.array_equal(got[mask], crop[mask]):
                failed = True
                report["mask_mismatch"].append({"key": item["key"], "variant": name})
        report["images"] += 1
        item["_mask"], item["_crop"] = mask, crop
    # Mixed: this image's foreground on the donor's bg_tiled crop, both rebuilt here.
    for item in manifest["items"]:
        if "donor" not in item:
            continue
        size = item["size"]
        got = np.fromfile(os.path.join(workdir, f"{item['key']}.mixed.raw"), dtype=np.uint8).reshape(size, size, 3)
        exp = np.where(item["_mask"][..., None], item["_crop"], tiled_of[item["donor"]])
        bad = np.argwhere(np.any(got != exp, axis=-1))
        if len(bad):
            failed = True
            report["fill_mismatch"].append({"key": item["key"], "variant": "mixed", "pixels": int(len(bad)), "first": bad[:3].tolist()})
    for item in manifest["items"]:
        item.pop("_mask", None), item.pop("_crop", None)
    # Stated tolerance: Rust resamples the crop window directly (fast_image_resize), Pillow
    # resizes the whole image then crops: same filter, different edge handling and rounding.
    worst = max(r["mean_abs"] for r in report["resize"])
    worst_p99 = max(r["p99"] for r in report["resize"])
    report["resize_worst_mean_abs"] = worst
    report["resize_worst_p99"] = worst_p99
    if worst > 0.6 or worst_p99 > 3:
        failed = True
    print(json.dumps(report))
    return 1 if failed else 0


def cmd_clients(parquet_dir, summary_path):
    import duckdb
    import polars as pl

    with open(summary_path) as f:
        summary = json.load(f)
    glob = os.path.join(parquet_dir, "*.parquet")
    con = duckdb.connect()
    total = con.execute(f"select count(*) from read_parquet('{glob}')").fetchone()[0]
    dups = con.execute(
        f"select count(*) from (select key, variant, model, count(*) c from read_parquet('{glob}') group by all having c > 1)"
    ).fetchone()[0]
    duck = {
        (m, v): (n, t1, t5)
        for m, v, n, t1, t5 in con.execute(
            f"""select model, variant, count(*), avg(top1_correct::int), avg(top5_correct::int)
                from read_parquet('{glob}') where status = 'ok' group by model, variant"""
        ).fetchall()
    }
    errors = con.execute(f"select count(distinct key) from read_parquet('{glob}') where status <> 'ok'").fetchone()[0]
    kv = con.execute(f"select value from parquet_kv_metadata('{glob}') where key = 'bgstream' limit 1").fetchone()
    run_meta = json.loads(kv[0]) if kv else None
    df = pl.read_parquet(glob)
    pol = {
        (r["model"], r["variant"]): (r["n"], r["t1"], r["t5"])
        for r in df.filter(pl.col("status") == "ok")
        .group_by(["model", "variant"])
        .agg(pl.len().alias("n"), pl.col("top1_correct").cast(pl.Float64).mean().alias("t1"), pl.col("top5_correct").cast(pl.Float64).mean().alias("t5"))
        .iter_rows(named=True)
    }
    problems = []
    if total != summary["rows_written"] or df.height != total:
        problems.append(f"rows: duckdb {total}, polars {df.height}, summary {summary['rows_written']}")
    if dups:
        problems.append(f"{dups} (key, variant, model) appear more than once")
    if errors != summary["failed"]:
        problems.append(f"keys with error rows {errors} != failed {summary['failed']}")
    for a in summary["accuracy"]:
        k = (a["model"], a["variant"])
        if a["images"] == 0:
            continue
        for name, got in (("duckdb", duck.get(k)), ("polars", pol.get(k))):
            # The summary gives percent.
            if got is None or got[0] != a["images"] or not math.isclose(100 * got[1], a["top1"], abs_tol=1e-9) or not math.isclose(100 * got[2], a["top5"], abs_tol=1e-9):
                problems.append(f"{name} {k}: {got} vs summary {a}")
    run_json = os.path.join(parquet_dir, "_run.json")
    if run_meta is None or "run_sha256" not in run_meta:
        problems.append("no bgstream run metadata in the Parquet key-value metadata")
    elif run_meta["run_sha256"] != hashlib.sha256(open(run_json, "rb").read()).hexdigest():
        problems.append("a Parquet file's run_sha256 is not the SHA-256 of _run.json")
    print(json.dumps({"rows": total, "duckdb_groups": len(duck), "polars_groups": len(pol), "problems": problems}))
    return 1 if problems else 0


def cmd_aggregate_clients(pred_dir, summary_parquet, baseline):
    """examples/aggregate.sql (DuckDB) and examples/aggregate_polars.py must give exactly the
    numbers of bgstream aggregate's summary.parquet."""
    import duckdb
    import polars as pl

    here = os.path.dirname(os.path.abspath(__file__))
    sys.path.insert(0, os.path.join(here, "..", "examples"))
    import aggregate_polars

    glob = os.path.join(pred_dir, "**", "*.parquet")
    rust = pl.read_parquet(summary_parquet)
    con = duckdb.connect()
    con.execute("SET VARIABLE input = ?", [glob])
    con.execute("SET VARIABLE baseline = ?", [baseline])
    with open(os.path.join(here, "..", "examples", "aggregate.sql")) as f:
        duck = pl.from_arrow(con.sql(f.read()).to_arrow_table())
    pol = aggregate_polars.summary(glob, baseline)
    problems = []
    key = ["model", "variant"]
    for name, other in (("duckdb", duck), ("polars", pol)):
        if list(other.columns) != list(rust.columns):
            problems.append(f"{name} columns {other.columns} != {rust.columns}")
            continue
        if other.height != rust.height:
            problems.append(f"{name} has {other.height} rows, bgstream {rust.height}")
        joined = rust.join(other, on=key, how="full", suffix="_o", coalesce=True)
        for col in rust.columns:
            if col in key:
                continue
            for a, b, m, v in zip(joined[col], joined[col + "_o"], joined["model"], joined["variant"]):
                same = (a is None and b is None) or (
                    a is not None and b is not None and math.isclose(float(a), float(b), rel_tol=1e-12, abs_tol=2e-10)  # percent to 1e-10 points
                )
                if not same:
                    problems.append(f"{name} {m}/{v} {col}: {b} vs bgstream {a}")
    print(json.dumps({"rows": rust.height, "problems": problems[:20]}))
    return 1 if problems else 0


def cmd_make_images(outdir):
    """Real encoder outputs for the bad-input corpus: CMYK, progressive, 16-bit PNG, palette
    PNG (Pillow writes them; bgstream must decode them)."""
    from PIL import Image

    os.makedirs(outdir, exist_ok=True)
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 256, (80, 96, 3), dtype=np.uint8))
    rgb.convert("CMYK").save(os.path.join(outdir, "cmyk.jpg"), quality=90)
    rgb.save(os.path.join(outdir, "progressive.jpg"), quality=90, progressive=True)
    rgb.save(os.path.join(outdir, "plain.jpg"), quality=90)
    rgb.save(os.path.join(outdir, "as_png.png"))
    Image.fromarray((rng.integers(0, 65536, (80, 96)).astype(np.uint16))).save(os.path.join(outdir, "gray16.png"))
    rgb.convert("P").save(os.path.join(outdir, "palette.png"))
    Image.new("RGB", (1, 1), (10, 20, 30)).save(os.path.join(outdir, "one.jpg"))
    print(json.dumps({"dir": outdir}))
    return 0


def cmd_bg_model(outdir):
    """A classifier that looks only at the background: the mean of the top-left 4x4 pixels
    picks the class whose grey level 64c + 32 is nearest (c in 0..3). Input size 32, no
    crop, mean 0 / std 1, so it sees raw levels / 255."""
    import torch

    class BgReader(torch.nn.Module):
        def forward(self, x):
            v = x[:, :, :4, :4].float().mean(dim=(1, 2, 3)) * 255.0
            centres = torch.arange(4, dtype=torch.float32, device=x.device) * 64.0 + 32.0
            return -((v[:, None] - centres[None, :]) ** 2) / 100.0

    os.makedirs(outdir, exist_ok=True)
    torch.jit.script(BgReader()).save(os.path.join(outdir, "bgreader.pt"))
    meta = {"name": "bgreader", "weights": "none", "input_size": 32, "crop_pct": 1.0,
            "interpolation": "bilinear", "mean": [0, 0, 0], "std": [1, 1, 1], "num_classes": 4}
    with open(os.path.join(outdir, "bgreader.json"), "w") as f:
        json.dump(meta, f)
    print(json.dumps({"model": os.path.join(outdir, "bgreader.pt")}))
    return 0


def cmd_recast(src, out_dir):
    """Rewrites a predictions file as other writers store it: every string column as
    large_string (Polars' default), as string_view, and through Polars itself."""
    import polars as pl
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(src)
    os.makedirs(out_dir, exist_ok=True)
    written = {}
    for kind, string_type in (("large", pa.large_string()), ("view", pa.string_view())):
        fields = []
        for f in table.schema:
            t = f.type
            if pa.types.is_string(t):
                t = string_type
            elif pa.types.is_list(t):
                t = pa.large_list(t.value_type)
            fields.append(pa.field(f.name, t, f.nullable))
        recast = table.cast(pa.schema(fields))
        os.makedirs(os.path.join(out_dir, kind), exist_ok=True)
        path = os.path.join(out_dir, kind, "part.parquet")
        pq.write_table(recast, path)
        written[kind] = [str(f.type) for f in pq.read_schema(path) if f.name in ("key", "background", "top5_classes")]
    os.makedirs(os.path.join(out_dir, "polars"), exist_ok=True)
    path = os.path.join(out_dir, "polars", "part.parquet")
    pl.read_parquet(src).write_parquet(path)
    written["polars"] = [str(f.type) for f in pq.read_schema(path) if f.name in ("key", "background", "top5_classes")]
    print(json.dumps(written))
    return 0


def main(argv):
    cmds = {
        "recast": cmd_recast,
        "bg-model": cmd_bg_model,
        "logits": cmd_logits,
        "logits-raw": cmd_logits_raw,
        "variants": cmd_variants,
        "clients": cmd_clients,
        "aggregate-clients": cmd_aggregate_clients,
        "make-images": cmd_make_images,
    }
    if len(argv) < 2 or argv[1] not in cmds:
        print(__doc__, file=sys.stderr)
        return 2
    return cmds[argv[1]](*argv[2:])


if __name__ == "__main__":
    sys.exit(main(sys.argv))

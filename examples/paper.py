#!/usr/bin/env python3
"""The paper in one command: ImageNet as downloaded -> shards -> the 32 networks -> every
variant -> relative accuracies and the report. Run it through scripts/paper (which sets up
first):

    scripts/paper IMAGENET_DIR [OUT]                  # OUT defaults to paper-out
    scripts/paper IMAGENET_DIR OUT --models resnet18.tv_in1k,efficientnet_b1.ft_in1k
    scripts/paper IMAGENET_DIR OUT --variants original,bg_only,fg_white

IMAGENET_DIR holds the downloads: the images (ILSVRC2012_img_val.tar, or any folder of the
validation JPEGs, e.g. Kaggle's ILSVRC/Data/CLS-LOC/val) and the boxes
(ILSVRC2012_bbox_val_v3.tgz, a folder of its XML files, or Kaggle's LOC_val_solution.csv);
--images / --annotations name them when the search finds the wrong ones.

Every step keeps what an earlier run of the same command finished: the shards (same inputs),
the exported models, and each model's run (bgstream --resume). Rerun the same command after
an interruption and it continues. Each model runs into OUT/results/MODEL/, so --models can
narrow or extend the study without invalidating finished runs.
"""
import argparse
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from export_models import read_list  # noqa: E402  (beside this file)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAPER_VARIANTS = (
    "original,bg_only,fg_white,fg_texture,fg_gauss,fg_uniform,"
    "fg_color:green,fg_color:yellow,fg_color:grey"
)
# The documented filter (union of inclusive boxes, 5%..70%) keeps 34,791 of 50,000.
KEPT_FRACTION = 34791 / 50000
PREFIX = "imagenet-val"


def say(msg):
    print(msg, flush=True)


def step(msg):
    say(f"\n== {msg}")


def find_first(root, patterns):
    """The first path under `root` (sorted walk) whose name matches one of `patterns`."""
    for pat in patterns:
        for dirpath, dirnames, filenames in sorted(os.walk(root)):
            dirnames.sort()
            for name in sorted(filenames + dirnames):
                if re.fullmatch(pat, name):
                    return os.path.join(dirpath, name)
    return None


def find_inputs(imagenet, images, annotations):
    if images is None:
        images = find_first(imagenet, [r"ILSVRC2012_img_val\.tar"]) or imagenet
    if annotations is None:
        annotations = find_first(imagenet, [r"ILSVRC2012_bbox_val_v3\.tgz", r"LOC_val_solution\.csv"])
    if annotations is None:
        xml = find_first(imagenet, [r"ILSVRC2012_val_\d+\.xml"])
        annotations = os.path.dirname(xml) if xml else None
    if annotations is None:
        sys.exit(
            f"paper: no boxes under {imagenet} (ILSVRC2012_bbox_val_v3.tgz, its XML files or "
            "LOC_val_solution.csv); name them with --annotations"
        )
    return os.path.abspath(images), os.path.abspath(annotations)


def read_models(spec):
    """A list file (export_models.py's format) or comma-separated names."""
    if os.path.isfile(spec):
        return [name for name, _ in read_list(spec)]
    return [m.strip() for m in spec.split(",") if m.strip()]


def run(cmd, env=None, ok=(0,)):
    code = subprocess.call(cmd, env=env)
    if code not in ok:
        sys.exit(
            f"paper: `{' '.join(cmd[:2])} ...` exited with {code}; fix the cause and rerun the "
            "same command: finished steps are kept"
        )
    return code


def shard_step(bgstream, images, annotations, out, shard_size, limit):
    shards = os.path.join(out, "shards")
    marker = os.path.join(shards, "_done.json")
    want = {"images": images, "annotations": annotations, "shard_size": shard_size, "limit": limit}
    if os.path.exists(marker):
        with open(marker) as f:
            if json.load(f) == want:
                summary = json.load(open(os.path.join(shards, f"{PREFIX}.summary.json")))
                say(f"shards: kept ({summary['samples']} samples in {len(summary['shards'])} shards)")
                summary["shards_made_from"] = want
                return summary
    shutil.rmtree(shards, ignore_errors=True)
    cmd = [bgstream, "shard", "--images", images, "--annotations", annotations, "--out", shards,
           "--prefix", PREFIX, "--shard-size", str(shard_size)]
    if limit:
        cmd += ["--limit", str(limit)]
    run(cmd)
    with open(os.path.join(shards, f"{PREFIX}.summary.json")) as f:
        summary = json.load(f)
    write_json(marker, want)
    summary["shards_made_from"] = want
    return summary


RUN_SHARDS = "_paper_shards.json"


def write_json(path, value):
    with open(path + ".tmp", "w") as f:
        json.dump(value, f)
    os.replace(path + ".tmp", path)


def run_shards(results):
    """What the shards of this model's run were made from (shard_step's `want`), if known."""
    try:
        with open(os.path.join(results, RUN_SHARDS)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def finished_shards(results):
    """Shards a model's run finished (its manifest's lines)."""
    path = os.path.join(results, "_manifest.jsonl")
    if not os.path.exists(path):
        return 0
    done = set()
    with open(path) as f:
        for line in f:
            try:
                done.add(json.loads(line)["shard"])
            except (ValueError, KeyError):
                pass  # a torn last line is not a completion
    return len(done)


def estimate(bgstream, first_shard, models, variants, args, todo_images):
    """Seconds for the models still to run, from a short `bgstream bench` here."""
    records = os.path.join(os.path.abspath(args.out), "estimate-bench.json")
    cmd = [bgstream, "bench", "--shards", first_shard, "--variants", variants,
           "--forward-iters", "3", "--e2e-seconds", "3", "--cpu-samples", "30",
           "--min-seconds", "1", "--device", args.device, "--summary-json", records]
    for m in models:
        cmd += ["--model", m]
    start = time.time()
    out = subprocess.run(cmd, capture_output=True, text=True)
    # 4: a measurement shorter than bench trusts; good enough for an estimate.
    if out.returncode not in (0, 4):
        say(f"estimate: bench failed ({out.stderr.strip()[-300:]}); going on without one")
        return None
    with open(records) as f:
        rates = {r["model"]: r["rate"] for r in json.load(f) if r["mode"] == "end_to_end"}
    say(out.stdout.splitlines()[0] if out.stdout else "")
    total = 0.0
    frames = todo_images * len(variants.split(","))
    for m in models:
        name = os.path.basename(m)[:-3]
        rate = rates.get(name)
        if rate:
            total += frames / rate
            say(f"  {name}: {rate:,.0f} variant-images/s end to end -> {frames / rate / 60:,.1f} min")
    shown = f"{total / 3600:.1f} h" if total >= 3600 else f"{total / 60:.1f} min"
    say(f"estimate: {shown} for {len(models)} model(s) on this machine "
        f"(bench took {time.time() - start:.0f} s)")
    return total


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("imagenet", help="folder with the ImageNet validation downloads")
    ap.add_argument("out", nargs="?", default="paper-out")
    ap.add_argument("--models", default=os.path.join(ROOT, "examples/paper-models.txt"),
                    help="a list file (default: the paper's 32) or comma-separated timm names")
    ap.add_argument("--variants", default=PAPER_VARIANTS)
    ap.add_argument("--baseline", help="default: the first model (ResNet-18 in the paper's list)")
    ap.add_argument("--images", help="the validation images (tar or folder), if not found")
    ap.add_argument("--annotations", help="the boxes (tgz, XML folder or LOC csv), if not found")
    ap.add_argument("--random-weights", action="store_true",
                    help="timm's random weights, offline (tests and throughput only)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--shard-size", type=int, default=1000)
    ap.add_argument("--limit", type=int, help="only the first N images (a trial run)")
    ap.add_argument("--no-estimate", action="store_true", help="skip the timing bench")
    args = ap.parse_args()

    bgstream = os.environ.get("BGSTREAM") or os.path.join(ROOT, "target/release/bgstream")
    python = sys.executable
    out = os.path.abspath(args.out)
    images, annotations = find_inputs(os.path.abspath(args.imagenet), args.images, args.annotations)
    names = read_models(args.models)
    if not names:
        sys.exit("paper: no models")
    baseline = args.baseline or names[0]
    variants = args.variants
    say(f"paper: {len(names)} model(s) x {len(variants.split(','))} variant(s), baseline {baseline}")
    say(f"  images:      {images}\n  annotations: {annotations}\n  output:      {out}")
    say("  steps: shard -> export models -> estimate -> one run per model "
        "(OUT/results/MODEL, resumable) -> aggregate + report")
    os.makedirs(out, exist_ok=True)

    step("shard ImageNet")
    summary = shard_step(bgstream, images, annotations, out, args.shard_size, args.limit)
    shards = sorted(glob.glob(os.path.join(out, "shards", f"{PREFIX}-*.tar")))
    shard_glob = os.path.join(out, "shards", f"{PREFIX}-*.tar")

    step("export models")
    models_dir = os.path.join(out, "models")
    listing = os.path.join(out, "models.txt")
    with open(listing, "w") as f:
        f.write("\n".join(names) + "\n")
    cmd = [python, os.path.join(ROOT, "examples/export_models.py"), "--out", models_dir, "--list", listing]
    if args.random_weights:
        cmd.append("--random-weights")
    run(cmd)
    paths = [os.path.join(models_dir, f"{n}.pt") for n in names]

    def finished(n):
        results = os.path.join(out, "results", n)
        return (run_shards(results) == summary["shards_made_from"]
                and finished_shards(results) >= len(shards))

    todo = [p for p, n in zip(paths, names) if not finished(n)]
    if args.no_estimate or not todo:
        say("\nestimate: skipped" if todo else "\nevery model has finished")
    else:
        step("estimate (a short bgstream bench on this machine)")
        todo_images = round(summary["samples"] * KEPT_FRACTION)
        estimate(bgstream, shards[0], todo, variants, args, todo_images)

    step("run")
    for i, (path, name) in enumerate(zip(paths, names), 1):
        results = os.path.join(out, "results", name)
        done = finished_shards(results)
        cmd = [bgstream, "--shards", shard_glob, "--model", path, "--variants", variants,
               "--out", results, "--device", args.device, "--precision", args.precision]
        if os.path.exists(os.path.join(results, "_run.json")):
            if run_shards(results) != summary["shards_made_from"]:
                # Other images (another --limit, other downloads): its rows describe other
                # shards, so they are replaced, never resumed or reported as this study.
                say(f"[{i}/{len(names)}] {name}: the shards changed since its run; starting afresh")
                cmd.append("--overwrite")
            elif done >= len(shards):
                say(f"[{i}/{len(names)}] {name}: done ({done} shards)")
                continue
            else:
                say(f"[{i}/{len(names)}] {name}: resuming ({done} of {len(shards)} shards done)")
                cmd.append("--resume")
        else:
            say(f"[{i}/{len(names)}] {name}: running")
        os.makedirs(results, exist_ok=True)
        write_json(os.path.join(results, RUN_SHARDS), summary["shards_made_from"])
        # 3: finished, some images failed (recorded as rows with their error).
        run(cmd, ok=(0, 3))

    step("aggregate and report")
    report = os.path.join(out, "report.html")
    run([bgstream, "aggregate", "--in", os.path.join(out, "results"), "--baseline", baseline,
         "--out", os.path.join(out, "aggregate"), "--report", report, "--shards", shard_glob])
    say(f"\npaper: done. Report: {report}; tables: {os.path.join(out, 'aggregate')}")


if __name__ == "__main__":
    main()

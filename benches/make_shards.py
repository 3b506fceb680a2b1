#!/usr/bin/env python3
"""Benchmark shards from the 66 real ImageNet JPEGs, each repeated COPIES times (keys
suffixed cN), spread over NSHARDS tar shards named PREFIX-NNNNNN.tar in OUT.

    python benches/make_shards.py ../shared/data/imagenet-val OUT COPIES NSHARDS PREFIX
"""
import csv
import io
import json
import os
import sys
import tarfile


def main(data, out, copies, nshards, prefix):
    rows = {int(r["val_index"]): r for r in csv.DictReader(open(os.path.join(data, "annotations.csv")))}
    samples = []
    for name in sorted(os.listdir(os.path.join(data, "images"))):
        r = rows[int(name.split("_")[-1].split(".")[0])]
        # ImageNet's numbers are inclusive; shard boxes are exclusive (x1 + 1, y1 + 1).
        boxes = [[x0, y0, x1 + 1, y1 + 1] for x0, y0, x1, y1 in ([float(v) for v in b.split()] for b in r["boxes"].split(";"))]
        for c in range(copies):
            samples.append((f"{name.split('.')[0]}c{c}", os.path.join(data, "images", name), int(r["label"]), boxes))
    os.makedirs(out, exist_ok=True)
    for s in range(nshards):
        with tarfile.open(os.path.join(out, f"{prefix}-{s:06}.tar"), "w") as t:
            for key, path, label, boxes in samples[s::nshards]:
                for ext, payload in (
                    ("jpg", open(path, "rb").read()),
                    ("cls", str(label).encode()),
                    ("json", json.dumps({"label": label, "boxes": boxes}).encode()),
                ):
                    info = tarfile.TarInfo(f"{key}.{ext}")
                    info.size = len(payload)
                    t.addfile(info, io.BytesIO(payload))


if __name__ == "__main__":
    if len(sys.argv) != 6:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5])

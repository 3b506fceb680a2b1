"""ImageNet-9 scoring, computed directly, for tests/it/in9.rs.

  make OUT IMAGES ANNOTATIONS_CSV TABLE_JSON
      An ImageNet-9 layout from real ImageNet validation photos: every image of IMAGES
      whose ImageNet class the published table (in_to_in9.json) sends to one of the nine
      goes to OUT/original/val/<NN_name>/<image>.JPEG, with its boolean foreground mask
      (the union of its boxes) as OUT/fg_mask/val/<NN_name>/<image>.npy, written by numpy as
      the released data holds them; and OUT/only_bg_b/val/<NN_name>/<image>.JPEG, the
      photo with its foreground black (a released variant folder, as Only-BG-B is made).
  check RESULTS DUMP MODEL TABLE_JSON VARIANT
      For the ok rows of MODEL on VARIANT in RESULTS/*.parquet (DuckDB): the label is taken
      from the key's class folder (not from the rows), bgstream's top-5 classes are mapped
      through the table (-1 = wrong), and accuracy is counted as backgrounds_challenge's
      in9_eval.py does; the model is also run in PyTorch on the very frames bgstream fed it
      (--dump-inputs DUMP) to recompute top-1 and the label's IN-9 probability.

Prints one JSON report.
"""

import csv
import glob
import json
import os
import shutil
import sys

import numpy as np
from PIL import Image

FOLDERS = ["00_dog", "01_bird", "02_wheeled vehicle", "03_reptile", "04_carnivore",
           "05_insect", "06_musical instrument", "07_primate", "08_fish"]


def read_table(path):
    with open(path) as f:
        table = json.load(f)
    assert len(table) == 1000, len(table)
    return {int(k): v for k, v in table.items()}


def cmd_make(out, images, csv_path, table_path):
    table = read_table(table_path)
    present = {os.path.splitext(n)[0] for n in os.listdir(images)}
    per_class = {}
    with open(csv_path) as f:
        for row in csv.DictReader(f):
            name = f"ILSVRC2012_val_{int(row['val_index']):08d}"
            if name not in present:
                continue
            in9 = table[int(row["label"])]
            if in9 < 0:
                continue
            folder = FOLDERS[in9]
            w, h = int(row["width"]), int(row["height"])
            mask = np.zeros((h, w), bool)
            for box in row["boxes"].split(";"):
                x0, y0, x1, y1 = (int(float(v)) for v in box.split())
                mask[y0:y1 + 1, x0:x1 + 1] = True  # ImageNet's boxes are inclusive
            for d in ("original", "fg_mask", "only_bg_b"):
                os.makedirs(os.path.join(out, d, "val", folder), exist_ok=True)
            src = os.path.join(images, name + ".JPEG")
            shutil.copy(src, os.path.join(out, "original", "val", folder, name + ".JPEG"))
            with Image.open(src) as im:
                pixels = np.asarray(im.convert("RGB")).copy()
            pixels[mask] = 0
            Image.fromarray(pixels).save(
                os.path.join(out, "only_bg_b", "val", folder, name + ".JPEG"), quality=95)
            np.save(os.path.join(out, "fg_mask", "val", folder, name + ".npy"), mask)
            per_class[folder] = per_class.get(folder, 0) + 1
    print(json.dumps({"images": sum(per_class.values()), "classes": per_class}))
    return 0


def frame(dump, key, size):
    """The frame bgstream fed its model for `key`'s slot 0 (see item::file_stem)."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in key)
    found = glob.glob(os.path.join(glob.escape(dump), glob.escape(safe[:120]) + "~*"))
    path = found[0] if len(found) == 1 else os.path.join(dump, key)
    raw = np.fromfile(os.path.join(path, f"00-{size}px.rgb"), np.uint8)
    return raw.reshape(size, size, 3)


def cmd_check(results, dump, model_path, table_path, variant):
    import duckdb
    import torch

    table = read_table(table_path)
    with open(os.path.splitext(model_path)[0] + ".json") as f:
        meta = json.load(f)
    rows = duckdb.connect().execute(
        f"select key, top5_classes, p_true, top1_correct, scoring "
        f"from read_parquet('{results}/*.parquet') "
        f"where model = ? and variant = ? and status = 'ok' order by key",
        [meta["name"], variant]).fetchall()
    model = torch.jit.load(model_path).eval()
    mean = torch.tensor(meta["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(meta["std"]).view(1, 3, 1, 1)
    fine_of = {c: [k for k, v in table.items() if v == c] for c in range(9)}
    rep = {"rows": len(rows), "mapped_top1": 0, "mapped_top5": 0, "unmapped_top1": 0,
           "torch_top1": 0, "bgstream_top1": 0, "top5_differs": 0,
           "max_p_true_diff": 0.0, "scoring": sorted({r[4] for r in rows})}
    for key, top5, p_true, top1_ok, _ in rows:
        want = FOLDERS.index(key.split("/")[0])
        mapped = [table[c] for c in top5]
        rep["mapped_top1"] += mapped[0] == want
        rep["mapped_top5"] += want in mapped
        rep["unmapped_top1"] += top5[0] == want  # the rule bgstream had before: wrong
        rep["bgstream_top1"] += bool(top1_ok)
        x = torch.from_numpy(frame(dump, key, meta["input_size"])).float().div(255.0)
        x = ((x.permute(2, 0, 1).unsqueeze(0) - mean) / std).contiguous()
        with torch.no_grad():
            probs = torch.softmax(model(x).float(), -1)[0]
        ours = probs.topk(5).indices.tolist()
        rep["top5_differs"] += ours != list(top5)
        rep["torch_top1"] += table[ours[0]] == want
        p_in9 = float(probs[fine_of[want]].sum())
        rep["max_p_true_diff"] = max(rep["max_p_true_diff"], abs(p_in9 - p_true))
    print(json.dumps(rep))
    return 0


def main(argv):
    if len(argv) == 6 and argv[1] == "make":
        return cmd_make(*argv[2:])
    if len(argv) == 7 and argv[1] == "check":
        return cmd_check(*argv[2:])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))

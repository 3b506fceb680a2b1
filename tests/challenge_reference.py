"""challenge_eval.py's verdicts recomputed from the inputs bgstream used, for tests/it/challenge.rs.

  check RESULTS_DIR DUMP_DIR MODEL TABLE_JSON

For every foreground that `bgstream challenge --dump-inputs DUMP_DIR` dumped for MODEL, this
runs MadryLab/backgrounds_challenge's `adv_bgs_eval_model` arithmetic: the crop and the
mask as ToTensor() floats, `combined = bg * (1 - mask) + mask * fg` over every background
in batches, the model's top-1 mapped through in_to_in9 (a 1,000-class model on IN-9 labels),
and "vulnerable" when any prediction differs from the foreground's class. Prints one JSON
report comparing the verdicts with RESULTS_DIR/challenge.parquet.
"""

import json
import os
import sys

import numpy as np


def cmd_check(results, dump, model_path, table_path):
    import duckdb
    import torch

    with open(os.path.splitext(model_path)[0] + ".json") as f:
        meta = json.load(f)
    with open(table_path) as f:
        table = {int(k): v for k, v in json.load(f).items()}
    name, size = meta["name"], meta["input_size"]
    folder = os.path.join(dump, name)
    with open(os.path.join(folder, "index.json")) as f:
        index = json.load(f)
    model = torch.jit.load(model_path).eval()
    mean = torch.tensor(meta["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(meta["std"]).view(1, 3, 1, 1)

    def image(path):
        raw = np.fromfile(path, np.uint8).reshape(size, size, 3)
        return torch.from_numpy(raw).permute(2, 0, 1).float().div(255.0)

    bgs = torch.stack([image(os.path.join(folder, f"bg-{i}.rgb"))
                       for i in range(len(index["backgrounds"]))])
    in9 = meta["num_classes"] == 1000
    ours = {}
    for fg in index["foregrounds"]:
        n = fg["n"]
        im = image(os.path.join(folder, f"fg-{n}.rgb"))
        mask = torch.from_numpy(np.fromfile(os.path.join(folder, f"fg-{n}.mask"), np.uint8)
                                .reshape(1, size, size).astype(np.float32)).repeat(3, 1, 1)
        vulnerable = False
        for start in range(0, len(bgs), 32):
            inp = bgs[start:start + 32]
            combined = inp * (1 - mask) + mask * im
            with torch.no_grad():
                pred = model((combined - mean) / std).topk(1, 1, True, True)[1][:, 0]
            if in9:
                pred = torch.tensor([table[int(x)] for x in pred])
            if (pred != fg["label"]).any().item():
                vulnerable = True
                break
        ours[fg["key"]] = vulnerable
    rows = duckdb.connect().execute(
        f"select key, vulnerable from read_parquet('{results}/challenge.parquet') "
        f"where model = ? and status = 'ok'", [name]).fetchall()
    theirs = dict(rows)
    differ = sorted(k for k in ours if theirs.get(k) != ours[k])
    print(json.dumps({
        "foregrounds": len(ours), "rows": len(theirs),
        "vulnerable_reference": sum(ours.values()),
        "vulnerable_bgstream": sum(bool(v) for v in theirs.values()),
        "differ": differ}))
    return 0


def main(argv):
    if len(argv) == 6 and argv[1] == "check":
        return cmd_check(*argv[2:])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))

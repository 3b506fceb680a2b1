"""Bring your own model (issue 28), checked from Python for tests/it/byo.rs.

  checkpoints DIR BGSTREAM
      A timm resnet18 with 9 outputs (seeded random weights) saved by torch.save and
      safetensors in three layouts (a bare state dict; one under "state_dict" with
      DataParallel's "module." prefixes; a safetensors file) plus a mismatched one. Each is
      exported with `BGSTREAM export --checkpoint`; the exported TorchScript's logits must
      equal the Python module's on one batch to 1e-5, and its sidecar must name the file and
      its SHA-256. The mismatched checkpoint must exit 2, list the missing and unexpected keys
      and write nothing.
  superclass-factory OUT.py BASE.pt TABLE_JSON
      Writes a factory file: BASE (a 1,000-class TorchScript model) whose probabilities are
      summed per ImageNet-9 class of TABLE (in_to_in9.json): a 9-class model.
  classmap RESULTS DUMP MODEL TABLE_JSON
      For MODEL's rows of variant original in RESULTS/*.parquet (DuckDB): the model run in
      PyTorch on the frames bgstream fed it (--dump-inputs DUMP); a row's expected verdict is
      its top-1 == TABLE[label] (null where TABLE says -1), compared with top1_correct.
  class-map-forms DIR
      export_models.read_class_map on each form a user may write: nested JSON with indices,
      a range and a wnid; the backgrounds challenge's flat in_to_in9.json; a 100-class subset
      as one wnid per line; `name: wnid wnid` lines. And refusals: a wnid in two classes, an
      unknown wnid (exit 2, one line).
  results RESULTS_CSV PARQUET_DIR
      pandas reads aggregate's results.csv; per (model, variant) its images and top1 must
      equal DuckDB's count and mean of top1_correct over the ok rows with a verdict, to
      timm's 4 decimals.

Prints one JSON report; exits 1 when a check fails.
"""

import hashlib
import json
import os
import subprocess
import sys

import torch


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def export(bgstream, out, ckpt, name):
    return subprocess.run(
        [bgstream, "export", "--out", out, "resnet18", "--checkpoint", ckpt, "--name", name],
        capture_output=True, text=True)


def cmd_checkpoints(work, bgstream):
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(0)
    model = timm.create_model("resnet18", pretrained=False, num_classes=9).eval()
    # Non-trivial BatchNorm statistics, so that a wrong or missing buffer shows.
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    sd = model.state_dict()
    layouts = {
        "bare.pth": lambda p: torch.save(sd, p),
        "nested.pt": lambda p: torch.save(
            {"state_dict": {"module." + k: v for k, v in sd.items()}, "epoch": 7}, p),
        "weights.safetensors": lambda p: save_file({k: v.contiguous() for k, v in sd.items()}, p),
    }
    x = torch.rand(4, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = model(x)
    rep, ok = {"layouts": {}}, True
    out = os.path.join(work, "models")
    for file, save in layouts.items():
        path = os.path.join(work, file)
        save(path)
        name = "r18-" + file.split(".")[0]
        p = export(bgstream, out, path, name)
        entry = {"exit": p.returncode}
        if p.returncode == 0:
            got = torch.jit.load(os.path.join(out, name + ".pt")).eval()
            with torch.no_grad():
                entry["max_abs_diff"] = float((got(x) - want).abs().max())
            with open(os.path.join(out, name + ".json")) as f:
                meta = json.load(f)
            entry["sidecar"] = {k: meta.get(k) for k in ("weights", "weights_sha256", "num_classes")}
            entry["sha_matches"] = meta.get("weights_sha256") == sha256(path)
            entry["checked"] = f"checked {os.path.join(out, name + '.pt')}" in p.stderr
            ok &= entry["max_abs_diff"] <= 1e-5 and entry["sha_matches"] and entry["checked"]
            ok &= meta.get("num_classes") == 9 and meta.get("weights") == f"file:{file}"
        else:
            entry["stderr"] = p.stderr[-2000:]
            ok = False
        rep["layouts"][file] = entry
    bad = dict(sd)
    bad.pop("layer1.0.conv1.weight")
    bad["head.extra.weight"] = torch.zeros(3)
    bad_path = os.path.join(work, "bad.pth")
    torch.save(bad, bad_path)
    p = export(bgstream, out, bad_path, "r18-bad")
    lines = p.stderr.strip().splitlines()
    rep["mismatch"] = {"exit": p.returncode, "stderr": lines[-4:]}
    written = [f for f in os.listdir(out) if f.startswith("r18-bad")]
    ok &= p.returncode == 2 and not written and "Traceback" not in p.stderr
    ok &= any("missing (1): layer1.0.conv1.weight" in ln for ln in lines)
    ok &= any("unexpected (1): head.extra.weight" in ln for ln in lines)
    rep["ok"] = bool(ok)
    print(json.dumps(rep))
    return 0 if ok else 1


FACTORY = '''"""ImageNet-9 super-classes of a 1,000-class model (written by tests/byo_reference.py)."""
import json

import torch

BASE = {base!r}
TABLE = {table!r}


class Superclasses(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.base = torch.jit.load(BASE).eval()
        with open(TABLE) as f:
            table = {{int(k): v for k, v in json.load(f).items()}}
        m = torch.zeros(1000, 9)
        for fine, coarse in table.items():
            if coarse >= 0:
                m[fine, coarse] = 1.0
        self.register_buffer("m", m)

    def forward(self, x):
        return torch.log(torch.softmax(self.base(x), -1) @ self.m + 1e-12)


def build():
    return Superclasses()
'''


def cmd_superclass_factory(out, base, table):
    with open(out, "w") as f:
        f.write(FACTORY.format(base=os.path.abspath(base), table=os.path.abspath(table)))
    print(json.dumps({"written": out}))
    return 0


def frame(dump, key, size):
    sys.path.insert(0, os.path.dirname(__file__))
    from in9_reference import frame as f

    return f(dump, key, size)


def cmd_classmap(results, dump, model_path, table_path):
    import duckdb

    with open(table_path) as f:
        table = {int(k): v for k, v in json.load(f).items()}
    with open(os.path.splitext(model_path)[0] + ".json") as f:
        meta = json.load(f)
    rows = duckdb.connect().execute(
        "select key, label, top5_classes, top1_correct, top5_correct, p_true, scoring "
        f"from read_parquet('{results}/*.parquet') "
        "where model = ? and variant = 'original' and status = 'ok' order by key",
        [meta["name"]]).fetchall()
    model = torch.jit.load(model_path).eval()
    mean = torch.tensor(meta["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(meta["std"]).view(1, 3, 1, 1)
    rep = {"rows": len(rows), "covered": 0, "expected_top1": 0, "bgstream_top1": 0,
           "verdict_differs": 0, "top1_differs": 0, "null_rows": 0, "max_p_true_diff": 0.0,
           "scoring": sorted({r[6] for r in rows})}
    for key, label, top5, top1_ok, top5_ok, p_true, _ in rows:
        x = torch.from_numpy(frame(dump, key, meta["input_size"])).float().div(255.0)
        x = ((x.permute(2, 0, 1).unsqueeze(0) - mean) / std).contiguous()
        with torch.no_grad():
            probs = torch.softmax(model(x).float(), -1)[0]
        top1 = int(probs.argmax())
        rep["top1_differs"] += top1 != top5[0]
        want = table[label]
        if want < 0:
            rep["null_rows"] += top1_ok is None and top5_ok is None
            rep["verdict_differs"] += top1_ok is not None
            continue
        rep["covered"] += 1
        rep["expected_top1"] += top1 == want
        rep["bgstream_top1"] += bool(top1_ok)
        rep["verdict_differs"] += bool(top1_ok) != (top1 == want)
        rep["max_p_true_diff"] = max(rep["max_p_true_diff"], abs(float(probs[want]) - p_true))
    print(json.dumps(rep))
    return 0


def cmd_results(csv_path, parquet_dir):
    import duckdb
    import pandas as pd

    df = pd.read_csv(csv_path)
    want = duckdb.connect().execute(
        "select model, variant, count(top1_correct), 100 * avg(top1_correct::int) "
        f"from read_parquet('{parquet_dir}/*.parquet') "
        "where status = 'ok' and coalesce(in_filter, true) group by all").fetchall()
    rep = {"columns": list(df.columns), "compared": 0, "differs": []}
    for model, variant, images, top1 in want:
        got = df[(df.model == model) & (df.variant == variant)]
        if len(got) != 1 or int(got.images.iloc[0]) != images or abs(float(got.top1.iloc[0]) - top1) > 5e-5:
            rep["differs"].append([model, variant, images, top1, got.to_dict("records")])
        rep["compared"] += 1
    print(json.dumps(rep))
    return 0 if not rep["differs"] and rep["compared"] else 1


def cmd_class_map_forms(work, table_path):
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples"))
    import contextlib
    import io

    from export_models import imagenet_wnids, read_class_map

    wnids = imagenet_wnids()
    rep, ok = {}, True

    def write(name, text):
        path = os.path.join(work, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    nested = read_class_map(write("nested.json", json.dumps({"name": "two", "classes": [
        {"name": "fish", "labels": [0, "1-3"]}, {"name": "shark", "labels": [wnids[4]]}]})))
    ok &= nested == {"name": "two", "classes": [
        {"name": "fish", "wnids": wnids[0:4]}, {"name": "shark", "wnids": [wnids[4]]}]}
    flat = read_class_map(table_path)
    with open(table_path) as f:
        table = {int(k): v for k, v in json.load(f).items()}
    sizes = [len(c["wnids"]) for c in flat["classes"]]
    ok &= flat["classes"][0]["name"] == "dog" and len(sizes) == 9
    ok &= sizes == [sum(1 for v in table.values() if v == i) for i in range(9)]
    subset = wnids[::10]
    lines = read_class_map(write("subset.txt", "# a 100-class subset\n" + "\n".join(subset) + "\n"))
    ok &= [c["wnids"] for c in lines["classes"]] == [[w] for w in subset]
    named = read_class_map(write("named.txt", f"tench: {wnids[0]}\nfish: {wnids[1]} {wnids[2]}\n"))
    ok &= [(c["name"], len(c["wnids"])) for c in named["classes"]] == [("tench", 1), ("fish", 2)]
    rep["forms"] = {"nested": len(nested["classes"]), "flat": sizes, "subset": len(lines["classes"]),
                    "named": len(named["classes"])}
    for bad, text in (("twice.txt", f"a: {wnids[0]}\nb: {wnids[0]}\n"), ("unknown.txt", "n99999999\n")):
        err = io.StringIO()
        try:
            with contextlib.redirect_stderr(err):
                read_class_map(write(bad, text))
            code = 0
        except SystemExit as e:
            code = e.code
        rep[bad] = [code, err.getvalue().strip()]
        ok &= code == 2 and err.getvalue().count("\n") == 1
    rep["ok"] = bool(ok)
    print(json.dumps(rep))
    return 0 if ok else 1


def main(argv):
    if len(argv) == 4 and argv[1] == "class-map-forms":
        return cmd_class_map_forms(*argv[2:])
    if len(argv) == 4 and argv[1] == "results":
        return cmd_results(*argv[2:])
    if len(argv) == 4 and argv[1] == "checkpoints":
        return cmd_checkpoints(*argv[2:])
    if len(argv) == 5 and argv[1] == "superclass-factory":
        return cmd_superclass_factory(*argv[2:])
    if len(argv) == 6 and argv[1] == "classmap":
        return cmd_classmap(*argv[2:])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))

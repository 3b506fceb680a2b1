#!/usr/bin/env python3
"""Fine-tune a timm classifier on the `original` images of training shards, then export it
(TorchScript + JSON sidecar) for bgstream: the paper's §4 experiment (VOC12 / Caltech101
classifiers, "mean over 3 runs").

    python examples/finetune.py --shards 'train-*.tar' --out models/ --name resnet18-caltech101 \\
        [--model resnet18] [--num-classes N] [--epochs 5] [--batch-size 32] [--lr 0.01] \\
        [--seeds 0,1,2] [--pretrained | --random-init] [--input-size 224] [--workers 0] \\
        [--limit N] [--device cpu|cuda]

    bgstream --shards 'test-*.tar' --model models/resnet18-caltech101-seed0.pt \\
        --model models/resnet18-caltech101-seed1.pt --model models/resnet18-caltech101-seed2.pt \\
        --out results/

Data: the shards are read directly (Python's tarfile; globs expanded, sorted, gzip allowed),
members grouped by key (the member path up to the first dot of its file name, as bgstream
does): KEY.jpg|jpeg|png is the image (Pillow, converted to RGB, EXIF orientation ignored as
in bgstream), the label is KEY.json's "label", else KEY.cls. Samples without an image or a
readable, non-negative label are skipped and counted. The boxes are not used: this trains on
the unmodified images. num_classes is --num-classes, else max label + 1 over the shards.

Training: timm.create_model(MODEL, pretrained=..., num_classes=N) (default --pretrained:
ImageNet weights, as the paper fine-tunes; --random-init for offline tests). Transform
RandomResizedCrop(input_size, scale=(0.5, 1), the data config's interpolation) + horizontal
flip + ToTensor + Normalize(mean, std), with the data config of
timm.data.resolve_data_config({}, model=model) (--input-size overrides its size). SGD,
momentum 0.9, weight decay --weight-decay (1e-4), learning rate --lr decayed by a cosine over
every step of every epoch (no warm-up). One line per epoch: mean loss and training top-1.

Export: per seed OUT/NAME-seedS.pt (traced on CPU, eval mode, input 2x3xSxS) and
OUT/NAME-seedS.json, both written through a temporary file and os.replace. The sidecar
carries the preprocessing bgstream applies (shorter side to input_size/crop_pct with
`interpolation`, centre crop, normalise: the eval-time counterpart of the training crop),
and extra fields seed, base_model, train_shards, train_samples, epochs, lr, batch_size,
train_id (a short hash of the shard names and sizes plus the training settings).

Seeds: each seed in --seeds trains from the same start (the same pretrained backbone; the new
classifier head, the data order and the augmentation are drawn from the seed) with the same
data and settings. The runs differ only in the seed, so their model names differ only in the
`-seedS` suffix and their `weights` only in `:seedS:`: strip the suffix to group the rows of
`bgstream aggregate` (or the Parquet) into a mean over runs.
"""
import argparse
import glob
import hashlib
import io
import json
import math
import os
import random
import sys
import tarfile
import time

import numpy as np
import torch
from PIL import Image

from runtime_conv import make_runtime, mark

IMAGE_EXTS = {"jpg", "jpeg", "png"}


def expand_shards(patterns):
    """Paths of the shard patterns: globs expanded, plain paths kept, sorted, deduplicated."""
    paths = set()
    for pattern in patterns:
        hits = glob.glob(pattern)
        if not hits and os.path.isfile(pattern):
            hits = [pattern]
        if not hits:
            sys.exit(f"error: no shard matches {pattern!r}")
        paths.update(os.path.abspath(p) for p in hits if os.path.isfile(p))
    if not paths:
        sys.exit("error: no shards")
    return sorted(paths)


def split_member(name):
    """(key, extension) of a tar member name: the key is the path up to the first dot of its
    last component, the extension what follows that dot (lower case)."""
    head, _, base = name.rpartition("/")
    stem, dot, ext = base.partition(".")
    if not dot or not stem:
        return None, None
    return (f"{head}/{stem}" if head else stem), ext.lower()


def parse_label(meta_bytes, cls_bytes):
    """The label of a sample: KEY.json's "label", else KEY.cls; None when neither is a
    non-negative integer."""
    if meta_bytes is not None:
        try:
            label = json.loads(meta_bytes.decode("utf-8")).get("label")
            if isinstance(label, int) and not isinstance(label, bool) and label >= 0:
                return label
        except (ValueError, AttributeError, UnicodeDecodeError):
            pass
    if cls_bytes is not None:
        try:
            label = int(cls_bytes.decode("ascii").strip())
            if label >= 0:
                return label
        except (ValueError, UnicodeDecodeError):
            pass
    return None


def read_shards(paths, limit=None):
    """Samples of the shards, in shard order then member order: a list of
    (image bytes, label, 'shard:key'), plus counts of what was skipped."""
    samples = []
    skipped = {"no_label": 0, "no_image": 0, "bad_image": 0}
    for path in paths:
        groups = {}  # key -> {ext: bytes}, insertion-ordered
        try:
            with tarfile.open(path, "r:*") as tar:
                for member in tar:
                    if not member.isfile():
                        continue
                    key, ext = split_member(member.name)
                    if key is None:
                        continue
                    if ext not in IMAGE_EXTS and ext not in ("json", "cls"):
                        continue
                    groups.setdefault(key, {})[ext] = tar.extractfile(member).read()
        except (tarfile.TarError, OSError, EOFError) as e:
            sys.exit(f"error: shard {path} is unreadable: {e}")
        for key, parts in groups.items():
            if limit is not None and len(samples) >= limit:
                break
            image = next((parts[e] for e in ("jpg", "jpeg", "png") if e in parts), None)
            if image is None:
                skipped["no_image"] += 1
                continue
            label = parse_label(parts.get("json"), parts.get("cls"))
            if label is None:
                skipped["no_label"] += 1
                continue
            try:
                with Image.open(io.BytesIO(image)) as im:
                    im.size  # header only: a full decode happens in training
            except Exception:
                skipped["bad_image"] += 1
                continue
            samples.append((image, label, f"{os.path.basename(path)}:{key}"))
        if limit is not None and len(samples) >= limit:
            break
    return samples, skipped


class ShardImages(torch.utils.data.Dataset):
    def __init__(self, samples, transform):
        self.samples = samples
        self.transform = transform

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, i):
        data, label, _ = self.samples[i]
        with Image.open(io.BytesIO(data)) as im:
            img = im.convert("RGB")
        return self.transform(img), label


def interpolation_name(cfg):
    """The data config's interpolation as the sidecar allows it (bilinear otherwise)."""
    name = str(cfg.get("interpolation", "bilinear"))
    return name if name in ("nearest", "bilinear", "bicubic") else "bilinear"


def train_transform(size, interpolation, mean, std):
    from torchvision import transforms

    mode = {
        "nearest": transforms.InterpolationMode.NEAREST,
        "bilinear": transforms.InterpolationMode.BILINEAR,
        "bicubic": transforms.InterpolationMode.BICUBIC,
    }[interpolation]
    return transforms.Compose(
        [
            transforms.RandomResizedCrop(size, scale=(0.5, 1.0), interpolation=mode),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            transforms.Normalize(mean, std),
        ]
    )


def seed_everything(seed):
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def worker_init(worker_id):
    s = torch.initial_seed() % 2**32
    random.seed(s)
    np.random.seed(s)


def create_model(args, num_classes):
    import timm

    return timm.create_model(args.model, pretrained=args.pretrained, num_classes=num_classes)


def data_config(model, input_size):
    from timm.data import resolve_data_config

    cfg = dict(resolve_data_config({}, model=model))
    if input_size:
        cfg["input_size"] = (3, input_size, input_size)
    return cfg


def train_one(args, seed, samples, num_classes, device):
    """Trains one model from the common start with `seed`; returns (model on CPU, cfg)."""
    seed_everything(seed)
    model = create_model(args, num_classes)
    cfg = data_config(model, args.input_size)
    size = int(cfg["input_size"][-1])
    interp = interpolation_name(cfg)
    mean = [float(v) for v in cfg["mean"]]
    std = [float(v) for v in cfg["std"]]
    ds = ShardImages(samples, train_transform(size, interp, mean, std))
    gen = torch.Generator()
    gen.manual_seed(seed)
    loader = torch.utils.data.DataLoader(
        ds,
        batch_size=args.batch_size,
        shuffle=True,
        # A last batch of one image breaks BatchNorm in training mode.
        drop_last=len(ds) > args.batch_size,
        num_workers=args.workers,
        generator=gen,
        worker_init_fn=worker_init if args.workers else None,
        pin_memory=device.type == "cuda",
    )
    model.to(device)
    opt = torch.optim.SGD(
        model.parameters(), lr=args.lr, momentum=0.9, weight_decay=args.weight_decay
    )
    total = max(1, args.epochs * len(loader))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda step: 0.5 * (1.0 + math.cos(math.pi * min(step, total) / total))
    )
    loss_fn = torch.nn.CrossEntropyLoss()
    for epoch in range(1, args.epochs + 1):
        model.train()
        start = time.time()
        loss_sum, correct, seen = 0.0, 0, 0
        lr = opt.param_groups[0]["lr"]
        for x, y in loader:
            x = x.to(device, non_blocking=True)
            y = y.to(device, non_blocking=True)
            logits = model(x)
            loss = loss_fn(logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            n = y.shape[0]
            loss_sum += float(loss.detach()) * n
            correct += int((logits.detach().argmax(1) == y).sum())
            seen += n
        print(
            f"seed {seed} epoch {epoch}/{args.epochs}: loss {loss_sum / max(seen, 1):.4f}, "
            f"train acc {correct / max(seen, 1):.4f} ({seen} images, "
            f"lr {lr:.5f} -> {opt.param_groups[0]['lr']:.5f}, {time.time() - start:.1f} s)",
            flush=True,
        )
    model.to("cpu").eval()
    return model, cfg


def train_id(args, shards, num_classes):
    """Short hash of the training data and settings: the same for every seed."""
    h = hashlib.sha256()
    for path in shards:
        h.update(f"{os.path.basename(path)}\t{os.path.getsize(path)}\n".encode())
    settings = [args.model, num_classes, args.epochs, args.batch_size, args.lr,
                args.weight_decay, args.input_size, args.limit, args.pretrained]
    h.update(json.dumps(settings).encode())
    return h.hexdigest()[:10]


def write_atomic(path, write):
    tmp = f"{path}.tmp"
    write(tmp)
    os.replace(tmp, path)


def export(model, cfg, args, seed, num_classes, shards, n_samples, tid):
    name = f"{args.name}-seed{seed}"
    size = int(cfg["input_size"][-1])
    if args.pretrained:
        tag = model.pretrained_cfg.get("tag") or "pretrained"
    else:
        tag = "random"
    meta = {
        "name": name,
        "weights": f"finetuned:{args.model}.{tag}:seed{seed}:{tid}",
        "input_size": size,
        "crop_pct": float(cfg["crop_pct"]),
        "interpolation": interpolation_name(cfg),
        "mean": [float(v) for v in cfg["mean"]],
        "std": [float(v) for v in cfg["std"]],
        "num_classes": int(num_classes),
        "source": "bgstream-finetune",
        "format": "torchscript-trace",
        "torch_version": torch.__version__,
        "channels_last": False,
        "seed": seed,
        "base_model": args.model,
        "base_weights": tag,
        "train_shards": len(shards),
        "train_samples": n_samples,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "train_id": tid,
    }
    os.makedirs(args.out, exist_ok=True)
    pt = os.path.join(args.out, f"{name}.pt")
    with torch.no_grad():
        traced = torch.jit.trace(model, torch.zeros(2, 3, size, size), check_trace=False)
    # Trace bakes cuDNN's flags into each convolution; bgstream's settings must reach them.
    mark(meta, make_runtime(traced))
    write_atomic(pt, traced.save)

    def write_json(tmp):
        with open(tmp, "w") as f:
            json.dump(meta, f, indent=2)
            f.write("\n")

    write_atomic(os.path.join(args.out, f"{name}.json"), write_json)
    print(f"exported {pt} ({num_classes} classes, input {size})", flush=True)


def parse_seeds(text):
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"seeds must be integers: {text!r}")
    if not seeds or any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"seeds must be distinct non-negative integers: {text!r}")
    return seeds


def main():
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--shards", nargs="+", required=True, action="extend",
                    help="tar shards: paths or quoted globs (repeatable)")
    ap.add_argument("--out", required=True, help="folder for NAME-seedS.pt/.json")
    ap.add_argument("--name", required=True, help="model name; each seed adds -seedS")
    ap.add_argument("--model", default="resnet18", help="timm model name (default resnet18)")
    ap.add_argument("--num-classes", type=int, help="default: max label + 1 over the shards")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=0.01, help="peak learning rate (cosine decay)")
    ap.add_argument("--weight-decay", type=float, default=1e-4)
    ap.add_argument("--seeds", type=parse_seeds, default=[0], help="comma-separated, e.g. 0,1,2")
    init = ap.add_mutually_exclusive_group()
    init.add_argument("--pretrained", dest="pretrained", action="store_true", default=True,
                      help="start from timm's ImageNet weights (default; needs them downloaded)")
    init.add_argument("--random-init", dest="pretrained", action="store_false",
                      help="start from random weights (offline tests)")
    ap.add_argument("--input-size", type=int, help="square input size (default: the model's)")
    ap.add_argument("--workers", type=int, default=0, help="DataLoader workers (default 0)")
    ap.add_argument("--limit", type=int, help="only the first N samples (quick tests)")
    ap.add_argument("--device", help="cpu, cuda, cuda:N (default: cuda when available)")
    args = ap.parse_args()
    if args.epochs < 1 or args.batch_size < 1 or args.workers < 0:
        ap.error("--epochs and --batch-size must be positive, --workers non-negative")
    if args.input_size is not None and args.input_size < 8:
        ap.error("--input-size must be at least 8")
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))

    shards = expand_shards(args.shards)
    start = time.time()
    samples, skipped = read_shards(shards, args.limit)
    print(
        f"{len(samples)} training samples from {len(shards)} shard(s) "
        f"({time.time() - start:.1f} s); skipped: {skipped['no_label']} without a readable "
        f"label, {skipped['no_image']} without an image, {skipped['bad_image']} unreadable "
        f"images",
        flush=True,
    )
    if not samples:
        sys.exit("error: no training samples")
    labels = [label for _, label, _ in samples]
    num_classes = args.num_classes if args.num_classes is not None else max(labels) + 1
    if num_classes < 1:
        sys.exit("error: --num-classes must be positive")
    over = sum(1 for label in labels if label >= num_classes)
    if over:
        sys.exit(f"error: {over} sample(s) have a label >= --num-classes {num_classes}")
    counts = np.bincount(labels, minlength=num_classes)
    print(
        f"{num_classes} classes ({int((counts > 0).sum())} with samples), device {device}, "
        f"{'pretrained' if args.pretrained else 'random'} {args.model}",
        flush=True,
    )
    if (counts > 0).sum() < 2:
        print("warning: fewer than two classes have samples: nothing to learn", flush=True)
    tid = train_id(args, shards, num_classes)
    for seed in args.seeds:
        model, cfg = train_one(args, seed, samples, num_classes, device)
        export(model, cfg, args, seed, num_classes, shards, len(samples), tid)


if __name__ == "__main__":
    main()

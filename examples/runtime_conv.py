#!/usr/bin/env python3
"""Make a TorchScript model's convolutions read cuDNN's settings when they run.

torch.jit.trace records every convolution as
`aten::_convolution(..., benchmark, deterministic, cudnn_enabled, allow_tf32)` with the
flags of the moment it traced as constants: afterwards `torch.backends.cudnn.benchmark`,
bgstream's `--cudnn-benchmark` and its TF32 policy no longer reach them. This rewrites each
such node to `aten::convolution` (same arguments less the four flags), which reads them
from the process at every call; the arithmetic is unchanged.

    python examples/runtime_conv.py models/resnet50.pt      # rewrite in place, update the sidecar

export_models.py and freeze_model.py call `make_runtime` on everything they write.
"""
import argparse
import json
import os
import sys

import torch

BAKED = "aten::_convolution"
RUNTIME = "aten::convolution"

_PATTERN = """
graph(%i, %w, %b, %s, %p, %d, %t, %op, %g, %bm, %det, %cud, %tf):
    %r = aten::_convolution(%i, %w, %b, %s, %p, %d, %t, %op, %g, %bm, %det, %cud, %tf)
    return (%r)"""
_REPLACEMENT = """
graph(%i, %w, %b, %s, %p, %d, %t, %op, %g, %bm, %det, %cud, %tf):
    %r = aten::convolution(%i, %w, %b, %s, %p, %d, %t, %op, %g)
    return (%r)"""


def _graphs(module):
    """Every graph of a scripted module: each submodule's forward (trace keeps them apart)."""
    for _, sub in module.named_modules():
        try:
            yield sub.graph
        except (AttributeError, RuntimeError):
            continue  # a submodule without a forward of its own


def count(module):
    """(baked, runtime) convolution nodes in the module's inlined graph."""
    g = module.inlined_graph
    return len(g.findAllNodes(BAKED, True)), len(g.findAllNodes(RUNTIME, True))


def make_runtime(module):
    """Rewrites `module` in place; returns its number of convolutions. Raises if any
    baked one is left (a form the pattern does not match), so nothing half-done is saved."""
    for g in _graphs(module):
        torch._C._jit_pass_custom_pattern_based_rewrite_graph(_PATTERN, _REPLACEMENT, g)
    baked, runtime = count(module)
    if baked:
        raise RuntimeError(f"{baked} convolutions still carry baked cuDNN flags")
    return runtime


def mark(meta, convolutions):
    """Records in a sidecar that the convolutions read the run-time settings."""
    meta["conv_flags"] = "runtime"
    meta["convolutions"] = convolutions
    return meta


def rewrite_file(pt):
    """Rewrites `pt` and its sidecar in place (atomically: a temporary, then a rename)."""
    m = torch.jit.load(pt, map_location="cpu")
    n = make_runtime(m)
    m.save(pt + ".tmp")
    os.replace(pt + ".tmp", pt)
    side = os.path.splitext(pt)[0] + ".json"
    if os.path.exists(side):
        with open(side) as f:
            meta = json.load(f)
        with open(side + ".tmp", "w") as f:
            json.dump(mark(meta, n), f, indent=2)
            f.write("\n")
        os.replace(side + ".tmp", side)
    print(f"{pt}: {n} convolutions now read cuDNN's run-time settings", file=sys.stderr)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+", help="TorchScript .pt files (sidecars beside them are updated)")
    for pt in ap.parse_args().models:
        rewrite_file(pt)


if __name__ == "__main__":
    main()

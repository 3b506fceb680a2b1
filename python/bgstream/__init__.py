"""bgstream's Python side of the wheel: finds the installed binary and libtorch.

The binary is on PATH after `pip install` and finds torch's libraries in its own environment
(its run path covers `../lib/pythonX.Y/site-packages/torch/lib`). Where torch lives in another
prefix (a `.pth` file, PYTHONPATH, a system site-packages), run it as `python -m bgstream`:
this imports torch, puts its `lib/` on LD_LIBRARY_PATH and runs the binary.
"""
import os
import shutil
import sys
import sysconfig

__all__ = ["binary", "libtorch", "main"]


def binary():
    """The bgstream executable this package was installed with."""
    exe = "bgstream.exe" if os.name == "nt" else "bgstream"
    for scheme in (sysconfig.get_default_scheme(), "posix_user", "posix_prefix"):
        try:
            path = os.path.join(sysconfig.get_path("scripts", scheme), exe)
        except KeyError:
            continue
        if os.path.isfile(path):
            return path
    found = shutil.which(exe)
    if found:
        return found
    raise FileNotFoundError("the bgstream executable is not installed beside this package")


def libtorch():
    """torch's lib/ folder (libtorch), checked to be torch 2.11."""
    import torch

    if not torch.__version__.startswith("2.11."):
        raise SystemExit(f"bgstream needs torch 2.11 (tch 0.24); this Python has torch {torch.__version__}")
    return os.path.join(os.path.dirname(torch.__file__), "lib")


def main(argv=None):
    lib = libtorch()
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = lib + (os.pathsep + env["LD_LIBRARY_PATH"] if env.get("LD_LIBRARY_PATH") else "")
    # `bgstream export` runs the exporter with this same Python.
    env.setdefault("BGSTREAM_PYTHON", sys.executable)
    args = [binary()] + list(sys.argv[1:] if argv is None else argv)
    os.execve(args[0], args, env)

#!/usr/bin/env python3
"""Seed corpora for the fuzz targets, structure-aware: real encoder outputs (Pillow, via
tests/reference.py make-images) and JPEGs cut inside their scan data or with a frame header
that claims more rows; shards with PAX headers (a size lie, a long path), GNU long names,
a GNU base-256 size field, keys starting with a dot, names that are not UTF-8, a symlink,
and a truncated JPEG inside; for the report writer, every shape of the input with strings
that break out of attributes, end raw-text elements, open comments, spell entities, or
hold NUL, CR, bidi controls and bytes that are not UTF-8.

    python fuzz/seeds.py SEEDS_DIR      (after tests/reference.py make-images SEEDS_DIR/image)
"""
import io
import json
import os
import sys
import tarfile


def member(t, name, payload, **pax):
    info = tarfile.TarInfo(name)
    info.size = len(payload)
    if pax:
        info.pax_headers = pax
    t.addfile(info, io.BytesIO(payload))


def sample(t, key, data, ext="jpg"):
    member(t, f"{key}.{ext}", data)
    member(t, f"{key}.cls", b"3")
    member(t, f"{key}.json", json.dumps({"boxes": [[4, 4, 40, 30]]}).encode())


def mask_seeds(out):
    """mask_to_variants inputs: byte 0 even = a mask PNG (40x32 is the right size), odd =
    f32 polygon coordinates."""
    import struct

    import numpy as np
    from PIL import Image

    os.makedirs(out, exist_ok=True)
    m = np.zeros((32, 40), np.uint8)
    m[5:20, 8:30] = 255
    for name, img in (("gray", Image.fromarray(m)), ("bit", Image.fromarray(m).convert("1")),
                      ("small", Image.fromarray(m[:10, :10])), ("rgb", Image.fromarray(m).convert("RGB")),
                      ("empty", Image.fromarray(m * 0))):
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        open(os.path.join(out, f"png_{name}"), "wb").write(b"\0" + buf.getvalue())
    for name, pts in (("star", [20, 2, 24, 12, 38, 12, 26, 19, 31, 29, 20, 22, 9, 29, 14, 19]),
                      ("line", [0, 0, 5, 5, 10, 10]), ("outside", [-50, -50, 90, -40, 10, 80])):
        open(os.path.join(out, f"poly_{name}"), "wb").write(b"\1" + struct.pack(f"<{len(pts)}f", *pts))


# report_writer strings: what escapes from an attribute, a text node, a raw-text element
# or a comment, entities, characters an HTML parser rewrites, names the report treats
# specially (`original`, `-seedN`), paths, and a long one.
REPORT_STRINGS = [
    b'x" onload="alert(1)" y=\'<script>alert(2)</script>&amp;<img src=x onerror=alert(3)>',
    b'"><svg onload=alert(1)>', b"'><img src=x onerror=alert(1)>", b"` onmouseover=alert(1) `",
    b"</style><script>alert(1)</script>", b"</script><script>alert(1)</script>",
    b"</title><script>alert(1)</script>", b"<!--", b"-->", b"<![CDATA[", b"]]>", b"<!DOCTYPE x>",
    b"&amp;", b"&quot;", b"&#34;", b"&#x3C;script&#x3E;", b"&", b"&lt", b"&unknown;",
    b"javascript:alert(1)", b"data:text/html,<script>alert(1)</script>",
    b"a\0b", b"\0", b"cr\rlf\r\nlf\n", b"\x0c\x0b\x1b",
    "\u2028\u2029\ufeff\u202e\u200d".encode(), "\U0001f600 \u00e9".encode(),
    b"\xfe\xfd\xc3", b"original", b"r18-voc-seed3", b"../../etc/passwd", b"/etc/passwd",
    b"", b" ", b"<" * 4000,
]


def report_seeds(out):
    """report_writer inputs: byte 0 the shape (bits: pictures, identity readable, second
    run, nested sets), then strings separated by 0xFF."""
    os.makedirs(out, exist_ok=True)
    strings = [s for s in REPORT_STRINGS if b"\xff" not in s]
    for shape in range(16):
        # Every shape once, every field hostile (about 80 fields: the strings three times);
        # a rotation per shape puts each string in other fields.
        rot = strings[shape % len(strings):] + strings[:shape % len(strings)]
        open(os.path.join(out, f"shape{shape:02d}"), "wb").write(bytes([shape]) + b"\xff".join(rot * 3))
    for i, s in enumerate(strings):
        # One string in every field (the long one in the first few).
        reps = 80 if len(s) < 1000 else 4
        open(os.path.join(out, f"one{i:02d}"), "wb").write(b"\x0f" + b"\xff".join([s] * reps))


def main(seeds):
    img = os.path.join(seeds, "image")
    shard = os.path.join(seeds, "shard")
    os.makedirs(shard, exist_ok=True)
    mask_seeds(os.path.join(seeds, "mask"))
    report_seeds(os.path.join(seeds, "report_writer"))
    plain = open(os.path.join(img, "plain.jpg"), "rb").read()
    # JPEGs cut inside the scan data, and one whose SOF0 claims twice the rows.
    sos = plain.index(b"\xff\xda")
    for i, cut in enumerate((sos + 40, (sos + len(plain)) // 2, len(plain) - 2)):
        open(os.path.join(img, f"cut{i}.jpg"), "wb").write(plain[:cut])
    sof = bytearray(plain)
    at = sof.index(b"\xff\xc0") + 5
    rows = int.from_bytes(sof[at:at + 2], "big") * 2
    sof[at:at + 2] = rows.to_bytes(2, "big")
    open(os.path.join(img, "tall_sof.jpg"), "wb").write(bytes(sof))

    with tarfile.open(os.path.join(shard, "seed.tar"), "w") as t:
        for name in ("plain.jpg", "progressive.jpg", "palette.png"):
            key, ext = name.split(".")
            sample(t, key, open(os.path.join(img, name), "rb").read(), ext)
        # A sample with a mask PNG and polygons.
        member(t, "masked.jpg", plain)
        member(t, "masked.json", json.dumps({"label": 3, "boxes": [], "polygons": [[2, 2, 30, 4, 10, 25]]}).encode())
        member(t, "masked.mask.png", open(os.path.join(seeds, "mask", "png_gray"), "rb").read()[1:])
    with tarfile.open(os.path.join(shard, "pax.tar"), "w", format=tarfile.PAX_FORMAT) as t:
        sample(t, "d/" + "long" * 40, plain)  # a path over 100 bytes: a PAX path record
        member(t, "comment.jpg", plain, comment="pax record")
        sample(t, ".dotkey", plain)
    with tarfile.open(os.path.join(shard, "gnu.tar"), "w", format=tarfile.GNU_FORMAT) as t:
        sample(t, "g/" + "name" * 40, plain)  # GNU long-name ('L') members
        link = tarfile.TarInfo("link.jpg")
        link.type, link.linkname = tarfile.SYMTYPE, "x.jpg"
        t.addfile(link)
        sample(t, "cut", plain[: len(plain) // 2])
    # Raw headers after a good sample: a PAX size lie, and a GNU base-256 size field
    # (2^60 bytes each), one shard each.
    with tarfile.open(os.path.join(shard, "before.tar"), "w", format=tarfile.GNU_FORMAT) as t:
        sample(t, "before", plain)
    good = bytearray(open(os.path.join(shard, "before.tar"), "rb").read().rstrip(b"\0"))
    good += b"\0" * (-len(good) % 512)
    os.remove(os.path.join(shard, "before.tar"))
    record = b"28 size=1152921504606846976\n"
    pax = tarfile.TarInfo("PaxHeaders/lie.jpg")
    pax.type, pax.size = tarfile.XHDTYPE, len(record)
    lie = pax.tobuf(tarfile.USTAR_FORMAT) + record + b"\0" * (512 - len(record))
    lie += tarfile.TarInfo("lie.jpg").tobuf(tarfile.USTAR_FORMAT) + plain[:1024]
    open(os.path.join(shard, "pax_size_lie.tar"), "wb").write(bytes(good) + lie)
    b256 = bytearray(tarfile.TarInfo("b256.jpg").tobuf(tarfile.GNU_FORMAT))
    b256[124:136] = b"\x80\0\0\0\x10" + b"\0" * 7
    b256[148:156] = b" " * 8
    b256[148:155] = b"%06o\0" % sum(b256)
    open(os.path.join(shard, "base256_size.tar"), "wb").write(bytes(good) + bytes(b256) + plain[:1024])
    # Names that are not UTF-8 (written raw: tarfile would re-encode them).
    with tarfile.open(os.path.join(shard, "bytes.tar"), "w", format=tarfile.GNU_FORMAT,
                      encoding="latin-1") as t:
        sample(t, "\xfe", plain)
        sample(t, "\xff", plain)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])

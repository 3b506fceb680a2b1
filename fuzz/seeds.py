#!/usr/bin/env python3
"""Seed corpora for the fuzz targets, structure-aware: real encoder outputs (Pillow, via
tests/reference.py make-images) and JPEGs cut inside their scan data or with a frame header
that claims more rows; shards with PAX headers (a size lie, a long path), GNU long names,
a GNU base-256 size field, keys starting with a dot, names that are not UTF-8, a symlink,
and a truncated JPEG inside; for the readers of `bgstream shard`: real ImageNet XMLs and
Kaggle/table CSV excerpts (from ../shared/data when present, else look-alikes),
scipy-written Caltech101 `.mat` files, numpy-written `.npy` masks, polygon CSVs and
manifests; for the report writer, every shape of the input with strings that break out of
attributes, end raw-text elements, open comments, spell entities, or hold NUL, CR, bidi
controls and bytes that are not UTF-8.

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
    reader_seeds(seeds)
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


DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data",
                    "imagenet-val")
FORMATS = os.path.join(DATA, "imagenet-formats")


def write(out, name, payload):
    os.makedirs(out, exist_ok=True)
    mode = "wb" if isinstance(payload, bytes) else "w"
    with open(os.path.join(out, name), mode) as f:
        f.write(payload)


def voc_xml(objects, size="<width>500</width><height>375</height><depth>3</depth>"):
    body = "".join(
        f"<object><name>{n}</name><pose>Left</pose><truncated>0</truncated>"
        f"<difficult>{d}</difficult><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin>"
        f"<xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox>{extra}</object>"
        for n, b, d, extra in objects)
    return (f"<annotation><folder>VOC2012</folder><filename>2008_000001.jpg</filename>"
            f"<size>{size}</size><segmented>0</segmented>{body}</annotation>")


def xml_seeds(out):
    """bbox_xml: real ImageNet files, VOC files (parts, difficult), sizes and numbers that
    readers must refuse."""
    real = os.path.join(FORMATS, "bbox_xml")
    if os.path.isdir(real):
        for name in sorted(os.listdir(real))[:6]:
            write(out, name, open(os.path.join(real, name), "rb").read())
    write(out, "imagenet_two_wnids.xml", voc_xml([("n01440764", (0, 10, 499, 374), 0, ""),
                                                   ("n01443537", (5, 5, 60, 60), 0, "")]))
    head = "<part><name>head</name><bndbox><xmin>10</xmin><ymin>1</ymin><xmax>30</xmax><ymax>20</ymax></bndbox></part>"
    write(out, "voc_person_parts.xml", voc_xml([("person", (1, 1, 50, 80), 0, head),
                                                 ("dog", (60, 60, 90, 99.5), 1, "")]))
    write(out, "voc_size_zero.xml", voc_xml([("cat", (1, 1, 5, 5), 0, "")],
                                            "<width>0</width><height>0</height>"))
    write(out, "voc_huge_numbers.xml", voc_xml([("cat", ("1e308", "-0", "inf", "18446744073709551616"), 0, "")],
                                               "<width>18446744073709551615</width><height>1</height>"))
    write(out, "no_objects.xml", "<annotation><size><width>3</width><height>2</height></size></annotation>")
    write(out, "dtd.xml", '<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x "xx">]><annotation>&x;</annotation>')


def csv_seeds(out):
    """kaggle_csv: excerpts of LOC_val_solution.csv and annotations.csv (both readers run on
    every input), a BOM, CRLF, and broken rows."""
    for src, name in ((os.path.join(FORMATS, "LOC_val_solution.csv"), "kaggle_real.csv"),
                      (os.path.join(DATA, "annotations.csv"), "table_real.csv")):
        if os.path.exists(src):
            write(out, name, "".join(open(src).readlines()[:12]))
    write(out, "kaggle.csv", "ImageId,PredictionString\n"
          "ILSVRC2012_val_00000002,n09193705 45 49 499 162 n09193705 2 69 437 207 \n"
          "ILSVRC2012_val_00000001,n01751748 111 108 441 193 \n")
    write(out, "kaggle_bom_crlf.csv", "\ufeffImageId,PredictionString\r\nk,n01440764 1 1 2 2\r\n")
    write(out, "kaggle_bad.csv", "ImageId,PredictionString\nk,n01440764 1 1 x\n\"unclosed,\n")
    write(out, "table.csv", "val_index,label,width,height,boxes\n"
          "1,65,500,375,111 108 441 193\n2,970,500,333,45 49 499 162;2 69 437 207\n"
          "3,0,0,0,\n18446744073709551615,999,1,1,0 0 0 0\n")


def mat_seeds(out):
    """mat: Caltech101-like annotations as scipy writes them (MAT v5), plain and zlib, with
    box_coord in several dtypes, obj_contour, extra variables of other classes."""
    import numpy as np
    import scipy.io

    os.makedirs(out, exist_ok=True)
    contour = np.array([[0.0, 10.0, 10.5, 0.0, 3.0], [0.0, 0.0, 10.0, 12.0, 4.0]])
    variants = {
        "plain": {"box_coord": np.array([[8, 100, 4, 90]], np.float64), "obj_contour": contour},
        "uint16": {"box_coord": np.array([[8, 100, 4, 90]], np.uint16), "obj_contour": contour},
        "int32_f32": {"box_coord": np.array([[2, 3, 4, 5]], np.int32),
                      "obj_contour": contour.astype(np.float32)},
        "no_contour": {"box_coord": np.array([[1, 2, 3, 4]], np.uint8)},
        "extras": {"box_coord": np.array([[1, 20, 3, 40]]), "obj_contour": contour,
                   "name": "accordion", "cell": np.array([[1, "a"]], dtype=object),
                   "s": {"a": 1}},
        "bad_contour": {"box_coord": np.array([[1, 2, 3, 4]]), "obj_contour": np.zeros((3, 1))},
    }
    for name, v in variants.items():
        for compress in (False, True):
            path = os.path.join(out, f"{name}{'_z' if compress else ''}.mat")
            scipy.io.savemat(path, v, do_compression=compress)


def npy_seeds(out):
    """npy: numpy-written masks of several dtypes, byte orders, memory orders and header
    versions; a 3-channel one; a header claiming (2**62, 2**62); and a PNG mask."""
    import numpy as np

    os.makedirs(out, exist_ok=True)
    m = np.zeros((6, 5), bool)
    m[1:4, 2:4] = True
    for name, a in (("bool", m), ("uint8", m.astype(np.uint8) * 255), ("float64", m * 0.5),
                    ("float32_be", m.astype(">f4")), ("int16_fortran", np.asfortranarray(m.astype(np.int16))),
                    ("rgb", np.stack([m, ~m, m], 2).astype(np.uint8)), ("neg_zero", -np.zeros((2, 2))),
                    ("empty_mask", np.zeros((3, 3), np.uint8))):
        np.save(os.path.join(out, f"{name}.npy"), a)
    with open(os.path.join(out, "v2.npy"), "wb") as f:
        np.lib.format.write_array(f, m.astype(np.uint8), version=(2, 0))
    header = "{'descr': '|b1', 'fortran_order': False, 'shape': (4611686018427387904, 4611686018427387904), }"
    header += " " * (-(10 + len(header) + 1) % 64) + "\n"
    write(out, "shape_2_62.npy", b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode() + b"\x01" * 16)
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(m.astype(np.uint8) * 255).save(buf, format="PNG")
    write(out, "mask.png", buf.getvalue())


def polygon_seeds(out):
    """polygons: byte 0 even = box CSV with a polygons column, odd = JSON manifest."""
    star = [20, 2, 24, 12, 38, 12, 26, 19, 31, 29, 20, 22, 9, 29, 14, 19]
    csv_text = ("path,label,x0,y0,x1,y1,polygons\n"
                f"a.jpg,1,0,0,40,32,\"{json.dumps([star])}\"\n"
                "a.jpg,1,1,1,6,6,\"[[1,1,6,1,6,6],[2,2,3,2,2,3]]\"\n"
                "b.jpg,2,0,0,5,5,\n"
                "c.jpg,3,0,0,5,5,\"[[0,0,5,5,10,10],[]]\"\n")
    write(out, "csv_polygons", b"\0" + csv_text.encode())
    manifest = {"samples": [
        {"path": "a.jpg", "label": 1, "boxes": [[4, 4, 40, 30]], "polygons": [star]},
        {"path": "b.jpg", "label": 2, "polygons": [[-50, -50, 90, -40, 10, 80]], "key": "b"},
        {"path": "c.jpg", "label": 3, "mask": "c.npy", "wnid": "n01440764"},
        {"path": "d.jpg", "label": 0, "polygons": [[1e308, 0, -1e308, 5, 0, 1e-300]]},
    ]}
    write(out, "manifest", b"\1" + json.dumps(manifest).encode())


def reader_seeds(seeds):
    xml_seeds(os.path.join(seeds, "bbox_xml"))
    csv_seeds(os.path.join(seeds, "kaggle_csv"))
    mat_seeds(os.path.join(seeds, "mat"))
    npy_seeds(os.path.join(seeds, "npy"))
    polygon_seeds(os.path.join(seeds, "polygons"))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])

#!/usr/bin/env python3
"""The summary of `bgstream aggregate` with Polars, for readers who want it without bgstream.
Same columns and numbers as summary.parquet (tests/it/aggregate.rs checks).

    python examples/aggregate_polars.py 'results/*.parquet' resnet18 [summary.csv]
"""
import math
import sys

import polars as pl

Z = 1.959963984540054


def wilson(p: pl.Expr, n: pl.Expr):
    denom = 1 + Z * Z / n
    centre = (p + Z * Z / (2 * n)) / denom
    half = Z / denom * (p * (1 - p) / n + Z * Z / (4 * n * n)).sqrt()
    return (centre - half).clip(lower_bound=0.0), (centre + half).clip(upper_bound=1.0)


PERCENT = ["top1", "top1_lo", "top1_hi", "top5", "top5_lo", "top5_hi", "rel_top1_diff",
           "rel_top5_diff", "controlled_top1", "controlled_top5", "gap_top1", "gap_top5"]


def summary(source: str, baseline: str) -> pl.DataFrame:
    # worst_bg:K has K rows per (key, variant, model), one per candidate background: the
    # image counts only if every candidate row is ok, and is right only if all are right.
    raw = pl.scan_parquet(source)
    # --original-all: an image outside the foreground filter counts in original_all only;
    # original_all is then original over every image (the filter's included).
    outside = (pl.col("variant") == "original") & pl.col("in_filter").not_()
    tagged = raw.with_columns(pl.when(outside).then(pl.lit("original_all")).otherwise(pl.col("variant")).alias("variant"))
    if raw.filter(outside).select(pl.len()).collect().item() > 0:
        kept = raw.filter((pl.col("variant") == "original") & pl.col("in_filter"))
        tagged = pl.concat([tagged, kept.with_columns(pl.lit("original_all").alias("variant"))])
    rows = (
        tagged
        .group_by("key", "variant", "model")
        .agg(
            (pl.col("status") == "ok").all().alias("ok"),
            pl.col("top1_correct").cast(pl.Int64).min().alias("t1"),
            pl.col("top5_correct").cast(pl.Int64).min().alias("t5"),
        )
        .filter(pl.col("ok"))
        .drop("ok")
        .collect()
    )
    acc = rows.group_by("model", "variant").agg(
        pl.len().cast(pl.Float64).alias("n"), pl.col("t1").sum().alias("k1"), pl.col("t5").sum().alias("k5")
    )
    acc = acc.with_columns((pl.col("k1") / pl.col("n")).alias("top1"), (pl.col("k5") / pl.col("n")).alias("top5"))
    orig = acc.filter(pl.col("variant") == "original").select("model", pl.col("top1").alias("o1"), pl.col("top5").alias("o5"))
    base = acc.filter(pl.col("model") == baseline).select("variant", pl.col("top1").alias("b1"), pl.col("top5").alias("b5"))
    ctrl_keys = rows.filter((pl.col("model") == baseline) & (pl.col("variant") == "original") & (pl.col("t1") == 1)).select("key").unique()
    ctrl = (
        rows.join(ctrl_keys, on="key", how="semi")
        .group_by("model", "variant")
        .agg(pl.len().alias("cn"), pl.col("t1").sum().alias("c1"), pl.col("t5").sum().alias("c5"))
    )
    lo1, hi1 = wilson(pl.col("top1"), pl.col("n"))
    lo5, hi5 = wilson(pl.col("top5"), pl.col("n"))
    switched = pl.col("variant").str.contains("^(fg_|mixed_|worst_bg:)")
    return (
        acc.join(base, on="variant", how="left")
        .join(ctrl, on=["model", "variant"], how="left")
        .join(orig, on="model", how="left")
        .select(
            "model",
            "variant",
            pl.col("n").cast(pl.UInt64).alias("images"),
            "top1",
            lo1.alias("top1_lo"),
            hi1.alias("top1_hi"),
            "top5",
            lo5.alias("top5_lo"),
            hi5.alias("top5_hi"),
            pl.when(pl.col("b1") > 0).then(pl.col("top1") / pl.col("b1")).alias("rel_top1_ratio"),
            (pl.col("top1") - pl.col("b1")).alias("rel_top1_diff"),
            pl.when(pl.col("b5") > 0).then(pl.col("top5") / pl.col("b5")).alias("rel_top5_ratio"),
            (pl.col("top5") - pl.col("b5")).alias("rel_top5_diff"),
            pl.col("cn").fill_null(0).cast(pl.UInt64).alias("controlled_images"),
            (pl.col("c1") / pl.col("cn")).alias("controlled_top1"),
            (pl.col("c5") / pl.col("cn")).alias("controlled_top5"),
            pl.when(switched).then(pl.col("o1") - pl.col("top1")).alias("gap_top1"),
            pl.when(switched).then(pl.col("o5") - pl.col("top5")).alias("gap_top5"),
            "o1",
        )
        .sort("o1", "model", "variant")
        .drop("o1")
        # Percent, as every bgstream output (ratios stay ratios).
        .with_columns([(pl.col(c) * 100.0).alias(c) for c in PERCENT])
    )


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    df = summary(sys.argv[1], sys.argv[2])
    if len(sys.argv) > 3:
        df.write_csv(sys.argv[3])
    with pl.Config(tbl_rows=-1, tbl_cols=-1):
        print(df)

-- The summary of `bgstream aggregate`, in DuckDB SQL, for readers who want it without
-- bgstream. Same columns and numbers as summary.parquet (tests/it/aggregate.rs checks).
--
--   duckdb -c "SET VARIABLE input = 'results/*.parquet'; SET VARIABLE baseline = 'resnet18';" \
--          -c ".read examples/aggregate.sql"
--
-- Accuracies are percent, as in every bgstream output, over rows with status = 'ok'. The controlled columns keep only images the
-- baseline classifies correctly (top-1) on 'original' (the paper's appendix A). Gaps are
-- accuracy on 'original' minus accuracy on variants that keep the foreground and switch
-- the background (fg_*, mixed_*, worst_bg:K). Intervals
-- are 95% Wilson score intervals.
WITH raw AS (
    SELECT * FROM read_parquet(getvariable('input'), union_by_name = true)
),
tagged AS (
    -- --original-all: an image outside the foreground filter counts in original_all only;
    -- original_all is then original over every image (the filter's included).
    SELECT key, CASE WHEN variant = 'original' AND NOT in_filter THEN 'original_all'
                     ELSE variant END AS variant,
           model, top1_correct, top5_correct, status
    FROM raw
    UNION ALL
    SELECT key, 'original_all', model, top1_correct, top5_correct, status
    FROM raw
    WHERE variant = 'original' AND in_filter
      AND EXISTS (SELECT 1 FROM raw WHERE variant = 'original' AND NOT in_filter)
),
rows AS (
    -- worst_bg:K has K rows per (key, variant, model), one per candidate background: the
    -- image counts only if every candidate row is ok, and is right only if all are right.
    SELECT key, variant, model, min(top1_correct::INT) AS t1, min(top5_correct::INT) AS t5
    FROM tagged
    GROUP BY key, variant, model
    HAVING bool_and(status = 'ok')
),
acc AS (
    SELECT model, variant, count(*) AS n, sum(t1) AS k1, sum(t5) AS k5
    FROM rows GROUP BY model, variant
),
orig AS (
    SELECT model, k1 / n AS o1, k5 / n AS o5 FROM acc WHERE variant = 'original'
),
base AS (
    SELECT variant, k1 / n AS b1, k5 / n AS b5 FROM acc WHERE model = getvariable('baseline')
),
ctrl_keys AS (
    SELECT DISTINCT key FROM rows
    WHERE model = getvariable('baseline') AND variant = 'original' AND t1 = 1
),
ctrl AS (
    SELECT model, variant, count(*) AS cn, sum(t1) AS c1, sum(t5) AS c5
    FROM rows SEMI JOIN ctrl_keys USING (key) GROUP BY model, variant
),
wilson AS (
    SELECT *, 1.959963984540054 AS z, k1 / n AS p1, k5 / n AS p5 FROM acc
),
summary AS (
SELECT
    o.o1 AS o1,
    w.model,
    w.variant,
    w.n::UBIGINT AS images,
    w.p1 AS top1,
    greatest(((w.p1 + w.z * w.z / (2 * w.n)) / (1 + w.z * w.z / w.n))
        - w.z / (1 + w.z * w.z / w.n) * sqrt(w.p1 * (1 - w.p1) / w.n + w.z * w.z / (4 * w.n * w.n)), 0) AS top1_lo,
    least(((w.p1 + w.z * w.z / (2 * w.n)) / (1 + w.z * w.z / w.n))
        + w.z / (1 + w.z * w.z / w.n) * sqrt(w.p1 * (1 - w.p1) / w.n + w.z * w.z / (4 * w.n * w.n)), 1) AS top1_hi,
    w.p5 AS top5,
    greatest(((w.p5 + w.z * w.z / (2 * w.n)) / (1 + w.z * w.z / w.n))
        - w.z / (1 + w.z * w.z / w.n) * sqrt(w.p5 * (1 - w.p5) / w.n + w.z * w.z / (4 * w.n * w.n)), 0) AS top5_lo,
    least(((w.p5 + w.z * w.z / (2 * w.n)) / (1 + w.z * w.z / w.n))
        + w.z / (1 + w.z * w.z / w.n) * sqrt(w.p5 * (1 - w.p5) / w.n + w.z * w.z / (4 * w.n * w.n)), 1) AS top5_hi,
    CASE WHEN b.b1 > 0 THEN w.p1 / b.b1 END AS rel_top1_ratio,
    w.p1 - b.b1 AS rel_top1_diff,
    CASE WHEN b.b5 > 0 THEN w.p5 / b.b5 END AS rel_top5_ratio,
    w.p5 - b.b5 AS rel_top5_diff,
    coalesce(c.cn, 0)::UBIGINT AS controlled_images,
    c.c1 / c.cn AS controlled_top1,
    c.c5 / c.cn AS controlled_top5,
    CASE WHEN regexp_matches(w.variant, '^(fg_|mixed_|worst_bg:)') THEN o.o1 - w.p1 END AS gap_top1,
    CASE WHEN regexp_matches(w.variant, '^(fg_|mixed_|worst_bg:)') THEN o.o5 - w.p5 END AS gap_top5
FROM wilson w
LEFT JOIN base b USING (variant)
LEFT JOIN ctrl c USING (model, variant)
LEFT JOIN orig o USING (model)
)
-- Percent, as every bgstream output gives accuracy (ratios stay ratios).
SELECT model, variant, images,
    100 * top1 AS top1, 100 * top1_lo AS top1_lo, 100 * top1_hi AS top1_hi,
    100 * top5 AS top5, 100 * top5_lo AS top5_lo, 100 * top5_hi AS top5_hi,
    rel_top1_ratio, 100 * rel_top1_diff AS rel_top1_diff,
    rel_top5_ratio, 100 * rel_top5_diff AS rel_top5_diff,
    controlled_images, 100 * controlled_top1 AS controlled_top1,
    100 * controlled_top5 AS controlled_top5,
    100 * gap_top1 AS gap_top1, 100 * gap_top5 AS gap_top5
FROM summary
ORDER BY o1, model, variant;

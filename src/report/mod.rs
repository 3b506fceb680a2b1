//! The HTML report of `bgstream aggregate --report`: [`html`] sections, [`plots`] (the
//! paper's figures as SVG) and the [`gallery`] of images the models saw.

pub mod gallery;
pub mod html;
pub mod plots;

use crate::aggregate::{check_shards, class_name, per_class, AggregateConfig, AggregateOutput};
use crate::error::FatalError;

/// Writes what the config asks for beyond the numbers: the figures (`--no-figures` leaves
/// them out unless a report needs them) and the HTML report, appended to `out.written`.
pub fn publish(cfg: &AggregateConfig, out: &mut AggregateOutput) -> Result<(), FatalError> {
    let svgs = if cfg.figures || cfg.report.is_some() {
        let figs = plots::figures(&out.aggregate);
        let svgs = plots::write_figures(&figs, &cfg.out)?;
        out.written.extend(svgs.iter().cloned());
        out.written
            .extend(svgs.iter().map(|p| p.with_extension("png")));
        svgs
    } else {
        Vec::new()
    };
    let Some(path) = &cfg.report else {
        return Ok(());
    };
    let best = per_class::best_classes(&out.per_class, "bg_only", &out.aggregate.models, 10);
    let best: Vec<_> = (best.into_iter())
        .map(|c| (class_name(out.names.as_ref(), c.label), c))
        .collect();
    let pictures = pictures(cfg, out)?;
    let html = html::render(&html::ReportInput {
        aggregate: &out.aggregate,
        data: &out.data,
        svgs: &svgs,
        warnings: &out.warnings,
        best_classes: &best,
        facts: &out.facts,
        pictures: pictures.as_ref(),
        input: &cfg.input,
        seed_groups: &out.seed_groups,
    });
    html::write(path, &html)?;
    tracing::info!(bytes = html.len(), path = %path.display(), "report written");
    out.report_bytes = Some(html.len());
    out.written.push(path.clone());
    Ok(())
}

/// The report's pictures: re-rendered from `--shards` as the run's identity describes it.
fn pictures(
    cfg: &AggregateConfig,
    out: &mut AggregateOutput,
) -> Result<Option<gallery::Pictures>, FatalError> {
    if cfg.shards.is_empty() {
        return Ok(None);
    }
    let Some(id) = out.facts.identity() else {
        out.warnings.push(
            "no readable _run.json under --in: the report cannot re-render the images".into(),
        );
        return Ok(None);
    };
    check_shards(cfg, &mut out.warnings)?;
    let opts = gallery::PictureOptions {
        shards: &cfg.shards,
        textures: cfg.textures.as_deref(),
        gallery: cfg.gallery,
        per_model: gallery::PER_MODEL,
        worst: gallery::WORST,
        thumb: gallery::THUMB,
    };
    let pictures = gallery::build(&out.data, &out.aggregate, id, out.names.as_ref(), &opts)?;
    Ok(Some(pictures))
}

/// `bgstream aggregate`: the numbers ([`crate::aggregate::run`]), then [`publish`].
pub fn aggregate(cfg: &AggregateConfig) -> Result<AggregateOutput, FatalError> {
    let mut out = crate::aggregate::run(cfg)?;
    publish(cfg, &mut out)?;
    Ok(out)
}

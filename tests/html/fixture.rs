//! A report input whose every string comes from the caller: the injection tests give each
//! field a hostile string naming the field, the fuzz target gives it the fuzzer's bytes.
//!
//! Shared (by `#[path]`) by tests/data and the fuzz target fuzz/report_writer.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use bgstream::aggregate::completeness::RunFacts;
use bgstream::aggregate::load::Loaded;
use bgstream::aggregate::metrics::{Aggregate, BgRow, Level, SummaryRow};
use bgstream::aggregate::per_class::BestClass;
use bgstream::aggregate::seeds::SeedRow;
use bgstream::ops::geometry::Interpolation;
use bgstream::precision::Precision;
use bgstream::report::gallery::{Caption, DataUri, Pic, Pictures, Shown};
use bgstream::report::html::ReportInput;
use bgstream::run::identity::{DonorIdentity, RunIdentity, TextureIdentity};
use bgstream::sidecar::Sidecar;

/// Which optional parts the input has.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// `aggregate --shards`: the gallery, the `bg_only` strips, the worst backgrounds.
    pub pictures: bool,
    /// The first run identity reads (else its error message is shown).
    pub identity_ok: bool,
    /// A second run in the input (its models and differences are shown).
    pub second_run: bool,
    /// Table 1's sets nest.
    pub nested: bool,
}

impl Shape {
    pub const FULL: Shape = Shape {
        pictures: true,
        identity_ok: true,
        second_run: true,
        nested: false,
    };
}

/// Everything a [`ReportInput`] borrows, and every string that went into it.
pub struct Owned {
    pub aggregate: Aggregate,
    pub data: Loaded,
    pub svgs: Vec<PathBuf>,
    pub warnings: Vec<String>,
    pub best: Vec<(String, BestClass)>,
    pub facts: RunFacts,
    pub pictures: Option<Pictures>,
    pub input: PathBuf,
    pub seeds: Vec<SeedRow>,
    /// (field, string) for every string that must reach the page intact.
    pub strings: Vec<(&'static str, String)>,
    /// `<img>` elements the page must hold: thumbnails and readable figures.
    pub images: usize,
}

impl Owned {
    pub fn input(&self) -> ReportInput<'_> {
        ReportInput {
            aggregate: &self.aggregate,
            data: &self.data,
            svgs: &self.svgs,
            warnings: &self.warnings,
            best_classes: &self.best,
            facts: &self.facts,
            pictures: self.pictures.as_ref(),
            input: &self.input,
            seed_groups: &self.seeds,
        }
    }
}

/// Hands out strings per field and remembers those the page must show.
struct Source<'a> {
    next: &'a mut dyn FnMut(&'static str) -> String,
    seen: Vec<(&'static str, String)>,
}

impl Source<'_> {
    /// A string the page shows.
    fn take(&mut self, field: &'static str) -> String {
        let s = (self.next)(field);
        self.seen.push((field, s.clone()));
        s
    }

    /// A string the page does not show (a count stands for it, or it is not displayed).
    fn quiet(&mut self, field: &'static str) -> String {
        (self.next)(field)
    }

    /// A path the page shows (`Path::display` is lossless for a `String`'s path).
    fn path(&mut self, field: &'static str) -> PathBuf {
        PathBuf::from(self.take(field))
    }
}

fn sidecar(name: String, weights: String) -> Sidecar {
    Sidecar {
        name,
        weights,
        input_size: 224,
        crop_pct: 0.875,
        interpolation: Interpolation::Bicubic,
        mean: [0.485, 0.456, 0.406],
        std: [0.229, 0.224, 0.225],
        num_classes: 1000,
        frozen_precision: None,
        param_count: None,
        conv_flags: None,
        class_map: None,
    }
}

fn identity(s: &mut Source<'_>) -> RunIdentity {
    RunIdentity {
        bgstream_version: s.take("bgstream version"),
        models: vec![sidecar(s.take("sidecar name"), s.take("sidecar weights"))],
        variants: vec![s.take("identity variant"), "original".into()],
        seed: 1,
        min_fg: 0.05,
        max_fg: 0.7,
        original_all: false,
        max_pixels: 1 << 26,
        precision: Precision::Fp32,
        tf32: false,
        cudnn_benchmark: false,
        batch_size: 64,
        textures: TextureIdentity {
            names: vec![s.take("texture name"), "brick.png".into()],
            content_xxh3: s.take("texture hash"),
        },
        donors: Some(DonorIdentity {
            bank_size: 12,
            donor_shards: vec![s.quiet("donor shard")],
            class_map: Some((s.take("donor class map"), vec![s.quiet("coarse class")])),
        }),
        world_size: 1,
    }
}

fn facts(s: &mut Source<'_>, shape: Shape) -> RunFacts {
    let mut identities = Vec::new();
    if shape.identity_ok {
        let first = identity(s);
        // The folder is named only when the input holds several runs.
        let folder = if shape.second_run {
            s.path("run folder")
        } else {
            PathBuf::from(s.quiet("run folder"))
        };
        identities.push((folder, Ok(first.clone())));
        if shape.second_run {
            // Its models join the table (a name already there adds nothing).
            let name = s.take("second run's model");
            let weights = if name == first.models[0].name {
                s.quiet("second run's weights")
            } else {
                s.take("second run's weights")
            };
            let other = RunIdentity {
                models: vec![sidecar(name, weights)],
                batch_size: 32,
                ..first
            };
            identities.push((PathBuf::from(s.quiet("second run folder")), Ok(other)));
        }
    } else {
        let error = s.take("identity error");
        identities.push((PathBuf::from(s.quiet("run folder")), Err(error)));
        if shape.second_run {
            let error = s.quiet("second identity error");
            identities.push((PathBuf::from(s.quiet("second run folder")), Err(error)));
        }
    }
    RunFacts {
        identities,
        shards: 2,
        samples: 10,
        filtered: 1,
        failed: 1,
    }
}

fn summary(model: &str, variant: &str, top1: Option<f64>) -> SummaryRow {
    SummaryRow {
        model: model.into(),
        variant: variant.into(),
        images: 9,
        top1,
        top1_lo: top1.map(|x| x * 0.9),
        top1_hi: top1.map(|x| (x * 1.1).min(1.0)),
        top5: top1.map(|x| (x + 0.2).min(1.0)),
        rel_top1_ratio: Some(1.0),
        rel_top1_diff: Some(-0.05),
        controlled_images: 8,
        controlled_top1: top1,
        gap_top1: Some(0.31),
        gap_top5: None,
        ..Default::default()
    }
}

fn aggregate(s: &mut Source<'_>, models: &[String], shape: Shape) -> Aggregate {
    let variants = vec!["original".to_string(), s.take("variant")];
    let mut rows = Vec::new();
    for (i, m) in models.iter().enumerate() {
        rows.push(summary(m, &variants[0], Some(0.7 + 0.1 * i as f64)));
        rows.push(summary(m, &variants[1], (i == 0).then_some(0.25)));
    }
    let level = |model: &String, s: &mut Source<'_>| Level {
        model: model.clone(),
        original_top1: 0.7,
        bg_only_top1: 0.2,
        correct: 3,
        new: 2,
        lost_from_previous: 1,
        examples: vec![s.take("Table 1 example"), s.take("Table 1 example")],
    };
    let levels = models.iter().map(|m| level(m, s)).collect();
    let backgrounds = models
        .iter()
        .map(|m| BgRow {
            model: m.clone(),
            only_bg_black: Some(0.1),
            only_bg_tiled: None,
            only_fg: Some(0.9),
            no_fg: None,
            mixed_same: Some(0.6),
            mixed_rand: Some(0.4),
            mixed_next: Some(0.3),
            bg_gap: Some(0.2),
            bg_gap_images: 5,
            challenge_variant: Some(variants[1].clone()),
            challenge_top1: Some(0.5),
            challenge_images: 4,
            exhaustive_top1: Some(0.25),
            exhaustive_images: 4,
        })
        .collect();
    Aggregate {
        baseline: s.take("baseline"),
        models: models.to_vec(),
        variants,
        rows,
        levels,
        nested: shape.nested,
        common: 1,
        backgrounds,
        class_map: Some(s.take("class map")),
        scoring: Some(s.take("scoring")),
    }
}

fn pic(s: &mut Source<'_>, background: bool, models: &[String]) -> Pic {
    Pic {
        // Any bytes: the checks read the page, not the picture.
        src: DataUri::jpeg(&[0xFF, 0xD8, 0xFF, 0xD9]),
        alt: s.take("picture alt"),
        background: background.then(|| s.take("background key")),
        captions: models
            .iter()
            .enumerate()
            .map(|(i, m)| Caption {
                model: m.clone(),
                predicted: s.take("predicted class"),
                right: i == 0,
                p_true: (i == 0).then_some(0.25),
            })
            .collect(),
    }
}

fn shown(s: &mut Source<'_>, pics: Vec<Option<Pic>>) -> Shown {
    Shown {
        key: s.take("key"),
        class: s.take("class name"),
        pics,
    }
}

/// A worst-background case: its caption names the class, not the key.
fn worst_case(s: &mut Source<'_>, pics: Vec<Option<Pic>>) -> Shown {
    Shown {
        key: s.quiet("worst case's key"),
        class: s.take("class name"),
        pics,
    }
}

fn pictures(s: &mut Source<'_>, a: &Aggregate) -> Pictures {
    let models = &a.models;
    let row = |s: &mut Source<'_>| {
        let pics = vec![
            Some(pic(s, false, models)),
            None,
            Some(pic(s, true, models)),
        ];
        shown(s, pics)
    };
    let gallery = vec![row(s), row(s)];
    let strip = |s: &mut Source<'_>| {
        let pics = vec![Some(pic(s, false, &models[..1]))];
        shown(s, pics)
    };
    let from_background = vec![
        (s.take("model"), vec![strip(s), strip(s)]),
        (s.take("model"), Vec::new()),
    ];
    let pair = |s: &mut Source<'_>| {
        let pics = vec![
            Some(pic(s, false, &models[..1])),
            Some(pic(s, true, &models[..1])),
        ];
        worst_case(s, pics)
    };
    let worst = vec![(s.take("worst variant"), vec![pair(s)])];
    Pictures {
        columns: vec![
            a.variants[0].clone(),
            a.variants[1].clone(),
            s.take("column"),
        ],
        size: 224,
        gallery,
        from_background,
        worst,
        notes: vec![s.take("picture note")],
    }
}

fn images(p: &Pictures) -> usize {
    let shown =
        |list: &[Shown]| -> usize { list.iter().map(|s| s.pics.iter().flatten().count()).sum() };
    shown(&p.gallery)
        + p.from_background
            .iter()
            .map(|(_, l)| l.iter().filter_map(|s| s.pics.first()?.as_ref()).count())
            .sum::<usize>()
        + p.worst.iter().map(|(_, l)| shown(l)).sum::<usize>()
}

/// Builds an input of `shape` whose strings come from `next(field)`. `figure` is a
/// readable SVG file to show; a second figure, under `dir`, does not exist.
pub fn build(
    shape: Shape,
    figure: &Path,
    dir: &Path,
    next: &mut dyn FnMut(&'static str) -> String,
) -> Owned {
    let mut s = Source {
        next,
        seen: Vec::new(),
    };
    let models = vec![s.take("model"), s.take("model")];
    let aggregate = aggregate(&mut s, &models, shape);
    let mut error_rows = HashMap::new();
    error_rows.insert(s.take("error code"), 3);
    let data = Loaded {
        rows: 40,
        error_rows,
        keys: vec![s.quiet("key")],
        ..Default::default()
    };
    let facts = facts(&mut s, shape);
    let pictures = shape.pictures.then(|| pictures(&mut s, &aggregate));
    // Missing: `missing` does not exist under `dir`, so nothing below it resolves.
    let missing = format!("{}/missing/{}", dir.display(), s.quiet("figure"));
    s.seen.push(("missing figure", missing.clone()));
    let missing = PathBuf::from(missing);
    let best = vec![
        (
            s.take("best class"),
            BestClass {
                label: 7,
                images: 5,
                top1: vec![Some(0.2), None],
            },
        ),
        (
            String::new(),
            BestClass {
                label: 3,
                images: 2,
                top1: vec![None, Some(0.5)],
            },
        ),
    ];
    let seeds = vec![SeedRow {
        group: s.take("seed group"),
        variant: s.take("seed group variant"),
        seeds: 3,
        top1_mean: 0.5,
        top1_sd: 0.1,
        top1_min: 0.4,
        top1_max: 0.6,
        top5_mean: f64::NAN,
        top5_sd: f64::NAN,
    }];
    let images = 1 + pictures.as_ref().map_or(0, images);
    Owned {
        warnings: vec![s.take("warning")],
        input: s.path("input folder"),
        svgs: vec![figure.to_path_buf(), missing],
        aggregate,
        data,
        best,
        facts,
        pictures,
        seeds,
        strings: s.seen,
        images,
    }
}

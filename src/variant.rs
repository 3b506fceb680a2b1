//! The variants' names: what `--variants` accepts and what the `variant` column holds,
//! shared by the stage that renders them ([`crate::ops::variants`], where each is
//! defined) and the aggregate that reads them back.

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Variant {
    Original,
    BgOnly,
    FgWhite,
    FgTexture,
    FgGauss,
    FgUniform,
    FgColor { name: String, rgb: [u8; 3] },
    BgOnlyBlack,
    BgTiled,
    MixedSame,
    MixedRand,
    MixedNext,
    WorstBg { k: usize },
    OnlyFg,
    NoFg,
}

/// The largest `K` of `worst_bg:K` (each candidate is a forward pass per model).
pub const MAX_WORST_K: usize = 64;

/// The paper's set, in this order, is the default of `--variants`.
pub const DEFAULT_VARIANTS: &str =
    "original,bg_only,fg_white,fg_texture,fg_gauss,fg_uniform,fg_color:green,fg_color:yellow,fg_color:grey";

fn named_colour(name: &str) -> Option<[u8; 3]> {
    Some(match name {
        "green" => [0, 255, 0],
        "yellow" => [255, 255, 0],
        "grey" | "gray" => [128, 128, 128],
        "red" => [255, 0, 0],
        "blue" => [0, 0, 255],
        "black" => [0, 0, 0],
        "white" => [255, 255, 255],
        _ => return None,
    })
}

/// The name prefix of `worst_bg:K`.
pub const WORST_BG: &str = "worst_bg:";

/// Not a variant but a row of the summaries: `original` over every image classified,
/// those the foreground filter drops included (`--original-all`); `original` alone is the
/// filtered subset (the paper's).
pub const ORIGINAL_ALL: &str = "original_all";

/// Whether a `variant` column value has several rows per (image, model), reduced to one
/// verdict: right only if every row is right (`worst_bg:K`, a row per candidate).
pub fn is_multi_row(variant: &str) -> bool {
    variant.starts_with(WORST_BG)
}

/// Whether a `variant` column value keeps the foreground and changes the background: its
/// gap to `original` measures how much the background mattered.
pub fn keeps_foreground(variant: &str) -> bool {
    variant.starts_with("fg_")
        || variant.starts_with("mixed_")
        || variant == "only_fg"
        || is_multi_row(variant)
}

impl std::str::FromStr for Variant {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s.trim() {
            "original" => Variant::Original,
            "bg_only" => Variant::BgOnly,
            "fg_white" => Variant::FgWhite,
            "fg_texture" => Variant::FgTexture,
            "fg_gauss" => Variant::FgGauss,
            "fg_uniform" => Variant::FgUniform,
            "bg_only_black" => Variant::BgOnlyBlack,
            "bg_tiled" => Variant::BgTiled,
            "mixed_same" => Variant::MixedSame,
            "mixed_rand" => Variant::MixedRand,
            "mixed_next" => Variant::MixedNext,
            "only_fg" => Variant::OnlyFg,
            "no_fg" => Variant::NoFg,
            other if other.starts_with(WORST_BG) => {
                let k = other[WORST_BG.len()..]
                    .parse::<usize>()
                    .ok()
                    .filter(|k| (1..=MAX_WORST_K).contains(k))
                    .ok_or_else(|| {
                        format!("bad {other:?}: worst_bg:K needs K in 1..={MAX_WORST_K}")
                    })?;
                Variant::WorstBg { k }
            }
            other => {
                let Some(spec) = other.strip_prefix("fg_color:") else {
                    return Err(format!(
                        "unknown variant {other:?} (known: {DEFAULT_VARIANTS}, fg_color:R,G,B, {EXTRA_VARIANTS}, worst_bg:K)"
                    ));
                };
                let rgb = match named_colour(spec) {
                    Some(rgb) => rgb,
                    None => {
                        let parts: Vec<_> =
                            spec.split(',').map(|p| p.trim().parse::<u8>()).collect();
                        match parts.as_slice() {
                            [Ok(r), Ok(g), Ok(b)] => [*r, *g, *b],
                            _ => {
                                return Err(format!(
                                    "bad colour {spec:?}: a name (green, yellow, grey, red, blue, black, white) or R,G,B in 0..=255"
                                ))
                            }
                        }
                    }
                };
                Variant::FgColor {
                    name: spec.to_string(),
                    rgb,
                }
            }
        })
    }
}

impl Variant {
    /// The name written to the `variant` column (round-trips through `FromStr`).
    pub fn name(&self) -> String {
        match self {
            Variant::Original => "original".into(),
            Variant::BgOnly => "bg_only".into(),
            Variant::FgWhite => "fg_white".into(),
            Variant::FgTexture => "fg_texture".into(),
            Variant::FgGauss => "fg_gauss".into(),
            Variant::FgUniform => "fg_uniform".into(),
            Variant::FgColor { name, .. } => format!("fg_color:{name}"),
            Variant::BgOnlyBlack => "bg_only_black".into(),
            Variant::BgTiled => "bg_tiled".into(),
            Variant::MixedSame => "mixed_same".into(),
            Variant::MixedRand => "mixed_rand".into(),
            Variant::MixedNext => "mixed_next".into(),
            Variant::WorstBg { k } => format!("{WORST_BG}{k}"),
            Variant::OnlyFg => "only_fg".into(),
            Variant::NoFg => "no_fg".into(),
        }
    }

    /// Images (and rows per model) this variant makes per input image.
    pub fn slots(&self) -> usize {
        match self {
            Variant::WorstBg { k } => *k,
            _ => 1,
        }
    }

    /// Whether it takes other images' backgrounds (a donor bank, built before the run).
    pub fn needs_donors(&self) -> bool {
        matches!(
            self,
            Variant::MixedSame | Variant::MixedRand | Variant::MixedNext | Variant::WorstBg { .. }
        )
    }

    /// Whether it is defined only for samples with a mask (`no_mask` rows otherwise).
    pub fn needs_mask(&self) -> bool {
        matches!(self, Variant::OnlyFg | Variant::NoFg)
    }

    /// Parses a comma-separated list; `fg_color:R,G,B` keeps its commas.
    pub fn parse_list(s: &str) -> Result<Vec<Variant>, String> {
        let mut out: Vec<Variant> = Vec::new();
        let mut pending = String::new();
        for part in s.split(',') {
            // Digits continue an `fg_color:R,G,B` triple that the split broke apart.
            let continues = pending.starts_with("fg_color:")
                && pending.matches(',').count() < 2
                && pending[9..]
                    .split(',')
                    .all(|p| p.trim().parse::<u8>().is_ok())
                && part.trim().parse::<u8>().is_ok();
            if continues {
                pending.push(',');
                pending.push_str(part);
                continue;
            }
            if !pending.is_empty() {
                out.push(pending.parse()?);
            }
            pending = part.trim().to_string();
        }
        if !pending.is_empty() {
            out.push(pending.parse()?);
        }
        if out.is_empty() {
            return Err("no variants given".into());
        }
        let mut names: Vec<String> = out.iter().map(Variant::name).collect();
        names.sort();
        if names.windows(2).any(|w| w[0] == w[1]) {
            return Err(format!("variant listed twice in {s:?}"));
        }
        Ok(out)
    }
}

/// The variants beyond the paper (ImageNet-9 style, see the module table).
pub const EXTRA_VARIANTS: &str =
    "bg_only_black,bg_tiled,mixed_same,mixed_rand,mixed_next,only_fg,no_fg";

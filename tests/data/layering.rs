//! The dependency check (issue 26): the top-level modules of `src/` form no import cycle,
//! and the layers keep to their direction. Read from the source text, as
//! `../shared/tools/module_graph.py` does: `crate::NAME` paths and `use crate::{..}`
//! groups, outside comments and `#[cfg(test)] mod tests`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

type Graph = BTreeMap<String, BTreeSet<String>>;

/// Edges that break the layering today, each waiting for a move. The test requires exactly
/// these: a new break fails it, and so does a fixed one still listed (remove it here).
/// Issue 26's moves left none.
const KNOWN: &[(&str, &str, &str)] = &[];

/// `from -> to` edges nothing may have (`*`: any module but the front end, `main`, `cli`
/// and `commands`, which live in the binary).
const FORBIDDEN: &[(&str, &str)] = &[
    ("*", "cli"),
    ("*", "commands"),
    ("*", "main"),
    // The paper's numbers come from Parquet alone: no pixels, no torch, no HTML.
    ("aggregate", "ops"),
    ("aggregate", "infer"),
    ("aggregate", "batch"),
    ("aggregate", "pipeline"),
    ("aggregate", "stage"),
    ("aggregate", "preview"),
    ("aggregate", "report"),
    ("batch", "preview"),
    ("batch", "aggregate"),
    ("batch", "run"),
    ("sink", "aggregate"),
    ("sink", "pipeline"),
    ("sink", "run"),
    ("source", "shard"),
    ("source", "stage"),
    ("source", "pipeline"),
    ("source", "batch"),
    ("source", "run"),
    ("stage", "pipeline"),
    ("stage", "run"),
    ("stage", "batch"),
    ("stage", "report"),
    // The run's top level is below the pipeline that executes it.
    ("run", "pipeline"),
    ("shard", "stage"),
    ("shard", "run"),
];

/// Decodes, resizes, renders: depends on no stage, only on the error types and the
/// variants' names.
const PURE: &[&str] = &["ops", "variant"];
const LEAVES: &[&str] = &["ops", "error", "variant"];

/// `text` without its `#[cfg(test)] mod tests` (attributes between them allowed) and
/// without comments.
fn strip(text: &str) -> String {
    let cut = text
        .match_indices("#[cfg(test)]")
        .map(|(i, _)| i)
        .find(|&i| {
            let after = &text[i..];
            after
                .lines()
                .skip(1)
                .find(|l| !l.trim_start().starts_with("#["))
                .is_some_and(|l| l.trim_start().starts_with("mod tests"))
        });
    let text = &text[..cut.unwrap_or(text.len())];
    text.lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The top-level modules named after `crate::` in `text`.
fn imports(text: &str) -> BTreeSet<String> {
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    let mut out = BTreeSet::new();
    for (i, _) in text.match_indices("crate::") {
        let rest = &text[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let inner = group.split('}').next().unwrap_or("");
            // Top-level names of the group: the first identifier of each comma item.
            let mut depth = 0;
            let mut item_start = true;
            for (j, c) in inner.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 0 => item_start = true,
                    c if item_start && depth == 0 && (c.is_alphanumeric() || c == '_') => {
                        out.insert(ident(&inner[j..]));
                        item_start = false;
                    }
                    _ => {}
                }
            }
        } else {
            let name = ident(rest);
            if !name.is_empty() {
                out.insert(name);
            }
        }
    }
    out
}

fn graph(src: &Path) -> Graph {
    let mut g = Graph::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            if p.extension().is_none_or(|x| x != "rs") {
                continue;
            }
            let rel = p.strip_prefix(src).unwrap();
            let top = rel
                .components()
                .next()
                .unwrap()
                .as_os_str()
                .to_str()
                .unwrap();
            let module = top.strip_suffix(".rs").unwrap_or(top).to_string();
            if module == "main" || module == "lib" {
                continue; // the crate roots declare and dispatch
            }
            let text = strip(&std::fs::read_to_string(&p).unwrap());
            let deps = g.entry(module.clone()).or_default();
            deps.extend(imports(&text).into_iter().filter(|m| *m != module));
        }
    }
    g
}

/// Every set of modules that import each other, round and round (Tarjan's SCCs of size
/// above one).
fn cycles(g: &Graph) -> Vec<Vec<String>> {
    struct State<'a> {
        g: &'a Graph,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a str) {
        let n = s.index.len();
        s.index.insert(v, n);
        s.low.insert(v, n);
        s.stack.push(v);
        for w in s.g.get(v).into_iter().flatten() {
            let w = w.as_str();
            if !s.index.contains_key(w) {
                visit(s, w);
                let lw = s.low[w];
                let lv = s.low.get_mut(v).unwrap();
                *lv = (*lv).min(lw);
            } else if s.stack.contains(&w) {
                let iw = s.index[w];
                let lv = s.low.get_mut(v).unwrap();
                *lv = (*lv).min(iw);
            }
        }
        if s.low[v] == s.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = s.stack.pop() {
                comp.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort();
                s.out.push(comp);
            }
        }
    }
    let mut s = State {
        g,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        out: Vec::new(),
    };
    for v in g.keys() {
        if !s.index.contains_key(v.as_str()) {
            visit(&mut s, v);
        }
    }
    s.out
}

/// The forbidden edges `g` has.
fn breaks(g: &Graph) -> BTreeSet<(String, String)> {
    let front = ["main", "lib", "cli", "commands"];
    let mut out = BTreeSet::new();
    for (from, deps) in g {
        for to in deps {
            let ruled = FORBIDDEN.iter().any(|&(a, b)| {
                b == to && (a == from || (a == "*" && !front.contains(&from.as_str())))
            });
            let impure = PURE.contains(&from.as_str())
                && !LEAVES.contains(&to.as_str())
                && g.contains_key(to);
            if ruled || impure {
                out.insert((from.clone(), to.clone()));
            }
        }
    }
    out
}

#[test]
fn no_import_cycle_and_layers_keep_their_direction() {
    let src = crate::common::root().join("src");
    let g = graph(&src);
    assert!(g.len() > 15, "{g:?}");
    assert_eq!(cycles(&g), Vec::<Vec<String>>::new(), "import cycles");
    let found = breaks(&g);
    let known: BTreeSet<(String, String)> = KNOWN
        .iter()
        .map(|(a, b, _)| (a.to_string(), b.to_string()))
        .collect();
    assert_eq!(
        found, known,
        "layering breaks found vs known (tests/data/layering.rs KNOWN)"
    );
}

#[test]
fn the_check_finds_a_cycle_and_a_break() {
    let text = "use crate::b::X;\nuse crate::{c, d::{e, f}};\n// crate::z in a comment\n";
    assert_eq!(
        imports(&strip(text)),
        ["b", "c", "d"].map(String::from).into()
    );
    let mut g = Graph::new();
    for (a, b) in [
        ("a", "b"),
        ("b", "c"),
        ("c", "a"),
        ("c", "d"),
        ("ops", "sink"),
    ] {
        g.entry(a.into()).or_default().insert(b.into());
        g.entry(b.into()).or_default();
    }
    assert_eq!(cycles(&g), vec![vec!["a", "b", "c"]]);
    g.entry("sink".into())
        .or_default()
        .insert("aggregate".into());
    g.entry("aggregate".into()).or_default();
    assert_eq!(
        breaks(&g),
        [("ops", "sink"), ("sink", "aggregate")]
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .into()
    );
}

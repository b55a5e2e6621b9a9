//! The layout's rules, read from the source: the top-level modules of `src/` form no
//! import cycle, and the edges ARCHITECTURE.md forbids are absent. An edge is any
//! `crate::module` path written in a file of another module (in `use` or inline), comments
//! aside.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Edges that must never exist: `(from, to)`, with why, as ARCHITECTURE.md says it.
const FORBIDDEN: &[(&str, &[&str], &str)] = &[
    (
        "rule",
        &["firewall", "store", "engine", "source", "fleet"],
        "a rule only matches lines: it knows nothing of where they come from or what a ban does",
    ),
    (
        "source",
        &["firewall", "store", "engine", "fleet"],
        "sources only read and match; the decision thread alone acts",
    ),
    (
        "firewall",
        &["store"],
        "the engine changes firewall and store together; neither knows the other",
    ),
    (
        "store",
        &["firewall"],
        "the engine changes firewall and store together; neither knows the other",
    ),
    (
        "admin",
        &["cmd"],
        "the admin and the CLI share the engine, not each other",
    ),
    (
        "fail2ban",
        &["firewall", "store", "engine", "source", "fleet", "rule"],
        "turning fail2ban's files into a configuration reads files and writes text, nothing else",
    ),
    (
        "notifier",
        &["firewall", "store", "engine", "source", "fleet"],
        "notifications only tell: the decision thread hands them each ban, and they never act",
    ),
];

/// What `config` may reach: leaf value types only.
const CONFIG_MAY_REACH: &[&str] = &["duration", "net"];

/// One use of another module: where it is written.
#[derive(Debug, Clone)]
struct Site {
    file: PathBuf,
    line: usize,
}

type Graph = BTreeMap<String, BTreeMap<String, Site>>;

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("reading src/") {
        let path = entry.expect("reading src/").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file belongs to (`None` for the crate root and the binary).
fn module_of(file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src()).ok()?;
    let first = rel.components().next()?.as_os_str().to_string_lossy();
    let name = first.trim_end_matches(".rs").to_string();
    (name != "main" && name != "lib").then_some(name)
}

/// The modules a line of code names through `crate::`, grouped imports included.
fn crate_paths(code: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        let before = rest[..at].chars().last();
        rest = &rest[at + "crate::".len()..];
        // `pyfilter_crate::x` or `mycrate::x` are not this crate.
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let name: String = item
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    found.push(name);
                }
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                found.push(name);
            }
        }
    }
    found
}

/// Every edge between top-level modules, with one place it is written.
fn graph() -> Graph {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    files.sort();
    let mut graph = Graph::new();
    for file in files {
        let Some(from) = module_of(&file) else {
            continue;
        };
        let text = std::fs::read_to_string(&file).expect("reading a source file");
        graph.entry(from.clone()).or_default();
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            for to in crate_paths(code) {
                if to != from {
                    graph
                        .entry(from.clone())
                        .or_default()
                        .entry(to)
                        .or_insert(Site {
                            file: file.clone(),
                            line: n + 1,
                        });
                }
            }
        }
    }
    graph
}

fn show(site: &Site) -> String {
    let rel = site
        .file
        .strip_prefix(Path::new(env!("CARGO_MANIFEST_DIR")))
        .unwrap_or(&site.file);
    format!("{}:{}", rel.display(), site.line)
}

/// Strongly connected components with more than one module (Tarjan's algorithm).
fn cycles(graph: &Graph) -> Vec<Vec<String>> {
    struct Tarjan<'a> {
        graph: &'a Graph,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        found: Vec<Vec<String>>,
    }
    impl<'a> Tarjan<'a> {
        fn visit(&mut self, v: &'a str) {
            let i = self.index.len();
            self.index.insert(v, i);
            self.low.insert(v, i);
            self.stack.push(v);
            self.on_stack.insert(v);
            for w in self.graph.get(v).into_iter().flat_map(|e| e.keys()) {
                let w = w.as_str();
                if !self.graph.contains_key(w) {
                    continue;
                }
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let low = self.low[v].min(self.low[w]);
                    self.low.insert(v, low);
                } else if self.on_stack.contains(w) {
                    let low = self.low[v].min(self.index[w]);
                    self.low.insert(v, low);
                }
            }
            if self.low[v] == self.index[v] {
                let mut component = Vec::new();
                while let Some(w) = self.stack.pop() {
                    self.on_stack.remove(w);
                    component.push(w.to_string());
                    if w == v {
                        break;
                    }
                }
                if component.len() > 1 {
                    component.sort();
                    self.found.push(component);
                }
            }
        }
    }
    let mut t = Tarjan {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        found: Vec::new(),
    };
    for v in graph.keys() {
        if !t.index.contains_key(v.as_str()) {
            t.visit(v);
        }
    }
    t.found
}

#[test]
fn top_level_modules_form_no_import_cycle() {
    let graph = graph();
    let found = cycles(&graph);
    let mut report = String::new();
    for component in &found {
        report.push_str(&format!("cycle among {}:\n", component.join(", ")));
        for from in component {
            for (to, site) in &graph[from] {
                if component.contains(to) {
                    report.push_str(&format!("  {from} -> {to} at {}\n", show(site)));
                }
            }
        }
    }
    assert!(found.is_empty(), "{report}");
}

#[test]
fn no_forbidden_edge_between_stages() {
    let graph = graph();
    let mut report = String::new();
    for (from, never, why) in FORBIDDEN {
        for to in *never {
            if let Some(site) = graph.get(*from).and_then(|e| e.get(*to)) {
                report.push_str(&format!("{from} -> {to} at {} ({why})\n", show(site)));
            }
        }
    }
    for (to, site) in graph.get("config").into_iter().flatten() {
        if !CONFIG_MAY_REACH.contains(&to.as_str()) {
            report.push_str(&format!(
                "config -> {to} at {} (the configuration is what the user wrote: it reaches only {})\n",
                show(site),
                CONFIG_MAY_REACH.join(", ")
            ));
        }
    }
    assert!(report.is_empty(), "{report}");
}

#[test]
fn every_source_file_says_what_it_owns() {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let missing: Vec<String> = files
        .iter()
        .filter(|f| {
            !std::fs::read_to_string(f)
                .expect("reading a source file")
                .starts_with("//!")
        })
        .map(|f| f.display().to_string())
        .collect();
    assert!(
        missing.is_empty(),
        "files without a `//!` header: {missing:?}"
    );
}

#[test]
fn the_checker_sees_grouped_and_inline_paths() {
    assert_eq!(
        crate_paths("use crate::{ban::Ban, net}; let x = crate::store::open();"),
        ["ban", "net", "store"]
    );
    assert!(crate_paths("use other_crate::x;").is_empty());
    let mut g = Graph::new();
    let site = Site {
        file: PathBuf::from("x"),
        line: 1,
    };
    for (a, b) in [("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")] {
        g.entry(a.into())
            .or_default()
            .insert(b.into(), site.clone());
        g.entry(b.into()).or_default();
    }
    assert_eq!(cycles(&g), [["a", "b", "c"]]);
}

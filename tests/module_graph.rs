//! The server's module graph, read from `src/server` as text: no cycle between its top-level
//! modules (a directory such as `store/` or `routes/` is one node), and no route module under
//! `src/server/routes` importing another one except the shared helpers named below.
//!
//! An edge is any path that leaves a module: `use super::…`, `use crate::server::…` (grouped
//! imports included) and in-code paths such as `super::metrics::handle()`. `mod x;` lines are
//! not edges, and `#[cfg(test)]` items are skipped. Std only.
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Route modules every route may import: extractors and links (`extract`), the OpenAPI frame
/// and shared schemas (`openapi`), tus header names and parsers (`tus_headers`). None of them
/// imports a route. Items of `routes/mod.rs` itself are always allowed.
const SHARED_ROUTE_MODULES: &[&str] = &["extract", "openapi", "tus_headers"];

/// One `.rs` file of `src/server`: its module path below `server` and its tokens.
struct Source {
    file: String,
    module: Vec<String>,
    tokens: Vec<(String, usize)>,
}

/// A path that leaves its module: where it was written and what it names (below `server`).
struct Reference {
    line: usize,
    target: Vec<String>,
}

/// Edges between top-level modules, each with the places that make it.
type Edges = BTreeMap<(String, String), Vec<String>>;
type Graph = BTreeMap<String, BTreeSet<String>>;

#[test]
fn the_servers_top_level_modules_form_no_cycle() {
    let sources = server_sources();
    let edges = top_level_edges(&sources);
    let graph = graph_of(edges.keys().cloned());
    if let Some(cycle) = find_cycle(&graph) {
        let mut listing = String::new();
        for ((from, to), places) in &edges {
            let on_cycle = if reaches(&graph, to, from) { "*" } else { " " };
            listing += &format!("{on_cycle} {from} → {to}    {}\n", places.join(", "));
        }
        panic!(
            "the server's top-level modules have a cycle: {}\n\nevery edge (* = on a cycle):\n{listing}",
            cycle.join(" → ")
        );
    }
}

#[test]
fn route_modules_import_no_other_route_module_but_the_shared_ones() {
    let sources = server_sources();
    let routes: BTreeSet<&str> = sources
        .iter()
        .filter(|source| source.module.len() >= 2 && source.module[0] == "routes")
        .map(|source| source.module[1].as_str())
        .collect();
    let mut crossings = BTreeSet::new();
    for source in &sources {
        let [top, own, ..] = source.module.as_slice() else {
            continue;
        };
        if top != "routes" {
            continue;
        }
        for reference in references(source) {
            if let [top, other, ..] = reference.target.as_slice() {
                if top == "routes"
                    && other != own
                    && routes.contains(other.as_str())
                    && !SHARED_ROUTE_MODULES.contains(&other.as_str())
                {
                    crossings.insert(format!(
                        "{}:{} uses routes::{other}",
                        source.file, reference.line
                    ));
                }
            }
        }
    }
    assert!(
        crossings.is_empty(),
        "route modules import other route modules (allowed: routes/mod.rs items and {SHARED_ROUTE_MODULES:?}):\n{}",
        Vec::from_iter(crossings).join("\n")
    );
}

#[test]
fn the_cycle_finder_finds_a_cycle_and_only_a_cycle() {
    let edge = |from: &str, to: &str| (from.to_owned(), to.to_owned());
    let tangled = graph_of([
        edge("a", "b"),
        edge("b", "c"),
        edge("c", "a"),
        edge("c", "d"),
    ]);
    assert_eq!(find_cycle(&tangled).unwrap(), ["a", "b", "c", "a"]);
    let diamond = graph_of([
        edge("a", "b"),
        edge("a", "c"),
        edge("b", "d"),
        edge("c", "d"),
    ]);
    assert_eq!(find_cycle(&diamond), None);
    assert!(reaches(&tangled, "c", "b") && !reaches(&diamond, "d", "a"));
}

#[test]
fn grouped_imports_and_in_code_paths_are_references() {
    let source = Source {
        file: "routes/x.rs".into(),
        module: vec!["routes".into(), "x".into()],
        tokens: tokens(
            "use super::{a, b::{c, d as e}};\nuse crate::server::{auth::{self, T}, hub};\n\
             // use super::commented;\nfn f() { let s = \"super::quoted\"; super::super::metrics::handle(); }\n\
             #[cfg(test)]\nmod tests { use super::*; }\n",
        ),
    };
    let found: Vec<String> = references(&source)
        .iter()
        .map(|reference| format!("{}:{}", reference.line, reference.target.join("::")))
        .collect();
    assert_eq!(
        found,
        [
            "1:routes::a",
            "1:routes::b::c",
            "1:routes::b::d",
            "2:auth",
            "2:auth::T",
            "2:hub",
            "4:metrics::handle"
        ]
    );
}

fn server_sources() -> Vec<Source> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/server");
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let relative = path.strip_prefix(&root).unwrap().with_extension("");
            let mut module: Vec<String> = relative
                .iter()
                .map(|part| part.to_string_lossy().into_owned())
                .collect();
            if module.last().is_some_and(|last| last == "mod") {
                module.pop();
            }
            let text = std::fs::read_to_string(&path).unwrap();
            Source {
                file: format!("src/server/{}", path.strip_prefix(&root).unwrap().display()),
                module,
                tokens: tokens(&text),
            }
        })
        .collect()
}

fn rust_files(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, files);
        } else if path.extension().is_some_and(|extension| extension == "rs") {
            files.push(path);
        }
    }
}

/// The edges between top-level modules (a module's first path segment), with their places.
fn top_level_edges(sources: &[Source]) -> Edges {
    let tops: BTreeSet<&str> = sources
        .iter()
        .filter_map(|source| source.module.first())
        .map(String::as_str)
        .collect();
    let mut edges = Edges::new();
    for source in sources {
        let Some(from) = source.module.first() else {
            continue;
        };
        for reference in references(source) {
            let Some(to) = reference.target.first() else {
                continue;
            };
            if to != from && tops.contains(to.as_str()) {
                let place = format!("{}:{}", source.file, reference.line);
                let places = edges.entry((from.clone(), to.clone())).or_default();
                if !places.contains(&place) {
                    places.push(place);
                }
            }
        }
    }
    edges
}

fn graph_of(edges: impl IntoIterator<Item = (String, String)>) -> Graph {
    let mut graph = Graph::new();
    for (from, to) in edges {
        graph.entry(to.clone()).or_default();
        graph.entry(from).or_default().insert(to);
    }
    graph
}

/// A cycle as `[a, b, c, a]`, found by depth-first search from each node in name order.
fn find_cycle(graph: &Graph) -> Option<Vec<String>> {
    fn visit<'g>(
        graph: &'g Graph,
        node: &'g str,
        path: &mut Vec<&'g str>,
        done: &mut BTreeSet<&'g str>,
    ) -> Option<Vec<String>> {
        if let Some(start) = path.iter().position(|on_path| *on_path == node) {
            let mut cycle: Vec<String> = path[start..].iter().map(|n| n.to_string()).collect();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node);
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(graph, next, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node);
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(graph, node, &mut Vec::new(), &mut done))
}

/// Whether a path leads from `from` to `to`.
fn reaches(graph: &Graph, from: &str, to: &str) -> bool {
    let mut seen = BTreeSet::new();
    let mut stack = vec![from];
    while let Some(node) = stack.pop() {
        if node == to {
            return true;
        }
        if seen.insert(node) {
            stack.extend(graph.get(node).into_iter().flatten().map(String::as_str));
        }
    }
    false
}

/// Every path in `source` rooted at `super`, `self` or `crate::server`, resolved below `server`.
fn references(source: &Source) -> Vec<Reference> {
    let tokens = &source.tokens;
    let mut found = Vec::new();
    let mut at = 0;
    while at < tokens.len() {
        let (token, line) = (tokens[at].0.as_str(), tokens[at].1);
        if token == "use" {
            at += 1;
            let mut paths = Vec::new();
            use_tree(tokens, &mut at, Vec::new(), &mut paths);
            found.extend(paths.into_iter().map(|path| (line, path)));
        } else if is_identifier(token) && (at == 0 || tokens[at - 1].0 != "::") {
            let mut path = vec![token.to_owned()];
            while tokens.get(at + 1).is_some_and(|(t, _)| t == "::")
                && tokens.get(at + 2).is_some_and(|(t, _)| is_identifier(t))
            {
                path.push(tokens[at + 2].0.clone());
                at += 2;
            }
            if path.len() > 1 {
                found.push((line, path));
            }
        }
        at += 1;
    }
    found
        .into_iter()
        .filter_map(|(line, path)| {
            let target = resolve(&source.module, &path)?;
            (!target.is_empty()).then_some(Reference { line, target })
        })
        .collect()
}

/// Expands a `use` tree (`a::{b, c::{d, e as f}, g::*}`) into its paths, up to its `;`.
fn use_tree(
    tokens: &[(String, usize)],
    at: &mut usize,
    mut path: Vec<String>,
    out: &mut Vec<Vec<String>>,
) {
    while let Some((token, _)) = tokens.get(*at) {
        match token.as_str() {
            "::" => *at += 1,
            "{" => {
                *at += 1;
                while tokens.get(*at).is_some_and(|(t, _)| t != "}") {
                    use_tree(tokens, at, path.clone(), out);
                    if tokens.get(*at).is_some_and(|(t, _)| t == ",") {
                        *at += 1;
                    }
                }
                *at += 1;
                break;
            }
            "*" => {
                *at += 1;
                out.push(path);
                return;
            }
            "as" => *at += 2,
            "self" if !path.is_empty() => *at += 1,
            word if is_identifier(word) => {
                path.push(word.to_owned());
                *at += 1;
            }
            // `,`, `}` or `;`: this branch ends here.
            _ => {
                out.push(path);
                return;
            }
        }
    }
}

/// `path` as written in `module`, as a path below `server`; `None` if it leads outside.
fn resolve(module: &[String], path: &[String]) -> Option<Vec<String>> {
    let mut base = module.to_vec();
    let rest = match path.first().map(String::as_str) {
        Some("crate") => return (path.get(1)? == "server").then(|| path[2..].to_vec()),
        Some("self") => &path[1..],
        Some("super") => {
            let supers = path.iter().take_while(|part| *part == "super").count();
            for _ in 0..supers {
                base.pop()?;
            }
            &path[supers..]
        }
        _ => return None,
    };
    base.extend(rest.iter().cloned());
    Some(base)
}

fn is_identifier(token: &str) -> bool {
    token.starts_with(|c: char| c.is_alphabetic() || c == '_')
}

/// The file's tokens with their lines: identifiers, `::` and single punctuation; comments,
/// string and character literals left out, and so are `#[cfg(test)]` items.
fn tokens(text: &str) -> Vec<(String, usize)> {
    let chars: Vec<char> = text.chars().collect();
    let mut out: Vec<(String, usize)> = Vec::new();
    let (mut at, mut line) = (0, 1);
    // Skips to just past `end`, counting lines.
    let skip_to = |at: &mut usize, line: &mut usize, end: &dyn Fn(&[char], usize) -> bool| {
        while *at < chars.len() && !end(&chars, *at) {
            *line += usize::from(chars[*at] == '\n');
            *at += 1;
        }
    };
    while at < chars.len() {
        let c = chars[at];
        let next = chars.get(at + 1).copied();
        if c == '\n' {
            line += 1;
            at += 1;
        } else if c.is_whitespace() {
            at += 1;
        } else if c == '/' && next == Some('/') {
            skip_to(&mut at, &mut line, &|chars, at| chars[at] == '\n');
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while at < chars.len() {
                match (chars[at], chars.get(at + 1)) {
                    ('/', Some('*')) => (depth, at) = (depth + 1, at + 2),
                    ('*', Some('/')) => (depth, at) = (depth - 1, at + 2),
                    (other, _) => (line, at) = (line + usize::from(other == '\n'), at + 1),
                }
                if depth == 0 {
                    break;
                }
            }
        } else if c == '"' {
            at += 1;
            while at < chars.len() && chars[at] != '"' {
                line += usize::from(chars[at] == '\n');
                at += if chars[at] == '\\' { 2 } else { 1 };
            }
            at += 1;
        } else if c == '\'' {
            // A character literal ('x', '\n', '\u{..}'), or else a lifetime's quote.
            if next == Some('\\') {
                at += 2;
                skip_to(&mut at, &mut line, &|chars, at| chars[at] == '\'');
                at += 1;
            } else if chars.get(at + 2) == Some(&'\'') {
                at += 3;
            } else {
                at += 1;
            }
        } else if c.is_alphanumeric() || c == '_' {
            let start = at;
            while at < chars.len() && (chars[at].is_alphanumeric() || chars[at] == '_') {
                at += 1;
            }
            let word: String = chars[start..at].iter().collect();
            let hashes = chars[at..].iter().take_while(|c| **c == '#').count();
            let raw = matches!(word.as_str(), "r" | "br") && chars.get(at + hashes) == Some(&'"');
            if raw {
                at += hashes + 1;
                let closes = |chars: &[char], at: usize| {
                    chars[at] == '"' && (1..=hashes).all(|i| chars.get(at + i) == Some(&'#'))
                };
                skip_to(&mut at, &mut line, &closes);
                at += hashes + 1;
            } else if word == "b" && matches!(chars.get(at), Some('"') | Some('\'')) {
                // A byte string or byte: the quote is read on the next turn.
            } else {
                out.push((word, line));
            }
        } else if c == ':' && next == Some(':') {
            out.push(("::".into(), line));
            at += 2;
        } else {
            out.push((c.to_string(), line));
            at += 1;
        }
    }
    without_test_items(out)
}

/// Drops each `#[cfg(test)]` item: up to its first `;`, or through its braced body.
fn without_test_items(tokens: Vec<(String, usize)>) -> Vec<(String, usize)> {
    const MARK: [&str; 7] = ["#", "[", "cfg", "(", "test", ")", "]"];
    let mut kept = Vec::new();
    let mut at = 0;
    while at < tokens.len() {
        let marked = tokens.len() >= at + MARK.len()
            && MARK
                .iter()
                .zip(&tokens[at..])
                .all(|(mark, (t, _))| mark == t);
        if !marked {
            kept.push(tokens[at].clone());
            at += 1;
            continue;
        }
        at += MARK.len();
        let mut depth = 0;
        while let Some((token, _)) = tokens.get(at) {
            at += 1;
            match token.as_str() {
                ";" if depth == 0 => break,
                "{" => depth += 1,
                "}" => {
                    depth -= 1;
                    if depth == 0 {
                        break;
                    }
                }
                _ => {}
            }
        }
    }
    kept
}

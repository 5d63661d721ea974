//! The gateway crate's modules import each other without circles: a module's `crate::...`
//! paths (in `use` lines and in code, outside its tests) name only modules that never lead
//! back to it. Shared state and types live in leaves; see the crate's folders.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Every module of `src`, by path (`request::auth`), with its source.
fn modules(dir: &Path, prefix: &str, out: &mut BTreeMap<String, String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            modules(&path, &format!("{prefix}{name}::"), out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let module = match name.as_str() {
                "mod" => prefix.trim_end_matches("::").to_owned(),
                _ => format!("{prefix}{name}"),
            };
            out.insert(module, std::fs::read_to_string(&path).unwrap());
        }
    }
}

/// The modules `source` names through `crate::` paths, outside its `#[cfg(test)]` part.
fn imports(source: &str, known: &BTreeMap<String, String>) -> BTreeSet<String> {
    let code = source.split("#[cfg(test)]").next().unwrap_or_default();
    let mut found = BTreeSet::new();
    let mut note = |path: &str| {
        let parts: Vec<&str> = path.split("::").collect();
        for end in (1..=parts.len()).rev() {
            let candidate = parts[..end].join("::");
            if known.contains_key(&candidate) {
                found.insert(candidate);
                return;
            }
        }
    };
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        let path: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
            .collect();
        let path = path.trim_end_matches(':');
        note(path);
        // `use crate::a::{b, c::D}`: each item may be a module.
        if rest[path.len()..].starts_with("::{") {
            let group = &rest[path.len() + 3..];
            let group = &group[..group.find('}').unwrap_or(group.len())];
            for item in group.split(',') {
                let item = item.split_whitespace().next().unwrap_or_default();
                note(&format!("{path}::{item}"));
            }
        }
    }
    found
}

#[test]
fn the_gateway_s_modules_import_each_other_without_circles() {
    let mut known = BTreeMap::new();
    modules(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        "",
        &mut known,
    );
    assert!(known.contains_key("request::auth") && known.contains_key("state"));
    let graph: BTreeMap<String, BTreeSet<String>> = known
        .iter()
        .filter(|(module, _)| *module != "lib")
        .map(|(module, source)| {
            let deps = imports(source, &known)
                .into_iter()
                // A module may use its own parent's items (`mod.rs` declares its children).
                .filter(|d| d != module && !module.starts_with(&format!("{d}::")))
                .collect();
            (module.clone(), deps)
        })
        .collect();
    // Depth-first search; a module met again while still on the path closes a circle.
    fn visit(
        module: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|m| m == module) {
            let mut circle = path[at..].to_vec();
            circle.push(module.to_owned());
            return Some(circle);
        }
        if done.contains(module) {
            return None;
        }
        path.push(module.to_owned());
        for next in graph.get(module).into_iter().flatten() {
            if let Some(circle) = visit(next, graph, path, done) {
                return Some(circle);
            }
        }
        path.pop();
        done.insert(module.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    for module in graph.keys() {
        if let Some(circle) = visit(module, &graph, &mut Vec::new(), &mut done) {
            panic!("import circle: {}", circle.join(" -> "));
        }
    }
    // The check sees imports at all: the handler reaches the metered endpoint.
    assert!(graph["request::handler"].contains("request::metered"));
}

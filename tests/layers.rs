//! Arrows point down: no module of the library imports one that imports it back, directly
//! or through others. Read from the sources (`crate::name` in code, not in comments or in
//! unit-test modules), so an import that closes a circle fails here with the circle named.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every `.rs` file under `dir`.
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level modules `code` names after `crate::` (`crate::a::x`, `crate::{a, b::y}`).
fn imports(code: &str, modules: &BTreeSet<String>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let word = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        let named: Vec<String> = match rest.strip_prefix('{') {
            Some(group) => group[..group.find('}').unwrap_or(group.len())]
                .split(',')
                .map(|part| word(part.trim()))
                .collect(),
            None => vec![word(rest)],
        };
        out.extend(named.into_iter().filter(|m| modules.contains(m)));
    }
    out
}

/// The library's top-level modules and what each imports.
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let modules: BTreeSet<String> = std::fs::read_dir(&src)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir() || p.extension().is_some_and(|e| e == "rs"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .filter(|m| m != "bin" && m != "lib")
        .collect();
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let rel = file.strip_prefix(&src).unwrap();
        let top = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        let top = top.trim_end_matches(".rs").to_string();
        if !modules.contains(&top) {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        // Unit tests may reach anywhere; they come last in a file.
        let text = text.split("#[cfg(test)]\nmod tests").next().unwrap();
        let code: String = text
            .lines()
            .map(|l| l.split("//").next().unwrap())
            .collect::<Vec<_>>()
            .join("\n");
        let deps = graph.entry(top.clone()).or_default();
        deps.extend(imports(&code, &modules).into_iter().filter(|m| *m != top));
    }
    graph
}

/// A path of imports from `from` to `to`, if any.
fn path(graph: &BTreeMap<String, BTreeSet<String>>, from: &str, to: &str) -> Option<Vec<String>> {
    let mut came: BTreeMap<String, String> = BTreeMap::new();
    let mut queue = vec![from.to_string()];
    while let Some(m) = queue.pop() {
        for next in graph.get(&m).into_iter().flatten() {
            if came.contains_key(next) || next == from {
                continue;
            }
            came.insert(next.clone(), m.clone());
            if next == to {
                let mut out = vec![to.to_string()];
                while out.last().unwrap() != from {
                    out.push(came[out.last().unwrap()].clone());
                }
                out.reverse();
                return Some(out);
            }
            queue.push(next.clone());
        }
    }
    None
}

#[test]
fn no_module_imports_one_that_imports_it() {
    let graph = graph();
    assert!(graph.len() > 10, "read the library's modules: {graph:?}");
    assert!(graph["train"].contains("model"), "the reader sees imports");
    let mut circles = Vec::new();
    for (m, deps) in &graph {
        for d in deps {
            if let Some(back) = path(&graph, d, m) {
                circles.push(format!("{m} → {}", back.join(" → ")));
            }
        }
    }
    assert!(
        circles.is_empty(),
        "import circles:\n{}",
        circles.join("\n")
    );
}

#[test]
fn the_reader_finds_grouped_imports_and_ignores_comments() {
    let modules: BTreeSet<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
    let code = "use crate::a::X;\nuse crate::{b::Y, std_like};\nlet z = crate::zz::w;";
    let found = imports(code, &modules);
    assert_eq!(found, ["a", "b"].iter().map(|s| s.to_string()).collect());
    let mut g = BTreeMap::new();
    g.insert("a".to_string(), ["b".to_string()].into());
    g.insert("b".to_string(), ["c".to_string()].into());
    g.insert("c".to_string(), ["a".to_string()].into());
    assert_eq!(path(&g, "b", "a").unwrap(), ["b", "c", "a"]);
}

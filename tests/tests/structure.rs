//! The shape of the code base, checked: in no crate of the workspace does a module import one
//! that imports it back (directly or through others), and no Rust file is over 600 lines
//! without a reason written at its top (a line starting `//! Over 600 lines:` among its first
//! ten).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const MAX_LINES: usize = 600;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ sits in the workspace").to_path_buf()
}

/// Every `.rs` file below `dir`, skipping build outputs.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let p = entry.path();
        let name = entry.file_name().to_string_lossy().to_string();
        if p.is_dir() {
            if name != "target" && !name.starts_with('.') {
                rust_files(&p, out);
            }
        } else if name.ends_with(".rs") {
            out.push(p);
        }
    }
}

/// The workspace's crates, each as (its folder's name relative to the workspace, its `src/`):
/// the `members` of the workspace's Cargo.toml (a trailing `/*` expanded), and every folder of
/// the workspace holding a Cargo.toml and a `src/`, so a crate added later is checked too.
fn crates() -> Vec<(String, PathBuf)> {
    let root = workspace();
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    let mut dirs = BTreeSet::new();
    for member in members(&manifest) {
        match member.strip_suffix("/*") {
            Some(parent) => dirs.extend(std::fs::read_dir(root.join(parent)).unwrap().flatten().map(|e| format!("{parent}/{}", e.file_name().to_string_lossy()))),
            None => drop(dirs.insert(member)),
        }
    }
    dirs.extend(std::fs::read_dir(&root).unwrap().flatten().map(|e| e.file_name().to_string_lossy().to_string()));
    dirs.into_iter().filter(|d| root.join(d).join("Cargo.toml").is_file() && root.join(d).join("src").is_dir()).map(|d| (d.clone(), root.join(d).join("src"))).collect()
}

/// The entries of the `members = [..]` list of a workspace manifest.
fn members(manifest: &str) -> Vec<String> {
    let Some(at) = manifest.lines().position(|l| l.trim_start().starts_with("members")) else { return vec![] };
    let rest: String = manifest.lines().skip(at).collect::<Vec<_>>().join("\n");
    let list = rest.split_once('[').and_then(|(_, r)| r.split_once(']')).map_or("", |(l, _)| l);
    list.lines().map(|l| l.split('#').next().unwrap_or("")).flat_map(|l| l.split(',')).map(|m| m.trim().trim_matches('"').to_string()).filter(|m| !m.is_empty()).collect()
}

/// The module graph of the crate whose sources are `src` (files under `src/bin/`, crates of
/// their own, left out): each module with the modules it imports (see [`imports`]).
fn module_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = vec![];
    rust_files(src, &mut files);
    files.retain(|f| !f.starts_with(src.join("bin")));
    let texts: Vec<(String, String)> = files.iter().map(|f| (module_of(src, f), std::fs::read_to_string(f).unwrap())).collect();
    let modules: BTreeSet<String> = texts.iter().map(|(m, _)| m.clone()).collect();
    texts.iter().map(|(m, t)| (m.clone(), imports(m, t, &modules))).collect()
}

/// Module path of a source file of `src` (`config/diag.rs` → `config::diag`, `dist/mod.rs` → `dist`).
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let parts: Vec<String> = rel.components().map(|c| c.as_os_str().to_string_lossy().to_string()).filter(|c| c != "mod").collect();
    parts.join("::")
}

/// The modules a module's non-test code (comments left out) names through `crate::` paths (the
/// longest prefix that is a module), through `super::` (its parent's child, else the parent),
/// or through a path into one of its own child modules (`child::`; declaring `mod child;` is
/// not a use).
fn imports(module: &str, text: &str, modules: &BTreeSet<String>) -> BTreeSet<String> {
    let code: String = text.split("#[cfg(test)]").next().unwrap_or("").lines().filter(|l| !l.trim_start().starts_with("//")).map(|l| format!("{l}\n")).collect();
    let mut deps = BTreeSet::new();
    for child in modules.iter().filter(|m| m.rsplit_once("::").map_or(false, |(p, _)| p == module)) {
        let name = child.rsplit("::").next().unwrap_or_default();
        let used = code.match_indices(&format!("{name}::")).any(|(at, _)| at == 0 || !code.as_bytes()[at - 1].is_ascii_alphanumeric() && code.as_bytes()[at - 1] != b'_' && code.as_bytes()[at - 1] != b':');
        if used {
            deps.insert(child.clone());
        }
    }
    let parent = module.rsplit_once("::").map(|(p, _)| p.to_string()).unwrap_or_default();
    for (prefix, base) in [("crate::", String::new()), ("super::", parent.clone())] {
        for (at, _) in code.match_indices(prefix) {
            let rest = &code[at + prefix.len()..];
            let path: String = rest.chars().take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_' || *c == ':').collect();
            let parts: Vec<&str> = path.split("::").filter(|p| !p.is_empty()).collect();
            let found = (1..=parts.len()).rev().map(|k| {
                let tail = parts[..k].join("::");
                if base.is_empty() { tail } else { format!("{base}::{tail}") }
            });
            match found.into_iter().find(|m| modules.contains(m)) {
                Some(m) => drop(deps.insert(m)),
                None if !base.is_empty() => drop(deps.insert(base.clone())),
                None => {}
            }
        }
    }
    deps.remove(module);
    deps
}

/// A cycle of the graph, if it has one (depth-first search).
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(n: &str, g: &BTreeMap<String, BTreeSet<String>>, state: &mut BTreeMap<String, u8>, stack: &mut Vec<String>) -> Option<Vec<String>> {
        state.insert(n.to_string(), 1);
        stack.push(n.to_string());
        for d in g.get(n).into_iter().flatten() {
            match state.get(d.as_str()).copied().unwrap_or(0) {
                1 => {
                    let from = stack.iter().position(|s| s == d).unwrap();
                    return Some(stack[from..].iter().cloned().chain([d.clone()]).collect());
                }
                0 => {
                    if let Some(c) = visit(d, g, state, stack) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(n.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for n in graph.keys() {
        if state.get(n.as_str()).copied().unwrap_or(0) == 0 {
            if let Some(c) = visit(n, graph, &mut state, &mut vec![]) {
                return Some(c);
            }
        }
    }
    None
}

#[test]
fn modules_import_without_cycles_in_every_crate() {
    let crates = crates();
    let names: Vec<&str> = crates.iter().map(|(c, _)| c.as_str()).collect();
    for known in ["core", "backend-vulkan", "model", "train", "tests"] {
        assert!(names.contains(&known), "crate `{known}` not found among {names:?}");
    }
    let mut cycles = vec![];
    for (name, src) in &crates {
        let graph = module_graph(src);
        match name.as_str() {
            "train" => {
                assert!(graph.contains_key("trainer") && graph.contains_key("step") && graph.contains_key("config::recompute"), "{:?}", graph.keys());
                assert!(graph["trainer"].contains("step"), "the trainer's imports are seen: {:?}", graph["trainer"]);
            }
            "model" => assert!(graph["weights"].contains("pt"), "the weight reader's imports are seen: {:?}", graph["weights"]),
            _ => {}
        }
        if let Some(cycle) = find_cycle(&graph) {
            cycles.push(format!("crate `{name}`: {}", cycle.join(" → ")));
        }
    }
    assert!(cycles.is_empty(), "modules import each other in a circle:\n{}", cycles.join("\n"));
}

#[test]
fn the_cycle_finder_finds_cycles() {
    let g = |edges: &[(&str, &str)]| {
        let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (a, b) in edges {
            g.entry(a.to_string()).or_default().insert(b.to_string());
            g.entry(b.to_string()).or_default();
        }
        g
    };
    assert_eq!(find_cycle(&g(&[("a", "b"), ("b", "c")])), None);
    assert_eq!(find_cycle(&g(&[("a", "b"), ("b", "c"), ("c", "a")])), Some(vec!["a".into(), "b".into(), "c".into(), "a".into()]));
    let modules: BTreeSet<String> = ["config", "config::diag", "step"].iter().map(|s| s.to_string()).collect();
    let deps = imports("config", "mod diag;\nuse crate::step::update;\nuse super::x;\n// crate::diag::y\n#[cfg(test)]\nuse crate::config::diag;", &modules);
    assert_eq!(deps, ["step".to_string()].into_iter().collect());
    // A parent using its child, and the child using its parent back: a cycle.
    let uses_child = imports("config", "mod diag;\npub use diag::DiagConfig;", &modules);
    assert_eq!(uses_child, ["config::diag".to_string()].into_iter().collect());
    let back = imports("config::diag", "use super::Recompute;", &modules);
    assert_eq!(back, ["config".to_string()].into_iter().collect());
    let manifest = "[workspace]\nresolver = \"2\"\nmembers = [\n    \"core\", # the ops\n    \"crates/*\",\n]\n\n[workspace.package]\nversion = \"0.1.0\"\n";
    assert_eq!(members(manifest), ["core", "crates/*"]);
    assert_eq!(members("[workspace]\nmembers = [\"core\", \"cli\"]\n"), ["core", "cli"]);
}

#[test]
fn long_files_say_why() {
    let mut files = vec![];
    rust_files(&workspace(), &mut files);
    assert!(files.len() > 50, "found only {} Rust files", files.len());
    let mut long = vec![];
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        let lines = text.lines().count();
        let says_why = text.lines().take(10).any(|l| l.starts_with("//! Over 600 lines:"));
        if lines > MAX_LINES && !says_why {
            long.push(format!("{} ({lines} lines)", f.strip_prefix(workspace()).unwrap().display()));
        }
    }
    assert!(long.is_empty(), "files over {MAX_LINES} lines without a `//! Over 600 lines:` reason at the top: {long:?}");
}

/// The library carries no command-line dependency: clap, indicatif and ctrlc belong to the
/// `mvdit` binary (`cli/`), so that Python, C and Rust users embed `mvdit-train` without them.
#[test]
fn the_library_has_no_command_line_dependencies() {
    let manifest = std::fs::read_to_string(workspace().join("train/Cargo.toml")).unwrap();
    let deps: Vec<&str> = manifest.lines().skip_while(|l| l.trim() != "[dependencies]").skip(1).take_while(|l| !l.trim_start().starts_with('[')).filter_map(|l| l.split('=').next()).map(str::trim).filter(|n| !n.is_empty() && !n.starts_with('#')).collect();
    assert!(deps.contains(&"mvdit-model"), "the [dependencies] table was read: {deps:?}");
    for cli_only in ["clap", "indicatif", "ctrlc"] {
        assert!(!deps.contains(&cli_only), "train/Cargo.toml depends on {cli_only}: it belongs to cli/");
    }
}

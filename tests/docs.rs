//! The error catalogue (`docs/errors.md`) shows every compile error as the
//! compiler prints it: each `error:` line of every UI test's `.stderr` must
//! appear there, and every UI test must be linked.

use std::path::{Path, PathBuf};

fn stderr_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            stderr_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "stderr") {
            out.push(path);
        }
    }
}

#[test]
fn error_catalogue_matches_the_ui_tests() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let catalogue = std::fs::read_to_string(root.join("docs/errors.md")).unwrap();
    let mut files = Vec::new();
    stderr_files(&root.join("tests/ui"), &mut files);
    files.sort();
    assert!(files.len() >= 20);
    let mut missing = Vec::new();
    for file in &files {
        let rel = file.strip_prefix(&root).unwrap().with_extension("rs");
        let link = format!("../{}", rel.display());
        if !catalogue.contains(&link) {
            missing.push(format!("{}: no link `{link}`", rel.display()));
        }
        for line in std::fs::read_to_string(file).unwrap().lines() {
            if line.starts_with("error: ") && !catalogue.contains(line) {
                missing.push(format!("{}: `{line}`", rel.display()));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "docs/errors.md is out of date:\n{}",
        missing.join("\n")
    );
}

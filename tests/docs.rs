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

/// The reference (`docs/reference.md`) documents every op the compiler
/// knows: its row in the ops table gives every spelling, and its section
/// (or, for the activations, their shared one) names every argument of its
/// schema.
#[test]
fn reference_documents_every_op_and_argument() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let reference = std::fs::read_to_string(root.join("docs/reference.md")).unwrap();
    let section = |heading: &dyn Fn(&str) -> bool| -> Option<String> {
        let mut lines = reference.lines().skip_while(|l| !heading(l));
        let first = lines.next()?;
        let rest: Vec<&str> = lines
            .take_while(|l| !l.starts_with("## ") && !l.starts_with("### "))
            .collect();
        Some(format!("{first}\n{}", rest.join("\n")))
    };
    let mut missing = Vec::new();
    for def in netdsl_compiler::ops::OPS {
        let name = format!("`{}`", def.name);
        let row = reference
            .lines()
            .find(|l| l.starts_with(&format!("| [{name}]")));
        match row {
            None => missing.push(format!("no row for {name} in the ops table")),
            Some(row) => {
                for s in def.spellings {
                    if !row.contains(&format!("`{s}`")) {
                        missing.push(format!("{name}: spelling `{s}` not in its row"));
                    }
                }
            }
        }
        let text = section(&|l: &str| l.starts_with("### ") && l.contains(&name))
            .or_else(|| section(&|l: &str| l == "### Activations"))
            .unwrap_or_default();
        for arg in def.args {
            if !text.contains(&format!("`{}`", arg.name)) {
                missing.push(format!(
                    "{name}: argument `{}` not in its section",
                    arg.name
                ));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "docs/reference.md is out of date:\n{}",
        missing.join("\n")
    );
}

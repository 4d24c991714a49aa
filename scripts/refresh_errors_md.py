#!/usr/bin/env python3
"""Rewrites the output blocks of docs/errors.md from the UI cases.

Each case in the catalogue is a ```rust block (the case's source, less its
`use`, `fn main` and top comments), its link, and a ```text block (its
.stderr). This script rewrites both blocks of every linked case from the
files, so the catalogue shows what the compiler prints today. New cases
are printed (not placed): paste them under the right heading.

    python3 scripts/refresh_errors_md.py            # rewrite in place
    python3 scripts/refresh_errors_md.py --new SECTION_CASES...
"""
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "errors.md"


def source(rel):
    lines = (ROOT / rel).read_text().split("\n")
    body = [
        l
        for l in lines
        if l.strip() not in ("use netdsl::network;", "fn main() {}")
        and not l.startswith("//")
    ]
    return "\n".join(body).strip("\n")


def stderr(rel):
    return (ROOT / rel).with_suffix(".stderr").read_text().rstrip("\n")


def entry(rel):
    return (
        f"```rust\n{source(rel)}\n```\n\n[`{rel}`](../{rel})\n\n"
        f"```text\n{stderr(rel)}\n```\n"
    )


def refresh(text):
    pattern = re.compile(
        r"```rust\n(?:(?!```).)*?```\n\n\[`(tests/ui/[^`]+\.rs)`\]\(\.\./\1\)\n\n```text\n.*?\n```\n",
        re.S,
    )
    return pattern.sub(lambda m: entry(m.group(1)), text)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--new":
        for rel in sys.argv[2:]:
            print(entry(rel))
    else:
        DOC.write_text(refresh(DOC.read_text()))

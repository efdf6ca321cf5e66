//! MIGRATION.md's code blocks run as doc tests, except the ones marked `rust,ignore`:
//! excerpts of the migrate demo (`examples/migrate/`), which only compile inside it.
//! The demo is built and run by the tests, so each excerpt must stay a faithful quote:
//! every line of it appears in the file it quotes, in the same order (lines the excerpt
//! leaves out in between are allowed; a first-line comment naming the file is not a
//! quoted line).

use std::path::Path;

/// The `rust,ignore` blocks of MIGRATION.md, in order, and the file each one quotes. A
/// new excerpt must be added here (the count is checked).
const EXCERPTS: [&str; 2] = ["examples/migrate/legacy.rs", "examples/migrate/legacy.rs"];

fn read(path: &str) -> String {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

/// The bodies of the blocks whose opening fence is exactly "```rust,ignore".
fn ignored_blocks(markdown: &str) -> Vec<(usize, Vec<&str>)> {
    let mut blocks = Vec::new();
    let mut open: Option<(usize, Vec<&str>)> = None;
    for (n, line) in markdown.lines().enumerate() {
        match &mut open {
            None if line.trim() == "```rust,ignore" => open = Some((n + 1, Vec::new())),
            Some(_) if line.trim() == "```" => blocks.extend(open.take()),
            Some((_, body)) => body.push(line),
            None => {}
        }
    }
    assert!(open.is_none(), "MIGRATION.md ends inside a code block");
    blocks
}

/// The first line of `excerpt` that does not appear in `source` in order, if any.
fn first_unquoted<'a>(excerpt: &[&'a str], source: &str) -> Option<&'a str> {
    let mut source = source.lines().map(str::trim);
    excerpt
        .iter()
        .map(|line| line.trim())
        .filter(|line| !line.is_empty() && !line.starts_with("// examples/"))
        .find(|line| !source.any(|s| s == *line))
}

#[test]
fn every_ignored_block_of_the_guide_quotes_the_demo_faithfully() {
    let guide = read("MIGRATION.md");
    let blocks = ignored_blocks(&guide);
    assert_eq!(
        blocks.len(),
        EXCERPTS.len(),
        "MIGRATION.md has {} `rust,ignore` blocks: list each one's source in EXCERPTS",
        blocks.len()
    );
    for ((line, body), path) in blocks.iter().zip(EXCERPTS) {
        let source = read(path);
        if let Some(missing) = first_unquoted(body, &source) {
            panic!("MIGRATION.md:{line}: `{missing}` is not in {path} (in this order)");
        }
    }
}

#[test]
fn a_line_out_of_order_or_changed_is_caught() {
    let source = "fn a() {\n    one();\n    two();\n}\n";
    assert_eq!(first_unquoted(&["fn a() {", "two();"], source), None);
    assert_eq!(
        first_unquoted(&["two();", "one();"], source),
        Some("one();")
    );
    assert_eq!(first_unquoted(&["three();"], source), Some("three();"));
    assert_eq!(
        first_unquoted(&["// examples/x.rs: a note", "", "one();"], source),
        None
    );
}

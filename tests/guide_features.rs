//! README.md and MIGRATION.md run as doc tests only with `--all-features` (they use the
//! virtual-time harness and the tower services). A plain `cargo test` would skip them
//! silently; this test makes that impossible to miss.

#[test]
#[cfg(not(all(feature = "test-util", feature = "tower")))]
fn the_guides_doc_tests_need_all_features() {
    panic!(
        "README.md and MIGRATION.md were not tested: run `cargo test --all-features` \
         (the command README.md gives); a plain `cargo test` skips their code blocks"
    );
}

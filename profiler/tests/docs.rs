//! docs/options.md is `profiler --help` and `profiler serve --help`: this test fails when they differ, and rewrites the
//! page when run with `UPDATE_DOCS=1` (`UPDATE_DOCS=1 cargo test -p profiler --test docs`).
use clap::CommandFactory as _;

fn page() -> String {
    let help = profiler::plan::cli::Cli::command()
        .render_long_help()
        .to_string();
    let serve = profiler::plan::serve::ServeCli::command()
        .render_long_help()
        .to_string();
    format!(
        "# profiler options\n\n\
         Generated from `profiler --help` and `profiler serve --help`; do not edit by hand. After\n\
         changing an option, run `UPDATE_DOCS=1 cargo test -p profiler --test docs` to\n\
         regenerate this page.\n\n\
         ```text\n{}\n```\n\n\
         ## profiler serve\n\n\
         ```text\n{}\n```\n",
        help.trim_end(),
        serve.trim_end()
    )
}

#[test]
fn options_page_is_the_help_output() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/options.md");
    let want = page();
    if std::env::var_os("UPDATE_DOCS").is_some() {
        std::fs::write(&path, &want).expect("write docs/options.md");
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        have == want,
        "docs/options.md differs from `profiler --help`: run `UPDATE_DOCS=1 cargo test -p \
         profiler --test docs`"
    );
}

//! Writes the HTML report of the workload runs in a folder (`cargo xtask report` calls it).
use std::{path::PathBuf, process::ExitCode};

use clap::Parser;

/// Writes DIR/report.html from the runs in DIR (DIR/WORKLOAD/calls.csv and truth.json).
#[derive(Debug, Parser)]
struct Cli {
    /// The folder of the runs.
    dir: PathBuf,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match profiler::render::html_report::write_report(&cli.dir) {
        Ok(p) => {
            println!("{}", p.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ioprof-report: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

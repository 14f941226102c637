//! A small load for the sampling tests: reads a file through a user buffer (`read`), or sends
//! it to `/dev/null` inside the kernel (`sendfile`), a number of times. Not a product tool.
use std::{
    fs::File,
    io::{Read, Seek, SeekFrom},
    os::fd::AsFd,
    process::ExitCode,
};

use anyhow::Context as _;

const USAGE: &str = "usage: copy-helper read|sendfile FILE ROUNDS";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("copy-helper: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [mode, path, rounds] = args.as_slice() else {
        anyhow::bail!("{USAGE}");
    };
    let rounds: u32 = rounds.parse().context(USAGE)?;
    let file = File::open(path).with_context(|| format!("failed to open {path}"))?;
    let len = file.metadata()?.len() as usize;
    match mode.as_str() {
        "read" => {
            let mut buf = vec![0u8; 64 << 10];
            let mut file = file;
            for _ in 0..rounds {
                file.seek(SeekFrom::Start(0)).context("lseek failed")?;
                while file.read(&mut buf).context("read failed")? > 0 {}
            }
        }
        "sendfile" => {
            let null = File::options()
                .write(true)
                .open("/dev/null")
                .context("failed to open /dev/null")?;
            for _ in 0..rounds {
                let mut off: i64 = 0;
                while (off as usize) < len {
                    let left = len - off as usize;
                    let n = nix::sys::sendfile::sendfile(
                        null.as_fd(),
                        file.as_fd(),
                        Some(&mut off),
                        left,
                    )
                    .context("sendfile failed")?;
                    if n == 0 {
                        break;
                    }
                }
            }
        }
        _ => anyhow::bail!("{USAGE}"),
    }
    Ok(())
}

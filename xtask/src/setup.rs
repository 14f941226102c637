//! Bare-machine set-up: nightly with rust-src, a `bpf-linker` built against nightly's own
//! LLVM (cached per user, rebuilt when that LLVM changes), and tracefs mounted. Each step is
//! checked first and printed when taken; when all is in place this costs two `rustc` calls.
use std::{
    ffi::OsString,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::Context as _;

const BPF_LINKER_VERSION: &str = "0.13.0";
const TRACEFS: &str = "/sys/kernel/tracing";

/// What builds need from the set-up.
pub struct Env {
    /// `PATH` with the bpf-linker folder first.
    pub path: OsString,
}

fn step(msg: &str) {
    eprintln!("xtask: {msg}");
}

fn output(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd
        .output()
        .with_context(|| format!("failed to run {cmd:?}"))?;
    anyhow::ensure!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("failed to run {cmd:?}"))?;
    anyhow::ensure!(status.success(), "{cmd:?} failed ({status})");
    Ok(())
}

/// `rustc +nightly -vV`, installing nightly first when it is missing.
fn nightly_version() -> anyhow::Result<String> {
    if let Ok(v) = output(Command::new("rustc").args(["+nightly", "-vV"])) {
        return Ok(v);
    }
    step("installing the nightly toolchain (rustup toolchain install nightly)");
    run(Command::new("rustup").args([
        "toolchain",
        "install",
        "nightly",
        "--profile",
        "minimal",
        "--component",
        "rust-src",
    ]))?;
    output(Command::new("rustc").args(["+nightly", "-vV"]))
}

fn field<'a>(version: &'a str, key: &str) -> anyhow::Result<&'a str> {
    version
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .map(str::trim)
        .with_context(|| format!("`rustc +nightly -vV` printed no `{key}`"))
}

/// The per-user cache folder of the project.
pub fn cache_dir() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir)
        .join("ioprof")
}

fn ensure_rust_src(sysroot: &Path) -> anyhow::Result<()> {
    if sysroot.join("lib/rustlib/src/rust/library/core").is_dir() {
        return Ok(());
    }
    step("adding rust-src to nightly (rustup component add rust-src --toolchain nightly)");
    run(Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", "nightly"]))
}

fn ensure_bpf_linker(version: &str, sysroot: &Path) -> anyhow::Result<PathBuf> {
    let llvm = field(version, "LLVM version:")?;
    let hash = field(version, "commit-hash:")?;
    let major = llvm.split('.').next().unwrap_or(llvm);
    let root = cache_dir()
        .join("bpf-linker")
        .join(format!("llvm-{llvm}-{}", &hash[..hash.len().min(12)]));
    let bin = root.join("bin");
    if bin.join("bpf-linker").is_file() {
        return Ok(bin);
    }
    step(&format!(
        "building bpf-linker {BPF_LINKER_VERSION} against nightly's LLVM {llvm} into {} (about a minute, once)",
        root.display()
    ));
    let lib = std::fs::read_dir(sysroot.join("lib"))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("libLLVM.so."))
        })
        .with_context(|| {
            format!(
                "nightly has no libLLVM.so.* in {}",
                sysroot.join("lib").display()
            )
        })?;
    let prefix = root.join("llvm");
    let prefix_lib = prefix.join("lib");
    std::fs::create_dir_all(&prefix_lib)?;
    for name in [
        OsString::from("libLLVM.so"),
        lib.file_name().map(OsString::from).unwrap_or_default(),
    ] {
        let link = prefix_lib.join(name);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&lib, &link)
            .with_context(|| format!("cannot link {}", link.display()))?;
    }
    run(Command::new("cargo")
        .args([
            "install",
            "bpf-linker",
            "--version",
            BPF_LINKER_VERSION,
            "--locked",
            "--no-default-features",
        ])
        .arg("--features")
        .arg(format!("llvm-{major}"))
        .arg("--root")
        .arg(&root)
        .env("LLVM_PREFIX", &prefix)
        .env_remove("CARGO_TARGET_DIR"))
    .context("failed to build bpf-linker")?;
    Ok(bin)
}

fn ensure_tracefs() -> anyhow::Result<()> {
    if Path::new(TRACEFS).join("events").is_dir() {
        return Ok(());
    }
    step(&format!("mounting tracefs at {TRACEFS}"));
    let status = Command::new("mount")
        .args(["-t", "tracefs", "nodev", TRACEFS])
        .status();
    if !matches!(status, Ok(s) if s.success()) {
        step("could not mount tracefs (not root?): the profiler mounts it when run as root");
    }
    Ok(())
}

/// Installs what is missing and returns the build environment.
pub fn ensure() -> anyhow::Result<Env> {
    let version = nightly_version()?;
    let sysroot = PathBuf::from(
        output(Command::new("rustc").args(["+nightly", "--print", "sysroot"]))?.trim(),
    );
    ensure_rust_src(&sysroot)?;
    let bin = ensure_bpf_linker(&version, &sysroot)?;
    ensure_tracefs()?;
    let mut paths = vec![bin];
    paths.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    Ok(Env {
        path: std::env::join_paths(paths)?,
    })
}

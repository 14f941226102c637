//! Builds the kernel probes (`probe-ebpf`) for the BPF target and leaves the object in
//! `OUT_DIR/probe`. `bpf-linker` comes from `PATH` or from the per-user cache where
//! `cargo xtask setup` builds it. Without it a release build (`cargo build --release`,
//! `cargo install`) fails and names that command; a debug build (`cargo test`, `cargo clippy`
//! on a bare machine) leaves an empty object, and that profiler refuses to run.
use std::{
    env, fs,
    path::{Path, PathBuf},
};

const SETUP: &str = "cargo xtask setup";

fn main() -> anyhow::Result<()> {
    println!("cargo:rerun-if-env-changed=PATH");
    println!("cargo:rerun-if-env-changed=XDG_CACHE_HOME");
    let out = PathBuf::from(env::var_os("OUT_DIR").ok_or_else(|| anyhow::anyhow!("no OUT_DIR"))?);
    let cached = cache_dir().join("bpf-linker");
    println!("cargo:rerun-if-changed={}", cached.display());
    let on_path = env::var_os("PATH")
        .is_some_and(|paths| env::split_paths(&paths).any(|p| p.join("bpf-linker").is_file()));
    if !on_path {
        match cached_linker(&cached) {
            Some(bin) => put_first_on_path(&bin)?,
            None if env::var("PROFILE").as_deref() == Ok("release") => anyhow::bail!(
                "bpf-linker not found on PATH nor in {}: run `{SETUP}` once, then build again",
                cached.display()
            ),
            None => {
                println!(
                    "cargo:warning=bpf-linker not found: this debug profiler has no probes \
                     (run `{SETUP}` once to build them)"
                );
                fs::write(out.join("probe"), [])?;
                return Ok(());
            }
        }
    }
    let dir = probe_dir()?;
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "probe-ebpf",
            root_dir: &dir,
            ..Default::default()
        }],
        aya_build::Toolchain::default(),
    )
}

/// The per-user cache folder of the project (as `cargo xtask setup` finds it).
fn cache_dir() -> PathBuf {
    env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(env::temp_dir)
        .join("ioprof")
}

/// The `bin` folder of the most recently built linker in the cache (one per nightly LLVM).
fn cached_linker(cached: &Path) -> Option<PathBuf> {
    fs::read_dir(cached)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path().join("bin"))
        .filter_map(|bin| {
            let built = fs::metadata(bin.join("bpf-linker")).ok()?.modified().ok()?;
            Some((built, bin))
        })
        .max()
        .map(|(_, bin)| bin)
}

/// Puts `bin` first on this build script's `PATH`, which the BPF build inherits.
fn put_first_on_path(bin: &Path) -> anyhow::Result<()> {
    let mut paths = vec![bin.to_path_buf()];
    paths.extend(env::split_paths(&env::var_os("PATH").unwrap_or_default()));
    // SAFETY: the build script is single-threaded here; nothing else reads the environment.
    unsafe { env::set_var("PATH", env::join_paths(paths)?) };
    Ok(())
}

/// The probe crate's folder, beside this one.
fn probe_dir() -> anyhow::Result<String> {
    let here = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    let dir = here
        .parent()
        .ok_or_else(|| anyhow::anyhow!("no workspace folder"))?
        .join("probe-ebpf");
    Ok(dir.to_string_lossy().into_owned())
}

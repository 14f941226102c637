//! Builds the kernel probes (`probe-ebpf`) for the BPF target and leaves the object in
//! `OUT_DIR/probe`. Without `bpf-linker` it leaves an empty object and says so: the profiler
//! then refuses to run with a message that names `cargo xtask`.
use std::{env, fs, path::PathBuf};

fn main() -> anyhow::Result<()> {
    println!("cargo:rerun-if-env-changed=PATH");
    let out = PathBuf::from(env::var_os("OUT_DIR").ok_or_else(|| anyhow::anyhow!("no OUT_DIR"))?);
    let have_linker = env::var_os("PATH")
        .is_some_and(|paths| env::split_paths(&paths).any(|p| p.join("bpf-linker").is_file()));
    if !have_linker {
        println!(
            "cargo:warning=bpf-linker not found on PATH: building the profiler without its probes \
             (run `cargo xtask build` to install the eBPF toolchain)"
        );
        fs::write(out.join("probe"), [])?;
        return Ok(());
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

/// The probe crate's folder, beside this one.
fn probe_dir() -> anyhow::Result<String> {
    let here = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    let dir = here
        .parent()
        .ok_or_else(|| anyhow::anyhow!("no workspace folder"))?
        .join("probe-ebpf");
    Ok(dir.to_string_lossy().into_owned())
}

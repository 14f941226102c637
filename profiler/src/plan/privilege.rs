//! What the running user may do: loading probes needs root, or CAP_BPF with CAP_PERFMON.
use std::fs;

const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// The effective capability mask of this process, from `/proc/self/status`.
fn effective_caps() -> u64 {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .unwrap_or(0)
}

/// Names of the privileges missing to load and attach the probes, empty when all are there.
pub fn missing() -> Vec<&'static str> {
    missing_from(effective_caps())
}

/// As [`missing`], for a given capability mask.
pub fn missing_from(caps: u64) -> Vec<&'static str> {
    let has = |c: u32| caps & (1 << c) != 0;
    if has(CAP_SYS_ADMIN) {
        return Vec::new();
    }
    let mut out = Vec::new();
    if !has(CAP_BPF) {
        out.push("CAP_BPF");
    }
    if !has(CAP_PERFMON) {
        out.push("CAP_PERFMON");
    }
    out
}

/// Fails with an actionable message when the probes cannot be loaded.
pub fn check() -> anyhow::Result<()> {
    let missing = missing();
    if missing.is_empty() {
        return Ok(());
    }
    anyhow::bail!(
        "loading the kernel probes needs root, or the capabilities CAP_BPF and CAP_PERFMON \
         (missing: {}); run with sudo, or grant them: sudo setcap cap_bpf,cap_perfmon+ep PROFILER",
        missing.join(", ")
    )
}

const CAP_SYS_PTRACE: u32 = 19;

/// Whether this process may trace processes of other users: root, or CAP_SYS_PTRACE (the
/// same rule as for a debugger).
pub fn may_trace_other_users() -> bool {
    may_trace_other_users_with(effective_caps())
}

/// As [`may_trace_other_users`], for a given capability mask.
pub fn may_trace_other_users_with(caps: u64) -> bool {
    caps & ((1 << CAP_SYS_ADMIN) | (1 << CAP_SYS_PTRACE)) != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_needs_nothing_more() {
        assert!(missing_from(1 << CAP_SYS_ADMIN).is_empty());
        assert!(missing_from((1 << CAP_BPF) | (1 << CAP_PERFMON)).is_empty());
    }

    #[test]
    fn other_users_need_ptrace_or_admin() {
        assert!(may_trace_other_users_with(1 << CAP_SYS_ADMIN));
        assert!(may_trace_other_users_with(1 << CAP_SYS_PTRACE));
        assert!(!may_trace_other_users_with(
            (1 << CAP_BPF) | (1 << CAP_PERFMON)
        ));
    }

    #[test]
    fn names_what_is_missing() {
        assert_eq!(missing_from(0), vec!["CAP_BPF", "CAP_PERFMON"]);
        assert_eq!(missing_from(1 << CAP_BPF), vec!["CAP_PERFMON"]);
    }
}

//! Checks of what the user asked for that must fail before anything is attached: durations and
//! pids, with messages that say what to do instead.
use std::time::Duration;

/// Parses a duration (`500ms`, `10s`, `2m`); it must be longer than zero.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s)
        .map_err(|e| format!("`{s}` is not a duration ({e}); write it like 500ms, 10s or 2m"))?;
    if d.is_zero() {
        return Err(format!(
            "`{s}` is zero: give a duration longer than 0, like 10s"
        ));
    }
    Ok(d)
}

/// Refuses pids that cannot or must not be traced: 0 (the idle task), 1 (init: every process
/// it starts from now on would be traced), the profiler itself, and processes that do not exist.
pub fn check_pids(pids: &[u32]) -> anyhow::Result<()> {
    for &pid in pids {
        anyhow::ensure!(
            pid != 1,
            "pid 1 is the init process: tracing it would trace every process it starts; \
             give the pid of the program you mean"
        );
        anyhow::ensure!(
            pid != std::process::id(),
            "pid {pid} is this profiler itself: give the pid of another program"
        );
        crate::capture::session::check_pid(pid)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_must_be_positive_and_well_formed() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert!(
            parse_duration("0s")
                .expect_err("zero")
                .contains("longer than 0")
        );
        assert!(
            parse_duration("ten")
                .expect_err("word")
                .contains("not a duration")
        );
        assert!(parse_duration("-5s").is_err());
    }

    #[test]
    fn bad_pids_are_named() {
        let msg = |p: u32| format!("{:#}", check_pids(&[p]).expect_err("must fail"));
        assert!(msg(0).contains("pid 0"), "{}", msg(0));
        assert!(msg(1).contains("init"), "{}", msg(1));
        assert!(msg(std::process::id()).contains("profiler itself"));
        // Above the largest pid_max the kernel allows (2^22).
        assert!(msg(5_000_000).contains("no process with pid 5000000"));
        assert!(check_pids(&[]).is_ok());
    }
}

//! The pitfall of mapped files: the file is truncated while a sender reads it through a
//! mapping, and touching a page past the new end raises SIGBUS. Two ways to survive it: a
//! SIGBUS handler that recovers and reports, and a file lease whose break signal (a real-time
//! signal chosen with `F_SETSIG`) warns the sender before the truncation goes through.
use std::{
    fs::File,
    net::TcpStream,
    os::fd::AsRawFd,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering},
        mpsc,
    },
    time::Duration,
};

use anyhow::Context as _;
use nix::errno::Errno;

use crate::{
    clock::now_ns,
    methods::Mapping,
    transfer::{self, CHUNK, FileTransfer, SendOutcome, Timer},
    truth::Truth,
};

/// How the sender survives the truncation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Variant {
    /// A SIGBUS handler maps a zero page over the lost page, and the sender stops.
    Sigbus,
    /// A read lease: its break signal tells the sender to stop and let the truncation through.
    Lease,
}

/// Start of the watched mapping, its end, and the page size (for the SIGBUS handler).
static MAP_START: AtomicUsize = AtomicUsize::new(0);
static MAP_END: AtomicUsize = AtomicUsize::new(0);
static PAGE: AtomicUsize = AtomicUsize::new(4096);
/// Address of the first SIGBUS in the mapping (0: none), and how many arrived.
static BUS_ADDR: AtomicUsize = AtomicUsize::new(0);
static BUS_COUNT: AtomicU64 = AtomicU64::new(0);
/// When the lease-break signal arrived (0: not yet).
static LEASE_BROKEN_NS: AtomicU64 = AtomicU64::new(0);

extern "C" fn on_sigbus(_sig: libc::c_int, info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
    // SAFETY: the kernel hands an SA_SIGINFO handler a valid siginfo.
    let addr = unsafe { (*info).si_addr() } as usize;
    let (start, end) = (
        MAP_START.load(Ordering::SeqCst),
        MAP_END.load(Ordering::SeqCst),
    );
    let page = PAGE.load(Ordering::SeqCst);
    let ok = addr >= start && addr < end && {
        // SAFETY: replaces one page of the watched mapping (past the file's new end) with a
        // zero page so that the faulting load completes; mmap is a plain system call, safe
        // in a signal handler, and the page belongs to this process's own mapping.
        let p = unsafe {
            libc::mmap(
                (addr & !(page - 1)) as *mut libc::c_void,
                page,
                libc::PROT_READ,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
                -1,
                0,
            )
        };
        p != libc::MAP_FAILED
    };
    if ok {
        let _ = BUS_ADDR.compare_exchange(0, addr, Ordering::SeqCst, Ordering::SeqCst);
        BUS_COUNT.fetch_add(1, Ordering::SeqCst);
    } else {
        // Not ours, or no way to recover: the default action (end the process) applies when
        // the load is retried.
        // SAFETY: resetting a disposition is async-signal-safe.
        unsafe { libc::signal(libc::SIGBUS, libc::SIG_DFL) };
    }
}

extern "C" fn on_lease_break(_sig: libc::c_int) {
    let _ = LEASE_BROKEN_NS.compare_exchange(0, now_ns(), Ordering::SeqCst, Ordering::SeqCst);
}

/// The real-time signal the lease break is sent with.
pub fn lease_signal() -> libc::c_int {
    libc::SIGRTMIN() + 1
}

/// Installs an SA_SIGINFO handler for `sig`; returns the previous action.
fn install(sig: libc::c_int, act: &libc::sigaction) -> anyhow::Result<libc::sigaction> {
    // SAFETY: an all-zero sigaction is a valid out-parameter.
    let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: `act` is a fully built action whose handler only does async-signal-safe work.
    Errno::result(unsafe { libc::sigaction(sig, act, &mut old) })
        .with_context(|| format!("cannot install a handler for signal {sig}"))?;
    Ok(old)
}

/// Restores a previous action.
fn restore(sig: libc::c_int, old: &libc::sigaction) {
    // SAFETY: `old` came from the kernel in `install`.
    unsafe { libc::sigaction(sig, old, std::ptr::null_mut()) };
}

/// Runs the workload: a private copy of the file is sent through a mapping and truncated to
/// half while the sender is mid-way. Succeeds when the sender survives and stops in time.
pub fn run(v: Variant, t: &FileTransfer) -> anyhow::Result<Truth> {
    let path = transfer::prepare(t)?;
    let copy = path.with_extension(format!("truncate-{}", std::process::id()));
    std::fs::copy(&path, &copy)
        .with_context(|| format!("cannot copy {} to {}", path.display(), copy.display()))?;
    let half = (t.size / 2 / CHUNK as u64) * CHUNK as u64;
    let scratch = copy.clone();
    let r = transfer::to_socket("mmap-truncate", t, move |_, sock, timer| match v {
        Variant::Sigbus => send_with_sigbus_handler(&scratch, half, sock, timer),
        Variant::Lease => send_with_lease(&scratch, half, sock, timer),
    });
    let _ = std::fs::remove_file(&copy);
    r
}

/// Touches every page of `chunk` from user space, as a program that reads the mapping does;
/// stops at the first SIGBUS. Returns whether the chunk is whole.
fn touch(chunk: &[u8], page: usize) -> bool {
    for i in (0..chunk.len()).step_by(page) {
        std::hint::black_box(chunk[i]);
        if BUS_COUNT.load(Ordering::SeqCst) > 0 {
            return false;
        }
    }
    true
}

fn page_size() -> usize {
    nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .map_or(4096, |p| p as usize)
}

fn send_with_sigbus_handler(
    path: &Path,
    half: u64,
    sock: &TcpStream,
    timer: &mut Timer,
) -> anyhow::Result<SendOutcome> {
    let f = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let len = f.metadata()?.len() as usize;
    let map = Mapping::new(&f, len)?;
    let bytes = map.bytes();
    let page = page_size();
    PAGE.store(page, Ordering::SeqCst);
    MAP_START.store(bytes.as_ptr() as usize, Ordering::SeqCst);
    MAP_END.store(bytes.as_ptr() as usize + len, Ordering::SeqCst);
    BUS_ADDR.store(0, Ordering::SeqCst);
    BUS_COUNT.store(0, Ordering::SeqCst);
    // SAFETY: an all-zero sigaction is valid; the fields are filled below.
    let mut act: libc::sigaction = unsafe { std::mem::zeroed() };
    act.sa_sigaction = on_sigbus as *const () as usize;
    act.sa_flags = libc::SA_SIGINFO;
    let old = install(libc::SIGBUS, &act)?;
    let mut sent = 0u64;
    let mut truncated = false;
    let result = (|| -> anyhow::Result<()> {
        for chunk in bytes.chunks(CHUNK) {
            if sent == half && !truncated {
                // Another writer cuts the file in half under the mapping.
                File::options()
                    .write(true)
                    .open(path)?
                    .set_len(half)
                    .context("cannot truncate the copy")?;
                truncated = true;
            }
            if !touch(chunk, page) {
                return Ok(());
            }
            write_data(timer, sock, chunk)?;
            sent += chunk.len() as u64;
        }
        Ok(())
    })();
    drop(map);
    restore(libc::SIGBUS, &old);
    result?;
    let addr = BUS_ADDR.load(Ordering::SeqCst);
    anyhow::ensure!(
        addr != 0,
        "the file was truncated under the mapping but no SIGBUS arrived"
    );
    let start = MAP_START.load(Ordering::SeqCst);
    Ok(SendOutcome {
        bytes: sent,
        outcome: format!(
            "file truncated to {half} bytes while mapped; SIGBUS at offset {} ({} signal); \
             the handler mapped a zero page and the sender stopped after {sent} bytes instead \
             of crashing",
            addr - start,
            BUS_COUNT.load(Ordering::SeqCst)
        ),
        ..Default::default()
    })
}

fn write_data(timer: &mut Timer, sock: &TcpStream, mut data: &[u8]) -> anyhow::Result<()> {
    while !data.is_empty() {
        let n = timer
            .call("write", sock.as_raw_fd(), || nix::unistd::write(sock, data))
            .context("write to the socket failed")?;
        data = &data[n..];
    }
    Ok(())
}

/// `F_SETSIG` (linux/fcntl.h), which the libc crate does not name.
const F_SETSIG: libc::c_int = 10;

fn fcntl(fd: i32, cmd: libc::c_int, arg: libc::c_int, what: &str) -> anyhow::Result<()> {
    // SAFETY: an integer-argument fcntl on a descriptor this function's caller owns.
    Errno::result(unsafe { libc::fcntl(fd, cmd, arg) })
        .map(drop)
        .with_context(|| format!("fcntl({what}) failed"))
}

fn send_with_lease(
    path: &Path,
    half: u64,
    sock: &TcpStream,
    timer: &mut Timer,
) -> anyhow::Result<SendOutcome> {
    let sig = lease_signal();
    LEASE_BROKEN_NS.store(0, Ordering::SeqCst);
    // The lease signal is a real-time one that nix's `Signal` does not name: libc it is.
    // SAFETY: an all-zero sigaction is valid; the handler only stores to atomics.
    let mut raw: libc::sigaction = unsafe { std::mem::zeroed() };
    raw.sa_sigaction = on_lease_break as *const () as usize;
    raw.sa_flags = libc::SA_RESTART;
    let old = install(sig, &raw)?;
    let f = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let fd = f.as_raw_fd();
    fcntl(fd, F_SETSIG, sig, "F_SETSIG")?;
    fcntl(fd, libc::F_SETLEASE, libc::F_RDLCK, "F_SETLEASE, F_RDLCK")?;
    let len = f.metadata()?.len() as usize;
    let map = Mapping::new(&f, len)?;
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let truncator = {
        let path: PathBuf = path.to_path_buf();
        std::thread::spawn(move || -> anyhow::Result<(u64, u64)> {
            go_rx.recv().context("the sender went away")?;
            let began = now_ns();
            // The open blocks until the lease holder lets go (or the lease-break time runs out).
            let w = File::options()
                .write(true)
                .open(&path)
                .with_context(|| format!("cannot open {} to truncate it", path.display()))?;
            let opened = now_ns();
            w.set_len(half).context("cannot truncate the copy")?;
            Ok((began, opened))
        })
    };
    let mut sent = 0u64;
    let mut stopped_at = None;
    let result = (|| -> anyhow::Result<()> {
        for chunk in map.bytes().chunks(CHUNK) {
            if sent == half {
                // A writer comes while the sender is mid-way: the sender goes on with what it
                // does until the lease-break signal arrives (at most the lease-break time).
                go_tx.send(()).context("the truncating thread went away")?;
                let deadline = now_ns() + 10_000_000_000;
                while LEASE_BROKEN_NS.load(Ordering::SeqCst) == 0 && now_ns() < deadline {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            if LEASE_BROKEN_NS.load(Ordering::SeqCst) != 0 {
                stopped_at = Some(sent);
                return Ok(());
            }
            write_data(timer, sock, chunk)?;
            sent += chunk.len() as u64;
        }
        Ok(())
    })();
    // Give the mapping and the lease back: the truncation may go through now.
    drop(map);
    let unlock = fcntl(fd, libc::F_SETLEASE, libc::F_UNLCK, "F_SETLEASE, F_UNLCK");
    drop(f);
    drop(go_tx);
    let times = truncator
        .join()
        .map_err(|_| anyhow::anyhow!("the truncating thread panicked"))?;
    restore(sig, &old);
    result?;
    unlock?;
    let (began, opened) = times?;
    let broken = LEASE_BROKEN_NS.load(Ordering::SeqCst);
    anyhow::ensure!(broken != 0, "no lease-break signal arrived");
    let ms = |ns: u64| Duration::from_nanos(ns).as_secs_f64() * 1e3;
    Ok(SendOutcome {
        bytes: sent,
        outcome: format!(
            "lease-break signal SIGRTMIN+1 ({sig}) arrived {:.3} ms after a writer opened the file; the sender \
             {} after {sent} bytes, released the lease, and the truncation to {half} bytes went \
             through {:.3} ms after the open began; no SIGBUS",
            ms(broken.saturating_sub(began)),
            if stopped_at.is_some() {
                "stopped"
            } else {
                "had finished"
            },
            ms(opened - began)
        ),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transfer(name: &str) -> (FileTransfer, PathBuf) {
        let dir = tempfile::Builder::new()
            .prefix(&format!("ioprof-trunc-{name}-"))
            .tempdir()
            .expect("scratch folder")
            .keep();
        (
            FileTransfer {
                file: Some(dir.join("f.bin")),
                size: 4 << 20,
                cold: false,
            },
            dir,
        )
    }

    // One test for both variants: signal dispositions belong to the whole test process.
    #[test]
    fn both_variants_survive_the_truncation() {
        let (t, dir) = transfer("bus");
        let truth = run(Variant::Sigbus, &t).expect("run");
        assert_eq!(truth.bytes, 2 << 20, "{}", truth.outcome);
        assert!(
            truth.outcome.contains("SIGBUS at offset 2097152"),
            "{}",
            truth.outcome
        );
        std::fs::remove_dir_all(dir).expect("clean");

        let (t, dir) = transfer("lease");
        let truth = run(Variant::Lease, &t).expect("run");
        assert!(truth.bytes >= 2 << 20, "{}", truth.outcome);
        assert!(truth.outcome.contains("no SIGBUS"), "{}", truth.outcome);
        std::fs::remove_dir_all(dir).expect("clean");
    }
}

//! Descriptor classes at a call's entry: follows the current task's descriptor table to the
//! file, its inode mode and, for sockets, their family and type, with offsets user space read
//! from the kernel's BTF. Classifying at entry stays right for short-lived processes and for
//! descriptor numbers that are closed and reused.
//!
//! Where the probes see every call of a traced process (the raw `sys_enter` hook), a class is
//! cached per (process, descriptor) and dropped when the process closes or replaces that
//! descriptor (`close`, `dup2`, `dup3`); a call that can close any number of them
//! (`close_range`, `execve`, `io_uring_enter`, `unshare`), an `exec` and the process's end
//! give the process a new generation, which no cached class matches.
use aya_ebpf::{
    helpers::{bpf_get_current_task, bpf_probe_read_kernel},
    macros::map,
    maps::{Array, LruHashMap},
};
use probe_common::{
    CALL_FDS_DROP_SHIFT, CALL_FDS_SET, CALL_FDS_SLOTS, FdOffsets, NO_FD_ARG, fd_class,
};

use crate::maps::{current_ids, now};

/// Kernel structure offsets, set by user space before load (all zero: classification off).
#[unsafe(no_mangle)]
static FD_OFFSETS: FdOffsets = FdOffsets {
    enabled: 0,
    task_files: 0,
    files_fdt: 0,
    fdt_max_fds: 0,
    fdt_fd: 0,
    file_inode: 0,
    file_private: 0,
    inode_mode: 0,
    socket_type: 0,
    socket_sk: 0,
    sk_family: 0,
    _pad: 0,
};

/// Which arguments of each traced call number are descriptors: `from | to << 8 |
/// CALL_FDS_SET`, indexed by call number (an array: its lookup is inlined).
#[map]
pub static CALL_FDS: Array<u32> = Array::with_max_entries(CALL_FDS_SLOTS, 0);

/// Slot 0 is 1 once user space has seen to it that every call that closes descriptors reaches
/// [`drop_cached`] (the raw `sys_enter` hook and the `exec`, fork and exit hooks are
/// attached): only then are classes cached.
#[map]
pub static FD_CACHE_ON: Array<u32> = Array::with_max_entries(1, 0);

/// A descriptor's class, cached under `tgid << 32 | fd`, valid while `generation` is its
/// process's in [`FD_GENERATIONS`].
#[derive(Clone, Copy)]
#[repr(C)]
pub struct CachedClass {
    generation: u64,
    class: u32,
    _pad: u32,
}

/// Cached descriptor classes; the least recently used go first when it is full.
#[map]
static FD_CACHE: LruHashMap<u64, CachedClass> = LruHashMap::with_max_entries(1 << 16, 0);

/// The generation of each process's cached classes: the time it was given, unique per
/// process over time.
#[map]
static FD_GENERATIONS: LruHashMap<u32, u64> = LruHashMap::with_max_entries(1 << 14, 0);

const S_IFMT: u16 = 0o170000;
const S_IFREG: u16 = 0o100000;
const S_IFIFO: u16 = 0o010000;
const S_IFSOCK: u16 = 0o140000;
const AF_UNIX: u16 = 1;
const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;
const SOCK_STREAM: i16 = 1;
const SOCK_DGRAM: i16 = 2;

/// Reads a `T` at `base + off` in kernel memory.
#[inline(always)]
fn read<T>(base: u64, off: u32) -> Result<T, u32> {
    // SAFETY: bpf_probe_read_kernel checks the address and fails cleanly on a bad one.
    unsafe { bpf_probe_read_kernel((base + off as u64) as *const T) }.map_err(|_| fd_class::UNKNOWN)
}

#[inline(always)]
fn classify(o: &FdOffsets, fd: i64) -> Result<u32, u32> {
    if fd < 0 {
        return Ok(fd_class::NONE);
    }
    // SAFETY: the helper has no preconditions.
    let task = unsafe { bpf_get_current_task() };
    let files: u64 = read(task, o.task_files)?;
    let fdt: u64 = read(files, o.files_fdt)?;
    let max: u32 = read(fdt, o.fdt_max_fds)?;
    if fd as u64 >= max as u64 {
        return Ok(fd_class::NOT_OPEN);
    }
    let arr: u64 = read(fdt, o.fdt_fd)?;
    let file: u64 = read(arr, (fd as u32) * 8)?;
    if file == 0 {
        return Ok(fd_class::NOT_OPEN);
    }
    let inode: u64 = read(file, o.file_inode)?;
    let mode: u16 = read(inode, o.inode_mode)?;
    Ok(match mode & S_IFMT {
        S_IFREG => fd_class::FILE,
        S_IFIFO => fd_class::PIPE,
        S_IFSOCK => {
            let sock: u64 = read(file, o.file_private)?;
            let ty: i16 = read(sock, o.socket_type)?;
            let sk: u64 = read(sock, o.socket_sk)?;
            let family: u16 = read(sk, o.sk_family)?;
            match (family, ty) {
                (AF_UNIX, _) => fd_class::UNIX,
                (AF_INET | AF_INET6, SOCK_STREAM) => fd_class::TCP,
                (AF_INET | AF_INET6, SOCK_DGRAM) => fd_class::UDP,
                _ => fd_class::SOCKET,
            }
        }
        _ => fd_class::OTHER,
    })
}

/// Classes of the source and destination descriptors of call `nr` with arguments `args`.
#[inline(always)]
pub fn classes(nr: u32, args: &[u64; 3]) -> (u32, u32) {
    let spec = CALL_FDS.get(nr).copied().unwrap_or(0);
    (
        class_at(spec, spec & 0xff, args, true),
        class_at(spec, (spec >> 8) & 0xff, args, true),
    )
}

/// Class of the source descriptor of call `nr`, by the descriptor walk alone: for the rare
/// call already in flight when tracing began, seen at its exit. Leaving the cache out keeps
/// the exit program small, which the kernel verifies again for every place that calls it.
#[inline(always)]
pub fn walked_source_class(nr: u32, args: &[u64; 3]) -> u32 {
    let spec = CALL_FDS.get(nr).copied().unwrap_or(0);
    class_at(spec, spec & 0xff, args, false)
}

/// Class of the source descriptor of a call with `CALL_FDS` value `spec`, read only for a call
/// that moves data (summary mode's key); [`fd_class::UNKNOWN`] for any other, without reading
/// its arguments.
#[inline(always)]
pub fn source_class(spec: u32, args: impl FnOnce() -> [u64; 3]) -> u32 {
    if !probe_common::moves_data(spec) {
        return fd_class::UNKNOWN;
    }
    class_at(spec, spec & 0xff, &args(), true)
}

/// Class of the descriptor in argument `idx` of a call with `CALL_FDS` value `spec`, from the
/// cache where it is on and `cache` allows.
#[inline(always)]
fn class_at(spec: u32, idx: u32, args: &[u64; 3], cache: bool) -> u32 {
    // SAFETY: a read of a constant the loader may have rewritten; volatile so that the
    // compiler does not fold the default.
    let o = unsafe { core::ptr::read_volatile(&FD_OFFSETS) };
    if o.enabled == 0 || spec & CALL_FDS_SET == 0 {
        return fd_class::UNKNOWN;
    }
    if idx == NO_FD_ARG || idx > 2 {
        return fd_class::NONE;
    }
    let fd = args[idx as usize] as i32 as i64;
    if fd < 0 {
        return fd_class::NONE;
    }
    if !cache || FD_CACHE_ON.get(0).copied().unwrap_or(0) == 0 {
        return classify_or_note(&o, fd);
    }
    cached_class(fd)
}

/// The class of descriptor `fd` of the current process, from the cache when its generation
/// matches, else read and cached. A function of its own, called, so that the callers' stack
/// frames stay within the kernel's limit.
#[inline(never)]
fn cached_class(fd: i64) -> u32 {
    // SAFETY: as in `class_at`.
    let o = unsafe { core::ptr::read_volatile(&FD_OFFSETS) };
    let (tgid, _) = current_ids();
    let key = (u64::from(tgid) << 32) | fd as u64;
    let generation = match FD_GENERATIONS.get_ptr(&tgid) {
        // SAFETY: a valid map value pointer; the read is of a plain u64.
        Some(g) => unsafe { *g },
        None => {
            let g = now();
            let _ = FD_GENERATIONS.insert(&tgid, &g, 0);
            g
        }
    };
    if let Some(c) = FD_CACHE.get_ptr(&key) {
        // SAFETY: a valid map value pointer; the fields are plain integers.
        let c = unsafe { *c };
        if c.generation == generation {
            return c.class;
        }
    }
    let class = classify_or_note(&o, fd);
    // Only an open descriptor's class is kept: a number not open now is open later.
    if class != fd_class::UNKNOWN && class != fd_class::NOT_OPEN {
        let c = CachedClass {
            generation,
            class,
            _pad: 0,
        };
        let _ = FD_CACHE.insert(&key, &c, 0);
    }
    class
}

#[inline(always)]
fn classify_or_note(o: &FdOffsets, fd: i64) -> u32 {
    match classify(o, fd) {
        Ok(c) => c,
        Err(c) => {
            crate::diag::once(probe_common::Diag::BtfUnreadable, fd as u32);
            c
        }
    }
}

/// A traced process's call with `CALL_FDS` value `spec` (which has `CALL_FDS_DROPS`) is about
/// to close or replace descriptors: their cached classes are dropped.
#[inline(always)]
pub fn drop_cached(tgid: u32, spec: u32, args: impl FnOnce() -> [u64; 3]) {
    let idx = (spec >> CALL_FDS_DROP_SHIFT) & 0xff;
    if idx > 2 {
        new_generation(tgid);
        return;
    }
    let fd = args()[idx as usize] as i32;
    if fd >= 0 {
        let _ = FD_CACHE.remove(&((u64::from(tgid) << 32) | fd as u64));
    }
}

/// Gives process `tgid` a new generation: none of its cached classes is valid any more.
#[inline(always)]
pub fn new_generation(tgid: u32) {
    let _ = FD_GENERATIONS.insert(&tgid, &now(), 0);
}

/// Process `tgid` ended: a later process given its pid starts with a new generation.
#[inline(always)]
pub fn forget_process(tgid: u32) {
    let _ = FD_GENERATIONS.remove(&tgid);
}

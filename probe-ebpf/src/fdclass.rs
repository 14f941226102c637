//! Descriptor classes at a call's entry: follows the current task's descriptor table to the
//! file, its inode mode and, for sockets, their family and type, with offsets user space read
//! from the kernel's BTF. Classifying at entry stays right for short-lived processes and for
//! descriptor numbers that are closed and reused.
use aya_ebpf::{
    helpers::{bpf_get_current_task, bpf_probe_read_kernel},
    macros::map,
    maps::Array,
};
use probe_common::{CALL_FDS_SET, CALL_FDS_SLOTS, FdOffsets, NO_FD_ARG, fd_class};

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
        class_at(spec, spec & 0xff, args),
        class_at(spec, (spec >> 8) & 0xff, args),
    )
}

/// Class of the source descriptor of a call with `CALL_FDS` value `spec`, read only for a call
/// that moves data (summary mode's key); [`fd_class::UNKNOWN`] for any other, without reading
/// its arguments.
#[inline(always)]
pub fn source_class(spec: u32, args: impl FnOnce() -> [u64; 3]) -> u32 {
    if !probe_common::moves_data(spec) {
        return fd_class::UNKNOWN;
    }
    class_at(spec, spec & 0xff, &args())
}

/// Class of the descriptor in argument `idx` of a call with `CALL_FDS` value `spec`.
#[inline(always)]
fn class_at(spec: u32, idx: u32, args: &[u64; 3]) -> u32 {
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
    match classify(&o, fd) {
        Ok(c) => c,
        Err(c) => {
            crate::diag::once(probe_common::Diag::BtfUnreadable, fd as u32);
            c
        }
    }
}

//! Entry point of the kernel-side object: the maps every hook family shares, and the modules
//! that hold the programs.
#![no_std]
#![no_main]

mod diag;
mod faults;
mod fdclass;
mod maps;
mod models;
mod procs;
mod sampling;
mod sched;
mod signal;
mod sock;
mod summary;
mod syscalls;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // SAFETY: BPF programs cannot panic at run time; the verifier rejects unbounded code, so
    // this is never reached in a loaded program.
    unsafe { core::hint::unreachable_unchecked() }
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";

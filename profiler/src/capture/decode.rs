//! Decoding of raw ring-buffer records into typed records.
use std::mem::size_of;

use probe_common::{
    CallRecord, CompactCall, CopyRecord, ProcRecord, RecordKind, SampleRecord, SignalRecord,
    SockRecord, UringRecord,
};

/// Why a record could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    /// Fewer bytes than a record header or than the record's kind needs.
    #[error("record of {got} bytes is too short (need {need})")]
    Short {
        /// Bytes present.
        got: usize,
        /// Bytes needed.
        need: usize,
    },
    /// A kind this profiler does not know.
    #[error("unknown record kind {0}")]
    UnknownKind(u32),
}

/// A decoded record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Record {
    /// A finished call.
    Call(CallRecord),
    /// A signal sent or delivered.
    Signal(SignalRecord),
    /// A socket copy outside any traced call.
    Copy(CopyRecord),
    /// A CPU sample of a traced thread.
    Sample(SampleRecord),
    /// Data reached a socket, or a thread read from one.
    Sock(SockRecord),
    /// An io_uring request was submitted or completed.
    Uring(UringRecord),
    /// A traced process forked or ended.
    Proc(ProcRecord),
}

/// Reads a plain record of type `T` from the start of `bytes`.
fn read<T: Copy>(bytes: &[u8]) -> Result<T, DecodeError> {
    let need = size_of::<T>();
    if bytes.len() < need {
        return Err(DecodeError::Short {
            got: bytes.len(),
            need,
        });
    }
    // SAFETY: callers use this only for `#[repr(C)]` records of plain integers, valid for any
    // bits; the slice holds at least the record's size; `read_unaligned` needs no alignment.
    Ok(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) })
}

/// Decodes one ring-buffer record.
pub fn decode(bytes: &[u8]) -> Result<Record, DecodeError> {
    let head: [u8; 4] =
        bytes
            .get(..4)
            .and_then(|b| b.try_into().ok())
            .ok_or(DecodeError::Short {
                got: bytes.len(),
                need: 4,
            })?;
    let kind = u32::from_ne_bytes(head);
    match RecordKind::from_u32(kind) {
        Some(RecordKind::Call) => read(bytes).map(Record::Call),
        Some(RecordKind::CompactCall) => {
            read::<CompactCall>(bytes).map(|c| Record::Call(c.unpack()))
        }
        Some(RecordKind::Signal) => read(bytes).map(Record::Signal),
        Some(RecordKind::Copy) => read(bytes).map(Record::Copy),
        Some(RecordKind::Sample) => read(bytes).map(Record::Sample),
        Some(RecordKind::DataReady | RecordKind::RecvLength) => read(bytes).map(Record::Sock),
        Some(RecordKind::UringSubmit | RecordKind::UringComplete) => read(bytes).map(Record::Uring),
        Some(RecordKind::Proc) => read(bytes).map(Record::Proc),
        None => Err(DecodeError::UnknownKind(kind)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes_of<T>(r: &T) -> Vec<u8> {
        // SAFETY: reading a plain record's bytes.
        unsafe { std::slice::from_raw_parts((r as *const T).cast::<u8>(), size_of::<T>()) }.to_vec()
    }

    #[test]
    fn call_round_trips() {
        let r = CallRecord {
            kind: RecordKind::Call as u32,
            pid: 7,
            tid: 8,
            ret: -11,
            ..Default::default()
        };
        assert_eq!(decode(&bytes_of(&r)), Ok(Record::Call(r)));
        let compact = CompactCall::pack(&r, probe_common::NO_FD_ARG, probe_common::NO_FD_ARG)
            .expect("a small call fits");
        assert_eq!(decode(&bytes_of(&compact)), Ok(Record::Call(r)));
        let s = SignalRecord {
            kind: RecordKind::Signal as u32,
            sig: 29,
            ..Default::default()
        };
        assert_eq!(decode(&bytes_of(&s)), Ok(Record::Signal(s)));
        let c = CopyRecord {
            kind: RecordKind::Copy as u32,
            bytes: 5,
            ..Default::default()
        };
        assert_eq!(decode(&bytes_of(&c)), Ok(Record::Copy(c)));
        let sm = SampleRecord {
            kind: RecordKind::Sample as u32,
            kstack: 3,
            ..Default::default()
        };
        assert_eq!(decode(&bytes_of(&sm)), Ok(Record::Sample(sm)));
        let p = ProcRecord {
            kind: RecordKind::Proc as u32,
            pid: 12,
            comm: *b"nginx\0\0\0\0\0\0\0\0\0\0\0",
            ..Default::default()
        };
        assert_eq!(decode(&bytes_of(&p)), Ok(Record::Proc(p)));
    }

    #[test]
    fn short_and_unknown_are_errors() {
        assert_eq!(decode(&[1, 0]), Err(DecodeError::Short { got: 2, need: 4 }));
        assert_eq!(
            decode(&[1, 0, 0, 0, 9]),
            Err(DecodeError::Short {
                got: 5,
                need: size_of::<CallRecord>()
            })
        );
        assert_eq!(decode(&[99, 0, 0, 0]), Err(DecodeError::UnknownKind(99)));
    }
}

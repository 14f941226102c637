//! Property tests of robust decoding and output: any bytes decode to a record or an error,
//! never a panic; records round-trip; any calls stream to CSV rows that read back whole; the
//! streaming statistics stay within 1% of the exact ones.
use probe_common::{CallRecord, CopyRecord, RecordKind, SignalRecord};
use profiler::{
    analyze::attribution::Distribution,
    analyze::stats::Stream,
    capture::decode::{DecodeError, Record, decode},
    capture::fdkind::FdKind,
    capture::sink::{CallSink, CsvStream},
    capture::traced::TracedCall,
    render::export::CallRow,
};
use proptest::prelude::*;

fn bytes_of<T>(r: &T) -> Vec<u8> {
    // SAFETY: reads the bytes of a plain `#[repr(C)]` record of integers, no padding holes.
    unsafe { std::slice::from_raw_parts((r as *const T).cast::<u8>(), size_of::<T>()) }.to_vec()
}

fn call_record() -> impl Strategy<Value = CallRecord> {
    (
        (
            any::<u32>(),
            any::<u32>(),
            0u32..600,
            any::<[u64; 3]>(),
            any::<i64>(),
        ),
        (any::<u64>(), any::<u64>(), any::<u64>(), any::<u64>()),
        (
            any::<u32>(),
            any::<u32>(),
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
        ),
    )
        .prop_map(
            |(
                (pid, tid, nr, args, ret),
                (start_ns, end_ns, first_copy_ns, copy_bytes),
                (copy_events, switches, blocked_ns, runq_ns, wait_blocked_ns, wait_runq_ns),
            )| CallRecord {
                kind: RecordKind::Call as u32,
                pid,
                tid,
                nr,
                args,
                ret,
                start_ns,
                end_ns,
                first_copy_ns,
                copy_bytes,
                copy_events,
                switches,
                blocked_ns,
                runq_ns,
                wait_blocked_ns,
                wait_runq_ns,
                ..CallRecord::default()
            },
        )
}

fn fd_kind() -> impl Strategy<Value = FdKind> {
    prop_oneof![
        Just(FdKind::Socket),
        Just(FdKind::Pipe),
        Just(FdKind::File),
        Just(FdKind::Other),
        Just(FdKind::Unknown),
    ]
}

/// Collects what each write call received.
#[derive(Default)]
struct Writes(Vec<Vec<u8>>);

impl std::io::Write for Writes {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.push(b.to_vec());
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_bytes_decode_or_fail_cleanly(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        match decode(&bytes) {
            Ok(Record::Call(_)) => prop_assert!(bytes.len() >= size_of::<CallRecord>()),
            Ok(Record::Signal(_)) => prop_assert!(bytes.len() >= size_of::<SignalRecord>()),
            Ok(Record::Copy(_)) => prop_assert!(bytes.len() >= size_of::<CopyRecord>()),
            Ok(Record::Sample(_)) => prop_assert!(bytes.len() >= size_of::<probe_common::SampleRecord>()),
            Ok(Record::Sock(_)) => prop_assert!(bytes.len() >= size_of::<probe_common::SockRecord>()),
            Ok(Record::Uring(_)) => prop_assert!(bytes.len() >= size_of::<probe_common::UringRecord>()),
            Ok(Record::Proc(_)) => prop_assert!(bytes.len() >= size_of::<probe_common::ProcRecord>()),
            Err(DecodeError::Short { got, need }) => prop_assert!(got < need && got == bytes.len()),
            Err(DecodeError::UnknownKind(k)) => prop_assert!(RecordKind::from_u32(k).is_none()),
        }
    }

    #[test]
    fn call_records_round_trip_and_truncations_are_short(rec in call_record(), cut in 0usize..160) {
        let bytes = bytes_of(&rec);
        prop_assert_eq!(decode(&bytes), Ok(Record::Call(rec)));
        let cut = cut.min(bytes.len() - 1);
        let short = decode(&bytes[..cut]);
        prop_assert!(matches!(short, Err(DecodeError::Short { got, .. }) if got == cut), "{:?}", short);
    }

    #[test]
    fn any_calls_stream_to_whole_rows_that_read_back(
        recs in proptest::collection::vec((call_record(), fd_kind(), fd_kind()), 0..60),
        chunk in 1usize..4096,
    ) {
        let calls: Vec<TracedCall> = recs
            .into_iter()
            .map(|(rec, a, b)| {
                let mut n = 0;
                TracedCall::new(rec, |_, _| {
                    n += 1;
                    if n == 1 { a } else { b }
                })
            })
            .collect();
        let mut s = CsvStream::with_chunk(Writes::default(), chunk).expect("header");
        for c in &calls {
            s.call(c).expect("row");
        }
        s.finish().expect("finish");
        let writes = s.into_inner().0;
        for w in &writes {
            prop_assert_eq!(w.last(), Some(&b'\n'), "a write ended mid-row");
        }
        let all = writes.concat();
        let rows: Vec<CallRow> = csv::Reader::from_reader(all.as_slice())
            .deserialize()
            .collect::<Result<_, _>>()
            .expect("rows read back");
        prop_assert_eq!(rows.len(), calls.len());
        for (row, c) in rows.iter().zip(&calls) {
            prop_assert_eq!(row, &CallRow::from(c));
            prop_assert!(row.wait_ns + row.copy_ns <= row.total_ns);
        }
    }

    #[test]
    fn streaming_percentiles_stay_within_one_percent(
        values in proptest::collection::vec(0u64..(1 << 40), 1..2000),
    ) {
        let mut s = Stream::default();
        for &v in &values {
            s.record(v);
        }
        let got = s.distribution();
        let exact = Distribution::of(values);
        prop_assert_eq!((got.sum, got.max), (exact.sum, exact.max));
        for (g, e) in [(got.p50, exact.p50), (got.p99, exact.p99)] {
            prop_assert!(g.abs_diff(e) as f64 <= 0.01 * e as f64 + 1.0, "{} vs {}", g, e);
        }
    }
}

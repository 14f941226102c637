//! CPU samples of traced threads, from kernel records to a profile: each sample named by the
//! call in flight and its stage, its stacks symbolized and its kernel stack classified, then
//! counted per call kind and stage with the copy fraction and an estimated copy time.
use std::collections::{BTreeMap, HashMap};

use probe_common::{ExactCopy, NO_CALL, SampleRecord, SampleStage};

use crate::{
    analyze::attribution::StageSource,
    analyze::classify::{self, FrameClass},
    capture::cpu_probes::CopyTiming,
    capture::kallsyms::Kallsyms,
    capture::traced::TracedCall,
    capture::usyms::{self, Mapping, UserSymbols},
};

/// Call label of samples taken with no traced call in flight.
pub const USER_CODE: &str = "user code";

/// Everything the sampler collected in a run.
#[derive(Clone, Debug)]
pub struct SampleSet {
    /// The samples, in arrival order.
    pub records: Vec<SampleRecord>,
    /// Stacks by id, frames leaf first.
    pub stacks: HashMap<u32, Vec<u64>>,
    /// Executable mappings of each sampled process, newest first.
    pub maps: HashMap<u32, Vec<Mapping>>,
    /// Exact copy time per (thread, call entry time), in exact mode.
    pub exact: HashMap<(u32, u64), ExactCopy>,
    /// How copy time was measured.
    pub timing: CopyTiming,
    /// Samples lost to a full ring buffer.
    pub lost: u64,
    /// Samples inside a call whose kernel stack was not stored.
    pub kernel_stack_missing: u64,
}

impl SampleSet {
    /// An empty set for a run with this copy timing.
    pub fn new(timing: CopyTiming) -> Self {
        Self {
            records: Vec::new(),
            stacks: HashMap::new(),
            maps: HashMap::new(),
            exact: HashMap::new(),
            timing,
            lost: 0,
            kernel_stack_missing: 0,
        }
    }

    /// Takes a fresh snapshot of a process's executable mappings (kept in front of older
    /// ones, so that an `exec` is followed).
    pub fn note_maps(&mut self, pid: u32) {
        let Some(fresh) = usyms::read_maps(pid) else {
            return;
        };
        let old = self.maps.remove(&pid).unwrap_or_default();
        let older: Vec<Mapping> = old.into_iter().filter(|m| !fresh.contains(m)).collect();
        let mut all = fresh;
        all.extend(older);
        self.maps.insert(pid, all);
    }

    /// The stack ids the samples refer to.
    pub fn stack_ids(&self) -> Vec<u32> {
        let mut ids: Vec<u32> = self
            .records
            .iter()
            .flat_map(|r| [r.kstack, r.ustack])
            .filter(|&id| id >= 0)
            .map(|id| id as u32)
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }
}

/// One sample, named and symbolized.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sample {
    /// The call in flight (its label, `read file`), or [`USER_CODE`].
    pub call: String,
    /// Its stage: `wait`, `copy`, `in call` (call record not seen), or for user code `user`
    /// (in user mode) or `kernel` (in the kernel outside any traced call).
    pub stage: &'static str,
    /// User frames, leaf first.
    pub user: Vec<String>,
    /// Kernel frames, leaf first.
    pub kernel: Vec<String>,
    /// Class of the kernel stack (`None`: the sample was in user mode).
    pub class: Option<FrameClass>,
}

/// The stage of a sample, from what the kernel saw and the finished call (when known).
pub fn stage_of(rec: &SampleRecord, call: Option<&TracedCall>, in_kernel: bool) -> &'static str {
    if rec.nr == NO_CALL {
        return if in_kernel { "kernel" } else { "user" };
    }
    let after_marker = rec.stage == SampleStage::AfterMarker as u32;
    match call.map(|c| c.source) {
        Some(StageSource::Marker) if after_marker => "copy",
        Some(StageSource::Marker) | Some(StageSource::NoData) => "wait",
        // No marker on this path: the call's time on CPU is its copy stage.
        Some(StageSource::OnCpu) => "copy",
        None if after_marker => "copy",
        None => "in call",
    }
}

/// The class of a kernel stack sampled inside call `nr`. In a call that moves data inside the
/// kernel (`splice`, `sendfile64`, `copy_file_range`, `tee`) the "user" side of a copy routine
/// is a kernel buffer: its copy to or from user is a kernel copy. `vmsplice` does read user
/// memory.
pub fn class_in_call(class: FrameClass, nr: u32) -> FrameClass {
    let in_kernel = crate::syscalls::by_nr(nr)
        .is_some_and(|c| c.role == crate::syscalls::Role::Transfer && c.name != "vmsplice");
    match class {
        FrameClass::CopyToUser | FrameClass::CopyFromUser if in_kernel => FrameClass::CopyLeaf,
        c => c,
    }
}

/// Names and symbolizes every sample.
pub fn symbolize(set: &SampleSet, calls: &[TracedCall], ksyms: &Kallsyms) -> Vec<Sample> {
    let by_key: HashMap<(u32, u64), &TracedCall> = calls
        .iter()
        .map(|c| ((c.rec.tid, c.rec.start_ns), c))
        .collect();
    let mut users = UserSymbols::default();
    let mut user_cache: HashMap<(u32, i32), Vec<String>> = HashMap::new();
    let no_maps = Vec::new();
    set.records
        .iter()
        .map(|r| {
            let kernel: Vec<String> = stack(set, r.kstack)
                .iter()
                .map(|&ip| {
                    ksyms
                        .resolve(ip)
                        .map_or_else(|| format!("{ip:#x}"), str::to_string)
                })
                .collect();
            let user = user_cache
                .entry((r.pid, r.ustack))
                .or_insert_with(|| {
                    let maps = set.maps.get(&r.pid).unwrap_or(&no_maps);
                    users.names(maps, stack(set, r.ustack))
                })
                .clone();
            let call = by_key.get(&(r.tid, r.call_start_ns)).copied();
            let in_kernel = !kernel.is_empty();
            Sample {
                call: match (r.nr, call) {
                    (NO_CALL, _) => USER_CODE.to_string(),
                    (_, Some(c)) => c.label(),
                    (nr, None) => crate::syscalls::name_of(nr),
                },
                stage: stage_of(r, call, in_kernel),
                class: in_kernel.then(|| {
                    class_in_call(
                        classify::classify_stack(kernel.iter().map(String::as_str)),
                        r.nr,
                    )
                }),
                user,
                kernel,
            }
        })
        .collect()
}

fn stack(set: &SampleSet, id: i32) -> &[u64] {
    if id < 0 {
        return &[];
    }
    set.stacks.get(&(id as u32)).map_or(&[], Vec::as_slice)
}

/// On-CPU time of every call kind and stage, from the traced calls.
pub fn oncpu_by_stage(calls: &[TracedCall]) -> HashMap<(String, &'static str), u64> {
    let mut out: HashMap<(String, &'static str), u64> = HashMap::new();
    for c in calls {
        let s = &c.stages;
        let (wait, copy) = match c.source {
            StageSource::Marker => {
                let copy_off = (s.blocked_ns - s.wait_blocked_ns.min(s.blocked_ns))
                    + (s.runq_ns - s.wait_runq_ns.min(s.runq_ns));
                (s.wait_oncpu_ns(), s.copy_ns.saturating_sub(copy_off))
            }
            StageSource::OnCpu => (0, s.copy_ns),
            StageSource::NoData => (s.wait_oncpu_ns(), 0),
        };
        *out.entry((c.label(), "wait")).or_default() += wait;
        *out.entry((c.label(), "copy")).or_default() += copy;
    }
    out
}

/// Samples of one call kind and stage.
#[derive(Clone, Debug, PartialEq)]
pub struct GroupRow {
    /// Call label, or [`USER_CODE`].
    pub call: String,
    /// Stage.
    pub stage: &'static str,
    /// Samples.
    pub samples: u64,
    /// Samples in user mode.
    pub user_mode: u64,
    /// Samples per kernel stack class.
    pub classes: BTreeMap<FrameClass, u64>,
    /// Time on CPU measured by the call hooks (`None`: not a traced call's stage).
    pub oncpu_ns: Option<u64>,
    /// Exact copy time of the group's calls, in exact mode.
    pub exact_ns: Option<u64>,
}

impl GroupRow {
    /// Samples whose kernel stack was copying.
    pub fn copy_samples(&self) -> u64 {
        self.classes
            .iter()
            .filter(|(c, _)| c.is_copy())
            .map(|(_, n)| n)
            .sum()
    }

    /// Share of the samples that were copying.
    pub fn copy_fraction(&self) -> f64 {
        if self.samples == 0 {
            0.0
        } else {
            self.copy_samples() as f64 / self.samples as f64
        }
    }

    /// Time on CPU: measured for a traced call's stage, else estimated as samples / `hz`.
    pub fn oncpu_or_estimate(&self, hz: u64) -> f64 {
        match self.oncpu_ns {
            Some(ns) => ns as f64,
            None if hz > 0 => self.samples as f64 * 1e9 / hz as f64,
            None => 0.0,
        }
    }

    /// Estimated copy time: time on CPU × copy fraction.
    pub fn est_copy_ns(&self, hz: u64) -> f64 {
        self.oncpu_or_estimate(hz) * self.copy_fraction()
    }
}

/// Counts samples per call kind and stage; attaches measured on-CPU times.
pub fn group(samples: &[Sample], oncpu: &HashMap<(String, &'static str), u64>) -> Vec<GroupRow> {
    let mut rows: BTreeMap<(String, &'static str), GroupRow> = BTreeMap::new();
    for s in samples {
        let row = rows
            .entry((s.call.clone(), s.stage))
            .or_insert_with(|| GroupRow {
                call: s.call.clone(),
                stage: s.stage,
                samples: 0,
                user_mode: 0,
                classes: BTreeMap::new(),
                oncpu_ns: oncpu.get(&(s.call.clone(), s.stage)).copied(),
                exact_ns: None,
            });
        row.samples += 1;
        match s.class {
            Some(c) => *row.classes.entry(c).or_default() += 1,
            None => row.user_mode += 1,
        }
    }
    rows.into_values().collect()
}

/// Exact copy time per call label (exact mode).
pub fn exact_by_call(
    calls: &[TracedCall],
    exact: &HashMap<(u32, u64), ExactCopy>,
) -> BTreeMap<String, (u64, u64)> {
    let mut out: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for c in calls {
        if let Some(e) = exact.get(&(c.rec.tid, c.rec.start_ns)) {
            let v = out.entry(c.label()).or_default();
            v.0 += e.ns;
            v.1 += e.copies;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::fdkind::FdKind;
    use crate::render::samples::table;
    use probe_common::CallRecord;

    fn sample(call: &str, stage: &'static str, class: Option<FrameClass>) -> Sample {
        Sample {
            call: call.into(),
            stage,
            user: vec![],
            kernel: vec![],
            class,
        }
    }

    fn call(nr: i64, ret: i64, first_copy: u64) -> TracedCall {
        let rec = CallRecord {
            tid: 5,
            nr: nr as u32,
            start_ns: 1_000,
            end_ns: 11_000,
            first_copy_ns: first_copy,
            blocked_ns: 2_000,
            wait_blocked_ns: 2_000,
            ret,
            ..Default::default()
        };
        TracedCall::new(rec, |_, _| FdKind::File)
    }

    #[test]
    fn stages_follow_the_call_and_the_marker() {
        let file_read = call(libc::SYS_read, 4096, 0);
        let mut r = SampleRecord {
            nr: libc::SYS_read as u32,
            stage: SampleStage::BeforeMarker as u32,
            ..Default::default()
        };
        assert_eq!(stage_of(&r, Some(&file_read), true), "copy");
        let sock = call(libc::SYS_recvfrom, 10, 6_000);
        assert_eq!(stage_of(&r, Some(&sock), true), "wait");
        r.stage = SampleStage::AfterMarker as u32;
        assert_eq!(stage_of(&r, Some(&sock), true), "copy");
        assert_eq!(stage_of(&r, None, true), "copy");
        r.stage = SampleStage::BeforeMarker as u32;
        assert_eq!(stage_of(&r, None, true), "in call");
        let failed = call(libc::SYS_read, -11, 0);
        assert_eq!(stage_of(&r, Some(&failed), true), "wait");
        r.nr = NO_CALL;
        assert_eq!(stage_of(&r, None, false), "user");
        assert_eq!(stage_of(&r, None, true), "kernel");
    }

    #[test]
    fn an_in_kernel_copy_is_no_copy_from_user() {
        let nr = |n: i64| n as u32;
        for transfer in [
            libc::SYS_copy_file_range,
            libc::SYS_splice,
            libc::SYS_sendfile,
        ] {
            assert_eq!(
                class_in_call(FrameClass::CopyFromUser, nr(transfer)),
                FrameClass::CopyLeaf
            );
            assert_eq!(
                class_in_call(FrameClass::CopyToUser, nr(transfer)),
                FrameClass::CopyLeaf
            );
            assert_eq!(
                class_in_call(FrameClass::PageFault, nr(transfer)),
                FrameClass::PageFault
            );
        }
        for user in [libc::SYS_write, libc::SYS_vmsplice, libc::SYS_read] {
            assert_eq!(
                class_in_call(FrameClass::CopyFromUser, nr(user)),
                FrameClass::CopyFromUser
            );
        }
        assert_eq!(
            class_in_call(FrameClass::CopyFromUser, NO_CALL),
            FrameClass::CopyFromUser
        );
    }

    #[test]
    fn oncpu_time_per_stage() {
        // No marker: 10 µs total, 2 µs asleep → 8 µs on CPU in the copy stage.
        let m = oncpu_by_stage(&[call(libc::SYS_read, 4096, 0)]);
        assert_eq!(m[&("read file".to_string(), "copy")], 8_000);
        assert_eq!(m[&("read file".to_string(), "wait")], 0);
        // Marker at 6 µs: wait 5 µs of which 2 µs asleep; copy 5 µs all on CPU.
        let m = oncpu_by_stage(&[call(libc::SYS_recvfrom, 10, 6_000)]);
        assert_eq!(m[&("recvfrom file".to_string(), "wait")], 3_000);
        assert_eq!(m[&("recvfrom file".to_string(), "copy")], 5_000);
    }

    #[test]
    fn groups_count_classes_and_estimate_copy_time() {
        let samples = vec![
            sample("read file", "copy", Some(FrameClass::CopyToUser)),
            sample("read file", "copy", Some(FrameClass::CopyToUser)),
            sample("read file", "copy", Some(FrameClass::CopyLeaf)),
            sample("read file", "copy", Some(FrameClass::Other)),
            sample(USER_CODE, "user", None),
        ];
        let oncpu = HashMap::from([(("read file".to_string(), "copy"), 8_000u64)]);
        let rows = group(&samples, &oncpu);
        assert_eq!(rows.len(), 2);
        let read = &rows[0];
        assert_eq!((read.call.as_str(), read.stage), ("read file", "copy"));
        assert_eq!((read.samples, read.copy_samples()), (4, 3));
        assert!((read.copy_fraction() - 0.75).abs() < 1e-9);
        assert!((read.est_copy_ns(100) - 6_000.0).abs() < 1e-6);
        let user = &rows[1];
        assert_eq!(
            (user.samples, user.user_mode, user.copy_samples()),
            (1, 1, 0)
        );
        assert!(
            (user.oncpu_or_estimate(100) - 1e7).abs() < 1e-3,
            "1 sample at 100 Hz"
        );
        let t = table(&rows, 100);
        assert!(t.contains("read file"), "{t}");
        assert!(t.contains("75.0%"), "{t}");
        assert!(t.contains("6.0µs (3)"), "{t}");
    }

    #[test]
    fn exact_times_join_calls_by_thread_and_entry() {
        let c = call(libc::SYS_read, 4096, 0);
        let exact = HashMap::from([((5, 1_000), ExactCopy { ns: 700, copies: 2 })]);
        let m = exact_by_call(std::slice::from_ref(&c), &exact);
        assert_eq!(m["read file"], (700, 2));
        assert!(exact_by_call(&[c], &HashMap::new()).is_empty());
    }
}

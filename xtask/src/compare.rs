//! Methods side by side over interleaved rounds: each run's numbers read back from the
//! profiler's `--movement-json` and `--folded` files, each method's median and spread over its
//! rounds (sender and receiver apart), and the verdict in words. Pure: text in, text out.
use serde::{Deserialize, Serialize};
use workloads::{
    clock::{fmt_bytes, fmt_ns},
    methods::Method,
    spread::median_min_max,
};

/// The profiler's sorting of kernel functions into copy routines and other work, compiled here
/// from its one source so that both count a copy sample alike.
#[path = "../../profiler/src/analyze/classify.rs"]
#[allow(dead_code)]
mod classify;

/// GiB in bytes.
const GIB: f64 = (1u64 << 30) as f64;

/// The loopback receiver's calls (it reads with `recvfrom`), as the profiler labels them.
const RECEIVER: &str = "recvfrom socket";

/// Folded-stack root of samples taken with no traced call in flight.
const USER_CODE: &str = "user code";

/// What the profiler's `--movement-json` says of one call label (the fields read here).
#[derive(Debug, Deserialize)]
struct CallCost {
    label: String,
    user_memory: bool,
    calls: u64,
    bytes: u64,
    oncpu_ns: u64,
}

/// The fields of a `--movement-json` file read here.
#[derive(Debug, Deserialize)]
struct Movement {
    bytes: u64,
    user_receives: u64,
    by_call: Vec<CallCost>,
}

/// Whether a call label is one of the sender's calls for method `m` (the dynamic loader's
/// `mmap`, `munmap` and the like are neither side's).
fn is_sender_call(m: Method, label: &str) -> bool {
    let call = label.split(' ').next().unwrap_or(label);
    // The workload writes its truth to a file after the transfer: not the sender's.
    label != RECEIVER
        && label != "write file"
        && (m.data_calls().contains(&call) || (m == Method::MsgZerocopy && call == "recvmsg"))
}

/// One traced run of one method, per GiB moved where it says so.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RunNumbers {
    /// Bytes moved over the workload's own wall time of the transfer, MiB/s.
    pub mib_s: f64,
    /// Bytes the sender read into or wrote from its own memory with its calls, per GiB
    /// (`NaN`, written `null`: not seen, because io_uring requests move them).
    pub sender_user_bytes: f64,
    /// The sender's time in kernel copy routines (copy samples / rate), ns per GiB.
    pub sender_copy_ns: f64,
    /// The sender's system calls, per GiB.
    pub sender_calls: f64,
    /// The sender's time on CPU inside its calls, ns per GiB.
    pub sender_oncpu_ns: f64,
    /// Bytes the receiver received into its memory, per GiB.
    pub receiver_user_bytes: f64,
    /// The receiver's time in kernel copy routines, ns per GiB.
    pub receiver_copy_ns: f64,
    /// The receiver's time on CPU inside `recvfrom`, ns per GiB.
    pub receiver_oncpu_ns: f64,
    /// The receiver's time on CPU in `recvfrom` over the transfer time (1: always busy).
    pub receiver_busy: f64,
    /// CPU samples of the run, all threads, in calls or not.
    pub samples: f64,
}

/// Samples of a folded-stack file: (all, in copy routines under the sender's calls of `m`,
/// under the receiver's).
fn copy_samples(m: Method, folded: &str) -> (u64, u64, u64) {
    let (mut all, mut sender, mut receiver) = (0, 0, 0);
    for line in folded.lines() {
        let Some((stack, n)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(n) = n.parse::<u64>() else {
            continue;
        };
        all += n;
        let frames: Vec<&str> = stack.split(';').collect();
        if frames[0] == USER_CODE || frames.len() < 3 {
            continue;
        }
        if classify::classify_stack(frames[2..].iter().rev().copied()).is_copy() {
            if frames[0] == RECEIVER {
                receiver += n;
            } else if is_sender_call(m, frames[0]) {
                sender += n;
            }
        }
    }
    (all, sender, receiver)
}

impl RunNumbers {
    /// The numbers of a run of `m` from its `--movement-json` text, its folded stacks sampled
    /// at `hz`, and the workload's own count of the bytes it delivered and wall time of the
    /// transfer.
    pub fn read(
        m: Method,
        movement_json: &str,
        folded: &str,
        hz: u64,
        (bytes, wall_ns): (u64, u64),
    ) -> anyhow::Result<Self> {
        let mv: Movement = serde_json::from_str(movement_json)?;
        anyhow::ensure!(
            mv.bytes > 0 && bytes > 0 && wall_ns > 0,
            "the run moved no data"
        );
        let per_gib = |v: f64| v * GIB / bytes as f64;
        let sum = |f: &dyn Fn(&CallCost) -> bool, g: fn(&CallCost) -> u64| {
            mv.by_call.iter().filter(|c| f(c)).map(g).sum::<u64>() as f64
        };
        let sender = |c: &CallCost| is_sender_call(m, &c.label);
        let receiver = |c: &CallCost| c.label == RECEIVER;
        let (all, s_copy, r_copy) = copy_samples(m, folded);
        let user = |c: &CallCost| sender(c) && c.user_memory;
        let ns_per_sample = 1e9 / hz.max(1) as f64;
        let receiver_oncpu = sum(&receiver, |c| c.oncpu_ns);
        Ok(Self {
            mib_s: bytes as f64 / (1 << 20) as f64 / (wall_ns as f64 / 1e9),
            sender_user_bytes: match m {
                Method::IoUring => f64::NAN,
                _ => per_gib(sum(&user, |c| c.bytes)),
            },
            sender_copy_ns: per_gib(s_copy as f64 * ns_per_sample),
            sender_calls: per_gib(sum(&sender, |c| c.calls)),
            sender_oncpu_ns: per_gib(sum(&sender, |c| c.oncpu_ns)),
            receiver_user_bytes: per_gib(mv.user_receives as f64),
            receiver_copy_ns: per_gib(r_copy as f64 * ns_per_sample),
            receiver_oncpu_ns: per_gib(receiver_oncpu),
            receiver_busy: receiver_oncpu / wall_ns as f64,
            samples: all as f64,
        })
    }
}

/// The median of a method's rounds and their spread.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Spread {
    /// Median of the rounds.
    pub median: f64,
    /// Smallest round.
    pub min: f64,
    /// Largest round.
    pub max: f64,
}

impl Spread {
    /// The spread of `v` (all zero when it is empty).
    pub fn of(v: Vec<f64>) -> Self {
        let (median, min, max) = median_min_max(v).unwrap_or_default();
        Self { median, min, max }
    }

    /// `median (min–max)` with each value written by `f`; the median alone when every round
    /// reads the same.
    fn show(&self, f: fn(f64) -> String) -> String {
        let (lo, hi) = (f(self.min), f(self.max));
        if lo == hi {
            lo
        } else {
            format!("{} ({lo}–{hi})", f(self.median))
        }
    }
}

/// One method's rounds.
#[derive(Clone, Debug, Serialize)]
pub struct MethodRuns {
    /// The method's workload name.
    pub name: String,
    /// Its runs, in the order they ran.
    pub runs: Vec<RunNumbers>,
}

impl MethodRuns {
    /// The spread of one number over the rounds.
    pub fn spread(&self, f: fn(&RunNumbers) -> f64) -> Spread {
        Spread::of(self.runs.iter().map(f).collect())
    }
}

/// A row of the table: its title and how a run fills it (`None`: a heading).
type Row = (
    &'static str,
    Option<(fn(&RunNumbers) -> f64, fn(f64) -> String)>,
);

fn bytes(v: f64) -> String {
    if v.is_nan() {
        "n/a".into()
    } else {
        fmt_bytes(v.round() as u64)
    }
}
fn count(v: f64) -> String {
    format!("{v:.0}")
}
/// Nanoseconds as milliseconds, three significant digits.
fn ms(ns: f64) -> String {
    let v = ns / 1e6;
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

const ROWS: [Row; 13] = [
    ("throughput, MiB/s", Some((|r| r.mib_s, count))),
    ("sender, per GiB moved", None),
    (
        "  bytes through user memory",
        Some((|r| r.sender_user_bytes, bytes)),
    ),
    (
        "  CPU copying (sampled), ms",
        Some((|r| r.sender_copy_ns, ms)),
    ),
    ("  system calls", Some((|r| r.sender_calls, count))),
    (
        "  on CPU in its calls, ms",
        Some((|r| r.sender_oncpu_ns, ms)),
    ),
    ("receiver, per GiB moved", None),
    (
        "  bytes into user memory",
        Some((|r| r.receiver_user_bytes, bytes)),
    ),
    (
        "  CPU copying (sampled), ms",
        Some((|r| r.receiver_copy_ns, ms)),
    ),
    (
        "  on CPU in recvfrom, ms",
        Some((|r| r.receiver_oncpu_ns, ms)),
    ),
    (
        "  on CPU, share of transfer",
        Some((|r| r.receiver_busy, pct)),
    ),
    ("run", None),
    ("  CPU samples", Some((|r| r.samples, count))),
];

fn pct(v: f64) -> String {
    format!("{:.0}%", 100.0 * v)
}

/// The comparison as rows of cells, for the terminal and the HTML page alike.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Grid {
    /// The methods, one column each.
    pub columns: Vec<String>,
    /// Title and one cell per method (`median (min–max)`); a heading row has no cells.
    pub rows: Vec<(String, Vec<String>)>,
}

/// The grid of `methods`.
pub fn grid(methods: &[MethodRuns]) -> Grid {
    Grid {
        columns: methods.iter().map(|m| m.name.clone()).collect(),
        rows: ROWS
            .iter()
            .map(|(title, f)| {
                let cells = f.map_or(Vec::new(), |(get, fmt)| {
                    methods.iter().map(|m| m.spread(get).show(fmt)).collect()
                });
                (title.to_string(), cells)
            })
            .collect(),
    }
}

impl Grid {
    /// The grid as text: one row per number, one column per method, four methods a block.
    pub fn text(&self) -> String {
        let mut out = String::new();
        let n = self.columns.len();
        for start in (0..n).step_by(4) {
            let cols = start..(start + 4).min(n);
            let cell =
                |r: &(String, Vec<String>), i: usize| r.1.get(i).cloned().unwrap_or_default();
            let width = cols
                .clone()
                .flat_map(|i| {
                    self.rows
                        .iter()
                        .map(move |r| cell(r, i).chars().count())
                        .chain([self.columns[i].len()])
                })
                .max()
                .unwrap_or(10);
            let mut line = format!("{:<28}", "");
            for i in cols.clone() {
                line.push_str(&format!("  {:>width$}", self.columns[i]));
            }
            out.push_str(line.trim_end());
            out.push('\n');
            for r in &self.rows {
                let mut line = format!("{:<28}", r.0);
                for i in cols.clone() {
                    line.push_str(&format!("  {:>width$}", cell(r, i)));
                }
                out.push_str(line.trim_end());
                out.push('\n');
            }
        }
        out
    }
}

/// How a number of a method compares with the baseline's, over the rounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Change {
    /// One side was not measured.
    Unmeasured,
    /// Down to under 5% of the baseline's median.
    Gone,
    /// A median more than 20% lower.
    Lower,
    /// Medians within 20% of each other: not a change that rounds on a shared machine show
    /// again and again.
    Same,
    /// A median more than 25% higher (the inverse of 20% lower).
    Higher,
}

impl Change {
    /// How `m` compares with `base`, by their medians.
    pub fn of(base: Spread, m: Spread) -> Self {
        let (b, x) = (base.median, m.median);
        if b.is_nan() || x.is_nan() {
            Self::Unmeasured
        } else if b > 0.0 && x < 0.05 * b {
            Self::Gone
        } else if x < 0.8 * b {
            Self::Lower
        } else if x > 1.25 * b {
            Self::Higher
        } else {
            Self::Same
        }
    }
}

impl Change {
    /// `Same` when the two ranges of rounds overlap, else `self`.
    pub fn beyond_spread(self, base: Spread, m: Spread) -> Self {
        let overlap = m.min <= base.max && base.min <= m.max;
        match self {
            Self::Lower | Self::Higher if overlap => Self::Same,
            c => c,
        }
    }
}

/// What the numbers of a method say against the baseline.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Verdict {
    /// The method.
    pub method: String,
    /// The sender's bytes through its own memory.
    pub user_memory: Change,
    /// The sender's sampled CPU copying.
    pub copies: Change,
    /// The sender's time on CPU in its calls.
    pub sender_cpu: Change,
    /// Throughput.
    pub throughput: Change,
    /// In both methods the receiver spent more time on CPU in its calls than the sender in
    /// its own (medians): the receiver's copy, not the sender, sets the pace.
    pub receiver_bound: bool,
    /// The verdict in words.
    pub line: String,
}

/// A change in words with its medians: `2.0 GiB → 0 B (gone)`.
fn said(c: Change, base: Spread, m: Spread, f: fn(f64) -> String) -> String {
    let how = match c {
        Change::Unmeasured => {
            return "not seen by the profiler (io_uring requests move them)".into();
        }
        Change::Gone => "gone".to_string(),
        Change::Same => "within 20%".to_string(),
        Change::Lower | Change::Higher => {
            format!("{:+.0}%", 100.0 * (m.median - base.median) / base.median)
        }
    };
    format!("{} → {} ({how})", f(base.median), f(m.median))
}

/// The verdict of `m` against `base`.
pub fn verdict(base: &MethodRuns, m: &MethodRuns) -> Verdict {
    let ch = |f: fn(&RunNumbers) -> f64| (Change::of(base.spread(f), m.spread(f)), f);
    let (user_memory, um) = ch(|r| r.sender_user_bytes);
    let (copies, cp) = ch(|r| r.sender_copy_ns);
    let (sender_cpu, sc) = ch(|r| r.sender_oncpu_ns);
    // Throughput changes only beyond the rounds' spread as well: on a shared machine the
    // rounds of one method can differ by half.
    let (throughput, tp) = ch(|r| r.mib_s);
    let throughput = throughput.beyond_spread(base.spread(tp), m.spread(tp));
    let oncpu = |x: &MethodRuns, f: fn(&RunNumbers) -> f64| x.spread(f).median;
    let (recv, send) = (
        |x: &MethodRuns| oncpu(x, |r| r.receiver_oncpu_ns),
        |x: &MethodRuns| oncpu(x, |r| r.sender_oncpu_ns),
    );
    let receiver_bound = recv(base) > send(base) && recv(m) > send(m);
    let rate = |x: &MethodRuns| count(x.spread(tp).median);
    let (bs, ms_) = (base.spread(tp), m.spread(tp));
    let why_same = if ms_.min <= bs.max && bs.min <= ms_.max {
        "the rounds' ranges overlap"
    } else {
        "within 20%"
    };
    let pace = match throughput {
        Change::Same => {
            let same = format!(
                "no clear change in throughput (medians {} vs {} MiB/s, {why_same})",
                rate(base),
                rate(m)
            );
            if receiver_bound {
                format!(
                    "{same}: on loopback the receiver bounds both, its recvfrom (which copies \
                     every byte once more, plus the TCP receive work) being on CPU {} and {} ms \
                     per GiB, more than either sender's calls ({} and {} ms)",
                    ms(recv(base)),
                    ms(recv(m)),
                    ms(send(base)),
                    ms(send(m))
                )
            } else {
                same
            }
        }
        c => format!("throughput {}", said(c, bs, ms_, count)),
    };
    let line = format!(
        "{} against {}, per GiB moved: the sender's bytes through user memory {}, its CPU \
         copying {}, its time on CPU in calls {}; {pace}.",
        m.name,
        base.name,
        said(user_memory, base.spread(um), m.spread(um), bytes),
        said(copies, base.spread(cp), m.spread(cp), fmt_ns),
        said(sender_cpu, base.spread(sc), m.spread(sc), fmt_ns),
    );
    Verdict {
        method: m.name.clone(),
        user_memory,
        copies,
        sender_cpu,
        throughput,
        receiver_bound,
        line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `--movement-json` text: bytes moved, then per call label (calls, on-CPU ns, bytes
    /// through user memory).
    fn movement(bytes: u64, calls: &[(&str, u64, u64, u64)]) -> String {
        let by_call: Vec<String> = calls
            .iter()
            .map(|(l, n, ns, user)| {
                format!(
                    r#"{{"label":"{l}","calls":{n},"oncpu_ns":{ns},"bytes":{user},
                    "user_memory":{}}}"#,
                    *user > 0
                )
            })
            .collect();
        format!(
            r#"{{"label":"x","bytes":{bytes},"span_ns":1,"user_receives":{bytes},
            "by_call":[{}]}}"#,
            by_call.join(",")
        )
    }

    #[test]
    fn a_run_is_split_into_sender_and_receiver() {
        let gib = 1u64 << 30;
        let json = movement(
            gib,
            &[
                ("read file", 10, 100, gib),
                ("write socket", 20, 200, gib),
                ("recvfrom socket", 30, 800, gib),
                ("mmap", 5, 7, 0),
                ("write file", 13, 50, 1000),
            ],
        );
        let folded = "read file;copy;__libc_read;ksys_read;_copy_to_user;rep_movs_alternative 7\n\
                      write socket;copy;tcp_sendmsg;_copy_from_iter 3\n\
                      recvfrom socket;copy;skb_copy_datagram_iter 5\n\
                      recvfrom socket;wait;schedule 2\n\
                      mmap;copy;_copy_to_user 1\n\
                      user code;user;main 4\n";
        let r = RunNumbers::read(Method::ReadWrite, &json, folded, 1000, (gib, 1_000_000_000))
            .expect("read");
        assert_eq!(
            r.sender_calls, 30.0,
            "the loader's mmap and the truth's writing are neither side's"
        );
        assert_eq!((r.sender_oncpu_ns, r.receiver_oncpu_ns), (300.0, 800.0));
        assert_eq!(r.sender_user_bytes, 2.0 * gib as f64);
        // 10 copy samples at 1 kHz: 10 ms; 5 for the receiver.
        assert_eq!((r.sender_copy_ns, r.receiver_copy_ns), (10e6, 5e6));
        assert_eq!((r.samples, r.mib_s), (22.0, 1024.0));
        assert!(RunNumbers::read(Method::ReadWrite, "{}", "", 1, (1, 1)).is_err());
        // io_uring moves the bytes in requests: not seen, and said so.
        let u = RunNumbers::read(Method::IoUring, &json, "", 1000, (gib, 1)).expect("read");
        assert!(u.sender_user_bytes.is_nan());
        let one = |r: RunNumbers| MethodRuns {
            name: "m".into(),
            runs: vec![r],
        };
        let v = verdict(&one(r), &one(u));
        assert_eq!(v.user_memory, Change::Unmeasured);
        assert!(v.line.contains("not seen by the profiler"), "{}", v.line);
        assert!(grid(&[one(u)]).text().contains("n/a"));
    }

    fn runs(name: &str, user: f64, copy: f64, mib_s: &[f64]) -> MethodRuns {
        MethodRuns {
            name: name.into(),
            runs: mib_s
                .iter()
                .map(|&m| RunNumbers {
                    mib_s: m,
                    sender_user_bytes: user,
                    sender_copy_ns: copy,
                    sender_oncpu_ns: copy * 1.5,
                    receiver_oncpu_ns: 700e6,
                    ..RunNumbers::default()
                })
                .collect(),
        }
    }

    #[test]
    fn verdict_says_what_changed_and_what_bounds_the_rate() {
        let gib = GIB;
        let base = runs("read-write", 2.0 * gib, 400e6, &[1500.0, 1600.0, 1550.0]);
        let splice = runs("splice", 20e3, 1e6, &[1580.0, 1490.0, 1620.0]);
        let v = verdict(&base, &splice);
        assert_eq!(
            (v.user_memory, v.copies, v.sender_cpu, v.throughput),
            (Change::Gone, Change::Gone, Change::Gone, Change::Same)
        );
        assert!(v.receiver_bound);
        assert!(v.line.contains("2.0 GiB → 19.5 KiB (gone)"), "{}", v.line);
        assert!(v.line.contains("receiver bounds both"), "{}", v.line);
        assert!(v.line.contains("ranges overlap"), "{}", v.line);
        // Apart, but within 20%: said so, not "overlap".
        let slower = runs("splice", 20e3, 1e6, &[1300.0, 1250.0, 1350.0]);
        let v = verdict(&base, &slower);
        assert_eq!(v.throughput, Change::Same);
        assert!(v.line.contains("within 20%"), "{}", v.line);
        assert!(!v.line.contains("overlap"), "{}", v.line);
        let faster = runs("sendfile", 0.0, 1e6, &[3000.0, 3100.0, 3200.0]);
        let v = verdict(&base, &faster);
        assert_eq!(v.throughput, Change::Higher);
        assert!(v.line.contains("1550 → 3100 (+100%)"), "{}", v.line);
        let t = grid(&[base, splice]).text();
        assert!(t.contains("1550 (1500–1600)"), "{t}");
        assert!(t.contains(" 2.0 GiB "), "the same in every round: {t}");
        assert!(t.lines().any(|l| l.starts_with("receiver, per GiB")), "{t}");
    }

    #[test]
    fn spread_has_median_and_range() {
        let s = Spread::of(vec![3.0, 1.0, 2.0, 10.0]);
        assert_eq!((s.median, s.min, s.max), (2.5, 1.0, 10.0));
        assert_eq!(Change::of(s, Spread::of(vec![0.1])), Change::Gone);
        assert_eq!(Change::of(s, Spread::of(vec![2.0, 3.0])), Change::Same);
        let (lo, hi) = (Spread::of(vec![1.0, 2.0]), Spread::of(vec![1.5, 9.0]));
        assert_eq!(Change::Higher.beyond_spread(lo, hi), Change::Same);
        let far = Spread::of(vec![5.0, 9.0]);
        assert_eq!(Change::Higher.beyond_spread(lo, far), Change::Higher);
    }
}

//! The one table that sorts kernel functions into copy to user, copy from user, leaf copy
//! routines, page-fault handling, scheduling and other work, and the rule that gives a whole
//! kernel stack its class. Pure: names in, classes out.

/// What a kernel function does, as far as the copy question goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FrameClass {
    /// Copies kernel data to user memory (`_copy_to_user`, `copy_page_to_iter`, …).
    CopyToUser,
    /// Copies user memory into the kernel (`_copy_from_user`, `copy_page_from_iter`, …).
    CopyFromUser,
    /// A leaf routine that moves bytes for either direction or inside the kernel
    /// (`rep_movs_alternative`, `memcpy`, …).
    CopyLeaf,
    /// Page-fault handling.
    PageFault,
    /// The scheduler.
    Sched,
    /// Anything else.
    Other,
}

impl FrameClass {
    /// Every class, in table order.
    pub const ALL: [FrameClass; 6] = [
        Self::CopyToUser,
        Self::CopyFromUser,
        Self::CopyLeaf,
        Self::PageFault,
        Self::Sched,
        Self::Other,
    ];

    /// Name used in tables.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CopyToUser => "copy to user",
            Self::CopyFromUser => "copy from user",
            Self::CopyLeaf => "kernel memcpy",
            Self::PageFault => "page fault",
            Self::Sched => "scheduling",
            Self::Other => "other",
        }
    }

    /// Whether time in this class is copying bytes.
    pub fn is_copy(self) -> bool {
        matches!(self, Self::CopyToUser | Self::CopyFromUser | Self::CopyLeaf)
    }
}

/// How a table entry matches a function name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Match {
    /// The whole name.
    Exact,
    /// The start of the name.
    Prefix,
}

use FrameClass::*;
use Match::*;

/// The table. Names are compared without compiler suffixes (`.isra.0`, `.cold`, …).
pub const TABLE: &[(&str, Match, FrameClass)] = &[
    // Copy to user memory.
    ("_copy_to_user", Exact, CopyToUser),
    ("copy_to_user", Exact, CopyToUser),
    ("_copy_to_iter", Exact, CopyToUser),
    ("copy_to_iter", Exact, CopyToUser),
    ("copy_page_to_iter", Prefix, CopyToUser),
    ("copy_folio_to_iter", Exact, CopyToUser),
    ("skb_copy_datagram_iter", Exact, CopyToUser),
    ("__skb_datagram_iter", Exact, CopyToUser),
    ("simple_copy_to_iter", Exact, CopyToUser),
    ("csum_and_copy_to_iter", Exact, CopyToUser),
    ("copy_mc_to_user", Exact, CopyToUser),
    ("_copy_mc_to_iter", Exact, CopyToUser),
    ("filldir", Prefix, CopyToUser),
    // Copy from user memory.
    ("_copy_from_user", Exact, CopyFromUser),
    ("copy_from_user", Exact, CopyFromUser),
    ("_copy_from_iter", Prefix, CopyFromUser),
    ("copy_from_iter", Exact, CopyFromUser),
    ("copy_page_from_iter", Prefix, CopyFromUser),
    ("copy_folio_from_iter", Prefix, CopyFromUser),
    ("csum_and_copy_from_iter", Prefix, CopyFromUser),
    ("skb_do_copy_data_nocache", Exact, CopyFromUser),
    ("skb_copy_to_page_nocache", Exact, CopyFromUser),
    ("strncpy_from_user", Exact, CopyFromUser),
    ("copy_iovec_from_user", Exact, CopyFromUser),
    // Leaf routines that move the bytes.
    ("rep_movs_alternative", Exact, CopyLeaf),
    ("rep_stos_alternative", Exact, CopyLeaf),
    ("copy_user_generic", Prefix, CopyLeaf),
    ("copy_user_enhanced_fast_string", Exact, CopyLeaf),
    ("copy_mc_enhanced_fast_string", Exact, CopyLeaf),
    ("copy_mc_fragile", Exact, CopyLeaf),
    ("memcpy", Exact, CopyLeaf),
    ("__memcpy", Exact, CopyLeaf),
    ("memcpy_orig", Exact, CopyLeaf),
    ("memcpy_erms", Exact, CopyLeaf),
    ("memmove", Exact, CopyLeaf),
    ("__memmove", Exact, CopyLeaf),
    ("memcpy_from_iter", Prefix, CopyLeaf),
    ("memcpy_to_iter", Prefix, CopyLeaf),
    // Page-fault handling.
    ("asm_exc_page_fault", Exact, PageFault),
    ("exc_page_fault", Exact, PageFault),
    ("do_user_addr_fault", Exact, PageFault),
    ("do_kern_addr_fault", Exact, PageFault),
    ("handle_mm_fault", Exact, PageFault),
    ("__handle_mm_fault", Exact, PageFault),
    ("handle_pte_fault", Exact, PageFault),
    ("do_fault", Exact, PageFault),
    ("do_read_fault", Exact, PageFault),
    ("do_cow_fault", Exact, PageFault),
    ("do_shared_fault", Exact, PageFault),
    ("do_anonymous_page", Exact, PageFault),
    ("do_wp_page", Exact, PageFault),
    ("filemap_fault", Exact, PageFault),
    ("filemap_map_pages", Exact, PageFault),
    ("fixup_exception", Exact, PageFault),
    // The scheduler.
    ("schedule", Prefix, Sched),
    ("__schedule", Exact, Sched),
    ("preempt_schedule", Prefix, Sched),
    ("__cond_resched", Exact, Sched),
    ("finish_task_switch", Prefix, Sched),
    ("__switch_to", Prefix, Sched),
    ("io_schedule", Prefix, Sched),
];

/// A kernel function name without compiler suffixes: `foo.isra.0` → `foo`.
pub fn base_name(name: &str) -> &str {
    name.split('.').next().unwrap_or(name)
}

/// The class of one kernel function.
pub fn classify_frame(name: &str) -> FrameClass {
    let name = base_name(name);
    TABLE
        .iter()
        .find(|(pat, how, _)| match how {
            Exact => name == *pat,
            Prefix => name.starts_with(pat),
        })
        .map_or(Other, |e| e.2)
}

/// The class of a kernel stack, frames leaf first: the class of the innermost classified
/// frame, except that a leaf copy routine under a copy to or from user takes that direction.
/// A stack with no classified frame is [`FrameClass::Other`].
pub fn classify_stack<'a>(leaf_first: impl IntoIterator<Item = &'a str>) -> FrameClass {
    let mut first = None;
    for f in leaf_first {
        let c = classify_frame(f);
        match (first, c) {
            (_, Other) => {}
            (None, CopyLeaf) => first = Some(CopyLeaf),
            (None, c) => return c,
            (Some(_), CopyToUser | CopyFromUser) => return c,
            (Some(_), _) => {}
        }
    }
    first.unwrap_or(Other)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_and_suffixes() {
        assert_eq!(classify_frame("_copy_to_iter"), CopyToUser);
        assert_eq!(classify_frame("copy_page_to_iter.part.0"), CopyToUser);
        assert_eq!(classify_frame("_copy_from_iter_nocache"), CopyFromUser);
        assert_eq!(classify_frame("rep_movs_alternative"), CopyLeaf);
        assert_eq!(classify_frame("exc_page_fault"), PageFault);
        assert_eq!(classify_frame("schedule_timeout"), Sched);
        assert_eq!(classify_frame("filemap_read"), Other);
        assert_eq!(
            classify_frame("memcpy_and_pad"),
            Other,
            "exact names stay exact"
        );
    }

    #[test]
    fn leaf_copy_takes_the_direction_of_its_caller() {
        let read = [
            "rep_movs_alternative",
            "_copy_to_iter",
            "copy_page_to_iter",
            "filemap_read",
            "vfs_read",
        ];
        assert_eq!(classify_stack(read), CopyToUser);
        let write = ["rep_movs_alternative", "copy_page_from_iter_atomic", "x"];
        assert_eq!(classify_stack(write), CopyFromUser);
        assert_eq!(classify_stack(["memcpy", "skb_clone", "x"]), CopyLeaf);
        // A fault taken inside a copy counts as the fault.
        let fault = [
            "handle_mm_fault",
            "exc_page_fault",
            "rep_movs_alternative",
            "_copy_to_iter",
        ];
        assert_eq!(classify_stack(fault), PageFault);
        assert_eq!(
            classify_stack(["__schedule", "schedule", "pipe_read"]),
            Sched
        );
        assert_eq!(classify_stack(["filemap_get_pages", "filemap_read"]), Other);
        assert_eq!(classify_stack([]), Other);
    }

    /// Names of this machine's kernel functions (names are readable without root).
    fn machine_names() -> Vec<String> {
        let text = std::fs::read_to_string("/proc/kallsyms").expect("read /proc/kallsyms");
        text.lines()
            .filter_map(|l| {
                let mut it = l.split_whitespace();
                let (_, ty, name) = (it.next()?, it.next()?, it.next()?);
                matches!(ty, "T" | "t" | "W" | "w").then(|| name.to_string())
            })
            .collect()
    }

    #[test]
    fn table_against_this_machines_kallsyms() {
        let names = machine_names();
        assert!(
            names.len() > 10_000,
            "too few kernel symbols: {}",
            names.len()
        );
        let has = |n: &str| names.iter().any(|x| base_name(x) == n);
        // The routines the report relies on exist here and are classified as expected.
        for (name, class) in [
            ("_copy_to_iter", CopyToUser),
            ("copy_page_to_iter", CopyToUser),
            ("skb_copy_datagram_iter", CopyToUser),
            ("_copy_from_iter", CopyFromUser),
            ("copy_page_from_iter", CopyFromUser),
            ("rep_movs_alternative", CopyLeaf),
            ("memcpy", CopyLeaf),
            ("exc_page_fault", PageFault),
            ("handle_mm_fault", PageFault),
            ("__schedule", Sched),
            ("schedule", Sched),
        ] {
            assert!(has(name), "{name} is not in this kernel's kallsyms");
            assert_eq!(classify_frame(name), class, "{name}");
        }
        // Every class matches real functions, and the prefixes are not so broad that the copy
        // classes swallow a noticeable part of the kernel.
        let mut counts = std::collections::BTreeMap::new();
        for n in &names {
            *counts.entry(classify_frame(n)).or_insert(0usize) += 1;
        }
        for c in FrameClass::ALL {
            assert!(
                counts.get(&c).copied().unwrap_or(0) >= 2,
                "{c:?}: {counts:?}"
            );
        }
        let copy: usize = FrameClass::ALL
            .iter()
            .filter(|c| c.is_copy())
            .map(|c| counts.get(c).copied().unwrap_or(0))
            .sum();
        assert!(
            copy * 1000 < names.len(),
            "{copy} of {} kernel functions classified as copies",
            names.len()
        );
        // Most table entries name a function of this kernel (others are for other versions).
        let found = TABLE
            .iter()
            .filter(|(p, how, _)| match how {
                Exact => has(p),
                Prefix => names.iter().any(|n| base_name(n).starts_with(p)),
            })
            .count();
        assert!(
            found * 3 >= TABLE.len() * 2,
            "{found} of {} entries found",
            TABLE.len()
        );
    }
}

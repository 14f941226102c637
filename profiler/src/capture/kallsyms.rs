//! Kernel symbols from `/proc/kallsyms`: addresses of kernel stack frames to function names.
use std::path::Path;

/// Why the kernel's symbols could not be read.
#[derive(Debug, thiserror::Error)]
pub enum KallsymsError {
    /// The file could not be read.
    #[error("failed to read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// Every address is zero: the kernel hides them from this user.
    #[error(
        "the kernel hides its symbol addresses (kernel.kptr_restrict): run as root, or \
         `sysctl kernel.kptr_restrict=0`"
    )]
    Hidden,
    /// No function symbol in the file.
    #[error("no kernel function symbols found")]
    Empty,
}

/// The kernel's function symbols, sorted by address. Names live in one buffer (a kernel has
/// over 100 000 of them).
#[derive(Clone, Debug, Default)]
pub struct Kallsyms {
    names: String,
    /// Address, start and end of the name in `names`.
    syms: Vec<(u64, u32, u32)>,
}

impl Kallsyms {
    /// Reads `/proc/kallsyms`.
    pub fn load() -> Result<Self, KallsymsError> {
        Self::load_from(Path::new("/proc/kallsyms"))
    }

    /// Reads a file in the `/proc/kallsyms` format.
    pub fn load_from(path: &Path) -> Result<Self, KallsymsError> {
        let text = std::fs::read_to_string(path).map_err(|source| KallsymsError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text)
    }

    /// Parses `ADDRESS TYPE NAME [MODULE]` lines; keeps text (code) symbols only.
    pub fn parse(text: &str) -> Result<Self, KallsymsError> {
        let mut syms = Vec::new();
        let mut names = String::with_capacity(text.len() / 2);
        let mut nonzero = false;
        for line in text.lines() {
            let mut it = line.split_whitespace();
            let (Some(addr), Some(ty), Some(name)) = (it.next(), it.next(), it.next()) else {
                continue;
            };
            if !matches!(ty, "T" | "t" | "W" | "w") {
                continue;
            }
            let Ok(addr) = u64::from_str_radix(addr, 16) else {
                continue;
            };
            nonzero |= addr != 0;
            let start = names.len() as u32;
            names.push_str(name);
            syms.push((addr, start, names.len() as u32));
        }
        if syms.is_empty() {
            return Err(KallsymsError::Empty);
        }
        if !nonzero {
            return Err(KallsymsError::Hidden);
        }
        syms.sort_unstable_by_key(|s| s.0);
        Ok(Self { names, syms })
    }

    /// Number of symbols.
    pub fn len(&self) -> usize {
        self.syms.len()
    }

    /// Whether there is no symbol.
    pub fn is_empty(&self) -> bool {
        self.syms.is_empty()
    }

    /// The function holding `addr`: the symbol with the greatest address not above it.
    pub fn resolve(&self, addr: u64) -> Option<&str> {
        let i = self.syms.partition_point(|s| s.0 <= addr);
        i.checked_sub(1).map(|i| self.name(i))
    }

    fn name(&self, i: usize) -> &str {
        let (_, a, b) = self.syms[i];
        &self.names[a as usize..b as usize]
    }

    /// Every symbol name.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        (0..self.syms.len()).map(|i| self.name(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
ffffffff81000000 T _stext
ffffffff81001000 t helper
ffffffff81002000 D some_data
ffffffff81003000 T rep_movs_alternative
ffffffffc0000000 t mod_fn\t[some_module]
";

    #[test]
    fn resolves_to_the_enclosing_function() {
        let k = Kallsyms::parse(TEXT).expect("parse");
        assert_eq!(k.len(), 4, "data symbols are left out");
        assert_eq!(k.resolve(0xffffffff81003010), Some("rep_movs_alternative"));
        assert_eq!(k.resolve(0xffffffff81001fff), Some("helper"));
        assert_eq!(k.resolve(0xffffffff81002500), Some("helper"));
        assert_eq!(k.resolve(0xffffffffc0000004), Some("mod_fn"));
        assert_eq!(k.resolve(0x1000), None);
    }

    #[test]
    fn hidden_addresses_are_an_error() {
        let hidden = "0000000000000000 T a\n0000000000000000 T b\n";
        assert!(matches!(
            Kallsyms::parse(hidden),
            Err(KallsymsError::Hidden)
        ));
        assert!(matches!(Kallsyms::parse(""), Err(KallsymsError::Empty)));
    }
}

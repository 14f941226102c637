//! A small reader of the kernel's BTF (`/sys/kernel/btf/vmlinux`): finds the byte offset of a
//! struct member, looking through anonymous structs and unions, so that the probes can follow
//! kernel pointers on this kernel's layout without CO-RE.
use std::{collections::HashMap, path::Path};

/// Why BTF could not be read or a member not found.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BtfError {
    /// The file could not be read.
    #[error("cannot read {path}: {reason}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        reason: String,
    },
    /// The data is not BTF of this machine's byte order, or is cut short.
    #[error("malformed BTF: {0}")]
    Malformed(&'static str),
    /// No struct of that name.
    #[error("no struct `{0}` in the kernel's BTF")]
    NoStruct(String),
    /// The struct has no member of that name.
    #[error("struct `{0}` has no member `{1}`")]
    NoMember(String, String),
}

const MAGIC: u16 = 0xeb9f;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_TYPEDEF: u32 = 8;
const KIND_VOLATILE: u32 = 9;
const KIND_CONST: u32 = 10;
const KIND_RESTRICT: u32 = 11;
const KIND_TYPE_TAG: u32 = 18;

/// One member of a struct or union.
#[derive(Clone, Debug)]
struct Member {
    name: u32,
    ty: u32,
    /// Offset in bits.
    bit_offset: u32,
}

/// One type: only what member look-ups need.
#[derive(Clone, Debug)]
struct Type {
    name: u32,
    kind: u32,
    /// The referenced type, for typedefs and qualifiers.
    ty: u32,
    members: Vec<Member>,
}

/// Parsed BTF types and strings.
pub struct Btf {
    types: Vec<Type>,
    strings: Vec<u8>,
    structs: HashMap<String, u32>,
}

fn u32_at(b: &[u8], at: usize) -> Result<u32, BtfError> {
    b.get(at..at + 4)
        .and_then(|s| s.try_into().ok())
        .map(u32::from_ne_bytes)
        .ok_or(BtfError::Malformed("cut short"))
}

impl Btf {
    /// Reads the running kernel's BTF.
    pub fn from_kernel() -> Result<Self, BtfError> {
        Self::from_file(Path::new("/sys/kernel/btf/vmlinux"))
    }

    /// Reads BTF from a file.
    pub fn from_file(path: &Path) -> Result<Self, BtfError> {
        let data = std::fs::read(path).map_err(|e| BtfError::Read {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        Self::parse(&data)
    }

    /// Parses raw BTF (native byte order).
    pub fn parse(data: &[u8]) -> Result<Self, BtfError> {
        let magic = data
            .get(..2)
            .map(|m| u16::from_ne_bytes([m[0], m[1]]))
            .ok_or(BtfError::Malformed("no header"))?;
        if magic != MAGIC {
            return Err(BtfError::Malformed("bad magic"));
        }
        let hdr_len = u32_at(data, 4)? as usize;
        let type_off = u32_at(data, 8)? as usize;
        let type_len = u32_at(data, 12)? as usize;
        let str_off = u32_at(data, 16)? as usize;
        let str_len = u32_at(data, 20)? as usize;
        let types_bytes = data
            .get(hdr_len + type_off..hdr_len + type_off + type_len)
            .ok_or(BtfError::Malformed("type section out of bounds"))?;
        let strings = data
            .get(hdr_len + str_off..hdr_len + str_off + str_len)
            .ok_or(BtfError::Malformed("string section out of bounds"))?
            .to_vec();
        // Type ids start at 1; id 0 is `void`.
        let mut types = vec![Type {
            name: 0,
            kind: 0,
            ty: 0,
            members: Vec::new(),
        }];
        let mut at = 0;
        while at < types_bytes.len() {
            let name = u32_at(types_bytes, at)?;
            let info = u32_at(types_bytes, at + 4)?;
            let size_or_type = u32_at(types_bytes, at + 8)?;
            at += 12;
            let kind = (info >> 24) & 0x1f;
            let vlen = (info & 0xffff) as usize;
            let kind_flag = info >> 31 != 0;
            let mut members = Vec::new();
            let extra = match kind {
                1 | 14 | 17 => 4,          // int, var, decl_tag
                3 => 12,                   // array
                4 | 5 => 12 * vlen,        // struct, union
                6 | 13 => 8 * vlen,        // enum, func_proto
                15 | 19 => 12 * vlen,      // datasec, enum64
                2 | 7..=12 | 16 | 18 => 0, // ptr, fwd, typedef, qualifiers, func, float, type_tag
                _ => return Err(BtfError::Malformed("unknown type kind")),
            };
            if kind == KIND_STRUCT || kind == KIND_UNION {
                for i in 0..vlen {
                    let m = at + 12 * i;
                    let off = u32_at(types_bytes, m + 8)?;
                    members.push(Member {
                        name: u32_at(types_bytes, m)?,
                        ty: u32_at(types_bytes, m + 4)?,
                        bit_offset: if kind_flag { off & 0xff_ffff } else { off },
                    });
                }
            }
            at += extra;
            types.push(Type {
                name,
                kind,
                ty: size_or_type,
                members,
            });
        }
        let mut btf = Self {
            types,
            strings,
            structs: HashMap::new(),
        };
        for (id, t) in btf.types.iter().enumerate() {
            if t.kind == KIND_STRUCT && t.name != 0 && !t.members.is_empty() {
                let name = btf.string(t.name).to_string();
                btf.structs.entry(name).or_insert(id as u32);
            }
        }
        Ok(btf)
    }

    fn string(&self, off: u32) -> &str {
        let rest = self.strings.get(off as usize..).unwrap_or_default();
        let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
        std::str::from_utf8(&rest[..end]).unwrap_or("")
    }

    /// Follows typedefs and qualifiers to the type they name.
    fn resolve(&self, mut id: u32) -> Option<&Type> {
        for _ in 0..32 {
            let t = self.types.get(id as usize)?;
            match t.kind {
                KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG => {
                    id = t.ty
                }
                _ => return Some(t),
            }
        }
        None
    }

    /// Bit offset of `member` inside the struct or union `t`, searching anonymous members.
    fn find(&self, t: &Type, member: &str, depth: u32) -> Option<u32> {
        if depth > 8 {
            return None;
        }
        for m in &t.members {
            if m.name != 0 {
                if self.string(m.name) == member {
                    return Some(m.bit_offset);
                }
            } else if let Some(inner) = self.resolve(m.ty)
                && (inner.kind == KIND_STRUCT || inner.kind == KIND_UNION)
                && let Some(off) = self.find(inner, member, depth + 1)
            {
                return Some(m.bit_offset + off);
            }
        }
        None
    }

    /// Byte offset of `member` in `struct name`.
    pub fn member_offset(&self, name: &str, member: &str) -> Result<u32, BtfError> {
        let id = *self
            .structs
            .get(name)
            .ok_or_else(|| BtfError::NoStruct(name.into()))?;
        let t = &self.types[id as usize];
        self.find(t, member, 0)
            .map(|bits| bits / 8)
            .ok_or_else(|| BtfError::NoMember(name.into(), member.into()))
    }
}

impl Btf {
    /// The offsets the probes need to classify descriptors.
    pub fn fd_offsets(&self) -> Result<probe_common::FdOffsets, BtfError> {
        let m = |s: &str, f: &str| self.member_offset(s, f);
        Ok(probe_common::FdOffsets {
            enabled: 1,
            task_files: m("task_struct", "files")?,
            files_fdt: m("files_struct", "fdt")?,
            fdt_max_fds: m("fdtable", "max_fds")?,
            fdt_fd: m("fdtable", "fd")?,
            file_inode: m("file", "f_inode")?,
            file_private: m("file", "private_data")?,
            inode_mode: m("inode", "i_mode")?,
            socket_type: m("socket", "type")?,
            socket_sk: m("socket", "sk")?,
            sk_family: m("sock", "__sk_common")? + m("sock_common", "skc_family")?,
            _pad: 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hand-made BTF blob: `struct s { int a; union { int b; long c; }; }`.
    fn blob() -> Vec<u8> {
        let strings = b"\0s\0a\0b\0c\0int\0long\0".to_vec();
        // string offsets: s=1 a=3 b=5 c=7 int=9 long=13
        let mut t: Vec<u32> = Vec::new();
        // 1: int (4 bytes)
        t.extend([9, 1 << 24, 4, 32]);
        // 2: long (8 bytes)
        t.extend([13, 1 << 24, 8, 64]);
        // 3: anonymous union { b: int @0, c: long @0 }
        t.extend([0, (5 << 24) | 2, 8, 5, 1, 0, 7, 2, 0]);
        // 4: struct s { a: int @0, <anon> @64 bits }
        t.extend([1, (4 << 24) | 2, 16, 3, 1, 0, 0, 3, 64]);
        let types: Vec<u8> = t.iter().flat_map(|v| v.to_ne_bytes()).collect();
        let mut out = Vec::new();
        out.extend(MAGIC.to_ne_bytes());
        out.extend([1u8, 0]);
        for v in [
            24u32,
            0,
            types.len() as u32,
            types.len() as u32,
            strings.len() as u32,
        ] {
            out.extend(v.to_ne_bytes());
        }
        out.extend(types);
        out.extend(strings);
        out
    }

    #[test]
    fn members_are_found_through_anonymous_unions() {
        let b = Btf::parse(&blob()).expect("parse");
        assert_eq!(b.member_offset("s", "a"), Ok(0));
        assert_eq!(b.member_offset("s", "c"), Ok(8));
        assert_eq!(
            b.member_offset("s", "zz"),
            Err(BtfError::NoMember("s".into(), "zz".into()))
        );
        assert_eq!(
            b.member_offset("t", "a"),
            Err(BtfError::NoStruct("t".into()))
        );
    }

    #[test]
    fn garbage_is_refused() {
        assert!(Btf::parse(&[0, 1, 2]).is_err());
        let mut b = blob();
        b.truncate(30);
        assert!(Btf::parse(&b).is_err());
    }

    #[test]
    fn this_kernel_has_the_fd_path() {
        // Every kernel with BTF has these; the probes need them to classify descriptors.
        let Ok(b) = Btf::from_kernel() else {
            panic!("/sys/kernel/btf/vmlinux must be readable on this project's machines");
        };
        for (s, m) in [
            ("task_struct", "files"),
            ("files_struct", "fdt"),
            ("fdtable", "fd"),
            ("file", "f_inode"),
            ("inode", "i_mode"),
            ("socket", "sk"),
            ("sock_common", "skc_family"),
        ] {
            assert!(b.member_offset(s, m).is_ok(), "{s}.{m}");
        }
        assert_eq!(b.member_offset("sock", "__sk_common"), Ok(0));
        let o = b.fd_offsets().expect("offsets");
        assert_eq!(o.enabled, 1);
        assert!(
            o.task_files > 0 && o.file_inode > 0 && o.inode_mode == 0,
            "{o:?}"
        );
    }
}

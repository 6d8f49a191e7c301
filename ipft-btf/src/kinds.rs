//! Which BTF types the scan needs to look at, read from the raw type section
//! without parsing the types. The scan wants `btf_trace_*` typedefs (the
//! tracepoints) and functions taking a `struct sk_buff *`; asking btf-rs
//! for every type, or even every function with its prototype, was most of
//! a scan, a second under emulation. Each type's size follows from its
//! kind and vlen alone (include/uapi/linux/btf.h), so one walk finds where
//! every type starts, and a function's parameters are then a few reads
//! each. Where the walk cannot tell (a split BTF's parameter of a base
//! type) the function stays a candidate: btf-rs decides.

const HEADER: usize = 12; // struct btf_type: name_off, info, size/type
const TYPEDEF: u32 = 8;
const FUNC: u32 = 12;

/// Bytes after the header of a type of `kind` with `vlen`, or None for a
/// kind this walk does not know.
fn extra(kind: u32, vlen: usize) -> Option<usize> {
    Some(match kind {
        1 | 14 | 17 => 4,             // INT, VAR, DECL_TAG
        2 | 7..=12 | 16 | 18 => 0,    // PTR, FWD, TYPEDEF, qualifiers, FUNC, FLOAT, TYPE_TAG
        3 => 12,                      // ARRAY
        4 | 5 | 15 | 19 => 12 * vlen, // STRUCT, UNION, DATASEC, ENUM64
        6 | 13 => 8 * vlen,           // ENUM, FUNC_PROTO
        _ => return None,
    })
}

/// The header of little-endian raw BTF (struct btf_header), checked: the
/// sections lie inside the bytes.
pub(crate) struct Header {
    hdr_len: usize,
    type_off: usize,
    type_len: usize,
    str_off: usize,
}

impl Header {
    pub(crate) fn read(b: &[u8]) -> Result<Header, String> {
        if b.len() < 24 {
            return Err(format!("{} bytes, shorter than the BTF header", b.len()));
        }
        let u32_at = |o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]) as u64;
        if u16::from_le_bytes([b[0], b[1]]) != super::BTF_MAGIC {
            return Err("bad magic (big-endian BTF is not supported)".into());
        }
        if b[2] != 1 {
            return Err(format!("unsupported BTF version {}", b[2]));
        }
        let hdr_len = u32_at(4);
        if hdr_len < 24 || hdr_len > b.len() as u64 {
            return Err(format!("header length {hdr_len} out of range"));
        }
        let (type_off, type_len, str_off, str_len) =
            (u32_at(8), u32_at(12), u32_at(16), u32_at(20));
        let data = b.len() as u64 - hdr_len;
        if type_off + type_len > data || str_off + str_len > data {
            return Err(format!(
                "truncated: sections need {} bytes, file has {data}",
                (type_off + type_len).max(str_off + str_len)
            ));
        }
        if type_len % 4 != 0 {
            return Err("type section length not 4-byte aligned".into());
        }
        Ok(Header {
            hdr_len: hdr_len as usize,
            type_off: type_off as usize,
            type_len: type_len as usize,
            str_off: str_off as usize,
        })
    }
}

/// The types the scan resolves: the `btf_trace_*` typedefs and the
/// functions that may take a `struct sk_buff *` (all but those whose
/// parameters the walk saw to be something else).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Candidates {
    pub ids: Vec<u32>,
    /// FUNC types seen.
    pub funcs: u64,
}

/// What one walk over little-endian raw BTF found: where each type starts,
/// the functions with their prototypes, the tracepoints, and the types of
/// the names asked. The candidates take a second look at each function's
/// parameters, made only where a scan wants them.
pub(crate) struct Walk<'a> {
    bytes: &'a [u8],
    strings: &'a [u8],
    first_id: u32,
    offsets: Vec<usize>,
    /// (id, prototype id) of each FUNC.
    funcs: Vec<(u32, u32)>,
    tracepoints: Vec<u32>,
    /// Per name asked, the ids of the functions and typedefs of that name
    /// (btf-rs walks every type for each name it is asked).
    pub named: Vec<Vec<u32>>,
}

/// One type's header fields, read in place.
struct Raw {
    kind: u32,
    vlen: usize,
    /// The size/type field: the next type of a modifier, pointer or function.
    next: u32,
    name: usize,
    /// Where the type starts in the bytes.
    at: usize,
}

const PTR: u32 = 2;
const STRUCT: u32 = 4;
const FUNC_PROTO: u32 = 13;

fn u32_at(bytes: &[u8], o: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(o..o + 4)?.try_into().ok()?))
}

/// Walk the types of `bytes` once, the first being `first_id`. None when
/// the type section does not walk cleanly (a kind newer than this walk):
/// then the scan asks btf-rs for every type, and lookups ask it by name.
///
/// Split BTF (`first_id` > 1, a module's) names its types by offsets that
/// continue the base's strings, which this walk does not have: there names
/// are unknown, so every typedef stays a candidate, no name is found, and a
/// function is dropped only where it has no parameter that may point to a
/// struct.
pub(crate) fn walk<'a>(bytes: &'a [u8], first_id: u32, names: &[&str]) -> Option<Walk<'a>> {
    let h = Header::read(bytes).ok()?;
    let start = h.hdr_len + h.type_off;
    let end = start + h.type_len;
    let mut w = Walk {
        bytes,
        strings: bytes.get(h.hdr_len + h.str_off..)?,
        first_id,
        offsets: Vec::new(),
        funcs: Vec::new(),
        tracepoints: Vec::new(),
        named: vec![Vec::new(); names.len()],
    };
    let (mut at, mut id) = (start, first_id);
    while at < end {
        w.offsets.push(at);
        let info = u32_at(bytes, at + 4)?;
        let kind = (info >> 24) & 0x1f;
        if kind == FUNC || kind == TYPEDEF {
            let off = u32_at(bytes, at)? as usize;
            for (i, name) in names.iter().enumerate() {
                if w.is(off, name) == Some(true) {
                    w.named[i].push(id);
                }
            }
            if kind == FUNC {
                w.funcs.push((id, u32_at(bytes, at + 8)?));
            } else if w.starts_with(off, "btf_trace_") != Some(false) {
                w.tracepoints.push(id);
            }
        }
        at += HEADER + extra(kind, (info & 0xffff) as usize)?;
        id += 1;
    }
    (at == end).then_some(w)
}

impl Walk<'_> {
    fn split(&self) -> bool {
        self.first_id > 1
    }

    /// Whether the NUL-terminated string at `off` is `name` (None: unknown).
    fn is(&self, off: usize, name: &str) -> Option<bool> {
        let n = name.len();
        (!self.split()).then(|| {
            self.strings
                .get(off..off + n + 1)
                .is_some_and(|b| b[n] == 0 && &b[..n] == name.as_bytes())
        })
    }

    fn starts_with(&self, off: usize, prefix: &str) -> Option<bool> {
        (!self.split()).then(|| {
            self.strings
                .get(off..off + prefix.len())
                .is_some_and(|b| b == prefix.as_bytes())
        })
    }

    /// Type `id` as the walk read it; None for void and for a base type of
    /// split BTF, which this walk never saw.
    fn ty(&self, id: u32) -> Option<Raw> {
        let at = *self.offsets.get(id.checked_sub(self.first_id)? as usize)?;
        let info = u32_at(self.bytes, at + 4)?;
        Some(Raw {
            kind: (info >> 24) & 0x1f,
            vlen: (info & 0xffff) as usize,
            next: u32_at(self.bytes, at + 8)?,
            name: u32_at(self.bytes, at)? as usize,
            at,
        })
    }

    /// Past typedef, const, volatile, restrict and type_tag.
    fn strip(&self, mut id: u32) -> Option<Raw> {
        for _ in 0..32 {
            match self.ty(id)? {
                t if matches!(t.kind, 8..=11 | 18) => id = t.next,
                t => return Some(t),
            }
        }
        None
    }

    /// Some(true) for `struct sk_buff *`, None where the walk cannot tell.
    fn skb_pointer(&self, id: u32) -> Option<bool> {
        if id == 0 {
            return Some(false);
        }
        match self.strip(id)? {
            t if t.kind == PTR && t.next != 0 => match self.strip(t.next)? {
                s if s.kind == STRUCT => self.is(s.name, "sk_buff"),
                _ => Some(false),
            },
            _ => Some(false),
        }
    }

    fn may_take_skb(&self, proto: u32) -> bool {
        match self.ty(proto) {
            Some(p) if p.kind == FUNC_PROTO => (0..p.vlen).any(|i| {
                let param = u32_at(self.bytes, p.at + HEADER + 8 * i + 4);
                param.is_none_or(|t| self.skb_pointer(t) != Some(false))
            }),
            _ => true,
        }
    }

    /// The types the scan resolves.
    pub(crate) fn candidates(&self) -> Candidates {
        let skb_funcs = self
            .funcs
            .iter()
            .filter(|&&(_, proto)| self.may_take_skb(proto));
        let mut ids: Vec<u32> = skb_funcs.map(|&(id, _)| id).collect();
        ids.extend(&self.tracepoints);
        ids.sort_unstable();
        Candidates {
            ids,
            funcs: self.funcs.len() as u64,
        }
    }
}

/// The types the scan resolves.
pub(crate) fn candidates(bytes: &[u8], first_id: u32) -> Option<Candidates> {
    walk(bytes, first_id, &[]).map(|w| w.candidates())
}

#[cfg(test)]
mod tests {
    use super::{candidates, walk, Candidates};

    /// Raw BTF of `types`: (kind, vlen, size/type field, bytes after the
    /// header, name; "" for none).
    fn btf(types: &[(u32, u32, u32, Vec<u8>, &str)]) -> Vec<u8> {
        let mut strings = vec![0u8];
        let mut t = Vec::new();
        for (kind, vlen, next, extra, name) in types {
            let off = match name.is_empty() {
                true => 0,
                false => {
                    strings.extend(name.as_bytes());
                    strings.push(0);
                    (strings.len() - name.len() - 1) as u32
                }
            };
            t.extend(off.to_le_bytes());
            t.extend((kind << 24 | vlen).to_le_bytes());
            t.extend(next.to_le_bytes());
            t.extend(extra);
        }
        let mut b = vec![0x9f, 0xeb, 1, 0];
        for v in [24, 0, t.len() as u32, t.len() as u32, strings.len() as u32] {
            b.extend(v.to_le_bytes());
        }
        b.extend(t);
        b.extend(strings);
        b
    }

    /// FUNC_PROTO parameters: (name_off, type) each.
    fn params(types: &[u32]) -> Vec<u8> {
        types
            .iter()
            .flat_map(|t| [0u32.to_le_bytes(), t.to_le_bytes()].concat())
            .collect()
    }

    #[test]
    fn walks_past_any_kind() {
        let b = btf(&[
            (1, 0, 4, vec![0; 4], ""),        // 1 INT
            (4, 2, 8, vec![0; 24], ""),       // 2 STRUCT, 2 members
            (13, 1, 0, params(&[1]), ""),     // 3 FUNC_PROTO (int)
            (12, 0, 0, vec![], "f"),          // 4 FUNC, no prototype to read
            (8, 0, 1, vec![], "btf_trace_x"), // 5 TYPEDEF
            (19, 1, 8, vec![0; 12], ""),      // 6 ENUM64
            (12, 1, 3, vec![], "g"),          // 7 FUNC (int): no skb
            (8, 0, 1, vec![], "other"),       // 8 TYPEDEF, no tracepoint
        ]);
        let want = |ids| Some(Candidates { ids, funcs: 2 });
        assert_eq!(candidates(&b, 1), want(vec![4, 5]));
        // Split BTF: ids continue the base's, which the walk never saw, and
        // so do its string offsets: every typedef and function stays.
        assert_eq!(candidates(&b, 100), want(vec![103, 104, 106, 107]));
        // A kind unknown to the walk: no answer rather than a wrong one.
        let unknown = btf(&[(12, 0, 0, vec![], "f"), (30, 0, 0, vec![], "")]);
        assert_eq!(candidates(&unknown, 1), None);
    }

    #[test]
    fn keeps_functions_taking_an_skb_pointer_and_tracepoints() {
        let b = btf(&[
            (4, 0, 232, vec![], "sk_buff"),    // 1 struct sk_buff
            (2, 0, 1, vec![], ""),             // 2 struct sk_buff *
            (10, 0, 2, vec![], ""),            // 3 struct sk_buff *const
            (1, 0, 4, vec![0; 4], "int"),      // 4 int
            (13, 2, 4, params(&[4, 3]), ""),   // 5 (int, struct sk_buff *const)
            (12, 0, 5, vec![], "a"),           // 6 a: takes an skb
            (13, 1, 4, params(&[4]), ""),      // 7 (int)
            (12, 0, 7, vec![], "b"),           // 8 b: no skb
            (8, 0, 2, vec![], "btf_trace_x"),  // 9 a tracepoint
            (8, 0, 4, vec![], "other"),        // 10 another typedef
            (10, 0, 1, vec![], ""),            // 11 const struct sk_buff
            (2, 0, 11, vec![], ""),            // 12 const struct sk_buff *
            (8, 0, 12, vec![], "skbp"),        // 13 typedef of it
            (13, 1, 4, params(&[13]), ""),     // 14 (skbp)
            (12, 0, 14, vec![], "c"),          // 15 c: takes an skb
            (4, 0, 8, vec![], "sk_buff_head"), // 16 a struct of another name
            (2, 0, 16, vec![], ""),            // 17 pointer to it
            (13, 2, 4, params(&[17, 0]), ""),  // 18 (struct sk_buff_head *, ...)
            (12, 0, 18, vec![], "d"),          // 19 d: no skb
        ]);
        let c = candidates(&b, 1).unwrap();
        assert_eq!(c.ids, vec![6, 9, 15]);
        assert_eq!(c.funcs, 4);
    }

    #[test]
    fn finds_functions_and_typedefs_by_name_in_the_same_walk() {
        let b = btf(&[
            (1, 0, 4, vec![0; 4], "ip_rcv"),
            (12, 0, 0, vec![], "ip_rcv"),
            (8, 0, 0, vec![], "ip_rcv_core"),
            (12, 0, 0, vec![], "ip_rcv"),
            (12, 0, 0, vec![], "ip_rc"),
        ]);
        let w = walk(&b, 1, &["ip_rcv", "ip_rc", "absent"]).unwrap();
        // The INT of that name is no function; a prefix is no match.
        assert_eq!(w.named, vec![vec![2, 4], vec![5], vec![]]);
    }
}

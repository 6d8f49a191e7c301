//! Which BTF types the scan needs to look at, read from the raw type section
//! without parsing the types. The scan wants functions and typedefs (a
//! tracepoint is a `btf_trace_*` typedef); asking btf-rs for every type,
//! structs with all their members, was most of a scan, seconds under
//! emulation. Each type's size follows from its kind and vlen alone
//! (include/uapi/linux/btf.h), so a walk finds them in one pass.

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

/// What one walk over little-endian raw BTF found: the ids of its FUNC and
/// TYPEDEF types, and per name asked those of that name (btf-rs walks
/// every type for each name it is asked).
#[derive(Debug, PartialEq)]
pub(crate) struct Walk {
    pub funcs_and_typedefs: Vec<u32>,
    pub named: Vec<Vec<u32>>,
}

/// Walk the types of `bytes` once, the first being `first_id`. None when
/// the type section does not walk cleanly (a kind newer than this walk):
/// then the scan asks btf-rs for every type, and lookups ask it by name.
pub(crate) fn walk(bytes: &[u8], first_id: u32, names: &[&str]) -> Option<Walk> {
    let u32_at = |o: usize| -> Option<u32> {
        Some(u32::from_le_bytes(bytes.get(o..o + 4)?.try_into().ok()?))
    };
    let h = Header::read(bytes).ok()?;
    let start = h.hdr_len + h.type_off;
    let end = start + h.type_len;
    let strings = bytes.get(h.hdr_len + h.str_off..)?;
    // Whether the NUL-terminated string at `off` is `name`.
    let is = |off: usize, name: &str| {
        let n = name.len();
        strings
            .get(off..off + n + 1)
            .is_some_and(|b| b[n] == 0 && &b[..n] == name.as_bytes())
    };
    let mut w = Walk {
        funcs_and_typedefs: Vec::new(),
        named: vec![Vec::new(); names.len()],
    };
    let (mut at, mut id) = (start, first_id);
    while at < end {
        let info = u32_at(at + 4)?;
        let kind = (info >> 24) & 0x1f;
        if kind == FUNC || kind == TYPEDEF {
            w.funcs_and_typedefs.push(id);
            let off = u32_at(at)? as usize;
            for (i, name) in names.iter().enumerate() {
                if is(off, name) {
                    w.named[i].push(id);
                }
            }
        }
        at += HEADER + extra(kind, (info & 0xffff) as usize)?;
        id += 1;
    }
    (at == end).then_some(w)
}

/// The ids of the FUNC and TYPEDEF types (see [`walk`]).
pub(crate) fn funcs_and_typedefs(bytes: &[u8], first_id: u32) -> Option<Vec<u32>> {
    walk(bytes, first_id, &[]).map(|w| w.funcs_and_typedefs)
}

#[cfg(test)]
mod tests {
    use super::{funcs_and_typedefs, walk};

    fn btf(types: &[(u32, u32, &[u8])]) -> Vec<u8> {
        named_btf(types, &[])
    }

    /// Raw BTF of `types`, type i named `names[i]` where given.
    fn named_btf(types: &[(u32, u32, &[u8])], names: &[&str]) -> Vec<u8> {
        let mut strings = vec![0u8];
        let mut t = Vec::new();
        for (i, &(kind, vlen, extra)) in types.iter().enumerate() {
            let off = match names.get(i) {
                Some(n) => {
                    strings.extend(n.as_bytes());
                    strings.push(0);
                    (strings.len() - n.len() - 1) as u32
                }
                None => 0,
            };
            t.extend(off.to_le_bytes());
            t.extend((kind << 24 | vlen).to_le_bytes());
            t.extend(0u32.to_le_bytes());
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

    #[test]
    fn finds_functions_and_typedefs_by_name_in_the_same_walk() {
        let b = named_btf(
            &[
                (1, 0, &[0; 4]),
                (12, 0, &[]),
                (8, 0, &[]),
                (12, 0, &[]),
                (12, 0, &[]),
            ],
            &["ip_rcv", "ip_rcv", "ip_rcv_core", "ip_rcv", "ip_rc"],
        );
        let w = walk(&b, 1, &["ip_rcv", "ip_rc", "absent"]).unwrap();
        // The INT of that name is no function; a prefix is no match.
        assert_eq!(w.named, vec![vec![2, 4], vec![5], vec![]]);
        assert_eq!(w.funcs_and_typedefs, vec![2, 3, 4, 5]);
    }

    #[test]
    fn finds_functions_and_typedefs_past_any_kind() {
        let b = btf(&[
            (1, 0, &[0; 4]),   // 1 INT
            (4, 2, &[0; 24]),  // 2 STRUCT, 2 members
            (13, 1, &[0; 8]),  // 3 FUNC_PROTO, 1 parameter
            (12, 0, &[]),      // 4 FUNC
            (8, 0, &[]),       // 5 TYPEDEF
            (19, 1, &[0; 12]), // 6 ENUM64
            (12, 1, &[]),      // 7 FUNC (vlen: linkage)
        ]);
        assert_eq!(funcs_and_typedefs(&b, 1), Some(vec![4, 5, 7]));
        assert_eq!(funcs_and_typedefs(&b, 100), Some(vec![103, 104, 106]));
        // A kind unknown to the walk: no answer rather than a wrong one.
        assert_eq!(
            funcs_and_typedefs(&btf(&[(12, 0, &[]), (30, 0, &[])]), 1),
            None
        );
    }
}

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

/// The ids of the FUNC and TYPEDEF types in little-endian raw BTF `bytes`,
/// the first type being `first_id`. None when the type section does not
/// walk cleanly (a kind newer than this walk): then the scan asks for every
/// type.
pub(crate) fn funcs_and_typedefs(bytes: &[u8], first_id: u32) -> Option<Vec<u32>> {
    let u32_at = |o: usize| -> Option<u32> {
        Some(u32::from_le_bytes(bytes.get(o..o + 4)?.try_into().ok()?))
    };
    if bytes.get(..2)? != [0x9f, 0xeb] {
        return None;
    }
    let hdr_len = u32_at(4)? as usize;
    let start = hdr_len + u32_at(8)? as usize;
    let end = start + u32_at(12)? as usize;
    let mut ids = Vec::new();
    let (mut at, mut id) = (start, first_id);
    while at < end {
        let info = u32_at(at + 4)?;
        let kind = (info >> 24) & 0x1f;
        if kind == FUNC || kind == TYPEDEF {
            ids.push(id);
        }
        at += HEADER + extra(kind, (info & 0xffff) as usize)?;
        id += 1;
    }
    (at == end).then_some(ids)
}

#[cfg(test)]
mod tests {
    use super::funcs_and_typedefs;

    fn btf(types: &[(u32, u32, &[u8])]) -> Vec<u8> {
        let mut t = Vec::new();
        for &(kind, vlen, extra) in types {
            t.extend(0u32.to_le_bytes());
            t.extend((kind << 24 | vlen).to_le_bytes());
            t.extend(0u32.to_le_bytes());
            t.extend(extra);
        }
        let mut b = vec![0x9f, 0xeb, 1, 0];
        for v in [24, 0, t.len() as u32, t.len() as u32, 0] {
            b.extend(v.to_le_bytes());
        }
        b.extend(t);
        b
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

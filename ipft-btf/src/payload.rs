//! The payload struct of a compiled extension, read from its BTF: the
//! struct behind the variable `__ipft_event_struct`, its members' layout,
//! and the format decl tags on them (ipftrace2's extension API).

use std::collections::BTreeMap;
use std::path::Path;

use btf_rs::{Btf, BtfType, Type};
use ipft_abi::payload::{Format, PayloadField, PayloadSpec, Tag, EVENT_STRUCT_VAR};

use crate::{guard, memfd, parse, BTF_MAGIC, ELF_MAGIC};

/// The payload spec of a BPF extension object (ELF with a `.BTF` section,
/// or raw BTF). An object declaring no `__ipft_event_struct` is an error
/// saying so; the caller decides whether that is fatal.
pub fn payload_spec(object: &[u8]) -> Result<PayloadSpec, String> {
    let btf = object_btf(object)?;
    let var = vars(&btf, EVENT_STRUCT_VAR)?
        .into_iter()
        .next()
        .ok_or_else(|| {
            format!(
                "the extension declares no payload struct (no variable {EVENT_STRUCT_VAR}; \
             declare `struct event {{ ... }} {EVENT_STRUCT_VAR};`)"
            )
        })?;
    let (id, ty) = strip(&btf, var.0, var.1)?;
    let Type::Struct(st) = ty else {
        return Err(format!(
            "{EVENT_STRUCT_VAR} has type {}, not struct",
            ty.name()
        ));
    };
    let name = btf.resolve_name(&st).unwrap_or_default();
    let name = if name.is_empty() {
        EVENT_STRUCT_VAR.to_string()
    } else {
        name
    };
    let tags = member_tags(&btf, id)?;
    let mut fields = Vec::new();
    for (i, m) in st.members.iter().enumerate() {
        let field = btf.resolve_name(m).unwrap_or_default();
        let err = |why: String| format!("payload struct {name}: field {field}: {why}");
        if field.is_empty() {
            return Err(format!(
                "payload struct {name}: member {i} is anonymous (a nested struct or union); \
                 name every field"
            ));
        }
        if m.bitfield_size().is_some_and(|b| b != 0) || m.bit_offset() % 8 != 0 {
            return Err(err("bitfields are not supported; use whole integers".into()));
        }
        let mut f = member(&btf, m).map_err(err)?;
        f.name = field.clone();
        f.offset = (m.bit_offset() / 8) as usize;
        let tag = match tags.get(&(i as u32)).map(Vec::as_slice) {
            None | Some([]) => None,
            Some([t]) => Some(t.clone().map_err(err)?),
            Some(_) => return Err(err("more than one format tag".into())),
        };
        f.format = format(&btf, tag, &f).map_err(err)?;
        fields.push(f);
    }
    let spec = PayloadSpec { name, fields };
    spec.check()?;
    Ok(spec)
}

/// The BTF of an ELF object (its `.BTF` section) or of raw BTF bytes.
fn object_btf(object: &[u8]) -> Result<Btf, String> {
    let what = Path::new("extension object");
    if object.get(..2) == Some(&BTF_MAGIC.to_le_bytes()) {
        return parse(what, object, None).map_err(|e| e.to_string());
    }
    if object.get(..4) != Some(ELF_MAGIC) {
        return Err("extension object: not an ELF file".into());
    }
    // btf-rs reads ELF sections from files only: hand it a memfd.
    let (file, path) = memfd(object).ok_or("extension object: cannot create a memfd")?;
    let raw = guard(what, || btf_rs::utils::elf::extract_btf_from_file(&path));
    drop(file);
    let raw = raw.map_err(|e| match e.to_string() {
        s if s.contains("No BTF section") => {
            "extension object: no .BTF section (compile with clang -g)".to_string()
        }
        s => s,
    })?;
    parse(what, &raw, None).map_err(|e| e.to_string())
}

/// The type (id and type) of every VAR named `name`.
fn vars(btf: &Btf, name: &str) -> Result<Vec<(u32, Type)>, String> {
    let ids = btf.resolve_ids_by_name(name).map_err(|e| e.to_string())?;
    Ok(ids
        .into_iter()
        .filter_map(|id| match btf.resolve_type_by_id(id) {
            Ok(Type::Var(v)) => v.get_type_id(),
            _ => None,
        })
        .filter_map(|id| Some((id, btf.resolve_type_by_id(id).ok()?)))
        .collect())
}

/// Through typedefs, const, volatile, restrict and type tags from type
/// `id`: the id and type underneath.
fn strip(btf: &Btf, mut id: u32, mut ty: Type) -> Result<(u32, Type), String> {
    for _ in 0..32 {
        let next = match &ty {
            Type::Typedef(t) => t.get_type_id(),
            Type::Const(t) | Type::Volatile(t) | Type::Restrict(t) => t.get_type_id(),
            Type::TypeTag(t) => t.get_type_id(),
            _ => return Ok((id, ty)),
        };
        id = next.unwrap_or(0);
        ty = btf.resolve_type_by_id(id).map_err(|e| e.to_string())?;
    }
    Err("typedef chain too long".into())
}

/// The type a member or array element refers to, stripped.
fn target(btf: &Btf, t: &dyn BtfType) -> Result<Type, String> {
    let id = t.get_type_id().ok_or("a type without a target")?;
    let ty = btf.resolve_type_by_id(id).map_err(|e| e.to_string())?;
    Ok(strip(btf, id, ty)?.1)
}

/// The format decl tags on the members of struct `id`, by member index.
fn member_tags(btf: &Btf, id: u32) -> Result<BTreeMap<u32, Vec<Result<Tag, String>>>, String> {
    let mut tags: BTreeMap<u32, Vec<_>> = BTreeMap::new();
    let (start, end) = btf.base().type_id_range();
    for tid in start..=end {
        let Ok(Type::DeclTag(t)) = btf.resolve_type_by_id(tid) else {
            continue;
        };
        let Some(idx) = t.component_index().filter(|_| t.get_type_id() == Some(id)) else {
            continue;
        };
        let text = btf.resolve_name(&t).map_err(|e| e.to_string())?;
        if let Some(tag) = Tag::parse(&text) {
            tags.entry(idx).or_default().push(tag);
        }
    }
    Ok(tags)
}

/// Element size, signedness and char-ness of a scalar type.
fn scalar(btf: &Btf, ty: &Type) -> Result<(usize, bool, bool), String> {
    Ok(match ty {
        Type::Int(i) => {
            let char = i.is_char() || btf.resolve_name(i).is_ok_and(|n| n == "char");
            (i.size(), i.is_signed(), char)
        }
        Type::Enum(e) => (e.size(), e.is_signed(), false),
        Type::Enum64(e) => (e.size(), e.is_signed(), false),
        Type::Ptr(_) => (8, false, false),
        other => {
            return Err(format!(
                "type {} is not supported (integers, enums, pointers and arrays of them)",
                other.name()
            ))
        }
    })
}

/// A member's layout (name, offset and format are filled in by the caller).
fn member(btf: &Btf, m: &dyn BtfType) -> Result<PayloadField, String> {
    let ty = target(btf, m)?;
    let (size, signed, char, count) = match &ty {
        Type::Array(a) => {
            let elem = target(btf, a)?;
            if matches!(elem, Type::Array(_)) {
                return Err("arrays of arrays are not supported".into());
            }
            let (size, signed, char) = scalar(btf, &elem)?;
            if a.len() == 0 {
                return Err("zero-length arrays are not supported".into());
            }
            (size, signed, char, Some(a.len()))
        }
        other => {
            let (size, signed, _) = scalar(btf, other)?;
            (size, signed, false, None)
        }
    };
    if !matches!(size, 1 | 2 | 4 | 8) {
        return Err(format!("{size}-byte integers are not supported"));
    }
    Ok(PayloadField {
        name: String::new(),
        offset: 0,
        size,
        count,
        signed,
        char,
        format: Format::Default,
    })
}

/// The format a tag asks for, its enum reference resolved.
fn format(btf: &Btf, tag: Option<Tag>, f: &PayloadField) -> Result<Format, String> {
    let array = f.count.is_some();
    let (reference, flags) = match tag {
        None => return Ok(Format::Default),
        Some(Tag::Plain(Format::Be)) if array => {
            return Err("ipft:fmt:be is for integers, not arrays".into())
        }
        Some(Tag::Plain(Format::Str)) if !array => {
            return Err("ipft:fmt:str is for char arrays".into())
        }
        Some(Tag::Plain(fmt)) => return Ok(fmt),
        Some(Tag::Enum(r)) => (r, false),
        Some(Tag::Flags(r)) => (r, true),
    };
    if array {
        return Err(format!(
            "an enum format ({reference}) is for integers, not arrays"
        ));
    }
    let (id, ty) = vars(btf, &reference)?.into_iter().next().ok_or_else(|| {
        format!("enum {reference} not found (declare `enum {{ ... }} __ipft_ref({reference});`)")
    })?;
    // Values as the field's bytes read back: sign-extended, then cut to
    // the field's size.
    let mask = match f.size {
        8 => u64::MAX,
        n => (1u64 << (8 * n)) - 1,
    };
    let mut names = Vec::new();
    match strip(btf, id, ty)?.1 {
        Type::Enum(e) => {
            for m in &e.members {
                let v = match e.is_signed() {
                    true => m.val() as i32 as i64 as u64,
                    false => m.val() as u64,
                };
                names.push((v & mask, btf.resolve_name(m).map_err(|e| e.to_string())?));
            }
        }
        Type::Enum64(e) => {
            for m in &e.members {
                names.push((
                    m.val() & mask,
                    btf.resolve_name(m).map_err(|e| e.to_string())?,
                ));
            }
        }
        other => {
            return Err(format!(
            "{reference} has type {}, not enum (declare `enum {{ ... }} __ipft_ref({reference});`)",
            other.name()
        ))
        }
    }
    Ok(match flags {
        true => Format::Flags(names),
        false => Format::Enum(names),
    })
}

#[cfg(test)]
#[path = "payload_tests.rs"]
mod tests;

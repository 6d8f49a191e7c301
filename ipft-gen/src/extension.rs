//! `ipft-gen --extension FILE.c|FILE.o`: an extension (ipftrace2's
//! `module()` API) fixed into a generated tracer. The C is compiled here,
//! its payload struct read from its BTF, its `module()` linked over the
//! weak stub of each tracer object, and the payload becomes a Rust type
//! (`OUT/extension.rs`, `#[derive(ExtensionPayload)]`) that
//! `include_probe_sets!` hands to the runtime as the decoder.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use ipft_abi::payload::{Format, PayloadField, PayloadSpec};
use proc_macro2::TokenStream;
use quote::{format_ident, quote};

use crate::compile;

/// The file holding the payload type, beside `probe_set.rs`.
pub const RUST_FILE: &str = "extension.rs";

/// A compiled extension and what its payload holds.
pub struct Extension {
    /// The file it came from.
    pub source: PathBuf,
    /// The BPF object defining `module`.
    pub object: Vec<u8>,
    /// Its payload struct.
    pub spec: PayloadSpec,
}

impl Extension {
    /// Read an object, or compile C (anything not an ELF object) first.
    pub fn load(path: &Path) -> Result<Extension> {
        let bytes = std::fs::read(path).with_context(|| format!("{}", path.display()))?;
        let object = match bytes.starts_with(b"\x7fELF") {
            true => bytes,
            false => compile_c(path)?,
        };
        let spec = ipft_btf::payload_spec(&object)
            .map_err(anyhow::Error::msg)
            .with_context(|| format!("extension {}", path.display()))?;
        Ok(Extension {
            source: path.to_path_buf(),
            object,
            spec,
        })
    }

    /// Link `module()` into the tracer object at `obj`, in place.
    pub fn link_into(&self, obj: &Path) -> Result<()> {
        let base = std::fs::read(obj).with_context(|| format!("{}", obj.display()))?;
        let linked = ipft_runtime::extension::link(&base, &self.object)
            .map_err(anyhow::Error::msg)
            .with_context(|| {
                format!(
                    "linking extension {} into {}",
                    self.source.display(),
                    obj.display()
                )
            })?;
        std::fs::write(obj, linked).with_context(|| format!("{}", obj.display()))
    }

    /// The Rust of `extension.rs`.
    pub fn rust(&self) -> Result<String> {
        render(&self.spec, &self.source.display().to_string())
    }
}

/// Compile C into a scratch dir and read the object back.
fn compile_c(src: &Path) -> Result<Vec<u8>> {
    let dir = std::env::temp_dir().join(format!("ipft-gen-ext-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("{}", dir.display()))?;
    let obj = dir.join("extension.bpf.o");
    let r = compile::compile_extension(src, &obj)
        .map_err(anyhow::Error::from)
        .and_then(|warnings| {
            for w in warnings.lines().filter(|l| !l.trim().is_empty()) {
                eprintln!("ipft-gen: {w}");
            }
            std::fs::read(&obj).with_context(|| format!("{}", obj.display()))
        });
    let _ = std::fs::remove_dir_all(&dir);
    r
}

/// Write `dir/extension.rs`, or remove a stale one when there is no
/// extension (the macro takes in whatever file is there).
pub fn write_rust(dir: &Path, rust: Option<&str>) -> Result<()> {
    let path = dir.join(RUST_FILE);
    match rust {
        Some(r) => std::fs::write(&path, r).with_context(|| format!("{}", path.display())),
        None => match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(e).with_context(|| format!("{}", path.display()))
            }
            _ => Ok(()),
        },
    }
}

/// A C field name as a Rust identifier: keywords raw (`r#type`).
fn ident(name: &str) -> Result<syn::Ident> {
    let word = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !word || ["_", "self", "Self", "super", "crate"].contains(&name) {
        bail!("field name {name:?} cannot be a Rust field; rename it");
    }
    Ok(match syn::parse_str::<syn::Ident>(name) {
        Ok(i) => i,
        Err(_) => syn::Ident::new_raw(name, proc_macro2::Span::call_site()),
    })
}

/// The Rust type of a field: integers by size and sign; char arrays are
/// `i8` arrays, as the derive reads them.
fn rust_type(f: &PayloadField) -> TokenStream {
    let elem = match (f.size, f.signed || f.char) {
        (1, false) => quote!(u8),
        (2, false) => quote!(u16),
        (4, false) => quote!(u32),
        (8, false) => quote!(u64),
        (1, true) => quote!(i8),
        (2, true) => quote!(i16),
        (4, true) => quote!(i32),
        _ => quote!(i64),
    };
    match f.count {
        Some(n) => {
            let n = proc_macro2::Literal::usize_unsuffixed(n);
            quote!([#elem; #n])
        }
        None => elem,
    }
}

/// Where `#[repr(C)]` puts each field: natural alignment, in order.
fn repr_c_offsets(fields: &[PayloadField]) -> Vec<usize> {
    let mut at = 0usize;
    fields
        .iter()
        .map(|f| {
            let o = at.next_multiple_of(f.size);
            at = o + f.len();
            o
        })
        .collect()
}

/// The payload as a Rust module body: enum tables, the `Payload` struct
/// and compile-time checks of its layout against the BTF offsets.
pub fn render(spec: &PayloadSpec, source: &str) -> Result<String> {
    let offsets = repr_c_offsets(&spec.fields);
    let mut tables = Vec::new();
    let mut fields = Vec::new();
    let mut checks = Vec::new();
    let mut consts: Vec<String> = Vec::new();
    for (f, want) in spec.fields.iter().zip(offsets) {
        if f.offset != want {
            bail!(
                "payload struct {}: field {} is at byte {}, where #[repr(C)] puts it at {want} \
                 (packed or over-aligned payloads are not supported)",
                spec.name,
                f.name,
                f.offset
            );
        }
        let id = ident(&f.name).with_context(|| format!("payload struct {}", spec.name))?;
        let ty = rust_type(f);
        let attr = match &f.format {
            Format::Default => quote!(),
            Format::Hex => quote!(#[ipft(hex)]),
            Format::Ip => quote!(#[ipft(ip)]),
            Format::Be => quote!(#[ipft(be)]),
            Format::Str => quote!(#[ipft(str)]),
            Format::Enum(names) | Format::Flags(names) => {
                let mut c = format!("{}_NAMES", f.name.to_ascii_uppercase());
                if consts.contains(&c) {
                    c = format!("{c}_{}", consts.len());
                }
                consts.push(c.clone());
                let c = format_ident!("{}", c);
                let rows = names.iter().map(|(v, n)| {
                    let v = proc_macro2::Literal::u64_unsuffixed(*v);
                    quote!((#v, #n))
                });
                let doc = format!(" Names of the values of `{}`.", f.name);
                tables.push(quote! {
                    #[doc = #doc]
                    pub const #c: &[(u64, &str)] = &[#(#rows),*];
                });
                match &f.format {
                    Format::Enum(_) => quote!(#[ipft(enum = #c)]),
                    _ => quote!(#[ipft(flags = #c)]),
                }
            }
        };
        fields.push(quote! { #attr pub #id: #ty });
        let o = proc_macro2::Literal::usize_unsuffixed(f.offset);
        checks.push(quote! { assert!(::core::mem::offset_of!(Payload, #id) == #o); });
    }
    let doc = format!(" The payload of the extension's `struct {}`.", spec.name);
    let file: syn::File = syn::parse2(quote! {
        #(#tables)*

        #[doc = #doc]
        #[repr(C)]
        #[derive(Clone, Copy, Debug, ::ipft_macros::ExtensionPayload)]
        pub struct Payload {
            #(#fields),*
        }

        // The layout the BPF side writes, as its BTF gives it.
        const _: () = {
            #(#checks)*
        };
    })
    .context("generated extension Rust does not parse")?;
    Ok(format!(
        "// Generated by ipft-gen {} from {} (struct {}). Do not edit.\n\n{}",
        env!("CARGO_PKG_VERSION"),
        source.replace('\n', " "),
        spec.name,
        prettyplease::unparse(&file)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(name: &str, offset: usize, size: usize, format: Format) -> PayloadField {
        PayloadField::scalar(name, offset, size, format)
    }

    #[test]
    fn keywords_become_raw_and_bad_names_are_refused() {
        assert_eq!(ident("type").unwrap().to_string(), "r#type");
        assert_eq!(ident("len").unwrap().to_string(), "len");
        assert!(ident("self").is_err());
        assert!(ident("a$b").is_err());
    }

    #[test]
    fn a_packed_layout_is_refused() {
        let spec = PayloadSpec {
            name: "event".into(),
            fields: vec![
                field("a", 0, 1, Format::Default),
                field("b", 1, 4, Format::Default),
            ],
        };
        let e = render(&spec, "x.c").unwrap_err().to_string();
        assert!(
            e.contains("field b is at byte 1, where #[repr(C)] puts it at 4"),
            "{e}"
        );
    }

    #[test]
    fn same_named_tables_get_apart() {
        let names = vec![(1, "one".to_string())];
        let spec = PayloadSpec {
            name: "event".into(),
            fields: vec![
                field("k", 0, 4, Format::Enum(names.clone())),
                field("K", 4, 4, Format::Flags(names)),
            ],
        };
        let r = render(&spec, "x.c").unwrap();
        assert!(
            r.contains("pub const K_NAMES: &[(u64, &str)] = &[(1, \"one\")];"),
            "{r}"
        );
        assert!(r.contains("#[ipft(flags = K_NAMES_1)]"), "{r}");
    }
}

//! Compile-time probe sets for ipft tracers.
//!
//! `ipft-gen -o OUT` writes `OUT/probe_set.rs` (event mirror, probe table,
//! kernel identity) and `OUT/tracer.bpf.o`. [`include_probe_set!`] turns that
//! directory into a `static PROBE_SET: ipft_runtime::ProbeSetSpec`, so the
//! table and the object are constants of the binary: nothing is discovered
//! or compiled when the tracer starts.
//!
//! ```
//! // A checked-in probe set (tests/fixtures/probe_set); a generated tracer
//! // names its ipft-gen output directory instead.
//! ipft_macros::include_probe_set!("../tests/fixtures/probe_set");
//!
//! fn main() {
//!     assert_eq!(PROBE_SET.probes[0].name, "const_skb");
//!     assert_eq!(PROBE_SET.probes[0].backend, ipft_runtime::Backend::Kprobe);
//!     assert!(PROBE_SET.object.starts_with(b"\x7fELF"));
//!     // A tracer's main is then one line:
//!     // std::process::exit(ipft_runtime::tracer_main(&[PROBE_SET]));
//! }
//! ```
#![deny(missing_docs)]

use std::path::PathBuf;

use proc_macro::TokenStream;
use quote::quote;
use syn::{parse_macro_input, Data, DeriveInput, Fields, LitStr, Type};

/// The files of one probe-set directory, checked: `probe_set.rs` and
/// `tracer.bpf.o` (relative to the calling crate's manifest).
fn probe_set_files(lit: &LitStr) -> Result<(String, String), syn::Error> {
    let base = std::env::var("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_default();
    let dir = base.join(lit.value());
    let rs = dir.join("probe_set.rs");
    let obj = dir.join("tracer.bpf.o");
    for f in [&rs, &obj] {
        if !f.is_file() {
            let msg = format!(
                "ipft probe set: {} not found (run `ipft-gen ... -o DIR --build`)",
                f.display()
            );
            return Err(syn::Error::new(lit.span(), msg));
        }
    }
    Ok((
        rs.to_string_lossy().into_owned(),
        obj.to_string_lossy().into_owned(),
    ))
}

/// A module holding one probe set and its `SPEC`.
fn probe_set_module(name: &syn::Ident, rs: &str, obj: &str) -> proc_macro2::TokenStream {
    quote! {
        #[allow(dead_code, missing_docs)]
        mod #name {
            include!(#rs);
            pub static SPEC: ::ipft_runtime::ProbeSetSpec = ::ipft_runtime::ProbeSetSpec {
                object: include_bytes!(#obj),
                probes: PROBES,
                identity: IDENTITY,
                profile: PROFILE,
            };
        }
    }
}

/// Include a generated probe set from a directory (relative to the calling
/// crate's manifest) as `static PROBE_SET`. Fails to compile, naming the
/// file, if the directory lacks `probe_set.rs` or `tracer.bpf.o`.
#[proc_macro]
pub fn include_probe_set(input: TokenStream) -> TokenStream {
    let lit = parse_macro_input!(input as LitStr);
    let (rs, obj) = match probe_set_files(&lit) {
        Ok(f) => f,
        Err(e) => return e.to_compile_error().into(),
    };
    let m = syn::Ident::new("__ipft_probe_set", lit.span());
    let module = probe_set_module(&m, &rs, &obj);
    quote! {
        #module
        /// The probe set compiled into this binary.
        pub static PROBE_SET: &::ipft_runtime::ProbeSetSpec = &#m::SPEC;
    }
    .into()
}

/// Include several probe sets of one profile, one per kernel, as
/// `static PROBE_SETS: &[&ProbeSetSpec]`: a fleet tracer picks the one
/// whose BTF matches the running kernel at start.
#[proc_macro]
pub fn include_probe_sets(input: TokenStream) -> TokenStream {
    use syn::parse::Parser;
    let parser = syn::punctuated::Punctuated::<LitStr, syn::Token![,]>::parse_terminated;
    let lits = match parser.parse(input) {
        Ok(l) => l,
        Err(e) => return e.to_compile_error().into(),
    };
    let mut modules = Vec::new();
    let mut names = Vec::new();
    for (i, lit) in lits.iter().enumerate() {
        let (rs, obj) = match probe_set_files(lit) {
            Ok(f) => f,
            Err(e) => return e.to_compile_error().into(),
        };
        let m = syn::Ident::new(&format!("__ipft_probe_set_{i}"), lit.span());
        modules.push(probe_set_module(&m, &rs, &obj));
        names.push(m);
    }
    quote! {
        #(#modules)*
        /// The probe sets compiled into this binary, one per kernel.
        pub static PROBE_SETS: &[&::ipft_runtime::ProbeSetSpec] = &[#(&#names::SPEC),*];
    }
    .into()
}

/// C type for a payload field type, with an array suffix.
fn c_type(ty: &Type) -> Option<(String, String)> {
    match ty {
        Type::Path(p) => {
            let name = p.path.get_ident()?.to_string();
            let c = match name.as_str() {
                "u8" => "__u8",
                "u16" => "__u16",
                "u32" => "__u32",
                "u64" => "__u64",
                "i8" => "__s8",
                "i16" => "__s16",
                "i32" => "__s32",
                "i64" => "__s64",
                _ => return None,
            };
            Some((c.to_string(), String::new()))
        }
        Type::Array(a) => {
            let (inner, suffix) = c_type(&a.elem)?;
            if !suffix.is_empty() {
                return None;
            }
            let len = &a.len;
            Some((
                inner,
                format!("[{}]", quote!(#len).to_string().replace(' ', "")),
            ))
        }
        _ => None,
    }
}

/// Derive `ipft_runtime::extension::ExtensionPayload` for a `#[repr(C)]`
/// struct of integers and integer arrays: the C struct text for the BPF
/// side, a copying decoder and key=value fields (arrays in hex).
///
/// ```
/// use ipft_runtime::extension::ExtensionPayload;
///
/// #[derive(ipft_macros::ExtensionPayload, Debug, Clone, Copy)]
/// #[repr(C)]
/// struct Flow {
///     saddr: u32,
///     dport: u16,
///     proto: u8,
///     pad: u8,
///     dmac: [u8; 6],
/// }
///
/// fn main() {
///     assert_eq!(
///         Flow::C_STRUCT,
///         "struct Flow {\n\t__u32 saddr;\n\t__u16 dport;\n\t__u8 proto;\n\t__u8 pad;\n\t__u8 dmac[6];\n};"
///     );
///     let mut bytes = [0u8; 16];
///     bytes[..4].copy_from_slice(&7u32.to_ne_bytes());
///     bytes[6] = 17;
///     bytes[8..14].copy_from_slice(&[0xaa, 0, 0, 0, 0, 1]);
///     let f = Flow::decode(&bytes[..Flow::SIZE]).unwrap();
///     assert_eq!((f.saddr, f.proto), (7, 17));
///     assert_eq!(f.fields()[4], ("dmac", "aa0000000001".to_string()));
///     assert!(Flow::decode(&bytes[..3]).is_none());
/// }
/// ```
#[proc_macro_derive(ExtensionPayload)]
pub fn derive_extension_payload(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    let name = &input.ident;
    let repr_c = input
        .attrs
        .iter()
        .any(|a| a.path().is_ident("repr") && a.parse_args::<syn::Ident>().is_ok_and(|i| i == "C"));
    if !repr_c {
        return syn::Error::new_spanned(
            name,
            "ExtensionPayload needs #[repr(C)]: the BPF side shares its layout",
        )
        .to_compile_error()
        .into();
    }
    let Data::Struct(data) = &input.data else {
        return syn::Error::new_spanned(name, "ExtensionPayload: only structs")
            .to_compile_error()
            .into();
    };
    let Fields::Named(fields) = &data.fields else {
        return syn::Error::new_spanned(name, "ExtensionPayload: named fields only")
            .to_compile_error()
            .into();
    };
    let mut c = format!("struct {name} {{\n");
    let mut renders = Vec::new();
    for f in &fields.named {
        let ident = f.ident.as_ref().expect("named field");
        let Some((ty, suffix)) = c_type(&f.ty) else {
            return syn::Error::new_spanned(
                &f.ty,
                "ExtensionPayload fields: u8..u64, i8..i64 or arrays of them",
            )
            .to_compile_error()
            .into();
        };
        c.push_str(&format!("\t{ty} {ident}{suffix};\n"));
        let key = ident.to_string();
        renders.push(if suffix.is_empty() {
            quote! { (#key, self.#ident.to_string()) }
        } else {
            quote! { (#key, self.#ident.iter().map(|b| format!("{:02x}", b)).collect::<String>()) }
        });
    }
    c.push_str("};");
    quote! {
        impl ::ipft_runtime::extension::ExtensionPayload for #name {
            const C_STRUCT: &'static str = #c;
            const SIZE: usize = ::core::mem::size_of::<#name>();
            fn decode(bytes: &[u8]) -> Option<Self> {
                if bytes.len() < Self::SIZE {
                    return None;
                }
                // SAFETY: length checked; a repr(C) struct of integers has
                // no invalid bit patterns; read_unaligned copes with any
                // alignment of ring buffer data.
                Some(unsafe { ::core::ptr::read_unaligned(bytes.as_ptr() as *const Self) })
            }
            fn fields(&self) -> Vec<(&'static str, String)> {
                vec![#(#renders),*]
            }
        }
    }
    .into()
}

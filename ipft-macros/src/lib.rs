//! Compile-time probe sets for ipft tracers.
//!
//! `ipft-gen -o OUT` writes `OUT/probe_set.rs` (event mirror, probe table,
//! kernel identity) and `OUT/tracer.bpf.o`. [`include_probe_set!`] turns that
//! directory into a `static PROBE_SET: ipft_runtime::ProbeSetSpec`, so the
//! table and the object are constants of the binary: nothing is discovered
//! or compiled when the tracer starts. A tracer generated with
//! `--extension` also has `OUT/extension.rs`, its payload type `Payload`
//! (`#[derive(ExtensionPayload)]`): the probe set's `extension` is then
//! that type's decoder.
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
use syn::{parse_macro_input, DeriveInput, LitStr};

mod payload;

/// The files of one probe-set directory (relative to the calling crate's
/// manifest), checked: `probe_set.rs`, `tracer.bpf.o` and, for a tracer
/// with an extension, `extension.rs` (its payload type, `Payload`).
struct SetFiles {
    rs: String,
    obj: String,
    extension: Option<String>,
}

fn probe_set_files(lit: &LitStr) -> Result<SetFiles, syn::Error> {
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
    let ext = dir.join("extension.rs");
    let path = |p: PathBuf| p.to_string_lossy().into_owned();
    Ok(SetFiles {
        rs: path(rs),
        obj: path(obj),
        extension: ext.is_file().then(|| path(ext)),
    })
}

/// A module holding one probe set and its `SPEC`.
fn probe_set_module(name: &syn::Ident, f: &SetFiles) -> proc_macro2::TokenStream {
    let (rs, obj) = (&f.rs, &f.obj);
    let (ext_mod, ext) = match &f.extension {
        Some(ext) => (
            quote! {
                pub mod extension {
                    include!(#ext);
                }
                fn extension_decoder(
                ) -> ::std::boxed::Box<dyn ::ipft_runtime::extension::PayloadDecoder> {
                    ::std::boxed::Box::new(
                        ::ipft_runtime::extension::Typed::<extension::Payload>::default(),
                    )
                }
            },
            quote! { Some(extension_decoder) },
        ),
        None => (quote! {}, quote! { None }),
    };
    quote! {
        #[allow(dead_code, missing_docs)]
        mod #name {
            include!(#rs);
            #ext_mod
            pub static SPEC: ::ipft_runtime::ProbeSetSpec = ::ipft_runtime::ProbeSetSpec {
                object: include_bytes!(#obj),
                probes: PROBES,
                identity: IDENTITY,
                profile: PROFILE,
                filter: FILTER,
                extension: #ext,
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
    let files = match probe_set_files(&lit) {
        Ok(f) => f,
        Err(e) => return e.to_compile_error().into(),
    };
    let m = syn::Ident::new("__ipft_probe_set", lit.span());
    let module = probe_set_module(&m, &files);
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
        let files = match probe_set_files(lit) {
            Ok(f) => f,
            Err(e) => return e.to_compile_error().into(),
        };
        let m = syn::Ident::new(&format!("__ipft_probe_set_{i}"), lit.span());
        modules.push(probe_set_module(&m, &files));
        names.push(m);
    }
    quote! {
        #(#modules)*
        /// The probe sets compiled into this binary, one per kernel.
        pub static PROBE_SETS: &[&::ipft_runtime::ProbeSetSpec] = &[#(&#names::SPEC),*];
    }
    .into()
}

/// Derive `ipft_runtime::extension::ExtensionPayload` for a `#[repr(C)]`
/// struct of integers and integer arrays: the C struct text for the BPF
/// side, a copying decoder and its `PayloadSpec` (built once), so fields
/// show exactly as the same struct read from an extension's BTF. `i8`
/// arrays are C `char` arrays, shown as strings. Formats, one per field:
/// `#[ipft(hex)]`, `#[ipft(ip)]`, `#[ipft(be)]` (network byte order),
/// `#[ipft(str)]` (arrays), `#[ipft(enum = TABLE)]` and
/// `#[ipft(flags = TABLE)]`, where `TABLE` is a `&[(u64, &str)]` in scope.
///
/// ```
/// use ipft_runtime::extension::ExtensionPayload;
///
/// const PROTOS: &[(u64, &str)] = &[(6, "tcp"), (17, "udp")];
///
/// #[derive(ipft_macros::ExtensionPayload, Debug, Clone, Copy)]
/// #[repr(C)]
/// struct Flow {
///     #[ipft(ip)]
///     saddr: [u8; 4],
///     #[ipft(be)]
///     dport: u16,
///     #[ipft(enum = PROTOS)]
///     proto: u8,
///     pad: u8,
///     dmac: [u8; 6],
///     dev: [i8; 6],
/// }
///
/// fn main() {
///     assert_eq!(
///         Flow::C_STRUCT,
///         "struct Flow {\n\t__u8 saddr[4];\n\t__u16 dport;\n\t__u8 proto;\n\t__u8 pad;\n\t__u8 dmac[6];\n\tchar dev[6];\n};"
///     );
///     let mut bytes = [0u8; 20];
///     bytes[..4].copy_from_slice(&[10, 0, 0, 1]);
///     bytes[4..6].copy_from_slice(&443u16.to_be_bytes());
///     bytes[6] = 17;
///     bytes[8..14].copy_from_slice(&[0xaa, 0, 0, 0, 0, 1]);
///     bytes[14..16].copy_from_slice(b"lo");
///     let f = Flow::decode(&bytes[..Flow::SIZE]).unwrap();
///     assert_eq!((f.proto, f.dmac[0]), (17, 0xaa));
///     let shown: Vec<String> = Flow::spec()
///         .decode(&bytes)
///         .iter()
///         .map(|(k, v)| format!("{k}={v}"))
///         .collect();
///     assert_eq!(
///         shown,
///         ["saddr=10.0.0.1", "dport=443", "proto=udp", "pad=0", "dmac=aa0000000001", "dev=lo"]
///     );
///     assert!(Flow::decode(&bytes[..3]).is_none());
/// }
/// ```
///
/// Formats are checked against the field: `str` is for arrays, `be`,
/// `enum` and `flags` for integers.
///
/// ```compile_fail
/// #[derive(ipft_macros::ExtensionPayload, Clone, Copy)]
/// #[repr(C)]
/// struct Bad {
///     #[ipft(str)]
///     len: u32,
/// }
/// ```
#[proc_macro_derive(ExtensionPayload, attributes(ipft))]
pub fn derive_extension_payload(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    payload::derive(&input)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

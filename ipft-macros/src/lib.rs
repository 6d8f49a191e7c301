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
//!     // std::process::exit(ipft_runtime::tracer_main(&PROBE_SET));
//! }
//! ```
#![deny(missing_docs)]

use std::path::PathBuf;

use proc_macro::TokenStream;
use quote::quote;
use syn::{parse_macro_input, LitStr};

/// Include a generated probe set from a directory (relative to the calling
/// crate's manifest). Fails to compile, naming the file, if the directory
/// lacks `probe_set.rs` or `tracer.bpf.o`.
#[proc_macro]
pub fn include_probe_set(input: TokenStream) -> TokenStream {
    let lit = parse_macro_input!(input as LitStr);
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
            return syn::Error::new(lit.span(), msg).to_compile_error().into();
        }
    }
    let rs = rs.to_string_lossy().into_owned();
    let obj = obj.to_string_lossy().into_owned();
    quote! {
        #[allow(dead_code, missing_docs)]
        mod __ipft_probe_set {
            include!(#rs);
        }
        /// The probe set compiled into this binary.
        pub static PROBE_SET: ::ipft_runtime::ProbeSetSpec = ::ipft_runtime::ProbeSetSpec {
            object: include_bytes!(#obj),
            probes: __ipft_probe_set::PROBES,
            identity: __ipft_probe_set::IDENTITY,
            mode: __ipft_probe_set::MODE,
        };
    }
    .into()
}

//! Rust bindings for a generated tracer: probe table, kernel identity and
//! profile, built with quote and formatted with prettyplease. The event and
//! config layouts are not repeated here: both sides take them from ipft-abi.

use ipft_abi::{Backend, ProbeEntry, ProbeKind, ProbeShape, ProgramId, TypedKind};
use ipft_btf::BtfIdentity;
use proc_macro2::TokenStream;
use quote::quote;

fn opt<T>(v: Option<T>, f: impl Fn(T) -> TokenStream) -> TokenStream {
    match v {
        Some(v) => {
            let t = f(v);
            quote! { Some(#t) }
        }
        None => quote! { None },
    }
}

fn cow(s: &str) -> TokenStream {
    quote! { ::std::borrow::Cow::Borrowed(#s) }
}

fn backend(b: Backend) -> TokenStream {
    match b {
        Backend::Kprobe => quote! { ::ipft_runtime::Backend::Kprobe },
        Backend::KprobeMulti => quote! { ::ipft_runtime::Backend::KprobeMulti },
        Backend::Fentry => quote! { ::ipft_runtime::Backend::Fentry },
        Backend::TpBtf => quote! { ::ipft_runtime::Backend::TpBtf },
    }
}

fn typed_kind(k: TypedKind) -> TokenStream {
    match k {
        TypedKind::Tracepoint => quote! { ::ipft_runtime::TypedKind::Tracepoint },
        TypedKind::Entry => quote! { ::ipft_runtime::TypedKind::Entry },
        TypedKind::Return => quote! { ::ipft_runtime::TypedKind::Return },
        TypedKind::RawTracepoint => quote! { ::ipft_runtime::TypedKind::RawTracepoint },
    }
}

fn program(id: ProgramId) -> TokenStream {
    let reason = |r: Option<u8>| opt(r, |r| quote! { #r });
    match id {
        ProgramId::Kprobe {
            multi,
            skb,
            reason: r,
            end,
        } => {
            let r = reason(r);
            quote! { ::ipft_runtime::ProgramId::Kprobe { multi: #multi, skb: #skb, reason: #r, end: #end } }
        }
        ProgramId::Kretprobe { multi } => {
            quote! { ::ipft_runtime::ProgramId::Kretprobe { multi: #multi } }
        }
        ProgramId::CloneEntry { multi } => {
            quote! { ::ipft_runtime::ProgramId::CloneEntry { multi: #multi } }
        }
        ProgramId::CloneReturn { multi } => {
            quote! { ::ipft_runtime::ProgramId::CloneReturn { multi: #multi } }
        }
        ProgramId::CloneExit { nargs } => {
            quote! { ::ipft_runtime::ProgramId::CloneExit { nargs: #nargs } }
        }
        ProgramId::Typed { kind, row } => {
            let k = typed_kind(kind);
            quote! { ::ipft_runtime::ProgramId::Typed { kind: #k, row: #row } }
        }
        ProgramId::Generic {
            kind,
            skb,
            reason: r,
            end,
        } => {
            let k = typed_kind(kind);
            let r = reason(r);
            quote! { ::ipft_runtime::ProgramId::Generic { kind: #k, skb: #skb, reason: #r, end: #end } }
        }
    }
}

fn shape(s: &ProbeShape) -> TokenStream {
    let kind = match s.kind {
        ProbeKind::Function => quote! { ::ipft_runtime::ProbeKind::Function },
        ProbeKind::Tracepoint => quote! { ::ipft_runtime::ProbeKind::Tracepoint },
    };
    let ProbeShape {
        skb_pos,
        nargs,
        variadic,
        byval,
        byval_before_skb,
        ..
    } = *s;
    let reason = opt(s.reason_pos, |r| quote! { #r });
    quote! {
        ::ipft_runtime::ProbeShape {
            kind: #kind,
            skb_pos: #skb_pos,
            reason_pos: #reason,
            nargs: #nargs,
            variadic: #variadic,
            byval: #byval,
            byval_before_skb: #byval_before_skb,
        }
    }
}

/// Render the bindings module.
pub fn render(
    identity: &BtfIdentity,
    profile: &str,
    filter: Option<&str>,
    table: &[ProbeEntry],
) -> String {
    let rows = table.iter().map(|e| {
        let name = cow(&e.name);
        let module = opt(e.module.as_deref(), cow);
        let shape = shape(&e.shape);
        let backend = backend(e.backend);
        let btf_id = e.btf_id;
        let entry = program(e.program);
        let ret = opt(e.return_program, program);
        let ends = e.ends_journey;
        let hidden = e.hidden;
        quote! {
            ::ipft_runtime::ProbeEntry {
                name: #name,
                module: #module,
                shape: #shape,
                backend: #backend,
                btf_id: #btf_id,
                program: #entry,
                return_program: #ret,
                ends_journey: #ends,
                hidden: #hidden,
            }
        }
    });
    let source = cow(&identity.source);
    let checksum = cow(&identity.checksum);
    let release = opt(identity.release.as_deref(), cow);
    let filter = opt(filter, |f| quote! { #f });
    let file: syn::File = syn::parse2(quote! {
        /// Kernel this probe set was generated for.
        pub const IDENTITY: ::ipft_runtime::KernelIdentity = ::ipft_runtime::KernelIdentity {
            source: #source,
            checksum: #checksum,
            release: #release,
        };

        /// Profile the probe set was selected with.
        pub const PROFILE: &str = #profile;

        /// The pcap-filter expression compiled into every program (`--filter`).
        pub const FILTER: Option<&str> = #filter;

        /// Probe table: the index is the probe id in events.
        pub static PROBES: &[::ipft_runtime::ProbeEntry] = &[#(#rows),*];
    })
    .expect("generated Rust parses");
    format!(
        "// Generated by ipft-gen {} from {} (BTF checksum {}). Do not edit.\n\n{}",
        env!("CARGO_PKG_VERSION"),
        identity.source.replace('\n', " "),
        identity.checksum,
        prettyplease::unparse(&file)
    )
}

//! The event layout, defined once. Both the C struct and the Rust mirror are
//! rendered from [`EVENT_FIELDS`].

use proc_macro2::TokenStream;
use quote::{format_ident, quote};

/// A field of the wire event: name, C type, Rust type, size in bytes.
pub struct Field {
    /// Field name (same in C and Rust).
    pub name: &'static str,
    /// C type.
    pub c_type: &'static str,
    /// Rust type.
    pub rust_type: &'static str,
    /// Size in bytes (also its alignment: fields are naturally aligned).
    pub size: usize,
    /// What it holds.
    pub doc: &'static str,
}

/// `struct ipft_event`, in wire order. Keep it naturally aligned and a
/// multiple of 8 bytes so no padding is implied.
pub const EVENT_FIELDS: &[Field] = &[
    Field {
        name: "skb",
        c_type: "__u64",
        rust_type: "u64",
        size: 8,
        doc: "skb address (packet identity until freed)",
    },
    Field {
        name: "tstamp",
        c_type: "__u64",
        rust_type: "u64",
        size: 8,
        doc: "bpf_ktime_get_ns() at the hit",
    },
    Field {
        name: "aux",
        c_type: "__u64",
        rust_type: "u64",
        size: 8,
        doc: "drop reason when flags has REASON",
    },
    Field {
        name: "probe",
        c_type: "__u32",
        rust_type: "u32",
        size: 4,
        doc: "index into the probe table",
    },
    Field {
        name: "cpu",
        c_type: "__u16",
        rust_type: "u16",
        size: 2,
        doc: "CPU of the hit",
    },
    Field {
        name: "flags",
        c_type: "__u8",
        rust_type: "u8",
        size: 1,
        doc: "1 = return (fexit), 2 = aux is a drop reason",
    },
    Field {
        name: "ext_len",
        c_type: "__u8",
        rust_type: "u8",
        size: 1,
        doc: "bytes of extension payload after the header",
    },
];

/// Offsets of each field.
pub fn offsets() -> Vec<usize> {
    let mut off = 0;
    EVENT_FIELDS
        .iter()
        .map(|f| {
            assert_eq!(off % f.size, 0, "field {} misaligned", f.name);
            let o = off;
            off += f.size;
            o
        })
        .collect()
}

/// Total size.
pub fn size() -> usize {
    EVENT_FIELDS.iter().map(|f| f.size).sum()
}

/// The C definition.
pub fn c_struct() -> String {
    let mut s = String::from(
        "/* Wire event; the Rust mirror asserts the same layout. */\nstruct ipft_event {\n",
    );
    for (f, off) in EVENT_FIELDS.iter().zip(offsets()) {
        s.push_str(&format!(
            "\t{} {};\t/* @{off}: {} */\n",
            f.c_type, f.name, f.doc
        ));
    }
    s.push_str("};");
    s
}

/// The Rust mirror with compile-time size and offset assertions.
pub fn rust_struct(name: &str) -> TokenStream {
    let ident = format_ident!("{}", name);
    let fields = EVENT_FIELDS.iter().map(|f| {
        let n = format_ident!("{}", f.name);
        let t: syn::Type = syn::parse_str(f.rust_type).expect("field type");
        let doc = f.doc;
        quote! { #[doc = #doc] pub #n: #t }
    });
    let size = size();
    let asserts = EVENT_FIELDS.iter().zip(offsets()).map(|(f, off)| {
        let n = format_ident!("{}", f.name);
        quote! { assert!(::core::mem::offset_of!(#ident, #n) == #off); }
    });
    quote! {
        /// Wire event, mirror of `struct ipft_event` in the BPF C.
        #[repr(C)]
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
        pub struct #ident { #(#fields,)* }
        const _: () = {
            assert!(::core::mem::size_of::<#ident>() == #size);
            #(#asserts)*
        };
    }
}

//! `#[derive(ExtensionPayload)]`: a `#[repr(C)]` struct of integers and
//! integer arrays becomes an extension payload: its C definition for the
//! BPF side, a copying decoder and a `PayloadSpec` whose fields show
//! exactly like the same struct read from an extension's BTF.

use proc_macro2::TokenStream;
use quote::quote;
use syn::ext::IdentExt;
use syn::{Data, DeriveInput, Expr, Field, Fields, Type};

/// An integer field type: C spelling, signedness.
fn int(ty: &Type) -> Option<(&'static str, bool)> {
    let Type::Path(p) = ty else { return None };
    if p.qself.is_some() {
        return None;
    }
    Some(match p.path.get_ident()?.to_string().as_str() {
        "u8" => ("__u8", false),
        "u16" => ("__u16", false),
        "u32" => ("__u32", false),
        "u64" => ("__u64", false),
        "i8" => ("__s8", true),
        "i16" => ("__s16", true),
        "i32" => ("__s32", true),
        "i64" => ("__s64", true),
        _ => return None,
    })
}

/// A field's shape: element type, C element type, signedness, array length.
struct Shape<'a> {
    elem: &'a Type,
    c: &'static str,
    signed: bool,
    len: Option<&'a Expr>,
}

impl Shape<'_> {
    /// i8 arrays are C `char` arrays: strings by default.
    fn char(&self) -> bool {
        self.len.is_some() && self.c == "__s8"
    }
}

fn shape(ty: &Type) -> Option<Shape<'_>> {
    match ty {
        Type::Array(a) => {
            let (c, signed) = int(&a.elem)?;
            Some(Shape {
                elem: &a.elem,
                c,
                signed,
                len: Some(&a.len),
            })
        }
        _ => {
            let (c, signed) = int(ty)?;
            Some(Shape {
                elem: ty,
                c,
                signed,
                len: None,
            })
        }
    }
}

/// The `Format` expression of a field's `#[ipft(...)]` attributes.
fn format(f: &Field, array: bool) -> syn::Result<TokenStream> {
    let fmt = quote!(::ipft_runtime::extension::Format);
    let mut out: Option<TokenStream> = None;
    for attr in f.attrs.iter().filter(|a| a.path().is_ident("ipft")) {
        attr.parse_nested_meta(|meta| {
            let word = meta.path.get_ident().map(|i| i.unraw().to_string());
            let (tokens, scalar_only, array_only) = match word.as_deref() {
                Some("hex") => (quote!(#fmt::Hex), false, false),
                Some("ip") => (quote!(#fmt::Ip), false, false),
                Some("be") => (quote!(#fmt::Be), true, false),
                Some("str") => (quote!(#fmt::Str), false, true),
                Some(w @ ("enum" | "flags")) => {
                    let table: syn::Path = meta.value()?.parse()?;
                    let names = quote! {
                        #table.iter().map(|&(v, n)| (v, ::std::string::String::from(n))).collect()
                    };
                    match w {
                        "enum" => (quote!(#fmt::Enum(#names)), true, false),
                        _ => (quote!(#fmt::Flags(#names)), true, false),
                    }
                }
                _ => {
                    return Err(meta
                        .error("ipft: expected hex, ip, be, str, enum = TABLE or flags = TABLE"))
                }
            };
            if scalar_only && array {
                return Err(meta.error("this format is for integers, not arrays"));
            }
            if array_only && !array {
                return Err(meta.error("str is for u8 or i8 arrays"));
            }
            if out.is_some() {
                return Err(meta.error("one format per field"));
            }
            out = Some(tokens);
            Ok(())
        })?;
    }
    Ok(out.unwrap_or_else(|| quote!(#fmt::Default)))
}

fn repr_c(input: &DeriveInput) -> bool {
    input
        .attrs
        .iter()
        .any(|a| a.path().is_ident("repr") && a.parse_args::<syn::Ident>().is_ok_and(|i| i == "C"))
}

/// The impl of `ExtensionPayload`, or the first error.
pub fn derive(input: &DeriveInput) -> syn::Result<TokenStream> {
    let name = &input.ident;
    if !repr_c(input) {
        return Err(syn::Error::new_spanned(
            name,
            "ExtensionPayload needs #[repr(C)]: the BPF side shares its layout",
        ));
    }
    if !input.generics.params.is_empty() {
        return Err(syn::Error::new_spanned(
            &input.generics,
            "ExtensionPayload: no generic parameters",
        ));
    }
    let Data::Struct(data) = &input.data else {
        return Err(syn::Error::new_spanned(
            name,
            "ExtensionPayload: only structs",
        ));
    };
    let Fields::Named(fields) = &data.fields else {
        return Err(syn::Error::new_spanned(
            name,
            "ExtensionPayload: named fields only",
        ));
    };
    let rt = quote!(::ipft_runtime::extension);
    let mut c = format!("struct {} {{\n", name.unraw());
    let mut specs = Vec::new();
    for f in &fields.named {
        let ident = f.ident.as_ref().expect("named field");
        let key = ident.unraw().to_string();
        let Some(s) = shape(&f.ty) else {
            return Err(syn::Error::new_spanned(
                &f.ty,
                "ExtensionPayload fields: u8..u64, i8..i64 or arrays of them",
            ));
        };
        let c_elem = if s.char() { "char" } else { s.c };
        let suffix = s
            .len
            .map(|l| format!("[{}]", quote!(#l).to_string().replace(' ', "")))
            .unwrap_or_default();
        c.push_str(&format!("\t{c_elem} {key}{suffix};\n"));
        let format = format(f, s.len.is_some())?;
        let elem = s.elem;
        let count = match s.len {
            Some(l) => quote!(::core::option::Option::Some(#l)),
            None => quote!(::core::option::Option::None),
        };
        let (signed, char) = (s.signed, s.char());
        specs.push(quote! {
            #rt::PayloadField {
                name: ::std::string::String::from(#key),
                offset: ::core::mem::offset_of!(Self, #ident),
                size: ::core::mem::size_of::<#elem>(),
                count: #count,
                signed: #signed,
                char: #char,
                format: #format,
            }
        });
    }
    c.push_str("};");
    let spec_name = name.unraw().to_string();
    Ok(quote! {
        impl #rt::ExtensionPayload for #name {
            const C_STRUCT: &'static str = #c;
            const SIZE: usize = ::core::mem::size_of::<#name>();
            fn decode(bytes: &[u8]) -> ::core::option::Option<Self> {
                if bytes.len() < Self::SIZE {
                    return ::core::option::Option::None;
                }
                // SAFETY: length checked; a repr(C) struct of integers has
                // no invalid bit patterns; read_unaligned copes with any
                // alignment of ring buffer data.
                ::core::option::Option::Some(unsafe {
                    ::core::ptr::read_unaligned(bytes.as_ptr() as *const Self)
                })
            }
            fn spec() -> &'static #rt::PayloadSpec {
                static SPEC: ::std::sync::OnceLock<#rt::PayloadSpec> = ::std::sync::OnceLock::new();
                SPEC.get_or_init(|| #rt::PayloadSpec {
                    name: ::std::string::String::from(#spec_name),
                    fields: ::std::vec![#(#specs),*],
                })
            }
        }
    })
}

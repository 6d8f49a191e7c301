//! Extensions: an extension's `module(ctx, skb, data[64])` (ipftrace2's
//! API) is linked into the BPF object, fills the bytes after each event
//! header (`ext_len`), and a decoder turns them into named fields for the
//! output. Decoders: a payload struct read from BTF (`ipft -e`), a Lua
//! script (`ipft -e/-s FILE.lua`), or a Rust struct with
//! `#[derive(ipft_macros::ExtensionPayload)]` (generated tracers).

use std::marker::PhantomData;

pub use ipft_abi::payload::{ExtValue, Format, PayloadField, PayloadSpec, PAYLOAD_LEN};

/// Named field values of one event's payload, in display order.
pub type ExtFields = Vec<(String, ExtValue)>;

/// Turns payload bytes into fields. Called once per printed event, on the
/// reader thread.
pub trait PayloadDecoder {
    /// The fields of `data` (the event's payload bytes). A decoder that
    /// fails reports it as a field (`error`) and tracing goes on.
    fn decode(&mut self, data: &[u8]) -> ExtFields;

    /// The trace is over (Lua's `fini()`).
    fn finish(&mut self) {}
}

impl PayloadDecoder for PayloadSpec {
    fn decode(&mut self, data: &[u8]) -> ExtFields {
        PayloadSpec::decode(self, data)
    }
}

/// A fixed-layout payload written in Rust: its C definition (for the BPF
/// side), a typed decoder and its fields, described by one
/// [`PayloadSpec`] so it is shown exactly as the same struct read from BTF.
pub trait ExtensionPayload: Sized {
    /// `struct <name> { ... };` with the same layout as the Rust struct.
    const C_STRUCT: &'static str;
    /// Size in bytes.
    const SIZE: usize;
    /// Decode by copying; `None` if `bytes` is too short.
    fn decode(bytes: &[u8]) -> Option<Self>;
    /// The fields and their formats (`#[ipft(hex)]`, `#[ipft(flags = T)]`...).
    fn spec() -> &'static PayloadSpec;
}

/// The decoder of a derived payload type.
pub struct Typed<T>(PhantomData<T>);

impl<T> Default for Typed<T> {
    fn default() -> Self {
        Typed(PhantomData)
    }
}

impl<T: ExtensionPayload> PayloadDecoder for Typed<T> {
    fn decode(&mut self, data: &[u8]) -> ExtFields {
        match T::decode(data) {
            Some(_) => T::spec().decode(data),
            None => vec![(
                "error".to_string(),
                ExtValue::Str(format!("payload of {} bytes, want {}", data.len(), T::SIZE)),
            )],
        }
    }
}

/// An extension ready to load: the BPF object holding `module()` and the
/// decoder of what it writes.
pub struct Extension {
    /// Where it came from, for messages (`gso.bpf.c`, `gso.lua`).
    pub name: String,
    /// A BPF object (ELF) defining `module`.
    pub object: Vec<u8>,
    /// Its payload decoder.
    pub decoder: Box<dyn PayloadDecoder>,
}

/// Link `module` from `extension` into `base` (whose own `module` is a weak
/// stub) with libbpf's static linker; the linked object's bytes.
pub fn link(base: &[u8], extension: &[u8]) -> Result<Vec<u8>, String> {
    let dir = std::env::temp_dir().join(format!("ipft-link-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let out = dir.join("linked.bpf.o");
    let r = (|| {
        let mut l = libbpf_rs::Linker::new(&out).map_err(|e| e.to_string())?;
        l.add_buf(base)
            .map_err(|e| format!("the base object: {e}"))?;
        l.add_buf(extension)
            .map_err(|e| format!("the extension object: {e}"))?;
        l.link().map_err(|e| e.to_string())?;
        drop(l);
        std::fs::read(&out).map_err(|e| format!("{}: {e}", out.display()))
    })();
    let _ = std::fs::remove_dir_all(&dir);
    r
}

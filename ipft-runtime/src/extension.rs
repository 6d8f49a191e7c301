//! Extension payloads: bytes an extension appends after the event header
//! (`ext_len`), described once in Rust and derived for C and for decoding
//! with `#[derive(ipft_macros::ExtensionPayload)]`.

/// A fixed-layout payload: its C definition (for the BPF side), its decoder
/// and its key=value rendering for output.
pub trait ExtensionPayload: Sized {
    /// `struct <name> { ... };` with the same layout as the Rust struct.
    const C_STRUCT: &'static str;
    /// Size in bytes.
    const SIZE: usize;
    /// Decode by copying; `None` if `bytes` is too short.
    fn decode(bytes: &[u8]) -> Option<Self>;
    /// Field names and values, in declaration order, for output.
    fn fields(&self) -> Vec<(&'static str, String)>;
}

//! Command-line arguments shared by `ipft` and generated tracers.

include!("args_def.rs");

/// Parse a number like strtoul(s, NULL, 0): `0x` hex, leading `0` octal,
/// otherwise decimal.
pub fn parse_u32(s: &str) -> Option<u32> {
    let s = s.trim();
    let v = if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        u64::from_str_radix(h, 16).ok()?
    } else if s.len() > 1 && s.starts_with('0') {
        u64::from_str_radix(&s[1..], 8).ok()?
    } else {
        s.parse::<u64>().ok()?
    };
    u32::try_from(v).ok()
}

#[cfg(test)]
mod tests {
    use super::parse_u32;

    #[test]
    fn strtoul_base0() {
        assert_eq!(parse_u32("0xdeadbeef"), Some(0xdeadbeef));
        assert_eq!(parse_u32("010"), Some(8));
        assert_eq!(parse_u32("10"), Some(10));
        assert_eq!(parse_u32("0"), Some(0));
        assert_eq!(parse_u32("0x1ffffffff"), None);
        assert_eq!(parse_u32("abc"), None);
    }
}

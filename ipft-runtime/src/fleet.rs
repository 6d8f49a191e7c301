//! A tracer built for several kernels holds one object per kernel; at start
//! it takes the one whose BTF is the running kernel's, else the closest
//! release (and then the compatibility check decides probe by probe).

use ipft_abi::policy::parse_release;

use crate::ProbeSetSpec;

/// `major.minor.patch`.
type Version = (u32, u32, u32);

/// `major.minor.patch` of a release string, for "closest".
fn version(r: &str) -> Option<Version> {
    let (major, minor) = parse_release(r)?;
    let patch = r
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .nth(2)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    Some((major, minor, patch))
}

/// Which object to use and why: by BTF checksum, then by release, then the
/// newest release not newer than the running one (else the oldest).
pub fn choose(
    sets: &[&ProbeSetSpec],
    running_checksum: Option<&str>,
    running_release: Option<&str>,
) -> (usize, String) {
    fn rel(s: &ProbeSetSpec) -> &str {
        s.identity.release.as_deref().unwrap_or("unknown release")
    }
    if let Some(i) = sets
        .iter()
        .position(|s| Some(s.identity.checksum.as_ref()) == running_checksum)
    {
        return (
            i,
            format!(
                "object for {}: its BTF is the running kernel's",
                rel(sets[i])
            ),
        );
    }
    if let Some(i) = sets.iter().position(|s| {
        s.identity.release.is_some() && s.identity.release.as_deref() == running_release
    }) {
        return (
            i,
            format!(
                "object for {}: same release, another BTF (compatibility check on)",
                rel(sets[i])
            ),
        );
    }
    let running = running_release.and_then(version);
    let mut versions: Vec<(usize, Option<Version>)> = sets
        .iter()
        .enumerate()
        .map(|(i, s)| (i, s.identity.release.as_deref().and_then(version)))
        .collect();
    versions.sort_by_key(|(_, v)| *v);
    let pick = match running {
        Some(r) => versions
            .iter()
            .rev()
            .find(|(_, v)| v.is_some_and(|v| v <= r))
            .or(versions.first()),
        None => versions.first(),
    }
    .map_or(0, |(i, _)| *i);
    (
        pick,
        format!(
            "object for {}: no object has the running kernel's BTF; closest release (compatibility check on)",
            rel(sets[pick])
        ),
    )
}

/// `--version`: the tool, then each kernel the tracer was generated for.
pub fn version_text(sets: &[&ProbeSetSpec]) -> String {
    let mut s = format!("{} (generated)", env!("CARGO_PKG_VERSION"));
    for spec in sets {
        let id = &spec.identity;
        let probes: std::collections::HashSet<(&str, Option<&str>)> = spec
            .probes
            .iter()
            .filter(|e| !e.hidden)
            .map(|e| (e.name.as_ref(), e.module.as_deref()))
            .collect();
        s.push_str(&format!(
            "\nkernel {} (BTF checksum {}), profile {}, {} probes",
            id.release.as_deref().unwrap_or("unknown release"),
            id.checksum,
            spec.profile,
            probes.len()
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipft_abi::KernelIdentity;
    use std::borrow::Cow;

    fn spec(release: &'static str, checksum: &'static str) -> ProbeSetSpec {
        ProbeSetSpec {
            object: &[],
            probes: &[],
            identity: KernelIdentity {
                source: Cow::Borrowed("x"),
                checksum: Cow::Borrowed(checksum),
                release: Some(Cow::Borrowed(release)),
            },
            profile: "ip",
            filter: None,
            extension: None,
        }
    }

    #[test]
    fn by_btf_then_release_then_closest() {
        let a = spec("6.1.0-57-cloud-amd64", "aaa");
        let b = spec("6.12.117+deb12-cloud-amd64", "bbb");
        let sets = [&a, &b];
        assert_eq!(choose(&sets, Some("bbb"), Some("whatever")).0, 1);
        let (i, why) = choose(&sets, Some("zzz"), Some("6.1.0-57-cloud-amd64"));
        assert_eq!(i, 0);
        assert!(why.contains("same release"));
        // 6.6: the newest not newer is 6.1; 6.18: 6.12; 5.10: the oldest.
        assert_eq!(choose(&sets, None, Some("6.6.30")).0, 0);
        assert_eq!(choose(&sets, None, Some("6.18.0")).0, 1);
        assert_eq!(choose(&sets, None, Some("5.10.262")).0, 0);
        assert!(
            version_text(&sets).contains("kernel 6.12.117+deb12-cloud-amd64 (BTF checksum bbb)")
        );
    }
}

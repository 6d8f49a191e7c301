//! Profiles: named probe selections kept in profiles/*.toml.
//!
//! ```toml
//! name = "ip"
//! description = "IPv4/IPv6 layer"
//! functions = ["^ip_", "^icmp_"]     # include regexes for functions
//! exclude = ["^ip_vs_"]              # exclude regexes (functions and tracepoints)
//! modules = "^(vmlinux|veth)$"       # module regex (default: every module)
//! tracepoints = ["^net_dev_"]        # include regexes for BTF tracepoints
//! min_kernel = "5.5"                 # optional kernel bounds
//! max_kernel = "7.0"
//! ```

use std::path::Path;

use regex::Regex;
use serde::Deserialize;

use super::{Probe, ProbeKind};
use ipft_abi::policy::parse_release;

/// Profiles shipped in the binary (profiles/*.toml at build time).
pub const SHIPPED: &[(&str, &str)] = &[
    ("all", include_str!("../../../profiles/all.toml")),
    ("bridge", include_str!("../../../profiles/bridge.toml")),
    ("drop", include_str!("../../../profiles/drop.toml")),
    ("ip", include_str!("../../../profiles/ip.toml")),
    (
        "netfilter",
        include_str!("../../../profiles/netfilter.toml"),
    ),
    ("tcp", include_str!("../../../profiles/tcp.toml")),
    (
        "tracepoints",
        include_str!("../../../profiles/tracepoints.toml"),
    ),
    ("udp", include_str!("../../../profiles/udp.toml")),
    ("xmit", include_str!("../../../profiles/xmit.toml")),
];

/// A profile could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    /// Neither a shipped name nor a readable file.
    #[error("unknown profile '{0}' (shipped: {1})")]
    Unknown(String, String),
    /// File unreadable.
    #[error("{0}: {1}")]
    Io(String, #[source] std::io::Error),
    /// Syntax or schema error, with location.
    #[error("{file}:{line}: {msg}")]
    Invalid {
        /// Profile file (or shipped name).
        file: String,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        msg: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    name: String,
    description: String,
    #[serde(default)]
    functions: Vec<String>,
    #[serde(default)]
    exclude: Vec<String>,
    #[serde(default)]
    modules: Option<String>,
    #[serde(default)]
    tracepoints: Vec<String>,
    #[serde(default)]
    min_kernel: Option<String>,
    #[serde(default)]
    max_kernel: Option<String>,
}

/// A validated profile.
#[derive(Debug, Clone)]
pub struct Profile {
    /// Name.
    pub name: String,
    /// One-line description.
    pub description: String,
    functions: Vec<Regex>,
    exclude: Vec<Regex>,
    modules: Option<Regex>,
    tracepoints: Vec<Regex>,
    min_kernel: Option<(u32, u32)>,
    max_kernel: Option<(u32, u32)>,
}

impl Profile {
    /// A shipped name or a path to a TOML file.
    pub fn load(spec: &str) -> Result<Profile, ProfileError> {
        if let Some((_, text)) = SHIPPED.iter().find(|(n, _)| *n == spec) {
            return Profile::parse(&format!("profiles/{spec}.toml"), text);
        }
        let path = Path::new(spec);
        if spec.contains('/') || spec.ends_with(".toml") || path.exists() {
            let text =
                std::fs::read_to_string(path).map_err(|e| ProfileError::Io(spec.into(), e))?;
            return Profile::parse(spec, &text);
        }
        let names: Vec<&str> = SHIPPED.iter().map(|(n, _)| *n).collect();
        Err(ProfileError::Unknown(spec.into(), names.join(", ")))
    }

    /// Parse and validate profile text; `file` names it in errors.
    pub fn parse(file: &str, text: &str) -> Result<Profile, ProfileError> {
        let invalid = |line: usize, msg: String| ProfileError::Invalid {
            file: file.to_string(),
            line,
            msg,
        };
        let raw: Raw = toml::from_str(text).map_err(|e| {
            // An error at the very end (unclosed array) points past the last
            // newline: name the last line instead.
            let last = text.lines().count().max(1);
            let line = e.span().map_or(1, |s| {
                text[..s.start.min(text.len())].matches('\n').count() + 1
            });
            // toml's messages can span lines ("invalid array\nexpected `]`").
            let msg: Vec<&str> = e.message().lines().map(str::trim).collect();
            invalid(line.min(last), msg.join(", "))
        })?;
        // The line of a value: its quoted form first (`"["` must not match
        // the `[` of an earlier array), then the bare text.
        let line_of = |needle: &str| {
            let quoted = [format!("\"{needle}\""), format!("'{needle}'")];
            text.lines()
                .position(|l| quoted.iter().any(|q| l.contains(q.as_str())))
                .or_else(|| text.lines().position(|l| l.contains(needle)))
                .map_or(1, |i| i + 1)
        };
        let compile = |list: &[String]| -> Result<Vec<Regex>, ProfileError> {
            list.iter()
                .map(|r| {
                    Regex::new(r).map_err(|e| {
                        invalid(
                            line_of(r),
                            format!("invalid regex '{r}': {}", last_line(&e)),
                        )
                    })
                })
                .collect()
        };
        let version = |v: &Option<String>| -> Result<Option<(u32, u32)>, ProfileError> {
            match v {
                None => Ok(None),
                Some(s) => parse_release(s).map(Some).ok_or_else(|| {
                    invalid(
                        line_of(s),
                        format!("bad kernel version '{s}' (want MAJOR.MINOR)"),
                    )
                }),
            }
        };
        if raw.functions.is_empty() && raw.tracepoints.is_empty() {
            return Err(invalid(
                1,
                "profile selects nothing: set `functions` or `tracepoints`".into(),
            ));
        }
        if raw.name.is_empty() {
            return Err(invalid(line_of("name"), "empty name".into()));
        }
        Ok(Profile {
            functions: compile(&raw.functions)?,
            exclude: compile(&raw.exclude)?,
            modules: match &raw.modules {
                None => None,
                Some(m) => Some(Regex::new(m).map_err(|e| {
                    invalid(
                        line_of(m),
                        format!("invalid regex '{m}': {}", last_line(&e)),
                    )
                })?),
            },
            tracepoints: compile(&raw.tracepoints)?,
            min_kernel: version(&raw.min_kernel)?,
            max_kernel: version(&raw.max_kernel)?,
            name: raw.name,
            description: raw.description,
        })
    }

    /// Whether the profile applies to a kernel release (unknown: yes).
    pub fn supports_release(&self, release: Option<&str>) -> bool {
        let Some(v) = release.and_then(parse_release) else {
            return true;
        };
        self.min_kernel.is_none_or(|m| v >= m) && self.max_kernel.is_none_or(|m| v <= m)
    }

    /// Whether the profile has any tracepoint selection.
    pub fn has_tracepoints(&self) -> bool {
        !self.tracepoints.is_empty()
    }

    /// Whether the profile selects a probe.
    pub fn keeps(&self, p: &Probe, release: Option<&str>) -> bool {
        if !self.supports_release(release) {
            return false;
        }
        let module = p.module.as_deref().unwrap_or("vmlinux");
        if self.modules.as_ref().is_some_and(|m| !m.is_match(module)) {
            return false;
        }
        let include = match p.kind {
            ProbeKind::Function => &self.functions,
            ProbeKind::Tracepoint => &self.tracepoints,
        };
        include.iter().any(|r| r.is_match(&p.name))
            && !self.exclude.iter().any(|r| r.is_match(&p.name))
    }
}

fn last_line(e: &regex::Error) -> String {
    e.to_string()
        .lines()
        .last()
        .unwrap_or("")
        .trim()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_profiles_parse() {
        for (name, text) in SHIPPED {
            let p = Profile::parse(name, text).unwrap();
            assert_eq!(&p.name, name);
        }
    }

    #[test]
    fn errors_name_the_line() {
        let e = Profile::parse(
            "x.toml",
            "name = \"x\"\ndescription = \"d\"\nfunctions = [\"(\"]\n",
        )
        .unwrap_err();
        assert!(e.to_string().starts_with("x.toml:3: invalid regex"), "{e}");
        let e =
            Profile::parse("x.toml", "name = \"x\"\ndescription = \"d\"\nbogus = 1\n").unwrap_err();
        assert!(e.to_string().starts_with("x.toml:3:"), "{e}");
        let e = Profile::parse("x.toml", "name = \"x\"\ndescription = \"d\"\n").unwrap_err();
        assert!(e.to_string().contains("selects nothing"), "{e}");
        assert!(matches!(
            Profile::load("nope"),
            Err(ProfileError::Unknown(..))
        ));
    }

    #[test]
    fn selection() {
        let p = Profile::parse("t", "name=\"t\"\ndescription=\"d\"\nfunctions=[\"^ip_\"]\nexclude=[\"^ip_vs\"]\nmodules=\"^vmlinux$\"\nmin_kernel=\"6.1\"\n").unwrap();
        let f = |n: &str, m: Option<&str>| Probe {
            name: n.into(),
            module: m.map(Into::into),
            skb_positions: vec![0],
            ..Default::default()
        };
        assert!(p.keeps(&f("ip_rcv", None), Some("6.1.0")));
        assert!(!p.keeps(&f("ip_rcv", None), Some("5.10.0")));
        assert!(!p.keeps(&f("ip_vs_in", None), None));
        assert!(!p.keeps(&f("ip_rcv", Some("veth")), None));
    }
}

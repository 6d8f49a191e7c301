//! Profile parsing on arbitrary input: Ok or one error naming the file,
//! never a panic. Bounded: a fixed number of cases.

use ipft_gen::probe::Profile;
use proptest::prelude::*;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 2000,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Lines that look like profile TOML, shuffled and cut.
fn tomlish() -> impl Strategy<Value = String> {
    let line = prop_oneof![
        Just("name = \"x\"".to_string()),
        Just("description = \"d\"".to_string()),
        Just("functions = [\"^ip_\", \"^icmp\"]".to_string()),
        Just("functions = [\"(\"]".to_string()),
        Just("exclude = [\"^ip_vs_\"]".to_string()),
        Just("modules = \"^vmlinux$\"".to_string()),
        Just("modules = 7".to_string()),
        Just("tracepoints = [\"^kfree_skb$\"]".to_string()),
        Just("tracepoints = \"x\"".to_string()),
        "[ -~]{0,40}",
    ];
    prop::collection::vec(line, 0..12).prop_map(|l| l.join("\n"))
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,200}") {
        if let Err(e) = Profile::parse("fuzz.toml", &text) {
            prop_assert!(e.to_string().contains("fuzz.toml"), "{e}");
        }
    }

    #[test]
    fn profile_shaped_text_never_panics(text in tomlish()) {
        if let Err(e) = Profile::parse("fuzz.toml", &text) {
            prop_assert!(e.to_string().contains("fuzz.toml"), "{e}");
        }
    }
}

//! Golden files for the babblevoice, Twilio and lab profiles; every generated ruleset is
//! accepted by the kernel (`nft -c` in a scratch network namespace), and the JSON form loads
//! into exactly the same ruleset as the text form.
//!
//! Regenerate after an intended change with `UPDATE_GOLDEN=1 cargo test -p voxgate-firewall`
//! and review the diff.

use std::path::{Path, PathBuf};
use std::process::Command;

const BASE: &str = "\
site: {name: golden}
interfaces:
  wan: {device: wan0}
  lan: {device: lan0, vlan: 100, address: 10.100.0.1/24}
management:
  ssh_from: [192.168.77.0/24]
provider:
  profile: PROFILE
";

fn loaded(profile: &str, extra: &str) -> config::Loaded {
    let text = BASE.replace("PROFILE", profile) + extra;
    config::load_str(Path::new("golden.yaml"), &text, &[]).unwrap_or_else(|e| panic!("{e}"))
}

fn golden(name: &str, actual: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap();
    }
    let want = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        want == actual,
        "{name} differs from the golden file (UPDATE_GOLDEN=1 to accept):\n{actual}"
    );
}

/// Runs a shell snippet in a fresh, throw-away network namespace.
fn in_scratch_netns(script: &str) -> String {
    lab::require_root().unwrap();
    let out = Command::new("unshare")
        .args(["--net", "sh", "-ec", script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{script}\nfailed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn check_in_kernel(policy: &firewall::Policy) {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("rules.nft");
    let json = dir.path().join("rules.json");
    std::fs::write(&text, policy.table.to_nft()).unwrap();
    std::fs::write(
        &json,
        serde_json::to_string(&policy.table.to_json().unwrap()).unwrap(),
    )
    .unwrap();
    in_scratch_netns(&format!("nft -c -f {}", text.display()));
    let from_text = in_scratch_netns(&format!(
        "nft -f {} && nft list table inet voxgate",
        text.display()
    ));
    let from_json = in_scratch_netns(&format!(
        "nft -j -f {} && nft list table inet voxgate",
        json.display()
    ));
    // nft 1.0.6 drops a ct timeout's policy map when reading JSON (its own JSON listing has
    // it); compare those lines through nft's JSON listing instead.
    let no_policy = |s: &str| {
        s.lines()
            .filter(|l| !l.contains("policy = {"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(
        no_policy(&from_text),
        no_policy(&from_json),
        "JSON and text forms load different rulesets"
    );
    let listed: serde_json::Value = serde_json::from_str(&in_scratch_netns(&format!(
        "nft -f {} && nft -j list table inet voxgate",
        text.display()
    )))
    .unwrap();
    let timeouts = |items: &[serde_json::Value], key: &str| -> Vec<serde_json::Value> {
        items
            .iter()
            .filter_map(|i| {
                i.get(key)
                    .and_then(|o| o.get("ct timeout"))
                    .or_else(|| i.get("ct timeout"))
            })
            .map(|o| {
                let mut o = o.clone();
                o.as_object_mut().unwrap().remove("handle");
                o
            })
            .collect()
    };
    let ours = policy.table.to_json().unwrap();
    assert_eq!(
        timeouts(ours["nftables"].as_array().unwrap(), "add"),
        timeouts(listed["nftables"].as_array().unwrap(), "-"),
        "ct timeout objects differ from nft's own JSON"
    );
}

#[test]
fn babblevoice() {
    let p = firewall::generate(&loaded("babblevoice", ""));
    golden("babblevoice.nft", &p.table.to_nft());
    golden(
        "babblevoice.explain.md",
        &firewall::report::explain(
            &p,
            "babblevoice at golden",
            firewall::report::Format::Markdown,
        ),
    );
    check_in_kernel(&p);
}

#[test]
fn twilio_with_turn_and_forwarding() {
    let extra =
        "turn: {enabled: true, expose_on_wan: true}\nfirewall: {forward_to_provider: true}\n";
    let extra = &format!("  overrides: {{}}\n{extra}");
    let p = firewall::generate(&loaded("twilio", extra));
    golden("twilio.nft", &p.table.to_nft());
    check_in_kernel(&p);
}

#[test]
fn lab() {
    let p = firewall::generate(&config::load_ref("@lab").unwrap());
    golden("lab.nft", &p.table.to_nft());
    check_in_kernel(&p);
}

#[test]
fn output_is_deterministic_and_order_independent() {
    let a = firewall::generate(&loaded("babblevoice", ""));
    let b = firewall::generate(&loaded("babblevoice", ""));
    assert_eq!(a.table.to_nft(), b.table.to_nft());
    // The same networks listed in another order, with an overlap, give the same sets.
    let extra = "  overrides:\n    extra_networks: [18.200.220.239, 109.169.89.209]\n";
    let c = firewall::generate(&loaded("babblevoice", extra));
    let set = |p: &firewall::Policy| {
        p.table
            .sets
            .iter()
            .find(|s| s.name == "provider_v4")
            .unwrap()
            .elements
            .clone()
    };
    assert_eq!(
        set(&a),
        set(&c),
        "covered networks fold into the published ones"
    );
}

#[test]
fn every_rule_says_why() {
    for profile in ["babblevoice", "twilio", "lab"] {
        let p = firewall::generate(&loaded(profile, "turn: {enabled: true}\n"));
        for c in &p.table.chains {
            for r in &c.rules {
                assert!(
                    !r.comment.is_empty() && r.comment.len() <= 128,
                    "{profile}/{}: {:?}",
                    c.name,
                    r.comment
                );
            }
        }
        let text = p.table.to_nft();
        assert!(
            !text.contains("ct helper"),
            "no conntrack helper may ever be attached"
        );
    }
}

#[test]
fn diff_shows_flows_and_networks_not_syntax() {
    let old = firewall::generate(&loaded("babblevoice", ""));
    let new = firewall::generate(&loaded(
        "babblevoice",
        "  overrides:\n    extra_networks: [203.0.113.0/28]\nturn: {enabled: true}\n",
    ));
    let d = firewall::report::diff(&old, &new);
    assert_eq!(
        d.networks_added,
        vec![("provider".to_string(), "203.0.113.0/28".to_string())]
    );
    assert!(d.networks_removed.is_empty() && d.flows_removed.is_empty());
    let added: Vec<&str> = d.flows_added.iter().map(|f| f.purpose.as_str()).collect();
    assert_eq!(
        added,
        vec!["STUN/TURN for softphones", "TURN relayed media"]
    );
    let text = firewall::report::diff_text(&d);
    assert!(
        text.contains("+ network 203.0.113.0/28 (set provider)"),
        "{text}"
    );
    assert!(firewall::report::diff(&old, &old).is_empty());
}

#[test]
fn explain_formats() {
    let p = firewall::generate(&loaded("babblevoice", ""));
    let text = firewall::report::explain(&p, "t", firewall::report::Format::Text);
    assert!(
        text.contains("SIP signalling") && text.contains("109.169.89.208/28"),
        "{text}"
    );
    let html = firewall::report::explain(&p, "a <b> site", firewall::report::Format::Html);
    assert!(html.starts_with("<!DOCTYPE html>") && html.contains("a &lt;b&gt; site"));
    assert_eq!(
        html.matches("<tr>").count(),
        p.flows.len() + 1 + p.networks.len() + 1
    );
}

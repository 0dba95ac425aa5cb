use super::*;
use proptest::prelude::*;

/// A config.json as balenaOS writes it (one line, many supervisor keys fleetOS does not model).
const BALENA_STYLE: &str = r#"{"applicationName":"fleet-app","applicationId":1234567,"deviceType":"raspberrypi4-64","userId":42,"username":"gh_someone","appUpdatePollInterval":900000,"listenPort":48484,"vpnPort":443,"apiEndpoint":"https://api.balena-cloud.com","vpnEndpoint":"vpn.balena-cloud.com","registryEndpoint":"registry2.balena-cloud.com","deltaEndpoint":"https://delta.balena-cloud.com","mixpanelToken":"9ef939ea64cb6cd8bbc96af72345d70d","hostname":"fleet-one","persistentLogging":false,"developmentMode":false,"os":{"sshKeys":["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGb5m0U4q1f0hY0Jp6s2C3kz2vW4m6xw0S0yQn1m3y7Q me@laptop"],"network":{"connectivity":{"uri":"https://api.balena-cloud.com/connectivity-check","interval":"3600"}}},"ntpServers":"0.pool.ntp.org 1.pool.ntp.org","dnsServers":"8.8.8.8 1.1.1.1","uuid":"f3c7b1a0e4d24b7d9a8e6c5b4a3f2e1d","deviceApiKey":"4e2b6a1c9d8f7e6a5b4c3d2e1f0a9b8c","registered_at":1700000000000,"deviceId":987654,"installer":{"secureboot":false}}"#;

#[test]
fn balena_file_round_trips_byte_for_byte() {
    let c = Config::from_slice(BALENA_STYLE.as_bytes()).unwrap();
    assert_eq!(c.to_bytes(), format!("{BALENA_STYLE}\n").into_bytes());
    let s = c.settings();
    // balena's VPN keys are read; the VPN itself stays off without fleet.vpn.enabled.
    assert_eq!(
        s.supervisor.vpn_endpoint.as_deref(),
        Some("vpn.balena-cloud.com")
    );
    assert_eq!(s.supervisor.vpn_port, Some(443));
    assert!(!s.fleet.vpn_enabled);
    assert_eq!(s.hostname.as_deref(), Some("fleet-one"));
    assert_eq!(s.ntp_servers, ["0.pool.ntp.org", "1.pool.ntp.org"]);
    assert_eq!(
        s.dns_servers.as_deref(),
        Some(&["8.8.8.8".to_string(), "1.1.1.1".to_string()][..])
    );
    assert_eq!(s.supervisor.application_id.as_deref(), Some("1234567"));
    assert_eq!(s.supervisor.listen_port, Some(48484));
    assert_eq!(s.connectivity.as_ref().unwrap().interval, 3600);
    assert!(c.warnings().is_empty(), "{:?}", c.warnings());
}

#[test]
fn modify_keeps_unknown_keys_in_place_and_order() {
    let mut c = Config::from_slice(BALENA_STYLE.as_bytes()).unwrap();
    c.set(&["hostname"], "renamed".into()).unwrap();
    c.set(&["fleet", "logging", "maxUse"], "64M".into())
        .unwrap();
    let out = String::from_utf8(c.to_bytes()).unwrap();
    let expected = BALENA_STYLE
        .replace(r#""hostname":"fleet-one""#, r#""hostname":"renamed""#)
        .strip_suffix('}')
        .unwrap()
        .to_string()
        + r#","fleet":{"logging":{"maxUse":"64M"}}}"#;
    assert_eq!(out.trim_end(), expected);
}

#[test]
fn refused_edit_leaves_config_unchanged() {
    let mut c = Config::from_slice(BALENA_STYLE.as_bytes()).unwrap();
    let before = c.clone();
    let err = c.set(&["hostname"], "not valid!".into()).unwrap_err();
    assert_eq!(err[0].path, "hostname");
    assert_eq!(c, before);
}

#[test]
fn every_problem_is_reported_with_its_path() {
    let bad = br#"{"hostname":"-x","persistentLogging":"yes","os":{"sshKeys":["nope"]},
        "dnsServers":"8.8.8.8 not-an-ip","fleet":{"network":{"wifi":[{"ssid":"home","psk":"short"}]},"bogus":1}}"#;
    let problems = Config::from_slice(bad).unwrap_err();
    let errors: Vec<_> = problems
        .iter()
        .filter(|p| p.severity == Severity::Error)
        .map(|p| p.path.as_str())
        .collect();
    assert_eq!(
        errors,
        [
            "hostname",
            "persistentLogging",
            "dnsServers[1]",
            "os.sshKeys[0]",
            "fleet.network.wifi[0].psk"
        ]
    );
    let warnings: Vec<_> = problems
        .iter()
        .filter(|p| p.severity == Severity::Warning)
        .map(|p| p.path.as_str())
        .collect();
    assert_eq!(warnings, ["fleet.bogus"]);
    // The rejected passphrase is never echoed.
    assert!(!problems.iter().any(|p| p.message.contains("short")));
}

#[test]
fn warnings_do_not_refuse() {
    let c = Config::from_slice(br#"{"fleet":{"typo":true},"os":{"fan":{}}}"#).unwrap();
    let paths: Vec<_> = c.warnings().iter().map(|p| p.path.as_str()).collect();
    assert_eq!(paths, ["os.fan", "fleet.typo"]);
}

#[test]
fn supervisor_root_ca_keys_are_known() {
    let c = Config::from_slice(
        br#"{"balenaRootCA":"LS0t","fleet":{"supervisor":{"image":"a/b:1","rootCA":"LS0t"}}}"#,
    )
    .unwrap();
    assert!(c.warnings().is_empty(), "{:?}", c.warnings());
}

#[test]
fn duplicate_keys_utf8_size_and_syntax() {
    let dup = Config::from_slice(br#"{"a":1,"os":{"sshKeys":[],"sshKeys":[]},"a":2}"#).unwrap_err();
    let paths: Vec<_> = dup.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(paths, ["os.sshKeys", "a"]);

    let utf8 = Config::from_slice(b"{\"hostname\":\"\xff\"}").unwrap_err();
    assert!(
        utf8[0].message.contains("invalid UTF-8 at byte 13"),
        "{}",
        utf8[0]
    );

    let big = vec![b' '; MAX_CONFIG_BYTES + 1];
    assert!(
        Config::from_slice(&big).unwrap_err()[0]
            .message
            .contains("larger")
    );

    let syntax = Config::from_slice(b"{\n  \"hostname\": \"x\",\n}").unwrap_err();
    assert!(syntax[0].message.contains("line 3"), "{}", syntax[0]);

    let array = Config::from_slice(b"[]").unwrap_err();
    assert!(array[0].message.contains("must be a JSON object"));
}

#[test]
fn balena_null_dns_disables_default() {
    let c = Config::from_slice(br#"{"dnsServers":"null"}"#).unwrap();
    assert_eq!(c.settings().dns_servers, Some(vec![]));
}

#[test]
fn load_missing_is_none_and_invalid_names_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("config.json");
    assert!(Config::load(&p).unwrap().is_none());
    std::fs::write(&p, br#"{"hostname":5}"#).unwrap();
    let err = Config::load(&p).unwrap_err().to_string();
    assert!(
        err.contains("config.json") && err.contains("hostname: must be a string"),
        "{err}"
    );
}

fn label() -> impl Strategy<Value = String> {
    "[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?"
}

prop_compose! {
    fn valid_doc()(
        hostname in proptest::option::of(label()),
        persistent in any::<bool>(),
        dev in proptest::option::of(any::<bool>()),
        ntp in proptest::collection::vec(label(), 0..3),
        dns in proptest::collection::vec((0u8..=255, 0u8..=255), 0..3),
        wifi in proptest::collection::vec(("[a-zA-Z0-9 ]{1,32}", proptest::option::of("[a-zA-Z0-9]{8,63}"), any::<bool>(), -5i32..5), 0..3),
        extra in proptest::collection::btree_map("x[a-z]{1,8}", any::<i64>(), 0..4),
    ) -> serde_json::Value {
        let mut doc = serde_json::Map::new();
        for (k, v) in extra { doc.insert(k, v.into()); }
        if let Some(h) = hostname { doc.insert("hostname".into(), h.into()); }
        doc.insert("persistentLogging".into(), persistent.into());
        if let Some(d) = dev { doc.insert("developmentMode".into(), d.into()); }
        if !ntp.is_empty() { doc.insert("ntpServers".into(), ntp.join(" ").into()); }
        if !dns.is_empty() {
            let ips: Vec<String> = dns.iter().map(|(a, b)| format!("10.{a}.{b}.1")).collect();
            doc.insert("dnsServers".into(), ips.join(" ").into());
        }
        let mut seen = std::collections::HashSet::new();
        let wifi: Vec<serde_json::Value> = wifi.into_iter().filter(|w| seen.insert(w.0.clone())).map(|(ssid, psk, hidden, priority)| {
            let mut w = serde_json::json!({"ssid": ssid, "hidden": hidden, "priority": priority});
            if let Some(p) = psk { w["psk"] = p.into(); }
            w
        }).collect();
        if !wifi.is_empty() { doc.insert("fleet".into(), serde_json::json!({"network": {"wifi": wifi}})); }
        serde_json::Value::Object(doc)
    }
}

proptest! {
    #[test]
    fn serialise_then_parse_is_identity(doc in valid_doc(), pretty in any::<bool>()) {
        let bytes = if pretty { serde_json::to_vec_pretty(&doc) } else { serde_json::to_vec(&doc) }.unwrap();
        let first = Config::from_slice(&bytes).unwrap();
        let again = Config::from_slice(&first.to_bytes()).unwrap();
        prop_assert_eq!(&again, &first);
        prop_assert_eq!(again.to_bytes(), first.to_bytes());
        prop_assert_eq!(serde_json::Value::Object(again.document().clone()), doc);
    }
}

/// Corpus files with random byte edits: the parser never panics, and whatever it accepts
/// round-trips (the stable-toolchain twin of the `config_parse` fuzz target).
fn mutated_corpus() -> impl Strategy<Value = Vec<u8>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../tests/data/config");
    let mut seeds: Vec<Vec<u8>> = vec![BALENA_STYLE.as_bytes().to_vec()];
    for sub in ["valid", "invalid", "invalid-beyond-schema"] {
        if let Ok(entries) = std::fs::read_dir(dir.join(sub)) {
            seeds.extend(
                entries
                    .flatten()
                    .filter_map(|e| std::fs::read(e.path()).ok()),
            );
        }
    }
    (
        proptest::sample::select(seeds),
        proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 0..8),
    )
        .prop_map(|(mut bytes, edits)| {
            for (at, byte, op) in edits {
                if bytes.is_empty() {
                    bytes.push(byte);
                    continue;
                }
                let i = at.index(bytes.len());
                match op {
                    0 => bytes[i] = byte,
                    1 => bytes.insert(i, byte),
                    _ => {
                        bytes.remove(i);
                    }
                }
            }
            bytes
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]
    #[test]
    fn mutated_input_never_panics_and_accepted_round_trips(bytes in mutated_corpus()) {
        if let Ok(c) = Config::from_slice(&bytes) {
            let again = Config::from_slice(&c.to_bytes()).unwrap();
            prop_assert_eq!(again.settings(), c.settings());
            prop_assert_eq!(again.document(), c.document());
        }
    }
}

#[test]
fn header_values_are_visible_ascii_and_bounded() {
    let bad = br#"{"uuid":"abcdef","deviceApiKey":"key\r\nX-Injected: 1","apiEndpoint":"https://api.example/\u00e9"}"#;
    let problems = Config::from_slice(bad).unwrap_err();
    let errors: Vec<(&str, &str)> = problems
        .iter()
        .filter(|p| p.severity == Severity::Error)
        .map(|p| (p.path.as_str(), p.message.as_str()))
        .collect();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(
        errors
            .iter()
            .any(|(p, m)| *p == "deviceApiKey" && m.contains("HTTP header"))
    );
    assert!(
        errors
            .iter()
            .any(|(p, m)| *p == "apiEndpoint" && m.contains("HTTP header"))
    );
    // The key itself is never echoed.
    assert!(!problems.iter().any(|p| p.message.contains("X-Injected")));
    let long = format!(
        r#"{{"uuid":"{}","deviceApiKey":"{}"}}"#,
        "a".repeat(65),
        "k".repeat(257)
    );
    let paths: Vec<String> = Config::from_slice(long.as_bytes())
        .unwrap_err()
        .iter()
        .map(|p| format!("{}: {}", p.path, p.message))
        .collect();
    assert_eq!(
        paths,
        [
            "uuid: is 65 bytes long, at most 64",
            "deviceApiKey: is 257 bytes long, at most 256"
        ]
    );
}

#[test]
fn load_reads_the_replacement_a_power_cut_left_on_fat() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.json");
    // Half-written config.json next to the whole, flushed replacement: the replacement wins.
    std::fs::write(&path, br#"{"hostname":"ha"#).unwrap();
    std::fs::write(
        dir.path().join("config.json.fleet-next"),
        br#"{"hostname":"after"}"#,
    )
    .unwrap();
    // A replacement still being written is never read.
    std::fs::write(dir.path().join("config.json.fleet-tmp"), br#"{"host"#).unwrap();
    let c = Config::load(&path).unwrap().unwrap();
    assert_eq!(c.settings().hostname.as_deref(), Some("after"));
    std::fs::remove_file(dir.path().join("config.json.fleet-next")).unwrap();
    std::fs::write(&path, br#"{"hostname":"plain"}"#).unwrap();
    let c = Config::load(&path).unwrap().unwrap();
    assert_eq!(c.settings().hostname.as_deref(), Some("plain"));
}

#[test]
fn save_replaces_the_file_and_leaves_no_side_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.json");
    std::fs::write(&path, br#"{"uuid":"ab","apiKey":"prov"}"#).unwrap();
    let mut c = Config::load(&path).unwrap().unwrap();
    assert_eq!(
        c.settings().supervisor.provisioning_key.as_deref(),
        Some("prov")
    );
    c.remove(&["apiKey"]).unwrap();
    c.set(&["deviceApiKey"], "dev".into()).unwrap();
    c.save(&path).unwrap();
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "{\"uuid\":\"ab\",\"deviceApiKey\":\"dev\"}\n"
    );
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["config.json"]);
}

#[test]
fn save_finishes_a_replacement_a_power_cut_left_before_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.json");
    // Cut after NAME was removed: only the durable `.fleet-next` holds the content.
    std::fs::write(
        dir.path().join("config.json.fleet-next"),
        b"{\"uuid\":\"cd\"}\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("config.json.fleet-tmp"), b"{\"half").unwrap();
    let c = Config::load(&path).unwrap().unwrap();
    assert_eq!(c.settings().supervisor.uuid.as_deref(), Some("cd"));
    c.save(&path).unwrap();
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "{\"uuid\":\"cd\"}\n"
    );
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn an_empty_replacement_is_the_entry_of_an_unfinished_vfat_rename() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.json");
    // What Linux's vfat leaves when a cut comes after the rename's directory entry but
    // before the renamed file's inode: an empty `.fleet-next` beside the intact file.
    std::fs::write(&path, b"{\"uuid\":\"ab\"}\n").unwrap();
    std::fs::write(dir.path().join("config.json.fleet-next"), b"").unwrap();
    let c = Config::load(&path).unwrap().unwrap();
    assert_eq!(c.settings().supervisor.uuid.as_deref(), Some("ab"));
    c.save(&path).unwrap();
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "{\"uuid\":\"ab\"}\n"
    );
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn registration_keys_are_read_and_null_api_key_is_absent() {
    let c = Config::from_slice(br#"{"apiKey":null,"registered_at":"1733360000000","deviceId":42}"#)
        .unwrap();
    let s = &c.settings().supervisor;
    assert_eq!(s.provisioning_key, None);
    assert_eq!(s.registered_at, Some(1_733_360_000_000));
    assert_eq!(s.device_id, Some(42));
    let bad = Config::from_slice(br#"{"deviceId":"x"}"#).unwrap_err();
    assert!(bad[0].to_string().contains("deviceId"), "{}", bad[0]);
}

#[test]
fn vpn_switch_and_string_port() {
    let c = Config::from_slice(
        br#"{"vpnEndpoint":"10.9.0.1","vpnPort":"1194","fleet":{"vpn":{"enabled":true}}}"#,
    )
    .unwrap();
    let s = c.settings();
    assert!(s.fleet.vpn_enabled);
    assert_eq!(s.supervisor.vpn_endpoint.as_deref(), Some("10.9.0.1"));
    assert_eq!(s.supervisor.vpn_port, Some(1194));
}

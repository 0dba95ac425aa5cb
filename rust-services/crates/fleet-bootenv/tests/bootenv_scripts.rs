//! The boot-state model (`BootState::next_boot`, used by the boot-loop tests) against the
//! bootloader scripts' own text: both scripts must count down exactly 1..=9 → n-1 and roll
//! back otherwise, and read/write the variable names the model uses.

use std::collections::BTreeMap;
use std::path::PathBuf;

use fleet_bootenv::{BootState, Slot, VAR_ACTIVE, VAR_TRIES, VAR_TRY};

fn layer_file(rel: &str) -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../meta-fleet")
        .join(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// `N -> M` pairs of the countdown chain, whatever the script's quoting.
fn countdown(script: &str, set_tries: &str) -> BTreeMap<u32, u32> {
    let mut map = BTreeMap::new();
    for line in script.lines() {
        let Some(rest) = line
            .split("fleet_tries}\" = \"")
            .nth(1)
            .or_else(|| line.split("fleet_tries\" = \"").nth(1))
        else {
            continue;
        };
        let from: u32 = rest[..1].parse().unwrap();
        let to_at = line
            .find(set_tries)
            .unwrap_or_else(|| panic!("no {set_tries} in {line}"))
            + set_tries.len();
        let to: u32 = line[to_at..to_at + 1].parse().unwrap();
        assert!(
            line.contains("fleet_try"),
            "{line}: does not boot the trial slot"
        );
        map.insert(from, to);
    }
    map
}

fn model() -> BTreeMap<u32, u32> {
    (0..=12)
        .filter_map(|n| {
            let s = BootState {
                active: Slot::A,
                trial: Some(Slot::B),
                tries: n,
            };
            let (slot, next) = s.next_boot();
            (slot == Slot::B).then_some((n, next.tries))
        })
        .collect()
}

#[test]
fn grub_script_counts_down_like_the_model() {
    let s = layer_file("recipes-bsp/grub/files/grub-fleet.cfg.in");
    assert_eq!(countdown(&s, "set fleet_tries="), model());
    let load = format!("load_env --file \"$fleet_env\" {VAR_ACTIVE} {VAR_TRY} {VAR_TRIES}");
    assert!(s.contains(&load), "{load}");
    assert!(s.contains("save_env --file \"$fleet_env\" fleet_try fleet_tries"));
    assert!(s.contains("if [ \"$fleet_active\" != \"B\" ]; then\n  set fleet_active=A"));
}

#[test]
fn uboot_script_counts_down_like_the_model() {
    let s = layer_file("recipes-bsp/u-boot/files/boot.cmd.in");
    assert_eq!(countdown(&s, "setenv fleet_tries "), model());
    assert!(s.contains("if test \"${fleet_active}\" != \"B\"; then\n  setenv fleet_active A"));
    assert!(
        s.contains("setenv fleet_try\n"),
        "rollback must delete fleet_try"
    );
}

#[test]
fn uboot_script_keeps_only_fleet_variables_in_two_copies_of_the_boot_device() {
    let s = layer_file("recipes-bsp/u-boot/files/boot.cmd.in");
    let code: String = s
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(!code.contains("saveenv"), "saveenv writes every variable");
    assert!(!code.contains("mmc 0"), "a fixed device");
    let vars = fleet_bootenv::fleet_env::VARS.join(" ");
    assert!(
        code.contains(&format!("setenv fleet_vars \"{vars}\"")),
        "{vars}"
    );
    assert!(code.contains("env export -c -s 0x1000 ${fleet_buf} ${fleet_vars}"));
    assert!(code.contains("env import -c ${fleet_buf} 0x1000 ${fleet_vars}"));
    assert_eq!(fleet_bootenv::fleet_env::SIZE, 0x1000);
    for f in ["fleet-a.env", "fleet-b.env"] {
        assert!(code.contains(&format!(
            "load ${{devtype}} ${{fleet_dev}} ${{fleet_buf}} {f}"
        )));
    }
    assert!(code.contains("setenv fleet_dev \"${devnum}:${distro_bootpart}\""));
    assert!(
        !code.contains("'${"),
        "hush does not expand inside single quotes"
    );
}

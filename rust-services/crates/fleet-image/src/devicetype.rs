//! Device-type recognition from `conf/device-types/*.json` (built in).

use serde_json::Value;

use crate::table::Table;

const BUILT_IN: &[&str] = &[
    include_str!("../../../../conf/device-types/qemux86-64.json"),
    include_str!("../../../../conf/device-types/raspberrypi4-64.json"),
    include_str!("../../../../conf/device-types/raspberrypi5.json"),
];

pub struct DeviceType {
    pub slug: String,
    pub name: String,
    pub partition_table: String,
    pub boot_partition: u32,
    pub boot_state_file: String,
}

pub fn all() -> Vec<DeviceType> {
    BUILT_IN
        .iter()
        .filter_map(|text| serde_json::from_str::<Value>(text).ok())
        .map(|v| {
            let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
            DeviceType {
                slug: s("slug"),
                name: s("name"),
                partition_table: s("partitionTable"),
                boot_partition: v
                    .pointer("/bootPartition/number")
                    .and_then(Value::as_u64)
                    .and_then(|n| u32::try_from(n).ok())
                    .unwrap_or(1),
                boot_state_file: s("bootStateFile"),
            }
        })
        .collect()
}

/// Files worth probing on a boot partition to tell device types apart.
pub fn probe_files() -> Vec<String> {
    let mut v: Vec<String> = all().into_iter().map(|d| d.boot_state_file).collect();
    v.sort();
    v.dedup();
    v
}

/// The device types an image can be: `deviceType` in config.json wins; otherwise those whose
/// partition table kind matches and whose boot-state file is on the boot partition (or, when
/// none has it, every one with the matching table kind, but only for a fleetOS boot partition
/// (`fleet_boot`): another system's MBR image, Raspberry Pi OS say, is none of them).
pub fn recognise(
    table: &Table,
    config_type: Option<&str>,
    present: &[String],
    fleet_boot: bool,
) -> Vec<String> {
    let types = all();
    if let Some(t) = config_type
        && types.iter().any(|d| d.slug == t)
    {
        return vec![t.to_string()];
    }
    let same_table: Vec<&DeviceType> = types
        .iter()
        .filter(|d| d.partition_table == table.kind.as_str())
        .filter(|d| table.get(d.boot_partition).is_some())
        .collect();
    let with_file: Vec<&DeviceType> = same_table
        .iter()
        .copied()
        .filter(|d| present.contains(&d.boot_state_file))
        .collect();
    let chosen = if !with_file.is_empty() {
        with_file
    } else if fleet_boot {
        same_table
    } else {
        Vec::new()
    };
    chosen.into_iter().map(|d| d.slug.clone()).collect()
}

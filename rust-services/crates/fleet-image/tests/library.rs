//! Library behaviour that needs no external tools (the tools suite is tests/image/run).

use std::io::{Cursor, Seek, SeekFrom, Write};

use fleet_image::bootfs::{Edits, Slice};
use fleet_image::table::{Kind, Table, TableError};

fn entry(sector: &mut [u8], slot: usize, kind: u8, lba: u32, count: u32) {
    let e = &mut sector[446 + slot * 16..446 + (slot + 1) * 16];
    e[4] = kind;
    e[8..12].copy_from_slice(&lba.to_le_bytes());
    e[12..16].copy_from_slice(&count.to_le_bytes());
}

/// MBR: boot, rootA, rootB, extended 4 holding logical 5 and 6 (two chained EBRs).
fn rpi_mbr() -> Vec<u8> {
    let mut disk = vec![0u8; 2000 * 512];
    let sig = |s: &mut [u8]| s[510..512].copy_from_slice(&[0x55, 0xAA]);
    let mbr = &mut disk[..512];
    entry(mbr, 0, 0x0C, 8, 100);
    entry(mbr, 1, 0x83, 108, 100);
    entry(mbr, 2, 0x83, 208, 100);
    entry(mbr, 3, 0x05, 400, 1000);
    sig(mbr);
    let ebr1 = &mut disk[400 * 512..401 * 512];
    entry(ebr1, 0, 0x83, 2, 50);
    entry(ebr1, 1, 0x05, 100, 60);
    sig(ebr1);
    let ebr2 = &mut disk[500 * 512..501 * 512];
    entry(ebr2, 0, 0x83, 2, 50);
    sig(ebr2);
    disk
}

#[test]
fn mbr_with_logical_partitions() {
    let t = Table::read(&mut Cursor::new(rpi_mbr())).unwrap();
    assert_eq!(t.kind, Kind::Mbr);
    let numbers: Vec<u32> = t.partitions.iter().map(|p| p.number).collect();
    assert_eq!(numbers, [1, 2, 3, 4, 5, 6]);
    let p5 = t.get(5).unwrap();
    assert!(p5.logical);
    assert_eq!(p5.start, 402 * 512);
    assert_eq!(t.get(6).unwrap().start, 502 * 512);
    assert_eq!(t.min_disk_size, 1400 * 512);
}

#[test]
fn head_only_parse_keeps_primaries() {
    let disk = rpi_mbr();
    let t = Table::from_head(&disk[..1024]).unwrap();
    assert_eq!(t.partitions.len(), 4);
    assert_eq!(t.min_disk_size, 1400 * 512);
}

#[test]
fn not_an_image() {
    let err = Table::read(&mut Cursor::new(vec![7u8; 4096])).unwrap_err();
    assert!(matches!(err, TableError::NoSignature));
}

#[test]
fn slice_refuses_writes_outside_its_range() {
    let mut disk = Cursor::new(vec![0u8; 4096]);
    let mut s = Slice::new(&mut disk, 1024, 1024).unwrap();
    s.seek(SeekFrom::Start(1000)).unwrap();
    assert!(s.write(&[1u8; 100]).is_err());
    s.seek(SeekFrom::Start(0)).unwrap();
    s.write_all(&[1u8; 1024]).unwrap();
    let bytes = disk.into_inner();
    assert!(bytes[..1024].iter().all(|b| *b == 0));
    assert!(bytes[2048..].iter().all(|b| *b == 0));
}

#[test]
fn plan_keeps_unknown_keys_and_validates() {
    let current = br#"{"vendorThing":{"a":1},"hostname":"old"}"#;
    let edits = Edits {
        hostname: Some("new-name".into()),
        wifi: Some(("home".into(), Some("long-enough-psk".into()))),
        dev: true,
        ..Edits::default()
    };
    let out = edits.plan(Some(current)).unwrap().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["vendorThing"]["a"], 1);
    assert_eq!(v["hostname"], "new-name");
    assert_eq!(v["fleet"]["network"]["wifi"][0]["ssid"], "home");
    assert_eq!(v["developmentMode"], true);
    let bad = Edits {
        hostname: Some("not valid!".into()),
        ..Edits::default()
    };
    assert!(bad.plan(Some(current)).is_err());
}

#[test]
fn secrets_are_masked() {
    let mut v = serde_json::json!({"deviceApiKey": "k", "fleet": {"network": {"wifi": [{"ssid": "s", "psk": "p"}]}}});
    fleet_image::inspect::mask_secrets(&mut v);
    assert_eq!(v["deviceApiKey"], "***");
    assert_eq!(v["fleet"]["network"]["wifi"][0]["psk"], "***");
    assert_eq!(v["fleet"]["network"]["wifi"][0]["ssid"], "s");
}

#[test]
fn bmap_ranges() {
    let text = r#"<?xml version="1.0" ?><bmap version="2.0"><ImageSize> 40960 </ImageSize>
        <BlockSize> 4096 </BlockSize><BlocksCnt> 10 </BlocksCnt><BlockMap>
        <Range chksum="ab"> 0-1 </Range><Range chksum="cd"> 2 </Range><Range> 7-9 </Range>
        </BlockMap></bmap>"#;
    let m = fleet_image::bmap::parse(text).unwrap();
    assert_eq!(m.ranges, [(0, 3 * 4096), (7 * 4096, 3 * 4096)]);
    assert!(fleet_image::bmap::parse("<html/>").is_err());
}

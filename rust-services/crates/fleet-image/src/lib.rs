//! fleetOS disk images without root mounts: partition tables, the FAT boot partition,
//! decompression and the flash engine. The `fleet image` CLI is a thin layer over this.

pub mod aligned;
pub mod bmap;
pub mod bootfs;
pub mod configure;
pub mod devicetype;
pub mod flash;
pub mod inspect;
pub mod source;
pub mod table;
pub mod target;
pub mod writeback;

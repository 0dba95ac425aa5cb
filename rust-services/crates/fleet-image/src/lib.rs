//! fleetOS disk images without root mounts: partition tables, the FAT boot partition,
//! decompression and the flash engine. The `fleet image` CLI is a thin layer over this.

pub mod table;
pub mod bootfs;
pub mod configure;
pub mod devicetype;
pub mod inspect;
pub mod source;
pub mod flash;

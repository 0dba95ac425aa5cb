//! The two CRC-32 variants the boot state needs, table-driven: IEEE (U-Boot's `uboot.env`)
//! and Castagnoli (ext4 `metadata_csum` superblock checksum).

const fn table(poly: u32) -> [u32; 256] {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { poly ^ (c >> 1) } else { c >> 1 };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
}

static IEEE: [u32; 256] = table(0xEDB8_8320);
static CASTAGNOLI: [u32; 256] = table(0x82F6_3B78);

fn update(table: &[u32; 256], mut crc: u32, bytes: &[u8]) -> u32 {
    for &b in bytes {
        crc = table[((crc ^ b as u32) & 0xff) as usize] ^ (crc >> 8);
    }
    crc
}

/// CRC-32/IEEE as zlib's `crc32()` computes it (what U-Boot stores in front of its env).
pub fn crc32(bytes: &[u8]) -> u32 {
    !update(&IEEE, !0, bytes)
}

/// Raw CRC-32C register update without final inversion, as ext4's `ext4_chksum` uses it.
pub fn crc32c_raw(seed: u32, bytes: &[u8]) -> u32 {
    update(&CASTAGNOLI, seed, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_values() {
        // The standard "123456789" check values of both polynomials.
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(!crc32c_raw(!0, b"123456789"), 0xE306_9283);
    }
}

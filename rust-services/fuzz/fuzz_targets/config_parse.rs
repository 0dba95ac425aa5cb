//! Any bytes: parsing and validating config.json never panics; an accepted file serialises to
//! bytes that parse back to the same config (read-modify-write is lossless).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(config) = fleet_config::Config::from_slice(data) {
        let again = fleet_config::Config::from_slice(&config.to_bytes())
            .expect("a serialised valid config must stay valid");
        assert_eq!(again.settings(), config.settings());
        assert_eq!(again.document(), config.document());
    }
});

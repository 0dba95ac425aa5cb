//! Which backend holds this device's boot state: `bootloader=` in `/etc/fleet/update.conf`,
//! else the file or partition that exists. Above the backends, so the shared types in the
//! crate root never import them.

use fleet_fs::{KeyValues, Root};

use crate::{BOOT_DIR, BootEnv, EnvError, GRUB_ENV, UBOOT_ENV, UPDATE_CONF, UPDATE_CONF_KEYS};
use crate::{fleet_env, grub, tryboot};

/// `bootloader=` of [`UPDATE_CONF`].
enum Bootloader {
    Grub,
    UBoot,
    Tryboot,
}

/// Picks the backend: `bootloader=` in `/etc/fleet/update.conf`, else the env file that
/// exists (GRUB's block, then the autoboot partition, then U-Boot's files).
pub fn open(root: &Root) -> Result<Box<dyn BootEnv>, EnvError> {
    let grub = root.path(GRUB_ENV);
    let uboot = root.path(UBOOT_ENV);
    let conf = root.path(UPDATE_CONF);
    let bootloader = match KeyValues::read(&conf, UPDATE_CONF_KEYS)? {
        Some(settings) => settings.get_with("bootloader", |v| match v {
            "grub" => Ok(Bootloader::Grub),
            "uboot" => Ok(Bootloader::UBoot),
            "tryboot" => Ok(Bootloader::Tryboot),
            _ => Err("grub, uboot or tryboot".to_string()),
        })?,
        None => None,
    };
    match bootloader {
        Some(Bootloader::Grub) => return Ok(Box::new(grub::GrubEnv::new(grub))),
        Some(Bootloader::UBoot) => {
            return Ok(Box::new(fleet_env::FleetEnv::new(root.path(BOOT_DIR))));
        }
        Some(Bootloader::Tryboot) => return Ok(Box::new(tryboot::TrybootEnv::new(root))),
        None => {}
    }
    let autoboot = root.path(tryboot::AUTOBOOT_DEV);
    if grub.exists() {
        Ok(Box::new(grub::GrubEnv::new(grub)))
    } else if autoboot.exists() {
        Ok(Box::new(tryboot::TrybootEnv::new(root)))
    } else if uboot.exists()
        || root.path(BOOT_DIR).join("fleet-a.env").exists()
        || root.path(BOOT_DIR).join("fleet-b.env").exists()
    {
        Ok(Box::new(fleet_env::FleetEnv::new(root.path(BOOT_DIR))))
    } else {
        Err(EnvError::NotFound {
            grub,
            uboot,
            autoboot,
            conf,
        })
    }
}

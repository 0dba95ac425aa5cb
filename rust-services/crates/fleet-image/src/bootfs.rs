//! The FAT boot partition: read its files and edit `config.json` / `system-connections/`
//! without mounting. All I/O goes through [`Slice`], which refuses anything outside the
//! partition's byte range.

use std::io::{self, Read, Seek, SeekFrom, Write};

use fatfs::{FileSystem, FsOptions};
use fleet_config::{Config, FAT_NEW_SUFFIX, FAT_OLD_SUFFIX, FAT_TMP_SUFFIX, Problem};
use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum BootError {
    #[error("boot partition: not a FAT filesystem")]
    NotFat(#[source] io::Error),
    #[error("boot partition: {path}")]
    Io { path: String, source: io::Error },
    #[error("{what}: invalid configuration:\n{}", list(.problems))]
    Invalid {
        what: String,
        problems: Vec<Problem>,
    },
    #[error("{0}")]
    Bad(String),
    #[error(
        "boot partition labelled {label:?} has no config.json: not a fleetOS image, fleetOS \
         settings would have no effect there; nothing was changed (to set up Raspberry Pi OS \
         use rpi-imager)"
    )]
    NotFleet { label: String },
}

/// The FAT label (and GPT name) of fleetOS's boot partition (DESIGN.md §2 "Disk layout").
pub const FLEET_BOOT_LABEL: &str = "fleet-boot";

/// Whether a boot partition is fleetOS's: it is labelled `fleet-boot` or holds config.json.
/// Other systems' boot partitions (Raspberry Pi OS's `bootfs`, ...) read none of its settings.
pub fn is_fleet_boot(label: Option<&str>, has_config: bool) -> bool {
    has_config || label.is_some_and(|l| l.trim_end().eq_ignore_ascii_case(FLEET_BOOT_LABEL))
}

fn list(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| format!("  {p}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn io_err(path: &str) -> impl FnOnce(io::Error) -> BootError + '_ {
    move |source| BootError::Io {
        path: path.to_string(),
        source,
    }
}

/// A window `[start, start+len)` of a larger stream; I/O past its end is an error, so a
/// filesystem bug can never touch another partition.
pub struct Slice<T> {
    inner: T,
    start: u64,
    len: u64,
    pos: u64,
}

impl<T: Seek> Slice<T> {
    pub fn new(mut inner: T, start: u64, len: u64) -> io::Result<Slice<T>> {
        inner.seek(SeekFrom::Start(start))?;
        Ok(Slice {
            inner,
            start,
            len,
            pos: 0,
        })
    }

    pub fn into_inner(self) -> T {
        self.inner
    }
}

impl<T: Read + Seek> Read for Slice<T> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.len.saturating_sub(self.pos);
        let n = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        if n == 0 {
            return Ok(0);
        }
        self.inner.seek(SeekFrom::Start(self.start + self.pos))?;
        let got = self.inner.read(&mut buf[..n])?;
        self.pos += got as u64;
        Ok(got)
    }
}

impl<T: Write + Seek> Write for Slice<T> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.pos + buf.len() as u64 > self.len {
            return Err(io::Error::other(format!(
                "refused: write of {} bytes at {} ends outside the boot partition ({} bytes)",
                buf.len(),
                self.pos,
                self.len
            )));
        }
        self.inner.seek(SeekFrom::Start(self.start + self.pos))?;
        let n = self.inner.write(buf)?;
        self.pos += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<T: Seek> Seek for Slice<T> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let new = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = new.ok_or_else(|| io::Error::other("seek before the partition start"))?;
        Ok(self.pos)
    }
}

/// One entry of the boot partition's root directory.
#[derive(Debug, Clone)]
pub struct Entry {
    pub name: String,
    pub size: u64,
    pub is_dir: bool,
}

/// What `inspect` shows of a boot partition.
#[derive(Debug, Clone)]
pub struct Summary {
    pub label: String,
    pub fat_type: String,
    pub root: Vec<Entry>,
    pub connections: Vec<String>,
    /// Raw bytes of config.json, if present.
    pub config: Option<Vec<u8>>,
    /// Whether the named files exist (for device-type recognition).
    pub present: Vec<String>,
}

fn open<T: Read + Write + Seek>(mut part: T) -> Result<FileSystem<T>, BootError> {
    // fatfs 0.3 asserts that the stream starts at position 0.
    part.seek(SeekFrom::Start(0)).map_err(BootError::NotFat)?;
    FileSystem::new(part, FsOptions::new().update_accessed_date(false)).map_err(BootError::NotFat)
}

/// `path` as fleetOS reads it: the replacement an interrupted `replace` left, else the file.
fn read_file<T: Read + Write + Seek>(
    fs: &FileSystem<T>,
    path: &str,
) -> Result<Option<Vec<u8>>, BootError> {
    let new = format!("{path}{FAT_NEW_SUFFIX}");
    if let Some(bytes) = read_opt(&fs.root_dir(), &new).map_err(io_err(&new))? {
        return Ok(Some(bytes));
    }
    match fs.root_dir().open_file(path) {
        Ok(mut f) => {
            let mut buf = Vec::new();
            f.read_to_end(&mut buf).map_err(io_err(path))?;
            Ok(Some(buf))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(path)(e)),
    }
}

/// One file of a FAT partition's root directory; `None` when it is not there.
pub fn read_root_file<T: Read + Write + Seek>(
    part: T,
    name: &str,
) -> Result<Option<Vec<u8>>, BootError> {
    read_file(&open(part)?, name)
}

/// Reads the summary of a FAT partition (the handle must be writable: fatfs 0.3 needs it).
pub fn summarize<T: Read + Write + Seek>(part: T, probe: &[&str]) -> Result<Summary, BootError> {
    let fs = open(part)?;
    let mut root = Vec::new();
    for e in fs.root_dir().iter() {
        let e = e.map_err(io_err("/"))?;
        let name = e.file_name();
        if name == "." || name == ".." {
            continue;
        }
        root.push(Entry {
            name,
            size: e.len(),
            is_dir: e.is_dir(),
        });
    }
    let mut connections = Vec::new();
    if let Ok(dir) = fs.root_dir().open_dir("system-connections") {
        for e in dir.iter() {
            let e = e.map_err(io_err("system-connections"))?;
            let name = e.file_name();
            // An interrupted replacement: `.fleet-next` is the file, `.fleet-tmp` nothing.
            if e.is_file() && !name.ends_with(FAT_TMP_SUFFIX) && !name.ends_with(FAT_OLD_SUFFIX) {
                let name = name
                    .strip_suffix(FAT_NEW_SUFFIX)
                    .unwrap_or(&name)
                    .to_string();
                if !connections.contains(&name) {
                    connections.push(name);
                }
            }
        }
    }
    let config = read_file(&fs, "config.json")?;
    let present = probe
        .iter()
        .filter(|p| {
            let r = fs.root_dir();
            r.open_file(p).is_ok() || r.open_dir(p).is_ok()
        })
        .map(|p| p.to_string())
        .collect();
    Ok(Summary {
        label: fs.volume_label().trim_end().to_string(),
        fat_type: format!("{:?}", fs.fat_type()),
        root,
        connections,
        config,
        present,
    })
}

/// Changes `configure` makes. Built and validated before the partition is touched.
#[derive(Debug, Clone, Default)]
pub struct Edits {
    /// Replaces config.json (already validated by [`Edits::plan`]).
    pub config: Option<Vec<u8>>,
    pub hostname: Option<String>,
    /// (SSID, PSK); `None` PSK = open network.
    pub wifi: Option<(String, Option<String>)>,
    pub ssh_keys: Vec<String>,
    /// (file name, contents) for `system-connections/`.
    pub connections: Vec<(String, Vec<u8>)>,
    pub dev: bool,
}

impl Edits {
    pub fn is_empty(&self) -> bool {
        self.config.is_none()
            && self.hostname.is_none()
            && self.wifi.is_none()
            && self.ssh_keys.is_empty()
            && self.connections.is_empty()
            && !self.dev
    }

    /// The new config.json for the current one (if any): every edit applied and validated,
    /// unknown keys kept. `None` when config.json is left alone.
    pub fn plan(&self, current: Option<&[u8]>) -> Result<Option<Vec<u8>>, BootError> {
        let touches_config = self.config.is_some()
            || self.hostname.is_some()
            || self.wifi.is_some()
            || !self.ssh_keys.is_empty()
            || self.dev;
        if !touches_config {
            return Ok(None);
        }
        let invalid = |what: &str| {
            let what = what.to_string();
            move |problems| BootError::Invalid { what, problems }
        };
        let mut config = match (&self.config, current) {
            (Some(new), _) => Config::from_slice(new).map_err(invalid("--config"))?,
            (None, Some(cur)) => {
                Config::from_slice(cur).map_err(invalid("config.json on the image"))?
            }
            (None, None) => Config::empty(),
        };
        if let Some(h) = &self.hostname {
            config
                .set(&["hostname"], Value::String(h.clone()))
                .map_err(invalid("--hostname"))?;
        }
        if let Some((ssid, psk)) = &self.wifi {
            let mut list: Vec<Value> = config
                .document()
                .get("fleet")
                .and_then(|f| f.get("network"))
                .and_then(|n| n.get("wifi"))
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            list.retain(|w| w.get("ssid").and_then(Value::as_str) != Some(ssid));
            let mut entry = serde_json::Map::new();
            entry.insert("ssid".into(), Value::String(ssid.clone()));
            if let Some(psk) = psk {
                entry.insert("psk".into(), Value::String(psk.clone()));
            }
            list.push(Value::Object(entry));
            config
                .set(&["fleet", "network", "wifi"], Value::Array(list))
                .map_err(invalid("--wifi"))?;
        }
        if !self.ssh_keys.is_empty() {
            let mut keys: Vec<Value> = config
                .document()
                .get("os")
                .and_then(|o| o.get("sshKeys"))
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            for k in &self.ssh_keys {
                let v = Value::String(k.trim().to_string());
                if !keys.contains(&v) {
                    keys.push(v);
                }
            }
            config
                .set(&["os", "sshKeys"], Value::Array(keys))
                .map_err(invalid("--ssh-key"))?;
        }
        if self.dev {
            config
                .set(&["developmentMode"], Value::Bool(true))
                .map_err(invalid("--dev"))?;
        }
        // A replacement alone is written byte for byte, as the user formatted it.
        if let Some(new) = &self.config
            && self.hostname.is_none()
            && self.wifi.is_none()
            && self.ssh_keys.is_empty()
            && !self.dev
        {
            return Ok(Some(new.clone()));
        }
        Ok(Some(config.to_bytes()))
    }

    /// Applies the edits to a FAT partition (pass `&mut` handles: fatfs 0.3 keeps what it
    /// is given). Validation happens before the first write. `barrier` makes the writes so
    /// far durable (fsync of the device; [`no_barrier`] in memory): the replacement steps
    /// are ordered by it. The caller syncs the device at the end.
    pub fn apply<T: Read + Write + Seek>(
        &self,
        mut part: T,
        barrier: &mut dyn FnMut() -> io::Result<()>,
    ) -> Result<(), BootError> {
        for (name, _) in &self.connections {
            if name.is_empty() || name.contains('/') || name.starts_with('.') {
                return Err(BootError::Bad(format!(
                    "--connection: {name:?} is not a usable file name"
                )));
            }
        }
        const CONNECTIONS: &str = "system-connections";
        let fs = open(&mut part)?;
        let current = read_file(&fs, "config.json")?;
        let label = fs.volume_label();
        if !is_fleet_boot(Some(&label), current.is_some()) {
            return Err(BootError::NotFleet {
                label: label.trim_end().to_string(),
            });
        }
        let new_config = self.plan(current.as_deref())?;
        let missing_dir = !self.connections.is_empty()
            && match fs.root_dir().open_dir(CONNECTIONS) {
                Ok(_) => false,
                Err(e) if e.kind() == io::ErrorKind::NotFound => true,
                Err(e) => return Err(io_err(CONNECTIONS)(e)),
            };
        let fs = if missing_dir {
            // Made under a temporary name and renamed once its cluster is durable: a power
            // cut never leaves `system-connections` pointing at an unwritten cluster.
            let tmp = format!("{CONNECTIONS}{FAT_TMP_SUFFIX}");
            let stale = match fs.root_dir().open_dir(&tmp) {
                Ok(_) => true,
                Err(e) if e.kind() == io::ErrorKind::NotFound => false,
                Err(e) => return Err(io_err(&tmp)(e)),
            };
            if stale {
                fs.root_dir().remove(&tmp).map_err(io_err(&tmp))?;
            }
            fs.root_dir().create_dir(&tmp).map_err(io_err(&tmp))?;
            fs.unmount().map_err(io_err("unmount"))?;
            fix_new_root_dir(&mut part, &tmp).map_err(io_err(&tmp))?;
            barrier().map_err(io_err(&tmp))?;
            let fs = open(&mut part)?;
            {
                let root = fs.root_dir();
                root.rename(&tmp, &root, CONNECTIONS)
                    .map_err(io_err(CONNECTIONS))?;
            }
            barrier().map_err(io_err(CONNECTIONS))?;
            fs
        } else {
            fs
        };
        let root = fs.root_dir();
        if let Some(bytes) = new_config {
            replace(&root, "", "config.json", &bytes, barrier)?;
        }
        if !self.connections.is_empty() {
            let dir = root.open_dir(CONNECTIONS).map_err(io_err(CONNECTIONS))?;
            for (name, bytes) in &self.connections {
                replace(&dir, "system-connections/", name, bytes, barrier)?;
            }
        }
        drop(root);
        // fatfs writes back the FSInfo sector and clears the dirty flag on unmount.
        fs.unmount().map_err(io_err("unmount"))
    }
}

/// A no-op barrier, for partitions held in memory (nothing to lose there).
pub fn no_barrier() -> io::Result<()> {
    Ok(())
}

/// Replaces `name` in `dir` so that a power cut at any write leaves its old or its new
/// content as fleetOS reads it ([`fleet_config::fat_current`]): FAT has no atomic
/// rename-over, and a card writes in any order between flushes. `barrier` makes everything
/// written so far durable (fsync of the device). Steps, each followed by the barrier:
/// write `NAME.fleet-tmp` (never read); rename it to `NAME.fleet-next` (from now on the content);
/// remove `NAME`; write `NAME` again; rename `NAME.fleet-next` to `NAME.fleet-old` (never read),
/// remove that. A removal frees the clusters and marks the entry deleted in any order, so a
/// file is only removed under a name nobody reads. A replacement left by an interrupted run
/// is finished first. Proven by tests/powerloss (block-level crash states).
fn replace<T: Read + Write + Seek>(
    dir: &fatfs::Dir<'_, T>,
    shown: &str,
    name: &str,
    bytes: &[u8],
    barrier: &mut dyn FnMut() -> io::Result<()>,
) -> Result<(), BootError> {
    let tmp = format!("{name}{FAT_TMP_SUFFIX}");
    let new = format!("{name}{FAT_NEW_SUFFIX}");
    let path = format!("{shown}{name}");
    let err = |e| io_err(&path)(e);
    if let Some(left) = read_opt(dir, &new).map_err(err)? {
        rewrite(dir, name, &new, &left, barrier).map_err(err)?;
    }
    remove_opt(dir, &tmp).map_err(err)?;
    remove_opt(dir, &format!("{name}{FAT_OLD_SUFFIX}")).map_err(err)?;
    write_new(dir, &tmp, bytes).map_err(err)?;
    barrier().map_err(err)?;
    dir.rename(&tmp, dir, &new).map_err(err)?;
    barrier().map_err(err)?;
    rewrite(dir, name, &new, bytes, barrier).map_err(err)
}

/// With `new` durable and whole: `name` := `bytes`, then `new` removed.
fn rewrite<T: Read + Write + Seek>(
    dir: &fatfs::Dir<'_, T>,
    name: &str,
    new: &str,
    bytes: &[u8],
    barrier: &mut dyn FnMut() -> io::Result<()>,
) -> io::Result<()> {
    remove_opt(dir, name)?;
    barrier()?;
    write_new(dir, name, bytes)?;
    barrier()?;
    let old = format!("{name}{FAT_OLD_SUFFIX}");
    remove_opt(dir, &old)?;
    dir.rename(new, dir, &old)?;
    barrier()?;
    dir.remove(&old)?;
    barrier()
}

fn write_new<T: Read + Write + Seek>(
    dir: &fatfs::Dir<'_, T>,
    name: &str,
    bytes: &[u8],
) -> io::Result<()> {
    let mut f = dir.create_file(name)?;
    f.write_all(bytes)?;
    // create_file does not truncate an existing file.
    f.truncate()?;
    f.flush()
}

fn remove_opt<T: Read + Write + Seek>(dir: &fatfs::Dir<'_, T>, name: &str) -> io::Result<()> {
    match dir.remove(name) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        r => r,
    }
}

fn read_opt<T: Read + Write + Seek>(
    dir: &fatfs::Dir<'_, T>,
    name: &str,
) -> io::Result<Option<Vec<u8>>> {
    match dir.open_file(name) {
        Ok(mut f) => {
            let mut buf = Vec::new();
            f.read_to_end(&mut buf)?;
            Ok(Some(buf))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// fatfs 0.3.6 writes a new directory's "." and ".." with long-name entries in front and
/// points ".." of a root subdirectory at the FAT32 root cluster instead of 0; fsck.vfat
/// rejects both. This rewrites the (still empty) directory `name` in the root: "." and ".."
/// as plain short entries in slots 0 and 1, ".." → cluster 0, the rest of the cluster free.
fn fix_new_root_dir<T: Read + Write + Seek>(part: &mut T, name: &str) -> io::Result<()> {
    let mut bs = [0u8; 512];
    part.seek(SeekFrom::Start(0))?;
    part.read_exact(&mut bs)?;
    let u16_at = |o: usize| u64::from(u16::from_le_bytes([bs[o], bs[o + 1]]));
    let u32_at = |o: usize| u64::from(u32::from_le_bytes([bs[o], bs[o + 1], bs[o + 2], bs[o + 3]]));
    let bps = u16_at(11);
    let cluster_bytes = bps * u64::from(bs[13]);
    let reserved = u16_at(14);
    let nfats = u64::from(bs[16]);
    let root_entries = u16_at(17);
    let fat16_size = u16_at(22);
    let fat_size = if fat16_size != 0 {
        fat16_size
    } else {
        u32_at(36)
    };
    let fat_start = reserved * bps;
    let root_region = fat_start + nfats * fat_size * bps;
    let data_start = root_region + root_entries * 32;
    let cluster_at = |c: u64| data_start + (c - 2) * cluster_bytes;
    // The root directory as (offset, length) extents.
    let mut extents = Vec::new();
    if fat16_size != 0 {
        extents.push((root_region, root_entries * 32));
    } else {
        let mut c = u32_at(44);
        for _ in 0..65536 {
            if !(2..0x0FFF_FFF8).contains(&c) {
                break;
            }
            extents.push((cluster_at(c), cluster_bytes));
            let mut next = [0u8; 4];
            part.seek(SeekFrom::Start(fat_start + c * 4))?;
            part.read_exact(&mut next)?;
            c = u64::from(u32::from_le_bytes(next) & 0x0FFF_FFFF);
        }
    }
    let want: Vec<u16> = name.encode_utf16().collect();
    let mut lfn: Vec<(u8, Vec<u16>)> = Vec::new();
    let mut found = None;
    'outer: for (off, len) in extents {
        let mut buf = vec![0u8; usize::try_from(len).unwrap_or(0)];
        part.seek(SeekFrom::Start(off))?;
        part.read_exact(&mut buf)?;
        for e in buf.chunks_exact(32) {
            if e[0] == 0 {
                break 'outer;
            }
            if e[0] == 0xE5 {
                lfn.clear();
                continue;
            }
            if e[11] == 0x0F {
                let chars = [1, 3, 5, 7, 9, 14, 16, 18, 20, 22, 24, 28, 30]
                    .iter()
                    .map(|&i| u16::from_le_bytes([e[i], e[i + 1]]))
                    .collect();
                lfn.push((e[0] & 0x1F, chars));
                continue;
            }
            lfn.sort_by_key(|(seq, _)| *seq);
            let long: Vec<u16> = lfn
                .drain(..)
                .flat_map(|(_, c)| c)
                .take_while(|c| *c != 0 && *c != 0xFFFF)
                .collect();
            if e[11] & 0x10 != 0 && long == want {
                let hi = u64::from(u16::from_le_bytes([e[20], e[21]]));
                let lo = u64::from(u16::from_le_bytes([e[26], e[27]]));
                found = Some((hi << 16) | lo);
                break 'outer;
            }
        }
    }
    let Some(cluster) = found else {
        return Err(io::Error::other(format!(
            "new directory {name} not found in the root"
        )));
    };
    let off = cluster_at(cluster);
    let mut dir = vec![0u8; usize::try_from(cluster_bytes).unwrap_or(0)];
    part.seek(SeekFrom::Start(off))?;
    part.read_exact(&mut dir)?;
    let short: Vec<[u8; 32]> = dir
        .chunks_exact(32)
        .take_while(|e| e[0] != 0)
        .filter(|e| e[11] != 0x0F && e[0] != 0xE5)
        .filter_map(|e| e.try_into().ok())
        .collect();
    let (Some(dot), Some(dotdot)) = (
        short.iter().find(|e| &e[..2] == b". "),
        short.iter().find(|e| &e[..3] == b".. "),
    ) else {
        return Err(io::Error::other(format!("{name}: no . and .. entries")));
    };
    let mut fixed = vec![0u8; dir.len()];
    fixed[..32].copy_from_slice(dot);
    fixed[32..64].copy_from_slice(dotdot);
    fixed[32 + 20..32 + 22].fill(0);
    fixed[32 + 26..32 + 28].fill(0);
    part.seek(SeekFrom::Start(off))?;
    part.write_all(&fixed)
}

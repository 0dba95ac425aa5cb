//! Logging: to the journal when its socket is there (fleetd binds the host's journal socket
//! into the container), else to stderr, which the engine's log driver keeps.
//! `FLEET_LOG_STDERR=1` forces stderr (tests, a shell).

use log::{Level, LevelFilter, Log, Metadata, Record};
use systemd_journal_logger::JournalLog;

const JOURNAL_SOCKET: &str = "/run/systemd/journal/socket";

static TO_JOURNAL: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// True once [`init`] installed the journal logger (stderr then still needs the error).
pub fn to_journal() -> bool {
    TO_JOURNAL.load(std::sync::atomic::Ordering::Relaxed)
}

/// Sets up the global logger once; `FLEET_LOG=debug|trace` raises the level.
pub fn init() {
    let level = match std::env::var("FLEET_LOG").as_deref() {
        Ok("debug") => LevelFilter::Debug,
        Ok("trace") => LevelFilter::Trace,
        _ => LevelFilter::Info,
    };
    let wants_journal = std::env::var_os("FLEET_LOG_STDERR").is_none_or(|v| v != "1")
        && (systemd_journal_logger::connected_to_journal()
            || std::path::Path::new(JOURNAL_SOCKET).exists());
    let journal = wants_journal.then(|| JournalLog::new().ok()).flatten();
    let installed = match journal {
        Some(j) => {
            TO_JOURNAL.store(true, std::sync::atomic::Ordering::Relaxed);
            j.with_syslog_identifier("fleet-supervisor".into())
                .install()
        }
        None => log::set_boxed_logger(Box::new(Stderr)),
    };
    if installed.is_ok() {
        log::set_max_level(level);
    }
}

struct Stderr;

impl Log for Stderr {
    fn enabled(&self, _: &Metadata) -> bool {
        true
    }

    fn log(&self, record: &Record) {
        let level = match record.level() {
            Level::Error => "error",
            Level::Warn => "warning",
            Level::Info => "info",
            Level::Debug => "debug",
            Level::Trace => "trace",
        };
        eprintln!("fleet-supervisor: {level}: {}", record.args());
    }

    fn flush(&self) {}
}

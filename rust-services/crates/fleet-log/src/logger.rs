//! The one logger of fleetOS programs: to the journal with structured fields when there is
//! one, else to stderr as one line per record, the fields kept as ` KEY=value`.
//!
//! `FLEET_LOG=debug|trace` raises the level; `FLEET_LOG_STDERR=1` forces stderr (tests, a
//! shell on a device).

use std::sync::atomic::{AtomicBool, Ordering};

use log::{Level, LevelFilter, Log, Metadata, Record};
use systemd_journal_logger::JournalLog;

const JOURNAL_SOCKET: &str = "/run/systemd/journal/socket";

static TO_JOURNAL: AtomicBool = AtomicBool::new(false);

/// When a program logs to the journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JournalWhen {
    /// Only when stderr is already connected to the journal (a systemd service); from a
    /// shell the records go to the terminal.
    StderrIsJournal,
    /// Whenever the journal's socket is there: a container that has the host's socket bound
    /// in, whose stderr goes to the engine's log driver instead.
    SocketPresent,
}

/// Who logs: the syslog identifier, the stderr prefix's command and extra journal fields.
#[derive(Debug, Clone)]
pub struct Logger {
    identifier: &'static str,
    command: Option<&'static str>,
    journal: JournalWhen,
}

impl Logger {
    pub fn new(identifier: &'static str, journal: JournalWhen) -> Self {
        Logger {
            identifier,
            command: None,
            journal,
        }
    }

    /// The subcommand, journal field `FLEET_COMMAND` and part of the stderr prefix.
    pub fn command(mut self, command: &'static str) -> Self {
        self.command = Some(command);
        self
    }

    /// Installs the global logger (once per process; later calls change nothing).
    pub fn install(self) {
        let env = |k| std::env::var(k).ok();
        let level = level_from(env("FLEET_LOG").as_deref());
        let forced_stderr = env("FLEET_LOG_STDERR").as_deref() == Some("1");
        let journal_here = match self.journal {
            JournalWhen::StderrIsJournal => systemd_journal_logger::connected_to_journal(),
            JournalWhen::SocketPresent => {
                systemd_journal_logger::connected_to_journal()
                    || std::path::Path::new(JOURNAL_SOCKET).exists()
            }
        };
        let journal = (!forced_stderr && journal_here)
            .then(|| JournalLog::new().ok())
            .flatten();
        let installed = match journal {
            Some(j) => {
                let fields = self
                    .command
                    .map(|c| vec![("FLEET_COMMAND", c)])
                    .unwrap_or_default();
                let done = j
                    .with_syslog_identifier(self.identifier.into())
                    .with_extra_fields(fields)
                    .install();
                if done.is_ok() {
                    TO_JOURNAL.store(true, Ordering::Relaxed);
                }
                done
            }
            None => log::set_boxed_logger(Box::new(Stderr {
                prefix: self.stderr_prefix(),
            })),
        };
        if installed.is_ok() {
            log::set_max_level(level);
        }
    }

    fn stderr_prefix(&self) -> String {
        match self.command {
            Some(c) => format!("{} {c}", self.identifier),
            None => self.identifier.to_string(),
        }
    }
}

/// True once [`Logger::install`] chose the journal: a program whose exit reason must also
/// reach a terminal prints it to stderr itself.
pub fn to_journal() -> bool {
    TO_JOURNAL.load(Ordering::Relaxed)
}

fn level_from(setting: Option<&str>) -> LevelFilter {
    match setting {
        Some("debug") => LevelFilter::Debug,
        Some("trace") => LevelFilter::Trace,
        _ => LevelFilter::Info,
    }
}

struct Stderr {
    prefix: String,
}

impl Log for Stderr {
    fn enabled(&self, _: &Metadata) -> bool {
        true
    }

    fn log(&self, record: &Record) {
        eprintln!("{}", stderr_line(&self.prefix, record));
    }

    fn flush(&self) {}
}

/// `prefix: level: message KEY=value...`
fn stderr_line(prefix: &str, record: &Record) -> String {
    let level = match record.level() {
        Level::Error => "error",
        Level::Warn => "warning",
        Level::Info => "info",
        Level::Debug => "debug",
        Level::Trace => "trace",
    };
    let mut line = format!("{prefix}: {level}: {}", record.args());
    let _ = record.key_values().visit(&mut FieldText(&mut line));
    line
}

/// Renders structured fields as ` KEY=value` after the message.
struct FieldText<'a>(&'a mut String);

impl<'kvs> log::kv::VisitSource<'kvs> for FieldText<'_> {
    fn visit_pair(
        &mut self,
        key: log::kv::Key<'kvs>,
        value: log::kv::Value<'kvs>,
    ) -> Result<(), log::kv::Error> {
        use std::fmt::Write;
        let _ = write!(self.0, " {key}={value}");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stderr_keeps_fields() {
        let kvs = [("FLEET_SLOT", "b"), ("FLEET_SEQ", "7")];
        let record = Record::builder()
            .level(Level::Warn)
            .args(format_args!("trial armed"))
            .key_values(&kvs)
            .build();
        assert_eq!(
            stderr_line("fleetd update", &record),
            "fleetd update: warning: trial armed FLEET_SLOT=b FLEET_SEQ=7"
        );
    }

    #[test]
    fn prefix_names_the_command() {
        let with = Logger::new("fleetd", JournalWhen::StderrIsJournal).command("health");
        assert_eq!(with.stderr_prefix(), "fleetd health");
        let without = Logger::new("fleet-supervisor", JournalWhen::SocketPresent);
        assert_eq!(without.stderr_prefix(), "fleet-supervisor");
    }

    #[test]
    fn level_setting() {
        assert_eq!(level_from(Some("debug")), LevelFilter::Debug);
        assert_eq!(level_from(Some("trace")), LevelFilter::Trace);
        assert_eq!(level_from(Some("loud")), LevelFilter::Info);
        assert_eq!(level_from(None), LevelFilter::Info);
    }
}

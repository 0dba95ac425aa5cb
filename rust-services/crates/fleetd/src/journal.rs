//! Logging: to the journal with structured fields when journald is there, else to stderr
//! (tests, a shell on a host), one line per record.

use log::{Level, LevelFilter, Log, Metadata, Record};
use systemd_journal_logger::JournalLog;

/// Sets up the global logger. `command` becomes the `FLEET_COMMAND` journal field.
pub fn init(command: &'static str) {
    let level = match std::env::var("FLEET_LOG").as_deref() {
        Ok("debug") => LevelFilter::Debug,
        Ok("trace") => LevelFilter::Trace,
        _ => LevelFilter::Info,
    };
    let journal = systemd_journal_logger::connected_to_journal()
        .then(|| JournalLog::new().ok())
        .flatten();
    let installed = match journal {
        Some(j) => j
            .with_syslog_identifier("fleetd".into())
            .with_extra_fields(vec![("FLEET_COMMAND", command)])
            .install(),
        None => log::set_boxed_logger(Box::new(Stderr { command })),
    };
    if installed.is_ok() {
        log::set_max_level(level);
    }
}

struct Stderr {
    command: &'static str,
}

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
        let mut fields = String::new();
        let _ = record.key_values().visit(&mut FieldText(&mut fields));
        eprintln!(
            "fleetd {}: {level}: {}{fields}",
            self.command,
            record.args()
        );
    }

    fn flush(&self) {}
}

/// Renders structured fields as ` KEY=value` after the message.
struct FieldText<'a>(&'a mut String);

impl<'kvs> log::kv::VisitSource<'kvs> for FieldText<'_> {
    fn visit_pair(
        &mut self,
        key: log::kv::Key<'kvs>,
        value: log::kv::Value<'kvs>,
    ) -> Result<(), log::kv::Error> {
        self.0.push_str(&format!(" {key}={value}"));
        Ok(())
    }
}

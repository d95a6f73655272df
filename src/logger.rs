//! Logging to stderr and, inside an initrd, to `/dev/kmsg`, so messages
//! survive into `journalctl -b` of the booted system even from a shell
//! (non-systemd) initrd.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;

use log::{Level, LevelFilter, Log, Metadata, Record};

struct Logger {
    kmsg: bool,
    stderr: bool,
}

/// syslog priority of a log level.
fn priority(level: Level) -> u8 {
    match level {
        Level::Error => 3,
        Level::Warn => 4,
        Level::Info => 6,
        Level::Debug | Level::Trace => 7,
    }
}

/// The message on one line whatever names it quotes: control characters
/// (a newline in a hostile file name could forge a log line) are escaped.
fn one_line(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for c in message.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// One kmsg record: facility daemon, so the journal files it under the
/// `rdext` identifier rather than as a kernel message.
fn kmsg_record(level: Level, message: &str) -> String {
    const LOG_DAEMON: u8 = 3 << 3;
    let text: String = one_line(message).chars().take(900).collect();
    format!("<{}>rdext: {text}\n", LOG_DAEMON | priority(level))
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let message = record.args().to_string();
        if self.kmsg {
            // The kernel rate-limits each open /dev/kmsg to 10 records per 5 s
            // and drops the rest; a fresh open per record keeps every line.
            // One write per record: kmsg takes each write as one message.
            if let Ok(mut kmsg) = OpenOptions::new().write(true).open("/dev/kmsg") {
                let _ = kmsg.write_all(kmsg_record(record.level(), &message).as_bytes());
            }
        }
        if self.stderr {
            let prefix = match record.level() {
                Level::Error => "error: ",
                Level::Warn => "warning: ",
                _ => "",
            };
            // One write per line, not one per formatted piece.
            let line = format!("rdext: {prefix}{}\n", one_line(&message));
            let _ = std::io::stderr().write_all(line.as_bytes());
        }
    }

    fn flush(&self) {}
}

/// Install the logger. With `kmsg`, records also go to `/dev/kmsg`; stderr
/// is then skipped when it already leads to the journal, which sees kmsg.
pub fn init(debug: bool, kmsg: bool) {
    let kmsg = kmsg && Path::new("/dev/kmsg").exists();
    let stderr = !kmsg || std::env::var_os("JOURNAL_STREAM").is_none();
    let logger = Logger { kmsg, stderr };
    if log::set_boxed_logger(Box::new(logger)).is_ok() {
        log::set_max_level(if debug {
            LevelFilter::Debug
        } else {
            LevelFilter::Info
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kmsg_records_carry_priority_and_prefix() {
        assert_eq!(
            kmsg_record(Level::Warn, "skipped foo"),
            "<28>rdext: skipped foo\n"
        );
        assert_eq!(kmsg_record(Level::Info, "a\nb"), "<30>rdext: a\\nb\n");
        assert_eq!(one_line("x\u{1b}[2J\ty"), "x\\u{1b}[2J\\ty");
        assert_eq!(
            kmsg_record(Level::Error, &"x".repeat(2000)).len(),
            "<27>rdext: \n".len() + 900
        );
    }
}

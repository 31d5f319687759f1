//! The optional JSON access log: one line per request, written by a background thread.
//!
//! Lives here: the line format and the non-blocking writer. Must not: block or fail a request.
//! A full queue drops the line and counts it in `runoff_access_log_dropped_total`.

use std::borrow::Cow;
use std::fs::OpenOptions;
use std::io::{BufWriter, Write};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::thread;
use std::time::{Duration, SystemTime};

use prometheus::IntCounter;
use serde::Serialize;

use crate::config::AccessLog;

/// Lines waiting for the writer; past this a line is dropped, never waited for.
const QUEUE: usize = 16_384;

/// One request, as logged.
#[derive(Debug, Serialize)]
pub(crate) struct Entry<'a> {
    pub time: String,
    pub request_id: &'a str,
    pub method: &'a str,
    /// Path and query, with redacted query-parameter values replaced.
    pub path: Cow<'a, str>,
    /// The client's address (the peer, or behind `trusted_proxies` the address they name);
    /// on primary lines only (a shadow line shares its primary's `request_id`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    pub route: Option<&'a str>,
    pub backend: Option<&'a str>,
    pub role: &'a str,
    pub choice: Option<&'a str>,
    /// The status the caller got (runoff's own 502/504/404 included).
    pub status: u16,
    pub duration_ms: f64,
    pub request_bytes: u64,
    pub response_bytes: u64,
    pub error: Option<&'a str>,
    /// When this leg's own request started going upstream (before its connection was taken
    /// or made), RFC 3339 with microseconds; `None` when it never did.
    pub upstream_start: Option<String>,
    /// This leg's upstream-side duration: `upstream_start` to the last response byte received.
    pub upstream_ms: Option<f64>,
    /// What the caller spoke (`http/1.0`, `http/1.1`, `h2`); primary lines only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub caller_protocol: Option<&'static str>,
    /// What runoff spoke to this leg's backend (`http1`, `h2c`); `None` before a backend was
    /// chosen.
    pub upstream_protocol: Option<&'static str>,
}

/// A request's HTTP version as the access log names it.
pub(crate) fn version_name(v: http::Version) -> &'static str {
    match v {
        http::Version::HTTP_09 => "http/0.9",
        http::Version::HTTP_10 => "http/1.0",
        http::Version::HTTP_2 => "h2",
        http::Version::HTTP_3 => "h3",
        _ => "http/1.1",
    }
}

pub(crate) fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

/// The wall-clock time of a moment measured with the monotonic clock, RFC 3339 with
/// microseconds.
pub(crate) fn rfc3339_at(at: std::time::Instant) -> String {
    let wall = SystemTime::now()
        .checked_sub(at.elapsed())
        .unwrap_or(SystemTime::UNIX_EPOCH);
    humantime::format_rfc3339_micros(wall).to_string()
}

enum Message {
    Line(String),
    Flush(SyncSender<()>),
}

/// Cheap to clone; `Off` costs nothing per request.
#[derive(Clone)]
pub(crate) struct AccessLogger {
    tx: Option<SyncSender<Message>>,
    dropped: IntCounter,
}

impl AccessLogger {
    /// Start the writer for `target`. Opening a file that cannot be opened is an error.
    pub(crate) fn start(target: &AccessLog, dropped: IntCounter) -> std::io::Result<AccessLogger> {
        let sink: Box<dyn Write + Send> = match target {
            AccessLog::Off => return Ok(AccessLogger { tx: None, dropped }),
            AccessLog::Stdout => Box::new(std::io::stdout()),
            AccessLog::File(path) => {
                Box::new(OpenOptions::new().create(true).append(true).open(path)?)
            }
        };
        let (tx, rx) = sync_channel(QUEUE);
        thread::Builder::new()
            .name("runoff-access-log".into())
            .spawn(move || write_loop(rx, BufWriter::new(sink)))?;
        Ok(AccessLogger {
            tx: Some(tx),
            dropped,
        })
    }

    pub(crate) fn enabled(&self) -> bool {
        self.tx.is_some()
    }

    /// Queue one entry; never blocks.
    pub(crate) fn log(&self, entry: &Entry<'_>) {
        let Some(tx) = &self.tx else { return };
        let Ok(line) = serde_json::to_string(entry) else {
            return;
        };
        match tx.try_send(Message::Line(line)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => self.dropped.inc(),
        }
    }

    /// Wait (bounded) until every queued line is written: used before the process exits.
    pub(crate) fn flush(&self, within: Duration) {
        let Some(tx) = &self.tx else { return };
        let (done_tx, done_rx) = sync_channel(1);
        if tx.send(Message::Flush(done_tx)).is_ok() {
            let _ = done_rx.recv_timeout(within);
        }
    }
}

fn write_loop(rx: Receiver<Message>, mut out: BufWriter<Box<dyn Write + Send>>) {
    loop {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(Message::Line(line)) => {
                let _ = out.write_all(line.as_bytes());
                let _ = out.write_all(b"\n");
            }
            Ok(Message::Flush(done)) => {
                let _ = out.flush();
                let _ = done.send(());
            }
            Err(RecvTimeoutError::Timeout) => {
                let _ = out.flush();
            }
            Err(RecvTimeoutError::Disconnected) => {
                let _ = out.flush();
                return;
            }
        }
    }
}

//! Logs on stderr: one line per event, naming the member the process runs as once it is
//! known; colour only when stderr is a terminal; in JSON, one object per line with
//! `timestamp`, `level`, `target`, `member`, `message` and the event's fields at the top.

use std::fmt;
use std::io::IsTerminal;
use std::sync::OnceLock;

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

use crate::cli::LogFormat;

static MEMBER: OnceLock<String> = OnceLock::new();

/// Names the member on every later line; set once, when the config is read.
pub fn set_member(member: &str) {
    let _ = MEMBER.set(member.to_owned());
}

pub fn init(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Human => builder
            .with_ansi(std::io::stderr().is_terminal())
            .with_timer(TimeAndMember)
            .init(),
        LogFormat::Json => builder.event_format(Json).init(),
    }
}

/// The human format's timestamp, followed by the member: `2026-12-01T10:00:00.123456Z lu-l-aif`.
struct TimeAndMember;

impl FormatTime for TimeAndMember {
    fn format_time(&self, w: &mut Writer<'_>) -> fmt::Result {
        SystemTime.format_time(w)?;
        if let Some(m) = MEMBER.get() {
            write!(w, " {m}")?;
        }
        Ok(())
    }
}

/// One JSON object per event, its fields at the top level.
struct Json;

impl<S, N> FormatEvent<S, N> for Json
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let mut line = serde_json::Map::new();
        let mut now = String::new();
        SystemTime.format_time(&mut Writer::new(&mut now))?;
        line.insert("timestamp".into(), now.into());
        line.insert("level".into(), meta.level().as_str().into());
        line.insert("target".into(), meta.target().into());
        if let Some(m) = MEMBER.get() {
            line.insert("member".into(), m.as_str().into());
        }
        event.record(&mut Fields(&mut line));
        let text = serde_json::to_string(&line).map_err(|_| fmt::Error)?;
        writeln!(w, "{text}")
    }
}

struct Fields<'a>(&'a mut serde_json::Map<String, serde_json::Value>);

impl Fields<'_> {
    fn put(&mut self, field: &Field, v: serde_json::Value) {
        // A field may not hide the line's own keys.
        let name = match field.name() {
            n @ ("timestamp" | "level" | "target" | "member") => format!("field.{n}"),
            n => n.to_owned(),
        };
        self.0.insert(name, v);
    }
}

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, format!("{value:?}").into());
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, value.into());
    }
}

/// A fatal error as the last line: plain `error: …` for people, a JSON object when asked.
pub fn fatal(format: LogFormat, error: &anyhow::Error, exit_code: i32) {
    match format {
        LogFormat::Human => eprintln!("error: {error:#}"),
        // Written directly, so that no log filter can hide the reason the process ends.
        LogFormat::Json => {
            let mut now = String::new();
            let _ = SystemTime.format_time(&mut Writer::new(&mut now));
            let mut line = serde_json::json!({
                "timestamp": now,
                "level": "ERROR",
                "target": "aiguillage",
                "message": format!("{error:#}"),
                "exit_code": exit_code,
            });
            if let Some(m) = MEMBER.get() {
                line["member"] = m.as_str().into();
            }
            eprintln!("{line}");
        }
    }
}

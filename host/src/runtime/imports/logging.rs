//! `wasi:logging/logging`: guest log lines into the host's `tracing` log, at the matching
//! level, with the namespace, module and function as fields (the request id comes from the
//! call's span, see `dispatch`), and at most so many lines per second per namespace.

use super::wasi::logging::logging::{Host, Level};
use super::Grant;
use crate::runtime::sandbox::{lock, CallState};
use crate::telemetry::LogText;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Lines a namespace's guests may log per second, together, unless its config says otherwise;
/// as many again may come in one burst.
pub const DEFAULT_LOG_LINES_PER_SECOND: u32 = 100;
/// Longest message or context kept, in bytes; the rest is cut off and marked.
const MAX_LOG_TEXT: usize = 4096;
/// How often a namespace that floods the log is told how many of its lines were dropped.
const DROP_REPORT_INTERVAL: Duration = Duration::from_secs(1);

/// One namespace's share of the host's log: a token bucket refilled at `per_second`.
pub struct LogGate {
    per_second: u32,
    state: Mutex<GateState>,
}

struct GateState {
    tokens: f64,
    refilled: Instant,
    /// Lines dropped since the last report.
    dropped: u64,
    reported: Instant,
}

/// What the gate lets through.
#[derive(Debug, PartialEq, Eq)]
enum Admission {
    /// The line goes to the log; first, when set, a report of this many lines dropped before it.
    Pass {
        report_dropped: Option<u64>,
    },
    Drop,
}

impl LogGate {
    pub fn new(per_second: u32) -> Self {
        let now = Instant::now();
        let per_second = per_second.max(1);
        Self {
            per_second,
            state: Mutex::new(GateState { tokens: per_second as f64, refilled: now, dropped: 0, reported: now }),
        }
    }

    pub fn per_second(&self) -> u32 {
        self.per_second
    }

    fn admit(&self, now: Instant) -> Admission {
        let mut s = lock(&self.state);
        let rate = self.per_second as f64;
        let elapsed = now.saturating_duration_since(s.refilled).as_secs_f64();
        s.tokens = (s.tokens + elapsed * rate).min(rate);
        s.refilled = now;
        if s.tokens < 1.0 {
            s.dropped += 1;
            return Admission::Drop;
        }
        s.tokens -= 1.0;
        let report = s.dropped > 0 && now.saturating_duration_since(s.reported) >= DROP_REPORT_INTERVAL;
        if report {
            s.reported = now;
        }
        Admission::Pass { report_dropped: report.then(|| std::mem::take(&mut s.dropped)) }
    }
}

/// `text` cut to [`MAX_LOG_TEXT`] bytes at a character boundary.
fn bounded(text: &str) -> std::borrow::Cow<'_, str> {
    if text.len() <= MAX_LOG_TEXT {
        return text.into();
    }
    let mut end = MAX_LOG_TEXT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}... ({} bytes cut)", &text[..end], text.len() - end).into()
}

impl Host for CallState {
    async fn log(&mut self, level: Level, context: String, message: String) -> wasmtime::Result<()> {
        let caps = self.env().granted(Grant::Logging)?;
        let Some(gate) = &caps.logging else { return Ok(()) };
        let namespace = &*caps.namespace;
        let (module, function) = self.call_label();
        match gate.admit(Instant::now()) {
            Admission::Drop => return Ok(()),
            Admission::Pass { report_dropped: Some(dropped) } => tracing::warn!(
                target: "easyrpc::guest", namespace = %namespace, module = %module, function = %function,
                dropped_lines = dropped,
                "guest log lines dropped: the namespace logs more than {} lines per second", gate.per_second()
            ),
            Admission::Pass { report_dropped: None } => {}
        }
        let (context, message) = (bounded(&context), bounded(&message));
        let context = &*context;
        macro_rules! emit {
            ($level:expr) => {
                tracing::event!(
                    target: "easyrpc::guest", $level,
                    namespace = %namespace, module = %module, function = %function, context = %LogText(context),
                    "{}", LogText(&message)
                )
            };
        }
        match level {
            Level::Trace => emit!(tracing::Level::TRACE),
            Level::Debug => emit!(tracing::Level::DEBUG),
            Level::Info => emit!(tracing::Level::INFO),
            Level::Warn => emit!(tracing::Level::WARN),
            Level::Error => emit!(tracing::Level::ERROR),
            Level::Critical => tracing::error!(
                target: "easyrpc::guest",
                namespace = %namespace, module = %module, function = %function, context = %LogText(context),
                critical = true, "{}", LogText(&message)
            ),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_is_cut_to_the_rate_and_reported_once_a_second() {
        let gate = LogGate::new(10);
        let start = Instant::now();
        let passed = (0..100).filter(|_| gate.admit(start) != Admission::Drop).count();
        assert_eq!(passed, 10, "a burst of one second's lines passes, the rest is dropped");
        // Half a second later five more lines have room; no report yet (under a second).
        let later = start + Duration::from_millis(500);
        assert_eq!(gate.admit(later), Admission::Pass { report_dropped: None });
        // A second after the start the next line passes with the count of those dropped.
        let after = start + Duration::from_millis(1100);
        assert_eq!(gate.admit(after), Admission::Pass { report_dropped: Some(90) });
    }

    #[test]
    fn long_texts_are_cut_at_a_character_boundary() {
        let text = "é".repeat(MAX_LOG_TEXT);
        let cut = bounded(&text);
        assert!(cut.len() < MAX_LOG_TEXT + 40 && cut.ends_with("bytes cut)"));
        assert_eq!(bounded("short"), "short");
    }
}

//! Guest stdout/stderr: captured, bounded, and logged through tracing with the namespace,
//! module and function. Its own test binary, so a process-wide log subscriber sees every event.

use easyrpc::runtime::{CallLimits, Module};
use easyrpc::value::Value;
use easyrpc_tests::{load, v};
use std::sync::{Arc, Mutex};

async fn call(m: &Arc<Module>, name: &str, args: &str, limits: CallLimits) -> Value {
    let Value::List(args) = v(args) else { panic!("args must be a list") };
    m.call(name, args, vec![], limits).await.expect("call succeeds")
}

/// Collects formatted log lines so the test can read what the host logged.
#[derive(Clone, Default)]
struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn huge_output_is_captured_bounded_and_tagged() {
    let logs = LogBuffer::default();
    let writer = logs.clone();
    // The only test in this binary, so the process-wide subscriber sees every event.
    let subscriber = tracing_subscriber::fmt().with_writer(move || writer.clone()).with_ansi(false).finish();
    tracing::subscriber::set_global_default(subscriber).expect("first subscriber");
    let hostile = load("hostile");
    let limits = CallLimits { output: 16 << 10, ..CallLimits::default() };
    // 4 MiB to each stream; the guest must not notice the bound.
    let written = call(&hostile, "shout", "[4]", limits).await;
    assert_eq!(written, Value::Int(8 << 20));
    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    let stdout_line = text.lines().find(|l| l.contains("stream=\"stdout\"")).expect("stdout logged");
    assert!(stdout_line.contains("module=hostile") && stdout_line.contains("function=\"shout\""), "{stdout_line}");
    assert!(stdout_line.contains(&format!("dropped_bytes={}", (4 << 20) - (16 << 10))), "{stdout_line}");
    assert!(text.len() < 3 * (16 << 10) + 4096, "log holds {} bytes", text.len());
    assert_eq!(call(&hostile, "ok", "[]", CallLimits::default()).await, Value::Str("ok".into()));

    // Called in a namespace (as every call from a caller is), the lines name it.
    let mut snapshot = easyrpc::registry::RegistrySnapshot::default();
    snapshot.add_module_with_limits("loud", &hostile, limits);
    let context = easyrpc::dispatch::CallContext { namespace: "loud", request_id: "r1", relay: Default::default() };
    let resolved = easyrpc::dispatch::resolve(&snapshot, context, "shout").expect("shout in loud");
    assert!(resolved.call(vec![Value::Int(1)], vec![]).await.is_ok());
    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    let line = text.lines().rev().find(|l| l.contains("stream=\"stdout\"")).expect("stdout logged");
    assert!(line.contains("namespace=loud module=hostile"), "{line}");
}

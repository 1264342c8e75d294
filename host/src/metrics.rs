//! The host's metrics and health, on an HTTP port of their own: `/metrics` in the Prometheus
//! text format (OpenMetrics), `/healthz` (the process answers) and `/readyz` (the configured
//! modules are loaded and the configured links are up). Off unless `metrics_addr` (or
//! `--metrics-addr`) names an address.
//!
//! Owns the process's metrics (one set, [`metrics`]) and the small HTTP responder that serves
//! them. Label sets are bounded: a namespace and a function the registry resolved, an error
//! kind from a fixed list, a link direction; never arguments, request ids or peer addresses.
//! Until the endpoint starts nothing is recorded (one atomic load per call), so a host without
//! it pays nothing. It imports nothing else of the host: the modules that count call into it.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Largest HTTP request head the endpoint reads.
const MAX_REQUEST_HEAD: usize = 8 << 10;
/// How long a scraper may take to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Scrapes answered at once; more wait for the listener.
const MAX_SCRAPES: usize = 16;

/// A call's namespace and function.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FunctionLabels {
    pub namespace: String,
    pub function: String,
}

/// A failed call's namespace, function and error kind.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub namespace: String,
    pub function: String,
    pub kind: String,
}

/// Which side of a link this host is.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LinkLabels {
    /// `parent`: a link this host dialed to its parent; `child`: a child that dialed in.
    pub direction: &'static str,
}

/// What a deploy or removal did.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeployLabels {
    /// `deployed`, `failed` or `removed`.
    pub outcome: &'static str,
}

/// What sets the gauges kept elsewhere before a scrape.
type Sampler = Box<dyn Fn(&Metrics) + Send + Sync>;

/// The process's metrics.
pub struct Metrics {
    registry: Registry,
    calls: Family<FunctionLabels, Counter>,
    errors: Family<ErrorLabels, Counter>,
    latency: Family<FunctionLabels, Histogram>,
    pub calls_in_flight: Gauge,
    pub connections: Gauge,
    pub open_generators: Gauge,
    links_up: Family<LinkLabels, Gauge>,
    link_drops: Family<LinkLabels, Counter>,
    deploys: Family<DeployLabels, Counter>,
    pub instances_ready: Gauge,
    pub instances_warm: Gauge,
    pub guest_memory_bytes: Gauge,
    /// Sets gauges read from elsewhere (the runtime) just before each scrape.
    sampler: Mutex<Option<Sampler>>,
    enabled: AtomicBool,
}

fn latency_histogram() -> Histogram {
    // 10 µs to about 42 s, each bucket four times the last.
    Histogram::new(exponential_buckets(10e-6, 4.0, 12))
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::with_prefix("easyrpc");
        let calls = Family::<FunctionLabels, Counter>::default();
        let errors = Family::<ErrorLabels, Counter>::default();
        let latency = Family::<FunctionLabels, Histogram>::new_with_constructor(latency_histogram as fn() -> Histogram);
        let links_up = Family::<LinkLabels, Gauge>::default();
        let link_drops = Family::<LinkLabels, Counter>::default();
        let deploys = Family::<DeployLabels, Counter>::default();
        let m = Metrics {
            registry: Registry::default(),
            calls,
            errors,
            latency,
            calls_in_flight: Gauge::default(),
            connections: Gauge::default(),
            open_generators: Gauge::default(),
            links_up,
            link_drops,
            deploys,
            instances_ready: Gauge::default(),
            instances_warm: Gauge::default(),
            guest_memory_bytes: Gauge::default(),
            sampler: Mutex::new(None),
            enabled: AtomicBool::new(false),
        };
        registry.register("calls", "Calls that finished, by namespace and function", m.calls.clone());
        registry.register("call_errors", "Calls that failed, by namespace, function and error kind", m.errors.clone());
        registry.register("call_duration_seconds", "How long calls took, by namespace and function", m.latency.clone());
        registry.register("calls_in_flight", "Calls running or waiting for a slot", m.calls_in_flight.clone());
        registry.register("connections", "Open client and link connections", m.connections.clone());
        registry.register("open_generators", "Generators opened and not yet ended", m.open_generators.clone());
        registry.register("links_up", "Cluster links up, by direction", m.links_up.clone());
        registry.register("link_drops", "Cluster links that went down, by direction", m.link_drops.clone());
        registry.register("deploys", "Deploys and removals over the wire, by outcome", m.deploys.clone());
        registry.register("instances_ready", "Instances made ahead of calls", m.instances_ready.clone());
        registry.register(
            "instances_warm",
            "Instances kept between calls of namespaces that reuse them",
            m.instances_warm.clone(),
        );
        registry.register(
            "guest_memory_bytes",
            "Guest linear memory granted now, all instances",
            m.guest_memory_bytes.clone(),
        );
        Metrics { registry, ..m }
    }

    /// Whether metrics are being recorded (the endpoint has started).
    pub fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    /// Records a call of `function` in `namespace` that took `took`; `error` is its error kind.
    pub fn record_call(&self, namespace: &str, function: &str, took: Duration, error: Option<&str>) {
        let labels = FunctionLabels { namespace: namespace.to_owned(), function: function.to_owned() };
        self.calls.get_or_create(&labels).inc();
        self.latency.get_or_create(&labels).observe(took.as_secs_f64());
        if let Some(kind) = error {
            let FunctionLabels { namespace, function } = labels;
            self.errors.get_or_create(&ErrorLabels { namespace, function, kind: kind.to_owned() }).inc();
        }
    }

    pub fn record_deploy(&self, outcome: &'static str) {
        if self.enabled() {
            self.deploys.get_or_create(&DeployLabels { outcome }).inc();
        }
    }

    /// Calls `sample` before every scrape (for gauges kept elsewhere).
    pub fn sample_with(&self, sample: impl Fn(&Metrics) + Send + Sync + 'static) {
        *self.sampler.lock().unwrap_or_else(|e| e.into_inner()) = Some(Box::new(sample));
    }

    /// The metrics in the text exposition format.
    pub fn encode(&self) -> String {
        if let Some(sample) = &*self.sampler.lock().unwrap_or_else(|e| e.into_inner()) {
            sample(self);
        }
        let mut text = String::new();
        // Writing into a String does not fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

/// The process's metrics.
pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

/// Counts one of something while it lives (a connection, a generator, a call in flight) on a
/// gauge, if metrics are recorded when it starts. The default counts nothing.
#[derive(Default)]
pub struct Held(Option<Gauge>);

impl Held {
    pub fn on(gauge: &Gauge) -> Self {
        if !metrics().enabled() {
            return Self(None);
        }
        gauge.inc();
        Self(Some(gauge.clone()))
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Some(gauge) = &self.0 {
            gauge.dec();
        }
    }
}

/// A cluster link while it is up: counted up, and as a drop when it ends.
pub struct LinkUp(Option<LinkLabels>);

impl LinkUp {
    /// `direction`: `parent` or `child`.
    pub fn new(direction: &'static str) -> Self {
        let labels = LinkLabels { direction };
        metrics().links_up.get_or_create(&labels).inc();
        Self(Some(labels))
    }
}

impl Drop for LinkUp {
    fn drop(&mut self) {
        if let Some(labels) = self.0.take() {
            let m = metrics();
            m.links_up.get_or_create(&labels).dec();
            m.link_drops.get_or_create(&labels).inc();
        }
    }
}

/// What `/readyz` waits for: the configured modules loaded, the configured parent links up.
#[derive(Debug, Default)]
pub struct Readiness {
    modules_loaded: AtomicBool,
    parent_links: AtomicUsize,
}

impl Readiness {
    /// Ready once the modules are loaded and `parent_links` links to parents are up.
    pub fn new(parent_links: usize) -> Arc<Self> {
        Arc::new(Self { modules_loaded: AtomicBool::new(false), parent_links: AtomicUsize::new(parent_links) })
    }

    pub fn modules_loaded(&self) {
        self.modules_loaded.store(true, Ordering::Release);
    }

    /// None when ready, else why not.
    fn not_ready(&self) -> Option<String> {
        if !self.modules_loaded.load(Ordering::Acquire) {
            return Some("the configured modules are still loading".to_owned());
        }
        let wanted = self.parent_links.load(Ordering::Acquire) as i64;
        let up = metrics().links_up.get_or_create(&LinkLabels { direction: "parent" }).get();
        (up < wanted).then(|| format!("{up} of {wanted} links to parent hosts are up"))
    }
}

/// Serves `/metrics`, `/healthz` and `/readyz` on `listener` until `stop` completes, and
/// records metrics from now on.
pub async fn serve_http(
    listener: tokio::net::TcpListener,
    readiness: Arc<Readiness>,
    stop: impl std::future::Future<Output = ()>,
) {
    metrics().enabled.store(true, Ordering::Relaxed);
    let scrapes = Arc::new(tokio::sync::Semaphore::new(MAX_SCRAPES));
    tokio::pin!(stop);
    loop {
        let accepted = tokio::select! {
            _ = &mut stop => return,
            accepted = listener.accept() => accepted,
        };
        let Ok((stream, _)) = accepted else { continue };
        let Ok(slot) = scrapes.clone().acquire_owned().await else { return };
        let readiness = readiness.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let _ = tokio::time::timeout(REQUEST_TIMEOUT, answer(stream, &readiness)).await;
        });
    }
}

/// Reads one request head and answers it; the connection closes after.
async fn answer(mut stream: tokio::net::TcpStream, readiness: &Readiness) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
        if head.len() > MAX_REQUEST_HEAD {
            return respond(&mut stream, "431 Request Header Fields Too Large", "text/plain", "too large\n").await;
        }
    }
    let line = String::from_utf8_lossy(&head);
    let mut words = line.split_whitespace();
    let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    if method != "GET" {
        return respond(&mut stream, "405 Method Not Allowed", "text/plain", "GET only\n").await;
    }
    match path.split('?').next().unwrap_or("") {
        "/metrics" => {
            let body = metrics().encode();
            respond(&mut stream, "200 OK", "application/openmetrics-text; version=1.0.0; charset=utf-8", &body).await
        }
        "/healthz" => respond(&mut stream, "200 OK", "text/plain", "ok\n").await,
        "/readyz" => match readiness.not_ready() {
            None => respond(&mut stream, "200 OK", "text/plain", "ready\n").await,
            Some(why) => {
                respond(&mut stream, "503 Service Unavailable", "text/plain", &format!("not ready: {why}\n")).await
            }
        },
        _ => respond(&mut stream, "404 Not Found", "text/plain", "/metrics, /healthz or /readyz\n").await,
    }
}

async fn respond(
    stream: &mut tokio::net::TcpStream,
    status: &str,
    content_type: &str,
    body: &str,
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}

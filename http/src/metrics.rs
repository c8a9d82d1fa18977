//! Prometheus metrics in the text format at `GET /metrics`.
//!
//! - `flowbot_http_requests_total{route,method,status}` and
//!   `flowbot_http_request_duration_seconds{route}`: every request, by matched route.
//! - `flowbot_turn_duration_seconds{operation}`: API calls that drive an instance turn (start,
//!   complete, message, signal, cancel, retry, resolve), until the turn is durable.
//! - `flowbot_instances_started_total`, `_completed_total`, `_failed_total`,
//!   `_terminated_total{process}`: from the engine's event stream (every instance, whoever drove
//!   it: the API, a timer, a job).
//! - `flowbot_llm_calls_total`, `flowbot_llm_tokens_total{kind}`, `flowbot_llm_seconds_total`.
//! - `flowbot_open_incidents`, `flowbot_store_flushes_total`, `flowbot_store_flush_seconds_total`,
//!   `flowbot_store_flushed_commits_total`: read when scraped.
//! - `flowbot_webhook_deliveries_total{webhook,outcome}`: posts to webhooks, `delivered` or
//!   `failed` (each failed try counts).
//! - `flowbot_metrics_events_lagged_total`: engine events the counters missed because they
//!   could not keep up (the instance counters are low by that much).
//!
//! Invariant: recording never blocks a request or a turn (atomic counters; the event stream is
//! a lossy broadcast that never slows the engine).

use flowbot_app::App;
use flowbot_engine::executor::Event;
use flowbot_engine::runtime::HistoryEntry;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, watch};

/// The service's metrics.
pub struct Metrics {
    registry: Registry,
    http_requests: IntCounterVec,
    http_duration: HistogramVec,
    turn_duration: HistogramVec,
    started: IntCounterVec,
    completed: IntCounterVec,
    failed: IntCounterVec,
    terminated: IntCounterVec,
    llm_calls: IntCounter,
    llm_tokens: IntCounterVec,
    llm_millis: IntCounter,
    events_lagged: IntCounter,
    webhook_deliveries: IntCounterVec,
    open_incidents: IntGauge,
    flushes: IntGauge,
    flushed_commits: IntGauge,
    flush_seconds: prometheus::Gauge,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// Latency buckets from 100 µs to 10 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Self {
        let registry = Registry::new();
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            let metric = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry
                .register(Box::new(metric.clone()))
                .expect("registered once");
            metric
        };
        let histogram_vec = |name: &str, help: &str, labels: &[&str]| {
            let opts = HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec());
            let metric = HistogramVec::new(opts, labels).expect("valid metric");
            registry
                .register(Box::new(metric.clone()))
                .expect("registered once");
            metric
        };
        let counter = |name: &str, help: &str| {
            let metric = IntCounter::new(name, help).expect("valid metric");
            registry
                .register(Box::new(metric.clone()))
                .expect("registered once");
            metric
        };
        let gauge = |name: &str, help: &str| {
            let metric = IntGauge::new(name, help).expect("valid metric");
            registry
                .register(Box::new(metric.clone()))
                .expect("registered once");
            metric
        };
        let flush_seconds = prometheus::Gauge::new(
            "flowbot_store_flush_seconds_total",
            "Time the store spent flushing to disk (group commit), in seconds.",
        )
        .expect("valid metric");
        registry
            .register(Box::new(flush_seconds.clone()))
            .expect("registered once");
        Self {
            http_requests: counter_vec(
                "flowbot_http_requests_total",
                "HTTP requests by route, method and status.",
                &["route", "method", "status"],
            ),
            http_duration: histogram_vec(
                "flowbot_http_request_duration_seconds",
                "HTTP request latency by route.",
                &["route"],
            ),
            turn_duration: histogram_vec(
                "flowbot_turn_duration_seconds",
                "API calls that drive an instance turn, until the turn is durable.",
                &["operation"],
            ),
            started: counter_vec(
                "flowbot_instances_started_total",
                "Instances started, by process.",
                &["process"],
            ),
            completed: counter_vec(
                "flowbot_instances_completed_total",
                "Instances completed, by process.",
                &["process"],
            ),
            failed: counter_vec(
                "flowbot_instances_failed_total",
                "Instances stopped by an incident, by process.",
                &["process"],
            ),
            terminated: counter_vec(
                "flowbot_instances_terminated_total",
                "Instances cancelled, by process.",
                &["process"],
            ),
            llm_calls: counter("flowbot_llm_calls_total", "Language-model steps answered."),
            llm_tokens: counter_vec(
                "flowbot_llm_tokens_total",
                "Language-model tokens, prompt and completion.",
                &["kind"],
            ),
            llm_millis: counter(
                "flowbot_llm_milliseconds_total",
                "Time spent in language-model calls, in milliseconds.",
            ),
            events_lagged: counter(
                "flowbot_metrics_events_lagged_total",
                "Engine events the instance counters missed (they could not keep up).",
            ),
            webhook_deliveries: counter_vec(
                "flowbot_webhook_deliveries_total",
                "Posts of notification-log entries to webhooks, by webhook and outcome.",
                &["webhook", "outcome"],
            ),
            open_incidents: gauge("flowbot_open_incidents", "Incidents awaiting an operator."),
            flushes: gauge(
                "flowbot_store_flushes_total",
                "Flushes of the store to disk (group commit).",
            ),
            flushed_commits: gauge(
                "flowbot_store_flushed_commits_total",
                "Commits made durable by those flushes.",
            ),
            flush_seconds,
            registry,
        }
    }

    /// Records one HTTP request.
    pub fn http_request(&self, route: &str, method: &str, status: u16, elapsed: Duration) {
        self.http_requests
            .with_label_values(&[route, method, &status.to_string()])
            .inc();
        self.http_duration
            .with_label_values(&[route])
            .observe(elapsed.as_secs_f64());
    }

    /// Records one try to post an entry to a webhook.
    pub fn webhook_delivery(&self, webhook: &str, delivered: bool) {
        let outcome = if delivered { "delivered" } else { "failed" };
        self.webhook_deliveries
            .with_label_values(&[webhook, outcome])
            .inc();
    }

    /// Records one API call that drove a turn.
    pub fn turn(&self, operation: &str, elapsed: Duration) {
        self.turn_duration
            .with_label_values(&[operation])
            .observe(elapsed.as_secs_f64());
    }

    /// Counts what one engine history record says.
    fn record(&self, instance: &str, entry: &HistoryEntry) {
        let process = process_of(instance);
        match entry {
            HistoryEntry::Executor { event } => match event {
                Event::InstanceStarted { .. } => self.started.with_label_values(&[process]).inc(),
                Event::InstanceCompleted => self.completed.with_label_values(&[process]).inc(),
                Event::IncidentRaised { .. } => self.failed.with_label_values(&[process]).inc(),
                Event::InstanceTerminated => self.terminated.with_label_values(&[process]).inc(),
                _ => {}
            },
            HistoryEntry::LlmCalled {
                prompt_tokens,
                completion_tokens,
                elapsed_ms,
                ..
            } => {
                self.llm_calls.inc();
                self.llm_tokens
                    .with_label_values(&["prompt"])
                    .inc_by(*prompt_tokens as u64);
                self.llm_tokens
                    .with_label_values(&["completion"])
                    .inc_by(*completion_tokens as u64);
                self.llm_millis.inc_by(*elapsed_ms);
            }
            _ => {}
        }
    }

    /// The text exposition, with the values read at scrape time brought up to date.
    pub fn render(&self, app: &App) -> String {
        self.open_incidents.set(app.incidents().len() as i64);
        if let Some(stats) = app.flush_stats() {
            self.flushes.set(stats.flushes as i64);
            self.flushed_commits.set(stats.commits as i64);
            self.flush_seconds.set(stats.flush_seconds);
        }
        let mut text = Vec::new();
        if let Err(error) = TextEncoder::new().encode(&self.registry.gather(), &mut text) {
            tracing::error!("cannot encode the metrics: {error}");
        }
        String::from_utf8(text).unwrap_or_default()
    }
}

/// The process of an instance id (`<process>-<number>`).
fn process_of(instance: &str) -> &str {
    instance
        .rsplit_once('-')
        .map(|(process, _)| process)
        .unwrap_or(instance)
}

/// Counts instance and language-model events until `shutdown` turns true.
pub async fn count_engine_events(
    app: Arc<App>,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut events = app.engine().subscribe();
    loop {
        tokio::select! {
            event = events.recv() => match event {
                Ok(event) => metrics.record(&event.instance, &event.record.entry),
                Err(broadcast::error::RecvError::Lagged(missed)) => metrics.events_lagged.inc_by(missed),
                Err(broadcast::error::RecvError::Closed) => return,
            },
            _ = shutdown.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_ids_come_from_instance_ids() {
        assert_eq!(process_of("order_processing-17"), "order_processing");
        assert_eq!(process_of("a-b-3"), "a-b");
        assert_eq!(process_of("plain"), "plain");
    }

    #[test]
    fn events_are_counted_by_process() {
        let metrics = Metrics::new();
        let started = HistoryEntry::Executor {
            event: Event::InstanceStarted {
                variables: Default::default(),
            },
        };
        metrics.record("order-1", &started);
        metrics.record("order-2", &started);
        metrics.record(
            "order-1",
            &HistoryEntry::Executor {
                event: Event::InstanceCompleted,
            },
        );
        metrics.http_request("/api/v1/instances", "POST", 201, Duration::from_millis(3));
        let mut text = Vec::new();
        TextEncoder::new()
            .encode(&metrics.registry.gather(), &mut text)
            .unwrap();
        let text = String::from_utf8(text).unwrap();
        assert!(
            text.contains("flowbot_instances_started_total{process=\"order\"} 2"),
            "{text}"
        );
        assert!(text.contains("flowbot_instances_completed_total{process=\"order\"} 1"));
        assert!(text.contains(
            "flowbot_http_requests_total{method=\"POST\",route=\"/api/v1/instances\",status=\"201\"} 1"
        ));
    }
}

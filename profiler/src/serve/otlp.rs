//! The OTLP metrics of the exported series and of the profiler's health: the families, label
//! sets, values and bucket bounds of the Prometheus exposition, as one
//! `ExportMetricsServiceRequest` with cumulative temporality (counters as monotonic sums,
//! histograms with explicit bounds). Pure: series in, protobuf message out.
use opentelemetry_proto::tonic::{
    collector::metrics::v1::ExportMetricsServiceRequest,
    common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value},
    metrics::v1::{
        AggregationTemporality, Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint,
        ResourceMetrics, ScopeMetrics, Sum, metric, number_data_point,
    },
    resource::v1::Resource,
};

use prost::Message as _;

use crate::{
    render::prometheus::{self, COUNTERS, HISTOGRAMS, Health},
    serve::series::{Labels, Series},
};

/// What the metrics describe and over which time.
#[derive(Clone, Debug)]
pub struct Context {
    /// The `host.name` resource attribute.
    pub host: String,
    /// Start of the cumulative sums (the start of `profiler serve`), ns since the epoch.
    pub start_ns: u64,
    /// The moment of the values, ns since the epoch.
    pub now_ns: u64,
}

fn text(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.to_string())),
        }),
        ..KeyValue::default()
    }
}

fn attributes(l: &Labels) -> Vec<KeyValue> {
    vec![
        text("comm", &l.comm),
        text("call", &l.call),
        text("fd_class", l.fd_class),
        text("model", l.model),
    ]
}

fn metric(name: &str, help: &str, unit: &str, data: metric::Data) -> Metric {
    Metric {
        name: name.to_string(),
        description: help.to_string(),
        unit: unit.to_string(),
        data: Some(data),
        ..Metric::default()
    }
}

fn point(cx: &Context, attributes: Vec<KeyValue>, value: f64) -> NumberDataPoint {
    NumberDataPoint {
        attributes,
        start_time_unix_nano: cx.start_ns,
        time_unix_nano: cx.now_ns,
        value: Some(number_data_point::Value::AsDouble(value)),
        ..NumberDataPoint::default()
    }
}

fn cumulative_sum(data_points: Vec<NumberDataPoint>) -> metric::Data {
    metric::Data::Sum(Sum {
        data_points,
        aggregation_temporality: AggregationTemporality::Cumulative as i32,
        is_monotonic: true,
    })
}

/// Every metric family of the series and the health, one at a time: the counters, the
/// histograms, the health.
fn metrics<'a>(
    series: &'a Series,
    health: &'a Health,
    cx: &'a Context,
) -> impl Iterator<Item = Metric> + 'a {
    let counters = COUNTERS.into_iter().map(move |c| {
        let points = series
            .sums
            .iter()
            .map(|(l, s)| point(cx, attributes(l), (c.value)(s)))
            .collect();
        metric(c.name, c.help, c.unit, cumulative_sum(points))
    });
    let hists = HISTOGRAMS.into_iter().enumerate().map(move |(i, h)| {
        let data_points = series
            .sums
            .iter()
            .map(|(l, s)| {
                let range = series.ranges.get(l).and_then(|r| r[i]);
                histogram_point(cx, attributes(l), (h.value)(s), range)
            })
            .collect();
        let data = metric::Data::Histogram(Histogram {
            data_points,
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
        });
        metric(h.name, h.help, h.unit, data)
    });
    let own = prometheus::health_metrics(series, health)
        .into_iter()
        .map(move |m| {
            let points = vec![point(cx, Vec::new(), m.value)];
            let data = if m.counter {
                cumulative_sum(points)
            } else {
                metric::Data::Gauge(Gauge {
                    data_points: points,
                })
            };
            metric(m.name, m.help, m.unit, data)
        });
    counters.chain(hists).chain(own)
}

fn resource(cx: &Context) -> Resource {
    Resource {
        attributes: vec![text("service.name", "ioprof"), text("host.name", &cx.host)],
        ..Resource::default()
    }
}

fn scope() -> InstrumentationScope {
    InstrumentationScope {
        name: "ioprof".to_string(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        ..InstrumentationScope::default()
    }
}

/// The request that carries every series and the health at `cx.now_ns`, whole (see
/// [`encode`]).
pub fn request(series: &Series, health: &Health, cx: &Context) -> ExportMetricsServiceRequest {
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(resource(cx)),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(scope()),
                metrics: metrics(series, health, cx).collect(),
                ..ScopeMetrics::default()
            }],
            ..ResourceMetrics::default()
        }],
    }
}

/// The protobuf encoding of [`request`], made one metric family at a time, each into a buffer
/// of its exact size: a family's structures are dropped once encoded, so a push holds little
/// more than its wire bytes. The body is `head`, then each of `families` in turn.
#[derive(Debug)]
pub struct Encoded {
    /// The request's frame: the resource and the scope, and the lengths around the metrics.
    pub head: Vec<u8>,
    /// The encoded metric families, each a `metrics` field of the scope.
    pub families: Vec<Vec<u8>>,
}

impl Encoded {
    pub fn len(&self) -> usize {
        self.head.len() + self.families.iter().map(Vec::len).sum::<usize>()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The key of a length-delimited field `tag` (wire type 2), for tags below 16: one byte.
fn key(tag: u8) -> u8 {
    (tag << 3) | 2
}

/// Appends `len` as a protobuf length prefix.
fn length(len: usize, out: &mut Vec<u8>) {
    // A Vec grows as needed: encoding into it cannot fail.
    let _ = prost::encode_length_delimiter(len, out);
}

/// The request of [`request`], encoded family by family (see [`Encoded`]).
pub fn encode(series: &Series, health: &Health, cx: &Context) -> Encoded {
    let families: Vec<Vec<u8>> = metrics(series, health, cx)
        .map(|m| {
            let len = m.encoded_len();
            let mut out = Vec::with_capacity(len + 11);
            // ScopeMetrics.metrics = 2.
            out.push(key(2));
            length(len, &mut out);
            let _ = m.encode(&mut out);
            out
        })
        .collect();
    let all: usize = families.iter().map(Vec::len).sum();
    // The fields of a message may come in any order and be written apart: the scope's own
    // field, then its metrics; the resource, then the one ScopeMetrics.
    let scope_only = ScopeMetrics {
        scope: Some(scope()),
        ..ScopeMetrics::default()
    }
    .encode_to_vec();
    let mut resource_metrics = ResourceMetrics {
        resource: Some(resource(cx)),
        ..ResourceMetrics::default()
    }
    .encode_to_vec();
    // ResourceMetrics.scope_metrics = 2.
    resource_metrics.push(key(2));
    length(scope_only.len() + all, &mut resource_metrics);
    resource_metrics.extend_from_slice(&scope_only);
    // ExportMetricsServiceRequest.resource_metrics = 1.
    let mut head = vec![key(1)];
    length(resource_metrics.len() + all, &mut head);
    head.extend_from_slice(&resource_metrics);
    Encoded { head, families }
}

/// One histogram point: the bounds of the Prometheus buckets, and the count of each bucket
/// (OTLP counts per bucket where Prometheus counts at or below each bound), the last one
/// everything above the last bound.
fn histogram_point(
    cx: &Context,
    attributes: Vec<KeyValue>,
    (hist, sum_ns): (&[u64; probe_common::HIST_BUCKETS], u64),
    range: Option<(usize, usize)>,
) -> HistogramDataPoint {
    let count: u64 = hist.iter().sum();
    let mut explicit_bounds = Vec::new();
    let mut bucket_counts = Vec::new();
    let mut below = 0;
    for (le, cum) in prometheus::buckets(hist, range) {
        explicit_bounds.push(le);
        bucket_counts.push(cum - below);
        below = cum;
    }
    bucket_counts.push(count - below);
    HistogramDataPoint {
        attributes,
        start_time_unix_nano: cx.start_ns,
        time_unix_nano: cx.now_ns,
        count,
        sum: Some(prometheus::seconds(sum_ns)),
        bucket_counts,
        explicit_bounds,
        ..HistogramDataPoint::default()
    }
}

/// The host's name (`/proc/sys/kernel/hostname`), `unknown` when unreadable.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".to_string())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::{analyze::summary::Summaries, render::prometheus::PushCounts};
    use opentelemetry_proto::tonic::metrics::v1::metric::Data;
    use probe_common::{CallSummary, SummaryKey, hist_bucket};

    /// The samples of an exposition, keyed by the line without its value.
    fn exposition_samples(text: &str) -> BTreeMap<String, f64> {
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| {
                let (k, v) = l.rsplit_once(' ').expect("a sample");
                (k.to_string(), v.parse().expect("a number"))
            })
            .collect()
    }

    fn label_text(attrs: &[KeyValue]) -> Vec<String> {
        attrs
            .iter()
            .map(
                |kv| match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                    Some(any_value::Value::StringValue(s)) => format!("{}=\"{s}\"", kv.key),
                    other => panic!("{}: not a string: {other:?}", kv.key),
                },
            )
            .collect()
    }

    fn key(name: &str, labels: &[String]) -> String {
        match labels {
            [] => name.to_string(),
            l => format!("{name}{{{}}}", l.join(",")),
        }
    }

    /// The request's points as the exposition's samples would be, with checks of what only
    /// OTLP says (temporality, monotonicity, times).
    fn otlp_samples(req: &ExportMetricsServiceRequest, cx: &Context) -> BTreeMap<String, f64> {
        let mut out = BTreeMap::new();
        let value = |p: &NumberDataPoint| {
            assert_eq!(
                (p.start_time_unix_nano, p.time_unix_nano),
                (cx.start_ns, cx.now_ns)
            );
            match p.value {
                Some(number_data_point::Value::AsDouble(v)) => v,
                other => panic!("not a double: {other:?}"),
            }
        };
        let [rm] = req.resource_metrics.as_slice() else {
            panic!("one resource");
        };
        let resource = rm.resource.as_ref().expect("a resource");
        assert_eq!(
            label_text(&resource.attributes),
            ["service.name=\"ioprof\"", "host.name=\"h\""]
        );
        for m in rm.scope_metrics.iter().flat_map(|s| &s.metrics) {
            match m.data.as_ref().expect("data") {
                Data::Sum(s) => {
                    assert!(s.is_monotonic, "{}", m.name);
                    assert_eq!(
                        s.aggregation_temporality,
                        AggregationTemporality::Cumulative as i32
                    );
                    for p in &s.data_points {
                        out.insert(key(&m.name, &label_text(&p.attributes)), value(p));
                    }
                }
                Data::Gauge(g) => {
                    for p in &g.data_points {
                        out.insert(key(&m.name, &label_text(&p.attributes)), value(p));
                    }
                }
                Data::Histogram(h) => {
                    assert_eq!(
                        h.aggregation_temporality,
                        AggregationTemporality::Cumulative as i32
                    );
                    for p in &h.data_points {
                        let l = label_text(&p.attributes);
                        assert_eq!(p.bucket_counts.len(), p.explicit_bounds.len() + 1);
                        assert_eq!(p.bucket_counts.iter().sum::<u64>(), p.count);
                        let mut cum = 0;
                        for (le, c) in p.explicit_bounds.iter().zip(&p.bucket_counts) {
                            cum += c;
                            let mut with_le = l.clone();
                            with_le.push(format!("le=\"{le}\""));
                            out.insert(key(&format!("{}_bucket", m.name), &with_le), cum as f64);
                        }
                        let mut inf = l.clone();
                        inf.push("le=\"+Inf\"".into());
                        out.insert(key(&format!("{}_bucket", m.name), &inf), p.count as f64);
                        let sum = p.sum.expect("a sum");
                        out.insert(key(&format!("{}_sum", m.name), &l), sum);
                        out.insert(key(&format!("{}_count", m.name), &l), p.count as f64);
                    }
                }
                other => panic!("{}: unexpected {other:?}", m.name),
            }
        }
        out
    }

    #[test]
    fn the_push_carries_the_exposition_s_samples_exactly() {
        let summary = |calls: u64, wait_ns: u64| {
            let mut s = CallSummary {
                calls,
                bytes: 4096 * calls,
                total_ns: 2 * wait_ns * calls,
                wait_ns: wait_ns * calls,
                wait_blocked_ns: wait_ns * calls / 2,
                copy_ns: 700 * calls,
                errors: 1,
                ..CallSummary::default()
            };
            s.hist_wait[hist_bucket(wait_ns)] = calls - 1;
            s.hist_wait[hist_bucket(3 * wait_ns)] = 1;
            s.hist_total[hist_bucket(2 * wait_ns)] = calls;
            s.hist_copy[hist_bucket(700)] = calls;
            s
        };
        let key = |pid, nr: i64, fd_class| SummaryKey {
            pid,
            nr: nr as u32,
            fd_class,
        };
        let live: Summaries = [
            (
                key(1, libc::SYS_recvfrom, probe_common::fd_class::TCP),
                summary(100, 5_000_000),
            ),
            (
                key(2, libc::SYS_read, probe_common::fd_class::FILE),
                summary(7, 30_000),
            ),
        ]
        .into();
        let names = [(1, "server".to_string()), (2, "cat".to_string())].into();
        let mut series = Series::new(10);
        series.update(&live, &names);
        let health = Health {
            records_lost: 3,
            programs_attached: 12,
            rss_bytes: 1 << 20,
            otlp: Some(PushCounts { ok: 4, failed: 2 }),
            ..Health::default()
        };
        let cx = Context {
            host: "h".into(),
            start_ns: 1_000,
            now_ns: 2_000,
        };
        // Encoded family by family, it decodes to the request built whole.
        let e = encode(&series, &health, &cx);
        let wire = [vec![e.head.clone()], e.families.clone()].concat().concat();
        assert_eq!(wire.len(), e.len());
        let back = ExportMetricsServiceRequest::decode(wire.as_slice()).expect("decode");
        assert_eq!(back, request(&series, &health, &cx));
        let pushed = otlp_samples(&back, &cx);
        let scraped = exposition_samples(&prometheus::exposition(&series, &health));
        assert_eq!(pushed, scraped);
        // What the comparison covers: both label sets' histogram buckets and the push counts.
        assert!(pushed.len() > 100, "{}", pushed.len());
        assert_eq!(pushed["ioprof_otlp_push_failures_total"], 2.0);
        let calls = "ioprof_calls_total{comm=\"server\",call=\"recvfrom\",fd_class=\"tcp\",model=\"unknown\"}";
        assert_eq!(pushed.get(calls), Some(&100.0));
    }
}

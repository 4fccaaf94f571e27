//! Metrics in the Prometheus text exposition format (version 0.0.4), as `serve` answers
//! `GET /metrics`: each family once, with its `# HELP` and `# TYPE` lines, then its samples.
//!
//! Each kind adds its own families (see `kinds::ListRow::metrics`); a family's samples are
//! gathered from every segment before it is written, as the format requires a family's samples
//! to stand together. Counter names end in `_total`; label values are escaped.

use std::fmt::Write as _;

/// Whether a family only goes up (until its segment is made again) or goes up and down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Type {
    Counter,
    Gauge,
}

struct Family {
    name: &'static str,
    help: &'static str,
    ty: Type,
    /// Each sample: its labels, rendered (`name="a",kind="bus"`), and its value.
    samples: Vec<(String, String)>,
}

/// The families of one scrape, in the order they were first added.
#[derive(Default)]
pub(crate) struct Metrics {
    families: Vec<Family>,
}

impl Metrics {
    /// Adds one sample of family `name`; the family's help and type are those of its first
    /// sample.
    pub(crate) fn add(
        &mut self,
        name: &'static str,
        help: &'static str,
        ty: Type,
        labels: &[(&str, &str)],
        value: impl Into<Value>,
    ) {
        debug_assert_eq!(
            ty == Type::Counter,
            name.ends_with("_total"),
            "{name}: counters, and only counters, end in _total"
        );
        let i = match self.families.iter().position(|f| f.name == name) {
            Some(i) => i,
            None => {
                self.families.push(Family {
                    name,
                    help,
                    ty,
                    samples: Vec::new(),
                });
                self.families.len() - 1
            }
        };
        let labels = labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"", escape_label(v)))
            .collect::<Vec<_>>()
            .join(",");
        self.families[i].samples.push((labels, value.into().0));
    }

    /// The families of one segment: each sample labelled with its `name` and `kind`.
    pub(crate) fn segment<'a>(&'a mut self, name: &'a str, kind: &'a str) -> SegmentMetrics<'a> {
        SegmentMetrics {
            metrics: self,
            name,
            kind,
        }
    }

    /// The exposition text.
    pub(crate) fn render(&self) -> String {
        let mut out = String::new();
        for f in &self.families {
            let ty = match f.ty {
                Type::Counter => "counter",
                Type::Gauge => "gauge",
            };
            let _ = writeln!(out, "# HELP {} {}", f.name, escape_help(f.help));
            let _ = writeln!(out, "# TYPE {} {ty}", f.name);
            for (labels, value) in &f.samples {
                if labels.is_empty() {
                    let _ = writeln!(out, "{} {value}", f.name);
                } else {
                    let _ = writeln!(out, "{}{{{labels}}} {value}", f.name);
                }
            }
        }
        out
    }
}

/// A sample value, as written: integers exactly (a count above 2^53 keeps its last digits).
pub(crate) struct Value(String);

impl From<u64> for Value {
    fn from(v: u64) -> Self {
        Value(v.to_string())
    }
}

impl From<usize> for Value {
    fn from(v: usize) -> Self {
        Value(v.to_string())
    }
}

impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value(u8::from(v).to_string())
    }
}

impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Value(if v.is_nan() {
            "NaN".into()
        } else if v.is_infinite() {
            if v > 0.0 { "+Inf" } else { "-Inf" }.into()
        } else {
            format!("{v}")
        })
    }
}

/// The metrics of one segment, labelled with its name and kind.
pub(crate) struct SegmentMetrics<'a> {
    metrics: &'a mut Metrics,
    name: &'a str,
    kind: &'a str,
}

impl SegmentMetrics<'_> {
    pub(crate) fn gauge(&mut self, name: &'static str, help: &'static str, v: impl Into<Value>) {
        self.add(name, help, Type::Gauge, None, v);
    }

    pub(crate) fn counter(&mut self, name: &'static str, help: &'static str, v: impl Into<Value>) {
        self.add(name, help, Type::Counter, None, v);
    }

    /// A gauge with one more label, such as a participant's `role`.
    pub(crate) fn gauge_by(
        &mut self,
        name: &'static str,
        help: &'static str,
        label: (&str, &str),
        v: impl Into<Value>,
    ) {
        self.add(name, help, Type::Gauge, Some(label), v);
    }

    fn add(
        &mut self,
        name: &'static str,
        help: &'static str,
        ty: Type,
        extra: Option<(&str, &str)>,
        v: impl Into<Value>,
    ) {
        let mut labels = vec![("name", self.name), ("kind", self.kind)];
        labels.extend(extra);
        self.metrics.add(name, help, ty, &labels, v);
    }
}

/// A label value: backslash, double quote and line feed escaped.
fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// A help text: backslash and line feed escaped.
fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_family_is_written_once_with_all_its_samples_together() {
        let mut m = Metrics::default();
        m.segment("a", "bus").counter("x_total", "X.", 3u64);
        m.segment("q", "queue").gauge("depth", "Depth.", 2u64);
        m.segment("b", "bus").counter("x_total", "X.", 5u64);
        assert_eq!(
            m.render(),
            "# HELP x_total X.\n# TYPE x_total counter\n\
             x_total{name=\"a\",kind=\"bus\"} 3\nx_total{name=\"b\",kind=\"bus\"} 5\n\
             # HELP depth Depth.\n# TYPE depth gauge\ndepth{name=\"q\",kind=\"queue\"} 2\n"
        );
    }

    #[test]
    fn label_values_and_help_are_escaped() {
        let mut m = Metrics::default();
        m.add(
            "g",
            "a \\ b\nc",
            Type::Gauge,
            &[("name", "q\"x\\y\nz")],
            1.5f64,
        );
        assert_eq!(
            m.render(),
            "# HELP g a \\\\ b\\nc\n# TYPE g gauge\ng{name=\"q\\\"x\\\\y\\nz\"} 1.5\n"
        );
    }

    #[test]
    fn values_are_exact_integers_or_prometheus_floats() {
        let v = |x: Value| x.0;
        assert_eq!(v(u64::MAX.into()), "18446744073709551615");
        assert_eq!(v(true.into()), "1");
        assert_eq!(v(f64::INFINITY.into()), "+Inf");
        assert_eq!(v(f64::NAN.into()), "NaN");
        assert_eq!(v(0.25f64.into()), "0.25");
    }
}

//! Latency distributions: histograms of raw ticks (recorded wherever the measurement happens,
//! possibly in a child process), turned into nanosecond percentiles by the parent.

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// The quantiles every table reports.
pub const QUANTILES: [f64; 5] = [0.5, 0.9, 0.99, 0.999, 0.9999];

/// A histogram of tick counts (3 significant digits, up to 2^42 ticks: over 20 minutes).
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 1 << 42, 3).expect("constant bounds are valid")
}

/// What a histogram says, in raw ticks: small enough to pass from a child on one line.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct TickSummary {
    pub samples: u64,
    /// Values at [`QUANTILES`], then the maximum.
    pub values: Vec<u64>,
    /// (quantile, value) points of the whole distribution, for plots.
    pub curve: Vec<(f64, u64)>,
}

impl TickSummary {
    pub fn of(h: &Histogram<u64>) -> TickSummary {
        let mut values: Vec<u64> = QUANTILES.iter().map(|&q| h.value_at_quantile(q)).collect();
        values.push(h.max());
        let curve = if h.is_empty() {
            Vec::new()
        } else {
            h.iter_quantiles(2)
                .map(|v| (v.quantile_iterated_to(), v.value_iterated_to()))
                .collect()
        };
        TickSummary {
            samples: h.len(),
            values,
            curve,
        }
    }

    /// The figures in nanoseconds, each tick worth `scale` ns.
    pub fn to_ns(&self, scale: f64) -> Pct {
        let v = |i: usize| self.values.get(i).copied().unwrap_or(0) as f64 * scale;
        Pct {
            samples: self.samples,
            p50: v(0),
            p90: v(1),
            p99: v(2),
            p999: v(3),
            p9999: v(4),
            max: v(5),
        }
    }

    /// The plot curve in nanoseconds.
    pub fn curve_ns(&self, scale: f64) -> Vec<(f64, f64)> {
        self.curve
            .iter()
            .map(|&(q, v)| (q, v as f64 * scale))
            .collect()
    }
}

/// Percentiles of one latency (or cost) distribution, in nanoseconds (or, for ratios, a plain
/// factor).
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
pub struct Pct {
    pub samples: u64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    #[serde(rename = "p99.9")]
    pub p999: f64,
    #[serde(rename = "p99.99")]
    pub p9999: f64,
    pub max: f64,
}

impl Pct {
    pub fn map(&self, f: impl Fn(f64) -> f64) -> Pct {
        Pct {
            samples: self.samples,
            p50: f(self.p50),
            p90: f(self.p90),
            p99: f(self.p99),
            p999: f(self.p999),
            p9999: f(self.p9999),
            max: f(self.max),
        }
    }

    /// Every figure divided by `base` (e.g. the c2c one-way latency of the same cores); `None`
    /// without a base.
    pub fn ratio(&self, base: Option<f64>) -> Option<Pct> {
        base.filter(|b| *b > 0.0).map(|b| self.map(|v| v / b))
    }

    /// The figures in table order.
    pub fn figures(&self) -> [f64; 6] {
        [
            self.p50, self.p90, self.p99, self.p999, self.p9999, self.max,
        ]
    }
}

/// Column names matching [`Pct::figures`].
pub const PCT_NAMES: [&str; 6] = ["p50", "p90", "p99", "p99.9", "p99.99", "max"];

/// The median of `v` (not empty).
pub fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// A figure and its floor from alternating rounds: the median of each, and the median of the
/// rounds' ratios (figure / floor).
pub struct Paired {
    pub value: f64,
    pub floor: f64,
    pub ratio: f64,
}

/// Measures `figure` and then `floor`, `rounds` times (at least once) in alternation, so that a
/// slow or fast stretch of the machine falls on both.
pub fn alternate<E>(
    rounds: usize,
    mut figure: impl FnMut() -> Result<f64, E>,
    mut floor: impl FnMut() -> Result<f64, E>,
) -> Result<Paired, E> {
    let (mut values, mut floors, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds.max(1) {
        let (v, f) = (figure()?, floor()?);
        values.push(v);
        floors.push(f);
        ratios.push(v / f);
    }
    Ok(Paired {
        value: median(&mut values),
        floor: median(&mut floors),
        ratio: median(&mut ratios),
    })
}

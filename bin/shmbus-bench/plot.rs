//! `--plot FILE.svg`: latency percentile curves, one line per measured distribution, the
//! percentile on a "nines" axis (50%, 90%, 99%, ...) and latency on a log axis with units.
//!
//! The plot has to read on its own: each legend entry says how its distribution was measured
//! (ping-pong halves or stamped one-way hops), the legend sits beside the chart where no curve
//! can run under it, and distributions measured oversubscribed (more busy processes than
//! cores) are drawn in a panel of their own, so scheduler time slices never pass for latency.

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::report::{Curve, Report};

/// Highest percentile drawn: 99.999% (five nines).
const MAX_NINES: f64 = 5.0;
const WIDTH: u32 = 1280;
const PANEL_HEIGHT: u32 = 560;
/// Room on the right of each panel for its legend.
const LEGEND_WIDTH: u32 = 440;

/// Quantile to "nines": 0.5 -> 0.3, 0.9 -> 1, 0.99 -> 2, ...
fn nines(q: f64) -> f64 {
    (-(1.0 - q).max(1e-12).log10()).min(MAX_NINES)
}

/// A latency with its unit: `850 ns`, `1.5 µs`, `12 µs`, `3.2 ms`.
pub fn with_unit(ns: f64) -> String {
    let (v, unit) = match ns {
        v if v < 1e3 => (v, "ns"),
        v if v < 1e6 => (v / 1e3, "µs"),
        v if v < 1e9 => (v / 1e6, "ms"),
        v => (v / 1e9, "s"),
    };
    if v < 10.0 && v.fract().abs() > 1e-9 {
        format!("{v:.1} {unit}")
    } else {
        format!("{v:.0} {unit}")
    }
}

/// One panel's worth of curves, with each curve's colour index (stable across panels).
struct Panel<'a> {
    caption: String,
    curves: Vec<(usize, &'a Curve)>,
}

pub fn write(report: &Report, path: &Path) -> Result<(), String> {
    let drawn: Vec<(usize, &Curve)> = report
        .curves
        .iter()
        .enumerate()
        .filter(|(_, c)| !c.points.is_empty())
        .collect();
    if drawn.is_empty() {
        return Err("nothing to plot: this command measured no latency distribution".into());
    }
    let (over, clean): (Vec<_>, Vec<_>) = drawn
        .into_iter()
        .partition(|(i, _)| report.curve_oversubscribed(*i));
    let title = format!(
        "shmbus-bench {}: latency percentiles ({}, {} usable cores)",
        report.command, report.machine.cpu, report.machine.cores
    );
    let mut panels = Vec::new();
    if !clean.is_empty() {
        panels.push(Panel {
            caption: "each process on a core of its own".into(),
            curves: clean,
        });
    }
    if !over.is_empty() {
        panels.push(Panel {
            caption: "oversubscribed: more busy processes than cores, so these include \
                      scheduler time slices"
                .into(),
            curves: over,
        });
    }
    let fail = |e: &dyn std::fmt::Display| format!("cannot draw {}: {e}", path.display());
    let height = 40 + PANEL_HEIGHT * panels.len() as u32;
    let root = SVGBackend::new(path, (WIDTH, height)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| fail(&e))?;
    let body = root
        .titled(&title, ("sans-serif", 19))
        .map_err(|e| fail(&e))?;
    let areas = body.split_evenly((panels.len(), 1));
    for (panel, area) in panels.iter().zip(&areas) {
        draw_panel(panel, area).map_err(|e| fail(&e))?;
    }
    root.present().map_err(|e| fail(&e))?;
    Ok(())
}

type DrawResult =
    Result<(), DrawingAreaErrorKind<<SVGBackend<'static> as DrawingBackend>::ErrorType>>;

fn draw_panel(panel: &Panel<'_>, area: &DrawingArea<SVGBackend<'_>, Shift>) -> DrawResult {
    let values = panel
        .curves
        .iter()
        .flat_map(|(_, c)| c.points.iter().map(|p| p.1))
        .filter(|v| *v > 0.0);
    let (lo, hi) = values.fold((f64::MAX, 0.0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let (lo, hi) = ((lo * 0.8).max(1.0), (hi * 1.25).max(lo * 2.0));
    let (plot_area, legend_area) = area.split_horizontally(WIDTH - LEGEND_WIDTH);
    let mut chart = ChartBuilder::on(&plot_area)
        .caption(&panel.caption, ("sans-serif", 15))
        .margin(12)
        .margin_right(24)
        .x_label_area_size(44)
        .y_label_area_size(84)
        .build_cartesian_2d(0f64..MAX_NINES, (lo..hi).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc("one-way latency (log scale)")
        .x_labels(6)
        .x_label_formatter(&|x| {
            let pct = format!("{:.3}", 100.0 * (1.0 - 10f64.powf(-x)));
            format!("{}%", pct.trim_end_matches('0').trim_end_matches('.'))
        })
        .y_label_formatter(&|y| with_unit(*y))
        .draw()?;
    for &(i, c) in &panel.curves {
        let color = Palette99::pick(i).to_rgba();
        let points: Vec<(f64, f64)> = c
            .points
            .iter()
            .map(|&(q, v)| (nines(q), v.max(lo)))
            .collect();
        chart.draw_series(LineSeries::new(points, color.stroke_width(2)))?;
    }
    // The legend beside the chart: no curve, however long its tail, can run under it.
    let line_height = 20;
    let top = 48;
    for (row, &(i, c)) in panel.curves.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let y = top + line_height * row as i32;
        legend_area.draw(&PathElement::new(
            vec![(4, y), (28, y)],
            color.stroke_width(3),
        ))?;
        legend_area.draw(&Text::new(
            c.label.clone(),
            (34, y - 7),
            ("sans-serif", 13).into_font(),
        ))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latencies_carry_their_unit() {
        assert_eq!(with_unit(85.0), "85 ns");
        assert_eq!(with_unit(1500.0), "1.5 µs");
        assert_eq!(with_unit(12_000.0), "12 µs");
        assert_eq!(with_unit(3_200_000.0), "3.2 ms");
    }

    #[test]
    fn nines_map_percentiles_to_even_steps() {
        assert!((nines(0.9) - 1.0).abs() < 1e-9);
        assert!((nines(0.999) - 3.0).abs() < 1e-9);
        assert_eq!(nines(1.0), MAX_NINES);
    }
}

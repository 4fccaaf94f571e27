//! `--plot FILE.svg`: latency percentile curves, one line per measured distribution, the
//! percentile on a "nines" axis (50%, 90%, 99%, ...) and latency on a log axis.

use std::path::Path;

use plotters::prelude::*;

use crate::report::Report;

/// Highest percentile drawn: 99.999% (five nines).
const MAX_NINES: f64 = 5.0;

/// Quantile to "nines": 0.5 -> 0.3, 0.9 -> 1, 0.99 -> 2, ...
fn nines(q: f64) -> f64 {
    (-(1.0 - q).max(1e-12).log10()).min(MAX_NINES)
}

pub fn write(report: &Report, path: &Path) -> Result<(), String> {
    let curves: Vec<_> = report
        .curves
        .iter()
        .filter(|c| !c.points.is_empty())
        .collect();
    if curves.is_empty() {
        return Err("nothing to plot: this command measured no latency distribution".into());
    }
    let values = curves
        .iter()
        .flat_map(|c| c.points.iter().map(|p| p.1))
        .filter(|v| *v > 0.0);
    let (lo, hi) = values.fold((f64::MAX, 0.0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let (lo, hi) = ((lo * 0.8).max(1.0), (hi * 1.25).max(lo * 2.0));
    let fail = |e: &dyn std::fmt::Display| format!("cannot draw {}: {e}", path.display());

    let root = SVGBackend::new(path, (960, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| fail(&e))?;
    let title = format!(
        "shmbus-bench {}: latency percentiles ({})",
        report.command, report.machine.cpu
    );
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .margin_right(48)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..MAX_NINES, (lo..hi).log_scale())
        .map_err(|e| fail(&e))?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc("latency (ns)")
        .x_labels(6)
        .x_label_formatter(&|x| {
            let pct = format!("{:.3}", 100.0 * (1.0 - 10f64.powf(-x)));
            format!("{}%", pct.trim_end_matches('0').trim_end_matches('.'))
        })
        .y_label_formatter(&|y| format!("{y:.0}"))
        .draw()
        .map_err(|e| fail(&e))?;
    for (i, c) in curves.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let points: Vec<(f64, f64)> = c
            .points
            .iter()
            .map(|&(q, v)| (nines(q), v.max(lo)))
            .collect();
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))
            .map_err(|e| fail(&e))?
            .label(c.label.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        // Bottom right: by the far percentiles every curve has risen above its median.
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|e| fail(&e))?;
    root.present().map_err(|e| fail(&e))?;
    Ok(())
}

//! `bench --history FILE`: every report appended to a JSON-lines file, and a plot of each
//! case's efficiency and chars/s over the reports, so that a slow drift is visible.

use std::path::{Path, PathBuf};

use plotters::prelude::*;

use super::Report;
use crate::error::{Error, Result};

/// Appends `report` as one line to `path` (created if missing; one `write`, synced). A torn
/// last line left by a crash is ended first, so it stays one bad line that readers skip.
pub fn append_history(path: &Path, report: &Report) -> Result<()> {
    let line = serde_json::to_string(report).expect("plain data serialises to JSON") + "\n";
    crate::atomic::append_line(path, &line)
}

/// Every report in a history file. A line torn by a crash during its append (one that is not
/// complete JSON) is skipped; a complete line that is not a report is an error naming it.
pub fn read_history(path: &Path) -> Result<Vec<Report>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io("cannot read", path, e))?;
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        match serde_json::from_str::<Report>(line) {
            Ok(r) => out.push(r),
            Err(e) if e.is_eof() => {}
            Err(e) => {
                return Err(Error::BadLog {
                    path: path.into(),
                    reason: format!("line {} is not a bench report: {e}", i + 1),
                })
            }
        }
    }
    Ok(out)
}

/// Draws `FILE.png` beside the history `path`: per case (config and path), its efficiency
/// against the active kernels (top) and its chars/s (bottom) in every report, in order, on
/// logarithmic axes.
/// Returns the image's path.
pub fn plot_history(path: &Path, reports: &[Report]) -> Result<PathBuf> {
    let png = path.with_extension("png");
    let tmp = png.with_extension(format!("tmp.{}.png", std::process::id()));
    if let Err(reason) = draw(&tmp, reports) {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::Plot { path: png, reason });
    }
    std::fs::rename(&tmp, &png)
        .map_err(|e| Error::io("cannot rename temporary file onto", &png, e))?;
    Ok(png)
}

/// One report's point of a case: (report index, active efficiency in %, chars/s).
type Point = (f64, f64, f64);

/// Each case's points, named `config path`.
fn series(reports: &[Report]) -> Vec<(String, Vec<Point>)> {
    let mut out: Vec<(String, Vec<Point>)> = Vec::new();
    for (i, rep) in reports.iter().enumerate() {
        for r in &rep.results {
            let name = format!("{} {}", r.config, r.path);
            let point = (i as f64, 100.0 * rep.active_efficiency(r), r.chars_per_sec);
            match out.iter_mut().find(|(n, _)| *n == name) {
                Some((_, pts)) => pts.push(point),
                None => out.push((name, vec![point])),
            }
        }
    }
    out
}

fn draw(path: &Path, reports: &[Report]) -> std::result::Result<(), String> {
    crate::run::register_font();
    let err = |e: &dyn std::fmt::Display| format!("cannot draw the history plot: {e}");
    let cases = series(reports);
    let x_max = (reports.len().max(2) - 1) as f64;
    let root = BitMapBackend::new(path, (1100, 900)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let (top, bottom) = root.split_vertically(450);
    for (panel, area) in [&top, &bottom].into_iter().enumerate() {
        let label = if panel == 0 {
            "efficiency vs the active kernels' sgemm (%)"
        } else {
            "training chars/s"
        };
        let value = |p: &Point| if panel == 0 { p.1 } else { p.2 };
        let y_max = cases
            .iter()
            .flat_map(|(_, pts)| pts.iter().map(value))
            .filter(|v| v.is_finite())
            .fold(1e-9, f64::max);
        // Logarithmic, so cases of very different size share a panel and a drift of x%
        // looks the same for each.
        let y_min = cases
            .iter()
            .flat_map(|(_, pts)| pts.iter().map(value))
            .filter(|v| v.is_finite() && *v > 0.0)
            .fold(y_max, f64::min)
            / 1.5;
        let mut chart = ChartBuilder::on(area)
            .caption(label, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(80)
            .right_y_label_area_size(0)
            .build_cartesian_2d(0.0..x_max, (y_min.max(1e-9)..y_max * 1.15).log_scale())
            .map_err(|e| err(&e))?;
        chart
            .configure_mesh()
            .x_desc("report (oldest first)")
            .x_labels(reports.len().clamp(2, 20))
            .x_label_formatter(&|x| format!("{x:.0}"))
            .label_style(("sans-serif", 14))
            .draw()
            .map_err(|e| err(&e))?;
        for (k, (name, pts)) in cases.iter().enumerate() {
            let color = Palette99::pick(k).to_rgba();
            let line: Vec<(f64, f64)> = pts.iter().map(|p| (p.0, value(p).max(1e-9))).collect();
            chart
                .draw_series(LineSeries::new(line.clone(), color.stroke_width(2)))
                .map_err(|e| err(&e))?
                .label(name.clone())
                .legend(move |(x, y)| {
                    PathElement::new([(x, y), (x + 16, y)], color.stroke_width(2))
                });
            chart
                .draw_series(line.iter().map(|&p| Circle::new(p, 3, color.filled())))
                .map_err(|e| err(&e))?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerLeft)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .label_font(("sans-serif", 12))
            .draw()
            .map_err(|e| err(&e))?;
    }
    root.present().map_err(|e| err(&e))
}

//! The report's SVG charts (plotters).

use super::schema::{ModelReport, Report};
use plotters::coord::Shift;
use plotters::prelude::*;

pub const LATENCY: &str = "latency.svg";
pub const THROUGHPUT: &str = "throughput_vs_macs.svg";
pub const ACCURACY: &str = "accuracy_vs_gmacs.svg";

#[derive(Debug, thiserror::Error)]
#[error("drawing {chart}: {reason}")]
pub struct ChartError {
    chart: &'static str,
    reason: String,
}

/// Every chart the report has data for, as (file name, SVG text).
pub fn draw_all(r: &Report) -> Result<Vec<(&'static str, String)>, ChartError> {
    let mut out = vec![(LATENCY, draw(LATENCY, (1100, 460), |a| latency(a, r))?)];
    if !r.models.is_empty() {
        out.push((THROUGHPUT, draw(THROUGHPUT, (800, 500), |a| throughput(a, r))?));
    }
    if r.models.iter().any(|m| m.accuracy().is_some()) {
        out.push((ACCURACY, draw(ACCURACY, (800, 500), |a| accuracy(a, r))?));
    }
    Ok(out)
}

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;
type DrawResult = Result<(), String>;

fn err<E: std::fmt::Debug>(e: E) -> String {
    format!("{e:?}")
}

fn draw(chart: &'static str, size: (u32, u32), f: impl FnOnce(&Area) -> DrawResult) -> Result<String, ChartError> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        let drawn = root.fill(&WHITE).map_err(err).and_then(|_| f(&root)).and_then(|_| root.present().map_err(err));
        drawn.map_err(|reason| ChartError { chart, reason })?;
    }
    Ok(svg)
}

fn color(i: usize) -> RGBColor {
    let c = Palette99::pick(i).to_rgba();
    RGBColor(c.0, c.1, c.2)
}

/// A log axis around `values`, a little wider than them (and never empty).
fn log_range(values: impl Iterator<Item = f64>) -> std::ops::Range<f64> {
    let (lo, hi) = values.filter(|v| *v > 0.0 && v.is_finite()).fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if lo > hi {
        return 0.1..10.0;
    }
    lo / 1.5..hi * 1.5
}

/// A model's name above and right of its point, clear of the marker (offset in pixels).
fn name_tag(name: &str) -> Text<'static, (i32, i32), String> {
    Text::new(name.to_string(), (7, -17), ("sans-serif", 13).into_font())
}

/// Axis numbers without a pointless `.0`: 1, 10, 128, 2.5, 0.25.
fn tick(v: &f64) -> String {
    let a = v.abs();
    let s = if a >= 10.0 || a == 0.0 { format!("{v:.0}") } else if a >= 1.0 { format!("{v:.1}") } else { format!("{v:.2}") };
    match s.split_once('.') {
        Some((int, frac)) if frac.chars().all(|c| c == '0') => int.to_string(),
        _ => s,
    }
}

fn linear_max(values: impl Iterator<Item = f64>) -> f64 {
    values.filter(|v| v.is_finite()).fold(0.0, f64::max).max(1e-9) * 1.12
}

/// Which percentile a panel plots.
type Pick = fn(&crate::bench::stats::Percentiles) -> f64;

/// p50 and p99 per call against batch size, one panel each, log–log.
fn latency(root: &Area, r: &Report) -> DrawResult {
    let (left, right) = root.split_horizontally(550);
    let sizes = log_range(r.models.iter().flat_map(|m| m.latency.iter().map(|b| b.batch_size as f64)));
    let ms = log_range(r.models.iter().flat_map(|m| m.latency.iter().flat_map(|b| [b.latency.p50_ms, b.latency.p99_ms])));
    let panels: [(&Area, &str, Pick); 2] = [(&left, "p50", |l| l.p50_ms), (&right, "p99", |l| l.p99_ms)];
    for (area, what, pick) in panels {
        let mut chart = ChartBuilder::on(area)
            .caption(format!("{what} latency per call (in-process)"), ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(sizes.clone().log_scale(), ms.clone().log_scale())
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("batch size")
            .y_desc("ms")
            .x_label_formatter(&tick)
            .y_label_formatter(&tick)
            .draw()
            .map_err(err)?;
        for (i, m) in r.models.iter().enumerate() {
            let pts: Vec<(f64, f64)> = m.latency.iter().map(|b| (b.batch_size as f64, pick(&b.latency))).collect();
            let c = color(i);
            chart
                .draw_series(LineSeries::new(pts.clone(), c.stroke_width(2)))
                .map_err(err)?
                .label(m.name.clone())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(2)));
            chart.draw_series(pts.into_iter().map(|p| Circle::new(p, 3, c.filled()))).map_err(err)?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(err)?;
    }
    Ok(())
}

/// Images per second against MMACs per image, at the smallest and the largest batch size.
fn throughput(root: &Area, r: &Report) -> DrawResult {
    let points = |largest: bool| -> Vec<(f64, f64, &ModelReport)> {
        r.models
            .iter()
            .filter_map(|m| {
                let (s, l) = m.smallest_and_largest()?;
                Some((m.facts.macs_per_image as f64 / 1e6, if largest { l.images_per_s } else { s.images_per_s }, m))
            })
            .collect()
    };
    let (small, large) = (points(false), points(true));
    let (lo, hi) = (r.settings.batch_sizes.iter().min().copied().unwrap_or(1), r.settings.batch_sizes.iter().max().copied().unwrap_or(1));
    let x_max = linear_max(large.iter().map(|p| p.0));
    let y_max = linear_max(large.iter().chain(&small).map(|p| p.1));
    let mut chart = ChartBuilder::on(root)
        .caption("throughput against cost (in-process)", ("sans-serif", 20))
        .margin(14)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..x_max, 0.0..y_max)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("MMACs per image (conv+fc)")
        .y_desc("images / s")
        .x_label_formatter(&tick)
        .y_label_formatter(&tick)
        .draw()
        .map_err(err)?;
    let series = [(format!("batch {hi}"), &large, true), (format!("batch {lo}"), &small, false)];
    for (label, pts, filled) in series {
        if lo == hi && !filled {
            continue;
        }
        let c = if filled { BLUE } else { RED };
        let style = if filled { c.filled() } else { c.stroke_width(2) };
        chart
            .draw_series(pts.iter().map(|p| Circle::new((p.0, p.1), 5, style)))
            .map_err(err)?
            .label(label)
            .legend(move |(x, y)| Circle::new((x + 8, y), 5, style));
    }
    chart
        .draw_series(large.iter().map(|p| EmptyElement::at((p.0, p.1)) + name_tag(&p.2.name)))
        .map_err(err)?;
    chart.configure_series_labels().position(SeriesLabelPosition::UpperRight).background_style(WHITE.mix(0.85)).border_style(BLACK).draw().map_err(err)?;
    Ok(())
}

/// Accuracy carried by the files (test, else validation) against GMACs in the seed's
/// convention, beside the seed's published test accuracy for all seven architectures; a grey
/// line joins each file to its architecture's seed point, so the gap is what the eye reads.
fn accuracy(root: &Area, r: &Report) -> DrawResult {
    let ours: Vec<(f64, f64, &ModelReport)> = r.models.iter().filter_map(|m| Some((m.facts.seed_gmacs_batch128, m.accuracy()?.0, m))).collect();
    let seed: Vec<(f64, f64, &str)> =
        cifar_models::MODEL_NAMES.iter().filter_map(|n| cifar_models::info(n).ok()).map(|i| (i.seed.gmacs_batch128, i.seed.test_acc_pct, i.name)).collect();
    let gaps: Vec<[(f64, f64); 2]> =
        ours.iter().filter_map(|(x, y, m)| Some([(*x, *y), (m.seed.as_ref()?.gmacs_batch128, m.seed.as_ref()?.test_acc_pct)])).collect();
    let ys: Vec<f64> = ours.iter().map(|p| p.1).chain(seed.iter().map(|p| p.1)).collect();
    let y_lo = ys.iter().copied().fold(100.0, f64::min);
    let y_hi = ys.iter().copied().fold(0.0, f64::max);
    let pad = ((y_hi - y_lo) * 0.15).max(1.0);
    let x_max = linear_max(ours.iter().map(|p| p.0).chain(seed.iter().map(|p| p.0)));
    let mut chart = ChartBuilder::on(root)
        .caption("accuracy against cost", ("sans-serif", 20))
        .margin(14)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..x_max, (y_lo - pad).max(0.0)..(y_hi + pad).min(100.0))
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("GMACs, batch 128 (seed convention)")
        .y_desc("accuracy %")
        .x_label_formatter(&tick)
        .y_label_formatter(&tick)
        .draw()
        .map_err(err)?;
    chart.draw_series(gaps.iter().map(|g| PathElement::new(g.to_vec(), BLACK.mix(0.3)))).map_err(err)?;
    chart
        .draw_series(ours.iter().map(|p| Circle::new((p.0, p.1), 5, BLUE.filled())))
        .map_err(err)?
        .label("these files (test, else val)")
        .legend(|(x, y)| Circle::new((x + 8, y), 5, BLUE.filled()));
    chart
        .draw_series(seed.iter().map(|p| Circle::new((p.0, p.1), 5, RED.stroke_width(2))))
        .map_err(err)?
        .label("seed, published test (100 epochs)")
        .legend(|(x, y)| Circle::new((x + 8, y), 5, RED.stroke_width(2)));
    chart
        .draw_series(ours.iter().map(|p| EmptyElement::at((p.0, p.1)) + name_tag(&p.2.name)))
        .map_err(err)?;
    chart.draw_series(seed.iter().map(|p| EmptyElement::at((p.0, p.1)) + seed_tag(p.2))).map_err(err)?;
    chart.configure_series_labels().position(SeriesLabelPosition::LowerRight).background_style(WHITE.mix(0.85)).border_style(BLACK).draw().map_err(err)?;
    Ok(())
}

/// The seed points' names sit under them, in the seed's colour, clear of the files' names above.
fn seed_tag(name: &str) -> Text<'static, (i32, i32), String> {
    Text::new(name.to_string(), (7, 4), ("sans-serif", 11).into_font().color(&RED.mix(0.8)))
}

#[cfg(test)]
mod tests {
    #[test]
    fn ticks_drop_a_pointless_fraction() {
        let t = |v: f64| super::tick(&v);
        assert_eq!([t(1.0), t(10.0), t(128.0), t(2.5), t(0.25), t(0.0), t(1000.0)], ["1", "10", "128", "2.5", "0.25", "0", "1000"]);
    }
}

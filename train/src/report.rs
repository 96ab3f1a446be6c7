//! Pictures of a run: learning curves and the confusion matrix (SVG, plotters), and the
//! confusion matrix as JSON.

use crate::files::{self, FileError};
use crate::metrics::EpochMetrics;
use plotters::prelude::*;
use serde::Serialize;
use std::path::Path;

pub const CURVES: &str = "curves.svg";
pub const CONFUSION_SVG: &str = "confusion.svg";
pub const CONFUSION_JSON: &str = "confusion.json";

/// plotters' errors (drawing into a string, so never I/O).
type DrawResult = Result<(), crate::files::BoxError>;

/// Loss and accuracy against epoch, train and validation, side by side.
pub fn draw_curves(path: &Path, model: &str, history: &[EpochMetrics]) -> Result<(), FileError> {
    let mut svg = String::new();
    curves_svg(&mut svg, model, history).map_err(|e| FileError::encode(path, e))?;
    files::write(path, svg.as_bytes())
}

fn curves_svg(svg: &mut String, model: &str, history: &[EpochMetrics]) -> DrawResult {
    {
        let root = SVGBackend::with_string(svg, (1000, 420)).into_drawing_area();
        root.fill(&WHITE)?;
        let (left, right) = root.split_horizontally(500);
        let last = history.last().map_or(1, |m| m.epoch).max(1) as f64;
        let panels: [(&DrawingArea<_, _>, &str, fn(&EpochMetrics) -> (f64, f64)); 2] = [
            (&left, "loss", |m| (m.train_loss, m.val_loss)),
            (&right, "accuracy", |m| (m.train_acc_frac, m.val_acc_frac)),
        ];
        for (area, what, pick) in panels {
            let values: Vec<f64> = history.iter().flat_map(|m| { let (a, b) = pick(m); [a, b] }).filter(|v| v.is_finite()).collect();
            let (lo, hi) = if what == "accuracy" {
                (0.0, 1.0)
            } else {
                let hi = values.iter().cloned().fold(0.0, f64::max).max(1e-3) * 1.05;
                (0.0, hi)
            };
            let mut chart = ChartBuilder::on(area)
                .caption(format!("{model}: {what}"), ("sans-serif", 20))
                .margin(12)
                .x_label_area_size(35)
                .y_label_area_size(50)
                .build_cartesian_2d(if history.len() <= 1 { 0.0..last + 1.0 } else { 1.0..last }, lo..hi)
                ?;
            chart.configure_mesh().x_desc("epoch").y_desc(what).draw()?;
            for (label, color, idx) in [("train", BLUE, 0), ("val", RED, 1)] {
                let pts: Vec<(f64, f64)> = history
                    .iter()
                    .map(|m| { let (a, b) = pick(m); (m.epoch as f64, if idx == 0 { a } else { b }) })
                    .collect();
                chart
                    .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
                    ?
                    .label(label)
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
                chart.draw_series(pts.into_iter().map(|p| Circle::new(p, 3, color.filled())))?;
            }
            chart
                .configure_series_labels()
                .position(if what == "loss" { SeriesLabelPosition::UpperRight } else { SeriesLabelPosition::LowerRight })
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .draw()
                ?;
        }
        root.present()?;
    }
    Ok(())
}

/// `counts[true][predicted]`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Confusion {
    pub classes: Vec<String>,
    pub counts: Vec<Vec<u64>>,
    pub accuracy: f64,
    pub per_class_recall: Vec<f64>,
}

impl Confusion {
    pub fn new(classes: Vec<String>) -> Self {
        let n = classes.len();
        Self { classes, counts: vec![vec![0; n]; n], accuracy: 0.0, per_class_recall: vec![0.0; n] }
    }

    pub fn add(&mut self, truth: usize, predicted: usize) {
        self.counts[truth][predicted] += 1;
    }

    pub fn finish(&mut self) {
        let total: u64 = self.counts.iter().flatten().sum();
        let right: u64 = (0..self.classes.len()).map(|i| self.counts[i][i]).sum();
        self.accuracy = if total > 0 { right as f64 / total as f64 } else { 0.0 };
        self.per_class_recall = self
            .counts
            .iter()
            .enumerate()
            .map(|(i, row)| {
                let n: u64 = row.iter().sum();
                if n > 0 { row[i] as f64 / n as f64 } else { 0.0 }
            })
            .collect();
    }
}

/// The confusion matrix as a heat map with counts, rows = true class.
pub fn draw_confusion(dir: &Path, model: &str, c: &Confusion) -> Result<(), FileError> {
    files::write_json(&dir.join(CONFUSION_JSON), c)?;
    let path = dir.join(CONFUSION_SVG);
    let mut svg = String::new();
    confusion_svg(&mut svg, model, c).map_err(|e| FileError::encode(&path, e))?;
    files::write(&path, svg.as_bytes())
}

fn confusion_svg(svg: &mut String, model: &str, c: &Confusion) -> DrawResult {
    let n = c.classes.len();
    let cell = 52i32;
    let (ox, oy) = (120i32, 70i32);
    let size = ((ox + cell * n as i32 + 20) as u32, (oy + cell * n as i32 + 110) as u32);
    {
        let root = SVGBackend::with_string(svg, size).into_drawing_area();
        root.fill(&WHITE)?;
        let title = format!("{model}: test confusion matrix (accuracy {:.2} %)", c.accuracy * 100.0);
        root.draw(&Text::new(title, (10, 15), ("sans-serif", 18)))?;
        for (i, row) in c.counts.iter().enumerate() {
            let total = row.iter().sum::<u64>().max(1) as f64;
            for (j, &v) in row.iter().enumerate() {
                let frac = v as f64 / total;
                let color = if i == j { RGBColor(30, 110, 200) } else { RGBColor(210, 60, 40) };
                let fill = color.mix(0.08 + 0.92 * frac.min(1.0).sqrt());
                let (x, y) = (ox + cell * j as i32, oy + cell * i as i32);
                root.draw(&Rectangle::new([(x, y), (x + cell, y + cell)], fill.filled()))?;
                root.draw(&Rectangle::new([(x, y), (x + cell, y + cell)], WHITE.stroke_width(1)))?;
                let text_color = if frac > 0.5 { WHITE } else { BLACK };
                root.draw(&Text::new(v.to_string(), (x + 8, y + cell / 2 - 6), ("sans-serif", 13).into_font().color(&text_color)))
                    ?;
            }
            root.draw(&Text::new(c.classes[i].clone(), (8, oy + cell * i as i32 + cell / 2 - 6), ("sans-serif", 13)))
                ?;
        }
        for (j, name) in c.classes.iter().enumerate() {
            let style = ("sans-serif", 12).into_font().transform(FontTransform::Rotate90);
            root.draw(&Text::new(name.clone(), (ox + cell * j as i32 + cell / 2 + 6, oy + cell * n as i32 + 6), style))
                ?;
        }
        root.draw(&Text::new("rows: true class, columns: predicted", (ox, oy - 22), ("sans-serif", 13)))?;
        root.present()?;
    }
    Ok(())
}

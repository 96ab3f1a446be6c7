//! Progress of an epoch: an indicatif bar on a terminal, plain log lines otherwise.

use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::time::Instant;

pub struct EpochProgress {
    bar: Option<ProgressBar>,
    label: String,
    total: usize,
    done: usize,
    images: usize,
    started: Instant,
    next_line: usize,
}

/// Running figures of the epoch so far.
pub struct Running {
    pub loss: f64,
    pub acc: f64,
    pub lr: f64,
}

impl EpochProgress {
    pub fn new(label: String, batches: usize, quiet: bool) -> Self {
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::new(batches as u64);
            bar.set_style(
                ProgressStyle::with_template("{prefix} [{bar:28.cyan/blue}] {pos}/{len} {msg} ETA {eta}")
                    .expect("valid template")
                    .progress_chars("=> "),
            );
            bar.set_prefix(label.clone());
            bar
        });
        Self { bar, label, total: batches, done: 0, images: 0, started: Instant::now(), next_line: 1 }
    }

    pub fn img_per_s(&self) -> f64 {
        self.images as f64 / self.started.elapsed().as_secs_f64().max(1e-9)
    }

    pub fn batch_done(&mut self, images: usize, r: &Running, quiet: bool) {
        self.done += 1;
        self.images += images;
        let msg = format!("loss {:.4} acc {:.4} lr {:.2e} {:.0} img/s", r.loss, r.acc, r.lr, self.img_per_s());
        match &self.bar {
            Some(bar) => {
                bar.set_message(msg);
                bar.inc(1);
            }
            // Without a terminal: a line at every tenth of the epoch.
            None if !quiet && self.done * 10 >= self.next_line * self.total => {
                let eta = self.started.elapsed().as_secs_f64() / self.done as f64 * (self.total - self.done) as f64;
                eprintln!("{} {}/{} {msg} ETA {eta:.0}s", self.label, self.done, self.total);
                while self.done * 10 >= self.next_line * self.total {
                    self.next_line += 1;
                }
            }
            None => {}
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// `seconds` as people say it: "45 s", "12 min", "3 h 05 min".
pub fn human_duration(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    match s {
        0..=89 => format!("{s} s"),
        90..=5399 => format!("{} min", (s + 30) / 60),
        _ => format!("{} h {:02} min", s / 3600, (s % 3600 + 30) / 60 % 60),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn durations_read_as_people_say_them() {
        assert_eq!(super::human_duration(45.2), "45 s");
        assert_eq!(super::human_duration(720.0), "12 min");
        assert_eq!(super::human_duration(3.0 * 3600.0 + 5.0 * 60.0), "3 h 05 min");
    }
}

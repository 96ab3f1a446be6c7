//! The learning rate at each optimizer step: a linear warm-up, then the recipe's schedule.

use super::{Recipe, Schedule};

impl Recipe {
    /// Optimizer steps of the whole run, for `steps_per_epoch` batches an epoch.
    pub fn total_steps(&self, steps_per_epoch: usize) -> u64 {
        (self.epochs * steps_per_epoch) as u64
    }

    fn warmup_steps(&self, steps_per_epoch: usize) -> u64 {
        (self.warmup_epochs * steps_per_epoch as f64).round() as u64
    }

    /// The learning rate of step `step` (0-based over the run, batch `step % steps_per_epoch`
    /// of epoch `step / steps_per_epoch`).
    ///
    /// - warm-up (`warmup_epochs`): `lr · (step + 1) / warmup_steps`;
    /// - multistep: `lr · gamma^(milestones passed by the epoch)`;
    /// - cosine: `lr · (f + (1 − f) · (1 + cos(π p)) / 2)`, with `p` the fraction of the
    ///   post-warm-up steps done and `f = final_lr_frac`;
    /// - onecycle: `lr · (1 − (1 − f) · p)`.
    pub fn lr_at_step(&self, step: u64, steps_per_epoch: usize) -> f64 {
        let spe = steps_per_epoch.max(1);
        let warmup = self.warmup_steps(spe);
        if step < warmup {
            return self.lr * (step + 1) as f64 / warmup as f64;
        }
        let decay_steps = self.total_steps(spe).saturating_sub(warmup).max(1);
        let p = ((step - warmup) as f64 / decay_steps as f64).min(1.0);
        let f = self.final_lr_frac;
        match self.schedule {
            Schedule::Multistep => {
                let epoch = (step / spe as u64) as usize;
                let passed = self.milestones.iter().filter(|&&m| epoch >= m).count();
                self.lr * self.gamma.powi(passed as i32)
            }
            Schedule::Cosine => self.lr * (f + (1.0 - f) * 0.5 * (1.0 + (std::f64::consts::PI * p).cos())),
            Schedule::Onecycle => self.lr * (1.0 - (1.0 - f) * p),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-12 * b.abs().max(1e-12)
    }

    #[test]
    fn multistep_steps_at_the_milestone_epochs() {
        let r = Recipe::seed("resnet-light");
        let spe = 352;
        for (epoch, want) in [(0, 3e-3), (49, 3e-3), (50, 3e-4), (74, 3e-4), (75, 3e-5), (99, 3e-5)] {
            for batch in [0, spe - 1] {
                let got = r.lr_at_step((epoch * spe + batch) as u64, spe);
                assert!(close(got, want), "epoch {epoch} batch {batch}: {got}");
            }
        }
    }

    #[test]
    fn warmup_then_cosine_follow_the_closed_form() {
        let mut r = Recipe::seed("vgg");
        (r.schedule, r.epochs, r.warmup_epochs, r.final_lr_frac, r.lr) = (Schedule::Cosine, 10, 0.5, 0.1, 1e-2);
        let spe = 100; // 1,000 steps: 50 of warm-up, 950 of decay
        assert!(close(r.lr_at_step(0, spe), 1e-2 / 50.0));
        assert!(close(r.lr_at_step(24, spe), 1e-2 * 25.0 / 50.0));
        assert!(close(r.lr_at_step(49, spe), 1e-2));
        assert!(close(r.lr_at_step(50, spe), 1e-2));
        // Halfway through the decay the cosine term is 1/2: f + (1 - f)/2.
        assert!(close(r.lr_at_step(50 + 475, spe), 1e-2 * (0.1 + 0.9 * 0.5)));
        let p = 900.0 / 950.0;
        let want = 1e-2 * (0.1 + 0.9 * 0.5 * (1.0 + (std::f64::consts::PI * p).cos()));
        assert!(close(r.lr_at_step(950, spe), want));
    }

    #[test]
    fn onecycle_rises_then_falls_linearly_to_the_final_fraction() {
        let mut r = Recipe::seed("vgg");
        (r.schedule, r.epochs, r.warmup_epochs, r.final_lr_frac) = (Schedule::Onecycle, 4, 1.0, 0.0);
        let spe = 10; // 40 steps: 10 up, 30 down
        let lrs: Vec<f64> = [0, 9, 10, 25, 39].iter().map(|&s| r.lr_at_step(s, spe)).collect();
        let want = [3e-3 * 0.1, 3e-3, 3e-3, 3e-3 * (1.0 - 15.0 / 30.0), 3e-3 * (1.0 - 29.0 / 30.0)];
        for (got, want) in lrs.iter().zip(want) {
            assert!(close(*got, want), "{lrs:?}");
        }
    }
}

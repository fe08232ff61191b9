//! [`CosineAnnealing`]: PyTorch's `CosineAnnealingLR`.

use std::f64::consts::PI;

use super::{At, Rule, Scheduler};
use crate::error::{LayerError, require};
use crate::optim::Optimizer;
use crate::real::Real;

/// Anneals the learning rate from its base to `eta_min` along half a
/// cosine over `t_max` epochs, PyTorch's `CosineAnnealingLR`:
/// ```text
/// η_t = η_min + (η_base - η_min) (1 + cos(π t / T_max)) / 2
/// ```
/// computed as PyTorch does, each epoch from the last
/// (`η_t = η_min + (η_{t-1} - η_min) (1 + cos(π t/T)) / (1 + cos(π (t-1)/T))`,
/// with PyTorch's special case where that denominator is 0). Past `t_max`
/// the cosine goes on, back up and down, as in PyTorch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CosineAnnealing {
    t_max: u64,
    eta_min: f64,
}

impl CosineAnnealing {
    /// Half a cosine over `t_max` (positive) epochs, down to `eta_min`
    /// (finite, non-negative).
    pub fn new(t_max: u64, eta_min: f64) -> Result<Self, LayerError> {
        const NAME: &str = "CosineAnnealingLR";
        require(NAME, "t_max", t_max, t_max > 0, "must be positive")?;
        let valid = eta_min.is_finite() && eta_min >= 0.0;
        let eta_min = require(
            NAME,
            "eta_min",
            eta_min,
            valid,
            "must be finite and non-negative",
        )?;
        Ok(CosineAnnealing { t_max, eta_min })
    }
}

impl Rule for CosineAnnealing {
    fn name(&self) -> &'static str {
        "CosineAnnealingLR"
    }

    fn rate(&self, _: usize, at: At) -> f64 {
        let (t, t_max, eta_min) = (at.epoch, self.t_max as i64, self.eta_min);
        if at.initial {
            at.current
        } else if (t - 1 - t_max).rem_euclid(2 * t_max) == 0 {
            at.current + (at.base - eta_min) * (1.0 - (PI / t_max as f64).cos()) / 2.0
        } else {
            (1.0 + (PI * t as f64 / t_max as f64).cos())
                / (1.0 + (PI * (t - 1) as f64 / t_max as f64).cos())
                * (at.current - eta_min)
                + eta_min
        }
    }

    fn closed_form(&self, _: usize, epoch: i64, base: f64) -> Option<f64> {
        let eta_min = self.eta_min;
        Some(
            eta_min
                + (base - eta_min) * (1.0 + (PI * epoch as f64 / self.t_max as f64).cos()) / 2.0,
        )
    }
}

impl Scheduler<CosineAnnealing> {
    /// PyTorch's `CosineAnnealingLR(optimizer, T_max, eta_min)`.
    pub fn new<F: Real>(
        optimizer: &mut dyn Optimizer<F>,
        t_max: u64,
        eta_min: f64,
    ) -> Result<Self, LayerError> {
        Scheduler::start(optimizer, CosineAnnealing::new(t_max, eta_min)?)
    }
}

//! [`Linear`] warm-up (or decay): PyTorch's `LinearLR`.

use super::{At, Rule, Scheduler};
use crate::error::{LayerError, require};
use crate::optim::Optimizer;
use crate::real::Real;

/// Scales the learning rate by a factor going linearly from `start_factor`
/// to `end_factor` over `total_iters` epochs, then keeps it, PyTorch's
/// `LinearLR` (the usual warm-up):
/// ```text
/// η_t = η_base · (s + (e - s) · min(t, T) / T)
/// ```
/// computed as PyTorch does, each epoch from the last.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Linear {
    start_factor: f64,
    end_factor: f64,
    total_iters: u64,
}

impl Linear {
    /// From `start_factor` in `(0, 1]` to `end_factor` in `[0, 1]` over
    /// `total_iters` (positive) epochs. PyTorch's defaults are `1/3`, `1`, `5`.
    pub fn new(start_factor: f64, end_factor: f64, total_iters: u64) -> Result<Self, LayerError> {
        const NAME: &str = "LinearLR";
        let valid = start_factor > 0.0 && start_factor <= 1.0;
        require(
            NAME,
            "start_factor",
            start_factor,
            valid,
            "must be in (0, 1]",
        )?;
        let valid = (0.0..=1.0).contains(&end_factor);
        require(NAME, "end_factor", end_factor, valid, "must be in [0, 1]")?;
        require(
            NAME,
            "total_iters",
            total_iters,
            total_iters > 0,
            "must be positive",
        )?;
        Ok(Linear {
            start_factor,
            end_factor,
            total_iters,
        })
    }
}

impl Rule for Linear {
    fn name(&self) -> &'static str {
        "LinearLR"
    }

    fn rate(&self, _: usize, at: At) -> f64 {
        let (start, end, total) = (self.start_factor, self.end_factor, self.total_iters);
        if at.epoch == 0 {
            at.current * start
        } else if at.initial || at.epoch > total as i64 {
            at.current
        } else {
            at.current
                * (1.0
                    + (end - start)
                        / (total as f64 * start + (at.epoch - 1) as f64 * (end - start)))
        }
    }

    fn closed_form(&self, _: usize, epoch: i64, base: f64) -> Option<f64> {
        let (start, end, total) = (self.start_factor, self.end_factor, self.total_iters);
        Some(base * (start + (end - start) * total.min(epoch.max(0) as u64) as f64 / total as f64))
    }
}

impl Scheduler<Linear> {
    /// PyTorch's `LinearLR(optimizer, start_factor, end_factor, total_iters)`.
    pub fn new<F: Real>(
        optimizer: &mut dyn Optimizer<F>,
        start_factor: f64,
        end_factor: f64,
        total_iters: u64,
    ) -> Result<Self, LayerError> {
        Scheduler::start(
            optimizer,
            Linear::new(start_factor, end_factor, total_iters)?,
        )
    }
}

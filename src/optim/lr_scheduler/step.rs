//! Step decay: [`Step`] (`StepLR`) and [`MultiStep`] (`MultiStepLR`).

use super::{At, Rule, Scheduler};
use crate::error::{LayerError, require};
use crate::optim::Optimizer;
use crate::real::Real;

/// Multiplies the learning rate by `gamma` every `step_size` epochs,
/// PyTorch's `StepLR`:
/// ```text
/// η_t = η_base · γ^⌊t / step_size⌋
/// ```
/// (computed as PyTorch does, one multiplication at each step epoch).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Step {
    step_size: u64,
    gamma: f64,
}

impl Step {
    /// Decay by `gamma` (finite) every `step_size` (positive) epochs.
    pub fn new(step_size: u64, gamma: f64) -> Result<Self, LayerError> {
        require(
            "StepLR",
            "step_size",
            step_size,
            step_size > 0,
            "must be positive",
        )?;
        Ok(Step {
            step_size,
            gamma: check_gamma("StepLR", gamma)?,
        })
    }
}

/// Checks a decay factor: finite and non-negative.
pub(super) fn check_gamma(owner: &'static str, gamma: f64) -> Result<f64, LayerError> {
    let valid = gamma.is_finite() && gamma >= 0.0;
    require(
        owner,
        "gamma",
        gamma,
        valid,
        "must be finite and non-negative",
    )
}

impl Rule for Step {
    fn name(&self) -> &'static str {
        "StepLR"
    }

    fn rate(&self, _: usize, at: At) -> f64 {
        if at.epoch == 0 || at.epoch % self.step_size as i64 != 0 {
            at.current
        } else {
            at.current * self.gamma
        }
    }

    fn closed_form(&self, _: usize, epoch: i64, base: f64) -> Option<f64> {
        Some(
            base * self
                .gamma
                .powf(epoch.div_euclid(self.step_size as i64) as f64),
        )
    }
}

impl Scheduler<Step> {
    /// PyTorch's `StepLR(optimizer, step_size, gamma)`.
    ///
    /// ```
    /// use ndlayers::optim::lr_scheduler::{LrScheduler, StepLR};
    /// use ndlayers::optim::{Optimizer, Sgd};
    ///
    /// let mut sgd = Sgd::new(0.1)?;
    /// let mut schedule = StepLR::new(&mut sgd, 2, 0.5)?;
    /// let mut rates = vec![sgd.learning_rate()];
    /// for _ in 0..4 {
    ///     schedule.step(&mut sgd)?;
    ///     rates.push(sgd.learning_rate());
    /// }
    /// assert_eq!(rates, [0.1, 0.1, 0.05, 0.05, 0.025]);
    /// # Ok::<(), ndlayers::LayerError>(())
    /// ```
    pub fn new<F: Real>(
        optimizer: &mut dyn Optimizer<F>,
        step_size: u64,
        gamma: f64,
    ) -> Result<Self, LayerError> {
        Scheduler::start(optimizer, Step::new(step_size, gamma)?)
    }
}

/// Multiplies the learning rate by `gamma` at each milestone epoch
/// (twice at a milestone given twice), PyTorch's `MultiStepLR`:
/// ```text
/// η_t = η_base · γ^(number of milestones ≤ t)
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct MultiStep {
    /// Sorted, repeats kept.
    milestones: Vec<u64>,
    gamma: f64,
}

impl MultiStep {
    /// Decay by `gamma` (finite, non-negative) at each of `milestones`.
    pub fn new(milestones: &[u64], gamma: f64) -> Result<Self, LayerError> {
        let mut milestones = milestones.to_vec();
        milestones.sort_unstable();
        Ok(MultiStep {
            milestones,
            gamma: check_gamma("MultiStepLR", gamma)?,
        })
    }
}

impl Rule for MultiStep {
    fn name(&self) -> &'static str {
        "MultiStepLR"
    }

    fn rate(&self, _: usize, at: At) -> f64 {
        let times = self
            .milestones
            .iter()
            .filter(|&&m| m as i64 == at.epoch)
            .count();
        if times == 0 {
            at.current
        } else {
            at.current * self.gamma.powf(times as f64)
        }
    }

    fn closed_form(&self, _: usize, epoch: i64, base: f64) -> Option<f64> {
        let passed = self.milestones.partition_point(|&m| m as i64 <= epoch);
        Some(base * self.gamma.powf(passed as f64))
    }
}

impl Scheduler<MultiStep> {
    /// PyTorch's `MultiStepLR(optimizer, milestones, gamma)`.
    pub fn new<F: Real>(
        optimizer: &mut dyn Optimizer<F>,
        milestones: &[u64],
        gamma: f64,
    ) -> Result<Self, LayerError> {
        Scheduler::start(optimizer, MultiStep::new(milestones, gamma)?)
    }
}

//! [`Exponential`] decay: PyTorch's `ExponentialLR`.

use super::step::check_gamma;
use super::{At, Rule, Scheduler};
use crate::error::LayerError;
use crate::optim::Optimizer;
use crate::real::Real;

/// Multiplies the learning rate by `gamma` every epoch, PyTorch's `ExponentialLR`:
/// ```text
/// η_t = η_base · γ^t      (one multiplication per epoch)
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Exponential {
    gamma: f64,
}

impl Exponential {
    /// Decay by `gamma` (finite, non-negative) every epoch.
    pub fn new(gamma: f64) -> Result<Self, LayerError> {
        Ok(Exponential {
            gamma: check_gamma("ExponentialLR", gamma)?,
        })
    }
}

impl Rule for Exponential {
    fn name(&self) -> &'static str {
        "ExponentialLR"
    }

    fn rate(&self, _: usize, at: At) -> f64 {
        if at.initial {
            at.current
        } else {
            at.current * self.gamma
        }
    }

    fn closed_form(&self, _: usize, epoch: i64, base: f64) -> Option<f64> {
        Some(base * self.gamma.powf(epoch as f64))
    }
}

impl Scheduler<Exponential> {
    /// PyTorch's `ExponentialLR(optimizer, gamma)`.
    pub fn new<F: Real>(optimizer: &mut dyn Optimizer<F>, gamma: f64) -> Result<Self, LayerError> {
        Scheduler::start(optimizer, Exponential::new(gamma)?)
    }
}

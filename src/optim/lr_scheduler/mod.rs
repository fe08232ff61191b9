//! Learning-rate schedules with PyTorch's semantics and numbers
//! (`torch.optim.lr_scheduler`): [`StepLR`], [`MultiStepLR`],
//! [`ExponentialLR`], [`CosineAnnealingLR`], [`LinearLR`], [`OneCycleLR`],
//! [`SequentialLR`] to chain them (warm-up, then cosine), and
//! [`ReduceLROnPlateau`].
//!
//! A schedule drives any [`Optimizer`] through its learning rates, one per
//! [parameter group](super::ParamGroup). As in PyTorch, creating a schedule
//! sets the learning rate of epoch 0, and each
//! [`step`](LrScheduler::step) (after the epoch's optimiser steps) moves to
//! the next epoch:
//!
//! ```
//! use ndlayers::optim::lr_scheduler::{CosineAnnealingLR, LinearLR, LrScheduler, SequentialLR};
//! use ndlayers::optim::{AdamW, Optimizer};
//!
//! let mut adamw = AdamW::<f32>::new(1e-3)?;
//! // Five epochs of linear warm-up from 1e-4, then cosine annealing to 0 over 45.
//! let warm_up = LinearLR::new(&mut adamw, 0.1, 1.0, 5)?;
//! let cosine = CosineAnnealingLR::new(&mut adamw, 45, 0.0)?;
//! let mut schedule = SequentialLR::new(&mut adamw, vec![warm_up.boxed(), cosine.boxed()], &[5])?;
//! assert!((adamw.learning_rate() - 1e-4).abs() < 1e-9);
//! for _epoch in 0..50 {
//!     // ... the epoch's batches: forward, backward, adamw.step(...) ...
//!     schedule.step(&mut adamw)?;
//! }
//! assert_eq!(adamw.learning_rate(), 0.0);
//! # Ok::<(), ndlayers::LayerError>(())
//! ```
//!
//! # The numbers are PyTorch's
//! Each schedule computes its learning rates in `f64` with PyTorch's
//! formulas in PyTorch's order of operations, the recursive (chainable)
//! form each `get_lr` uses, so a schedule's sequence matches PyTorch 2.15's
//! to within 1e-12 (`tests/lr_scheduler.rs`, against
//! `tests/reference/lr_scheduler.py`'s output; most values are the same
//! bits). The rate a schedule works from is the one it set last, unless
//! the optimiser's was changed since, in which case it is the optimiser's
//! (so schedules chain as PyTorch's do, and an `f32` optimiser does not
//! round the schedule's own sequence).
//!
//! | PyTorch | here |
//! | --- | --- |
//! | `scheduler.step()` | [`LrScheduler::step`]`(&mut optimizer)`: a schedule does not hold its optimiser |
//! | `get_last_lr()` | [`Schedule::last_lrs`] |
//! | `state_dict()` / `load_state_dict()` | [`Schedule::state`] / [`Schedule::set_state`]; in a checkpoint with [`checkpoint::save_training`](crate::checkpoint::save_training) |
//! | constructing with `last_epoch` to resume | restore the state instead |
//! | `OneCycleLR(cycle_momentum=True)`, the default, also cycles momentum | the momentum is not cycled: only learning rates |
//! | `step(epoch)` (deprecated) | not offered |
//!
//! A checkpoint saved with [`checkpoint::save_training`](crate::checkpoint::save_training)
//! holds the schedule's state and the learning rates it set; loading it
//! with [`checkpoint::load_training`](crate::checkpoint::load_training)
//! restores both, and training continues bit for bit.

mod cosine;
mod exponential;
mod linear;
mod one_cycle;
mod plateau;
mod scheduler;
mod sequential;
mod step;

pub use cosine::CosineAnnealing;
pub use exponential::Exponential;
pub use linear::Linear;
pub use one_cycle::{Anneal, OneCycle};
pub use plateau::{Mode, ReduceLROnPlateau, ThresholdMode};
pub use scheduler::Scheduler;
pub use sequential::SequentialLR;
pub use step::{MultiStep, Step};

use std::fmt::Debug;

use super::Optimizer;
use crate::error::LayerError;
use crate::real::Real;

/// [`Scheduler`] with the [`Step`] rule: PyTorch's `StepLR`.
pub type StepLR = Scheduler<Step>;
/// [`Scheduler`] with the [`MultiStep`] rule: PyTorch's `MultiStepLR`.
pub type MultiStepLR = Scheduler<MultiStep>;
/// [`Scheduler`] with the [`Exponential`] rule: PyTorch's `ExponentialLR`.
pub type ExponentialLR = Scheduler<Exponential>;
/// [`Scheduler`] with the [`CosineAnnealing`] rule: PyTorch's `CosineAnnealingLR`.
pub type CosineAnnealingLR = Scheduler<CosineAnnealing>;
/// [`Scheduler`] with the [`Linear`] rule: PyTorch's `LinearLR`.
pub type LinearLR = Scheduler<Linear>;
/// [`Scheduler`] with the [`OneCycle`] rule: PyTorch's `OneCycleLR`.
pub type OneCycleLR = Scheduler<OneCycle>;

/// A schedule's state, for checkpoints: its name and named numbers
/// (epoch counts, the base and last learning rates, and what else the
/// schedule carries), all exact in `f64`.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleState {
    /// The schedule's name, e.g. `"StepLR"` or
    /// `"SequentialLR(LinearLR,CosineAnnealingLR)"`.
    pub scheduler: String,
    /// Its values by name, e.g. `("last_epoch", [3.0])`, `("base_lrs", [0.1, 0.01])`.
    pub values: Vec<(String, Vec<f64>)>,
}

impl ScheduleState {
    /// The values named `name`, or an error naming the schedule and the value.
    pub(crate) fn take(&self, owner: &'static str, name: &str) -> Result<&[f64], LayerError> {
        self.values
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
            .ok_or_else(|| LayerError::state(owner, name, "missing from the saved state"))
    }

    /// The single value `name`, an integer count in `0..=2^53`.
    pub(crate) fn count(&self, owner: &'static str, name: &str) -> Result<i64, LayerError> {
        match self.take(owner, name)? {
            &[v] if v.fract() == 0.0 && v.abs() <= 2f64.powi(53) => Ok(v as i64),
            other => Err(LayerError::state(
                owner,
                name,
                format!("{other:?} is not one whole number"),
            )),
        }
    }

    /// The learning rates `name`: `groups` of them, each finite and non-negative.
    pub(crate) fn rates(
        &self,
        owner: &'static str,
        name: &str,
        groups: usize,
    ) -> Result<Vec<f64>, LayerError> {
        let rates = self.take(owner, name)?;
        if rates.len() != groups || rates.iter().any(|r| !(r.is_finite() && *r >= 0.0)) {
            let reason = format!("{rates:?} is not {groups} finite non-negative learning rates");
            return Err(LayerError::state(owner, name, reason));
        }
        Ok(rates.to_vec())
    }
}

/// What every schedule, [`ReduceLROnPlateau`] included, offers: its name,
/// the learning rates it set last, and its state for checkpoints.
pub trait Schedule {
    /// The name checkpoints record, PyTorch's class name.
    fn name(&self) -> String;
    /// The learning rates set last, one per group (PyTorch's `get_last_lr()`).
    fn last_lrs(&self) -> &[f64];
    /// A copy of the state carried between epochs.
    fn state(&self) -> ScheduleState;
    /// Replaces the state with `state`, once it is one this schedule, as
    /// configured, could have written (its name, its values, as many
    /// learning rates as it has groups); on error nothing changes.
    fn set_state(&mut self, state: &ScheduleState) -> Result<(), LayerError>;
}

/// A schedule moved one epoch at a time: all but [`ReduceLROnPlateau`],
/// whose step also takes the metric it watches.
pub trait LrScheduler<F>: Schedule {
    /// Moves to the next epoch and sets each group's learning rate. On
    /// error (a group count that changed, an epoch past the schedule's
    /// end, a rate that is not finite and non-negative) nothing changes.
    fn step(&mut self, optimizer: &mut dyn Optimizer<F>) -> Result<(), LayerError>;
}

/// Where a [`Rule`] is asked for a learning rate: PyTorch's `last_epoch`,
/// one group's base rate (`initial_lr`) and its current rate (`group["lr"]`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct At {
    /// The epoch whose rate is wanted (0 when the schedule is created).
    pub epoch: i64,
    /// The group's base learning rate, which the schedule scales.
    pub base: f64,
    /// The group's current learning rate, which a chainable rule scales.
    pub current: f64,
    /// Whether this is the step made when the schedule is created
    /// (PyTorch's `_is_initial`).
    pub initial: bool,
}

/// How a schedule's learning rate moves from epoch to epoch: PyTorch's
/// `get_lr` for one group, and its `_get_closed_form_lr` where it has one.
/// Implement it for your own schedule and drive it with [`Scheduler`].
pub trait Rule: Debug + Send + Sync {
    /// PyTorch's class name of the schedule, e.g. `"StepLR"`.
    fn name(&self) -> &'static str;
    /// The learning rate at `at.epoch` (PyTorch's `get_lr`, chainable).
    fn rate(&self, group: usize, at: At) -> f64;
    /// The learning rate at `epoch` from the base alone, if the schedule has
    /// such a form ([`SequentialLR`] uses it at its milestones, as PyTorch does).
    fn closed_form(&self, _group: usize, _epoch: i64, _base: f64) -> Option<f64> {
        None
    }
    /// The base learning rate of group `group` when the optimiser's is
    /// `current`: `current` itself, but for [`OneCycle`], which sets its own.
    fn base_lr(&self, _group: usize, current: f64) -> f64 {
        current
    }
    /// The last epoch the schedule defines, if it ends.
    fn last_epoch(&self) -> Option<i64> {
        None
    }
}

impl<R: Rule + ?Sized> Rule for Box<R> {
    fn name(&self) -> &'static str {
        (**self).name()
    }
    fn rate(&self, group: usize, at: At) -> f64 {
        (**self).rate(group, at)
    }
    fn closed_form(&self, group: usize, epoch: i64, base: f64) -> Option<f64> {
        (**self).closed_form(group, epoch, base)
    }
    fn base_lr(&self, group: usize, current: f64) -> f64 {
        (**self).base_lr(group, current)
    }
    fn last_epoch(&self) -> Option<i64> {
        (**self).last_epoch()
    }
}

/// The optimiser's learning rates as `f64`, one per group.
fn group_rates<F: Real>(optimizer: &dyn Optimizer<F>) -> Vec<f64> {
    (0..optimizer.group_count())
        .map(|g| {
            optimizer
                .group_learning_rate(g)
                .and_then(|lr| lr.to_f64())
                .unwrap_or(f64::NAN)
        })
        .collect()
}

/// The rate group `group` works from: `remembered` (the `f64` the schedule
/// set last), unless the optimiser's rate was changed since.
fn current_rate<F: Real>(optimizer: &dyn Optimizer<F>, group: usize, remembered: f64) -> f64 {
    match optimizer.group_learning_rate(group) {
        Some(lr) if F::from_f64(remembered) == Some(lr) => remembered,
        Some(lr) => lr.to_f64().unwrap_or(f64::NAN),
        None => f64::NAN,
    }
}

/// Sets every group's learning rate to `rates` (in `f64`, rounded to `F`),
/// all or nothing: each must be finite and non-negative, one per group.
pub(crate) fn set_rates<F: Real>(
    owner: &'static str,
    optimizer: &mut dyn Optimizer<F>,
    rates: &[f64],
) -> Result<(), LayerError> {
    if rates.len() != optimizer.group_count() {
        let reason = format!(
            "the schedule has {} groups, the optimizer {}: create the schedule after adding every group",
            rates.len(),
            optimizer.group_count()
        );
        return Err(LayerError::state(owner, "groups", reason));
    }
    if let Some((group, rate)) = rates
        .iter()
        .enumerate()
        .find(|(_, r)| !(**r >= 0.0 && F::from_f64(**r).is_some_and(|r| r.is_finite())))
    {
        let reason = format!("the schedule computed {rate} for group {group}");
        return Err(LayerError::state(owner, "learning_rate", reason));
    }
    for (group, &rate) in rates.iter().enumerate() {
        let rate = F::from_f64(rate).expect("checked above");
        optimizer.set_group_learning_rate(group, rate)?;
    }
    Ok(())
}

//! [`SequentialLR`]: schedules one after another, PyTorch's `SequentialLR`.

use super::{LrScheduler, Rule, Schedule, ScheduleState, Scheduler};
use crate::error::LayerError;
use crate::optim::Optimizer;
use crate::real::Real;

/// Runs schedules one after another, switching at the milestone epochs,
/// PyTorch's `SequentialLR`: the usual warm-up then cosine annealing.
///
/// Every schedule works from the first one's base rates (the optimiser's
/// `initial_lr` in PyTorch); at a milestone the next schedule starts at its
/// epoch 0 (from its closed form, as PyTorch does).
///
/// # Example
/// ```
/// use ndlayers::optim::lr_scheduler::{ExponentialLR, LinearLR, LrScheduler, SequentialLR};
/// use ndlayers::optim::{Optimizer, Sgd};
///
/// let mut sgd = Sgd::new(1.0)?;
/// let warm_up = LinearLR::new(&mut sgd, 0.5, 1.0, 2)?;
/// let decay = ExponentialLR::new(&mut sgd, 0.5)?;
/// let mut schedule = SequentialLR::new(&mut sgd, vec![warm_up.boxed(), decay.boxed()], &[2])?;
/// let mut rates = vec![sgd.learning_rate()];
/// for _ in 0..4 {
///     schedule.step(&mut sgd)?;
///     rates.push(sgd.learning_rate());
/// }
/// assert_eq!(rates, [0.5, 0.75, 1.0, 0.5, 0.25]);
/// # Ok::<(), ndlayers::LayerError>(())
/// ```
#[derive(Debug)]
pub struct SequentialLR {
    schedulers: Vec<Scheduler<Box<dyn Rule>>>,
    milestones: Vec<u64>,
    last_epoch: i64,
    last_lrs: Vec<f64>,
}

const SEQUENTIAL: &str = "SequentialLR";

impl SequentialLR {
    /// Chains `schedulers` (each created on `optimizer`, in order), switching
    /// from one to the next at each of `milestones` (one fewer than the
    /// schedulers, increasing); sets the learning rates of epoch 0.
    pub fn new<F: Real>(
        optimizer: &mut dyn Optimizer<F>,
        mut schedulers: Vec<Scheduler<Box<dyn Rule>>>,
        milestones: &[u64],
    ) -> Result<Self, LayerError> {
        let Some(first) = schedulers.first() else {
            let reason = "needs at least one scheduler";
            return Err(LayerError::state(SEQUENTIAL, "schedulers", reason));
        };
        if milestones.len() + 1 != schedulers.len() {
            let reason = format!(
                "{} milestones for {} schedulers: give one fewer milestone than schedulers",
                milestones.len(),
                schedulers.len()
            );
            return Err(LayerError::state(SEQUENTIAL, "milestones", reason));
        }
        if milestones.windows(2).any(|w| w[0] >= w[1]) {
            let reason = format!("{milestones:?} must increase");
            return Err(LayerError::state(SEQUENTIAL, "milestones", reason));
        }
        // PyTorch's `initial_lr`: set by the first scheduler created, shared by all.
        let initial: Vec<f64> = first.base_lrs().to_vec();
        for scheduler in &mut schedulers[1..] {
            scheduler.rebase(&initial);
        }
        // Back to the initial rates, every scheduler one epoch back, and the
        // one in charge at epoch 0 starts again.
        super::set_rates(SEQUENTIAL, optimizer, &initial)?;
        for scheduler in &mut schedulers {
            scheduler.undo();
        }
        let index = milestones.partition_point(|&m| m == 0);
        schedulers[index].initial_step(optimizer)?;
        let last_lrs = schedulers[index].last_lrs().to_vec();
        Ok(SequentialLR {
            schedulers,
            milestones: milestones.to_vec(),
            last_epoch: 0,
            last_lrs,
        })
    }
}

impl Schedule for SequentialLR {
    fn name(&self) -> String {
        let names: Vec<String> = self.schedulers.iter().map(|s| s.name()).collect();
        format!("{SEQUENTIAL}({})", names.join(","))
    }

    fn last_lrs(&self) -> &[f64] {
        &self.last_lrs
    }

    fn state(&self) -> ScheduleState {
        let mut values = vec![
            ("last_epoch".to_string(), vec![self.last_epoch as f64]),
            ("last_lrs".to_string(), self.last_lrs.clone()),
        ];
        for (i, scheduler) in self.schedulers.iter().enumerate() {
            let state = scheduler.state();
            values.extend(
                state
                    .values
                    .into_iter()
                    .map(|(k, v)| (format!("{i}.{k}"), v)),
            );
        }
        ScheduleState {
            scheduler: self.name(),
            values,
        }
    }

    fn set_state(&mut self, state: &ScheduleState) -> Result<(), LayerError> {
        if state.scheduler != self.name() {
            let reason = format!("it is {}'s, this is {}", state.scheduler, self.name());
            return Err(LayerError::state(SEQUENTIAL, "", reason));
        }
        let last_epoch = state.count(SEQUENTIAL, "last_epoch")?;
        let last_lrs = state.rates(SEQUENTIAL, "last_lrs", self.last_lrs.len())?;
        if last_epoch < 0 {
            let reason = format!("{last_epoch} is not an epoch of this schedule");
            return Err(LayerError::state(SEQUENTIAL, "last_epoch", reason));
        }
        // Each scheduler's part, checked on a copy before anything changes.
        let mut parts = Vec::with_capacity(self.schedulers.len());
        let mut claimed = 2;
        for (i, scheduler) in self.schedulers.iter().enumerate() {
            let prefix = format!("{i}.");
            let values: Vec<(String, Vec<f64>)> = state
                .values
                .iter()
                .filter_map(|(k, v)| k.strip_prefix(&prefix).map(|k| (k.to_string(), v.clone())))
                .collect();
            claimed += values.len();
            let part = ScheduleState {
                scheduler: scheduler.name(),
                values,
            };
            parts.push(scheduler.parse_state(&part)?);
        }
        if claimed != state.values.len() {
            let reason = "it holds values no part of this schedule claims";
            return Err(LayerError::state(SEQUENTIAL, "", reason));
        }
        for (scheduler, part) in self.schedulers.iter_mut().zip(parts) {
            scheduler.assign(part);
        }
        (self.last_epoch, self.last_lrs) = (last_epoch, last_lrs);
        Ok(())
    }
}

impl<F: Real> LrScheduler<F> for SequentialLR {
    fn step(&mut self, optimizer: &mut dyn Optimizer<F>) -> Result<(), LayerError> {
        let epoch = self.last_epoch + 1;
        let index = self.milestones.partition_point(|&m| m as i64 <= epoch);
        let scheduler = &mut self.schedulers[index];
        if index > 0 && self.milestones[index - 1] as i64 == epoch {
            scheduler.restart(optimizer)?;
        } else {
            LrScheduler::<F>::step(scheduler, optimizer)?;
        }
        self.last_lrs = scheduler.last_lrs().to_vec();
        self.last_epoch = epoch;
        Ok(())
    }
}

//! [`Scheduler`]: one [`Rule`] driven epoch by epoch, as PyTorch's
//! `LRScheduler` base class drives each schedule's `get_lr`.

use super::{At, LrScheduler, Rule, Schedule, ScheduleState, current_rate, group_rates, set_rates};
use crate::error::LayerError;
use crate::optim::Optimizer;
use crate::real::Real;

/// A learning-rate schedule: a [`Rule`] and where it is. [`StepLR`](super::StepLR),
/// [`CosineAnnealingLR`](super::CosineAnnealingLR) and the others are this
/// type with their rule; your own rule works the same way.
///
/// State: `last_epoch` (PyTorch's), `base_lrs` (each group's rate when the
/// schedule was created, or the rule's own) and `last_lrs` (the rates set last).
#[derive(Debug, Clone)]
pub struct Scheduler<R> {
    rule: R,
    base_lrs: Vec<f64>,
    last_epoch: i64,
    last_lrs: Vec<f64>,
}

const SCHEDULER: &str = "Scheduler";

impl<R: Rule> Scheduler<R> {
    /// Starts `rule` on `optimizer`: takes each group's base rate and sets
    /// the learning rates of epoch 0 (PyTorch's initial step).
    pub fn start<F: Real>(optimizer: &mut dyn Optimizer<F>, rule: R) -> Result<Self, LayerError> {
        let base_lrs = group_rates(optimizer)
            .iter()
            .enumerate()
            .map(|(g, &lr)| rule.base_lr(g, lr))
            .collect();
        let mut scheduler = Scheduler {
            rule,
            base_lrs,
            last_epoch: -1,
            last_lrs: group_rates(optimizer),
        };
        scheduler.initial_step(optimizer)?;
        Ok(scheduler)
    }

    /// The rule.
    pub fn rule(&self) -> &R {
        &self.rule
    }

    /// The last epoch stepped to (0 once created).
    pub fn last_epoch(&self) -> i64 {
        self.last_epoch
    }

    /// Each group's base learning rate.
    pub fn base_lrs(&self) -> &[f64] {
        &self.base_lrs
    }

    /// The schedule behind a box, to chain with others in a [`SequentialLR`](super::SequentialLR).
    pub fn boxed(self) -> Scheduler<Box<dyn Rule>>
    where
        R: 'static,
    {
        Scheduler {
            rule: Box::new(self.rule),
            base_lrs: self.base_lrs,
            last_epoch: self.last_epoch,
            last_lrs: self.last_lrs,
        }
    }

    /// PyTorch's `_initial_step`: the rate at the next epoch, in initial mode.
    pub(crate) fn initial_step<F: Real>(
        &mut self,
        optimizer: &mut dyn Optimizer<F>,
    ) -> Result<(), LayerError> {
        self.advance(optimizer, self.last_epoch + 1, true, false)
    }

    /// PyTorch's `_update_lr(0)`, which `SequentialLR` calls at a milestone:
    /// epoch 0 from the closed form where the rule has one.
    pub(crate) fn restart<F: Real>(
        &mut self,
        optimizer: &mut dyn Optimizer<F>,
    ) -> Result<(), LayerError> {
        self.advance(optimizer, 0, false, true)
    }

    /// PyTorch's `recursive_undo`: one epoch back, without touching rates.
    pub(crate) fn undo(&mut self) {
        self.last_epoch -= 1;
    }

    /// Replaces the base rates with the rule's for `rates` (as
    /// `SequentialLR` does, through the optimiser's `initial_lr`).
    pub(crate) fn rebase(&mut self, rates: &[f64]) {
        self.base_lrs = rates
            .iter()
            .enumerate()
            .map(|(g, &lr)| self.rule.base_lr(g, lr))
            .collect();
    }

    /// Moves to `epoch` and sets its rates: all or nothing.
    fn advance<F: Real>(
        &mut self,
        optimizer: &mut dyn Optimizer<F>,
        epoch: i64,
        initial: bool,
        closed: bool,
    ) -> Result<(), LayerError> {
        if let Some(last) = self.rule.last_epoch().filter(|&last| epoch > last) {
            let reason = format!(
                "epoch {epoch} is past the schedule's last, {last}: it was made for {last} steps"
            );
            return Err(LayerError::state(self.rule.name(), "last_epoch", reason));
        }
        let rates: Vec<f64> = (0..self.base_lrs.len())
            .map(|g| {
                let base = self.base_lrs[g];
                let closed_form = closed
                    .then(|| self.rule.closed_form(g, epoch, base))
                    .flatten();
                closed_form.unwrap_or_else(|| {
                    let current = current_rate(optimizer, g, self.last_lrs[g]);
                    let at = At {
                        epoch,
                        base,
                        current,
                        initial,
                    };
                    self.rule.rate(g, at)
                })
            })
            .collect();
        set_rates(self.rule.name(), optimizer, &rates)?;
        self.last_epoch = epoch;
        self.last_lrs = rates;
        Ok(())
    }
}

impl<R: Rule> Schedule for Scheduler<R> {
    fn name(&self) -> String {
        self.rule.name().to_string()
    }

    fn last_lrs(&self) -> &[f64] {
        &self.last_lrs
    }

    fn state(&self) -> ScheduleState {
        ScheduleState {
            scheduler: self.name(),
            values: vec![
                ("last_epoch".into(), vec![self.last_epoch as f64]),
                ("base_lrs".into(), self.base_lrs.clone()),
                ("last_lrs".into(), self.last_lrs.clone()),
            ],
        }
    }

    fn set_state(&mut self, state: &ScheduleState) -> Result<(), LayerError> {
        let parsed = self.parse_state(state)?;
        self.assign(parsed);
        Ok(())
    }
}

/// A scheduler's state, checked: last epoch, base rates, last rates.
pub(crate) type Parsed = (i64, Vec<f64>, Vec<f64>);

impl<R: Rule> Scheduler<R> {
    /// `state`'s values, once they are ones this scheduler could have written.
    pub(crate) fn parse_state(&self, state: &ScheduleState) -> Result<Parsed, LayerError> {
        if state.scheduler != self.name() {
            let reason = format!("it is {}'s, this is {}", state.scheduler, self.name());
            return Err(LayerError::state(SCHEDULER, "", reason));
        }
        let groups = self.base_lrs.len();
        let last_epoch = state.count(SCHEDULER, "last_epoch")?;
        let base_lrs = state.rates(SCHEDULER, "base_lrs", groups)?;
        let last_lrs = state.rates(SCHEDULER, "last_lrs", groups)?;
        if last_epoch < -1 || self.rule.last_epoch().is_some_and(|last| last_epoch > last) {
            let reason = format!("{last_epoch} is not an epoch of this schedule");
            return Err(LayerError::state(SCHEDULER, "last_epoch", reason));
        }
        if state.values.len() != 3 {
            let reason = "it holds values other than last_epoch, base_lrs and last_lrs";
            return Err(LayerError::state(SCHEDULER, "", reason));
        }
        Ok((last_epoch, base_lrs, last_lrs))
    }

    /// Takes a checked state.
    pub(crate) fn assign(&mut self, (last_epoch, base_lrs, last_lrs): Parsed) {
        (self.last_epoch, self.base_lrs, self.last_lrs) = (last_epoch, base_lrs, last_lrs);
    }
}

impl<F: Real, R: Rule> LrScheduler<F> for Scheduler<R> {
    fn step(&mut self, optimizer: &mut dyn Optimizer<F>) -> Result<(), LayerError> {
        self.advance(optimizer, self.last_epoch + 1, false, false)
    }
}

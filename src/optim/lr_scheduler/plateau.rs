//! [`ReduceLROnPlateau`]: PyTorch's schedule that watches a metric.

use super::{Schedule, ScheduleState, current_rate, group_rates, set_rates};
use crate::error::{LayerError, require};
use crate::optim::Optimizer;
use crate::real::Real;

/// Whether the watched metric should go down (a loss) or up (an accuracy).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Lower is better; PyTorch's default.
    #[default]
    Min,
    /// Higher is better.
    Max,
}

/// How much better than the best a metric must be to count as better.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ThresholdMode {
    /// Better than `best · (1 ∓ threshold)`; PyTorch's default.
    #[default]
    Rel,
    /// Better than `best ∓ threshold`.
    Abs,
}

/// Multiplies the learning rates by `factor` once the metric has not
/// improved for more than `patience` epochs, PyTorch's `ReduceLROnPlateau`
/// (same rules, same defaults: `factor = 0.1`, `patience = 10`,
/// `threshold = 1e-4` relative, no cooldown, `min_lr = 0`, `eps = 1e-8`).
///
/// Each epoch, [`step`](Self::step) with the metric: a metric better than
/// the best so far resets the count of bad epochs; when the count passes
/// `patience` each rate becomes `max(lr · factor, min_lr)` (unless that
/// changes it by `eps` or less), and `cooldown` epochs follow in which bad
/// epochs are not counted. A NaN metric is never better.
///
/// # Example
/// ```
/// use ndlayers::optim::lr_scheduler::ReduceLROnPlateau;
/// use ndlayers::optim::{Optimizer, Sgd};
///
/// let mut sgd = Sgd::<f64>::new(0.1)?;
/// let mut plateau = ReduceLROnPlateau::new(&mut sgd).with_patience(1);
/// for loss in [1.0, 0.5, 0.5, 0.5] {
///     plateau.step(&mut sgd, loss)?;
/// }
/// assert!((sgd.learning_rate() - 0.01).abs() < 1e-12); // two epochs without progress
/// # Ok::<(), ndlayers::LayerError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct ReduceLROnPlateau {
    mode: Mode,
    factor: f64,
    patience: u64,
    threshold: f64,
    threshold_mode: ThresholdMode,
    cooldown: u64,
    min_lrs: Vec<f64>,
    eps: f64,
    // State.
    best: f64,
    num_bad_epochs: u64,
    cooldown_counter: u64,
    last_epoch: i64,
    last_lrs: Vec<f64>,
}

const PLATEAU: &str = "ReduceLROnPlateau";

impl ReduceLROnPlateau {
    /// Watches a metric to minimise, with PyTorch's defaults, for `optimizer`'s groups.
    pub fn new<F: Real>(optimizer: &mut dyn Optimizer<F>) -> Self {
        let last_lrs = group_rates(optimizer);
        ReduceLROnPlateau {
            mode: Mode::Min,
            factor: 0.1,
            patience: 10,
            threshold: 1e-4,
            threshold_mode: ThresholdMode::Rel,
            cooldown: 0,
            min_lrs: vec![0.0; last_lrs.len()],
            eps: 1e-8,
            best: f64::INFINITY,
            num_bad_epochs: 0,
            cooldown_counter: 0,
            last_epoch: 0,
            last_lrs,
        }
    }

    /// Whether lower or higher is better (resets the best so far).
    pub fn with_mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self.best = self.worst();
        self
    }

    /// The factor applied to the rates, in `[0, 1)`.
    pub fn with_factor(mut self, factor: f64) -> Result<Self, LayerError> {
        let valid = (0.0..1.0).contains(&factor);
        self.factor = require(PLATEAU, "factor", factor, valid, "must be in [0, 1)")?;
        Ok(self)
    }

    /// Epochs without improvement tolerated before reducing.
    pub fn with_patience(mut self, patience: u64) -> Self {
        self.patience = patience;
        self
    }

    /// What counts as an improvement: `threshold` (finite, non-negative),
    /// relative or absolute.
    pub fn with_threshold(
        mut self,
        threshold: f64,
        mode: ThresholdMode,
    ) -> Result<Self, LayerError> {
        let valid = threshold.is_finite() && threshold >= 0.0;
        let message = "must be finite and non-negative";
        self.threshold = require(PLATEAU, "threshold", threshold, valid, message)?;
        self.threshold_mode = mode;
        Ok(self)
    }

    /// Epochs after a reduction in which bad epochs are not counted.
    pub fn with_cooldown(mut self, cooldown: u64) -> Self {
        self.cooldown = cooldown;
        self
    }

    /// The lowest rate of every group (finite, non-negative).
    pub fn with_min_lr(mut self, min_lr: f64) -> Result<Self, LayerError> {
        let valid = min_lr.is_finite() && min_lr >= 0.0;
        let min_lr = require(
            PLATEAU,
            "min_lr",
            min_lr,
            valid,
            "must be finite and non-negative",
        )?;
        self.min_lrs.fill(min_lr);
        Ok(self)
    }

    /// The lowest rate of each group, one per group.
    pub fn with_min_lrs(mut self, min_lrs: &[f64]) -> Result<Self, LayerError> {
        let valid = min_lrs.len() == self.min_lrs.len()
            && min_lrs.iter().all(|l| l.is_finite() && *l >= 0.0);
        let shown = format!("{min_lrs:?}");
        let message = "must be one finite, non-negative rate per group";
        require(PLATEAU, "min_lr", shown, valid, message)?;
        self.min_lrs = min_lrs.to_vec();
        Ok(self)
    }

    /// A change of rate no larger than `eps` (finite, non-negative) is not made.
    pub fn with_eps(mut self, eps: f64) -> Result<Self, LayerError> {
        let valid = eps.is_finite() && eps >= 0.0;
        self.eps = require(
            PLATEAU,
            "eps",
            eps,
            valid,
            "must be finite and non-negative",
        )?;
        Ok(self)
    }

    /// The best metric so far (`±∞` before the first).
    pub fn best(&self) -> f64 {
        self.best
    }

    /// Epochs since the last improvement, as counted.
    pub fn num_bad_epochs(&self) -> u64 {
        self.num_bad_epochs
    }

    fn worst(&self) -> f64 {
        match self.mode {
            Mode::Min => f64::INFINITY,
            Mode::Max => f64::NEG_INFINITY,
        }
    }

    fn is_better(&self, a: f64, best: f64) -> bool {
        match (self.mode, self.threshold_mode) {
            (Mode::Min, ThresholdMode::Rel) => a < best * (1.0 - self.threshold),
            (Mode::Min, ThresholdMode::Abs) => a < best - self.threshold,
            (Mode::Max, ThresholdMode::Rel) => a > best * (self.threshold + 1.0),
            (Mode::Max, ThresholdMode::Abs) => a > best + self.threshold,
        }
    }

    /// Ends an epoch whose watched metric was `metric`: counts it, and
    /// reduces the rates once there have been more than `patience` bad
    /// epochs. On error (the optimiser's groups changed) nothing changes.
    pub fn step<F: Real>(
        &mut self,
        optimizer: &mut dyn Optimizer<F>,
        metric: f64,
    ) -> Result<(), LayerError> {
        let mut next = self.clone();
        next.last_epoch += 1;
        if next.is_better(metric, next.best) {
            next.best = metric;
            next.num_bad_epochs = 0;
        } else {
            next.num_bad_epochs += 1;
        }
        if next.cooldown_counter > 0 {
            next.cooldown_counter -= 1;
            next.num_bad_epochs = 0;
        }
        let mut rates: Vec<f64> = (0..self.last_lrs.len())
            .map(|g| current_rate(optimizer, g, self.last_lrs[g]))
            .collect();
        if next.num_bad_epochs > next.patience {
            for (rate, &min_lr) in rates.iter_mut().zip(&next.min_lrs) {
                let reduced = (*rate * next.factor).max(min_lr);
                if *rate - reduced > next.eps {
                    *rate = reduced;
                }
            }
            next.cooldown_counter = next.cooldown;
            next.num_bad_epochs = 0;
        }
        set_rates(PLATEAU, optimizer, &rates)?;
        next.last_lrs = rates;
        *self = next;
        Ok(())
    }
}

impl Schedule for ReduceLROnPlateau {
    fn name(&self) -> String {
        PLATEAU.to_string()
    }

    fn last_lrs(&self) -> &[f64] {
        &self.last_lrs
    }

    fn state(&self) -> ScheduleState {
        let count = |v: u64| vec![v as f64];
        ScheduleState {
            scheduler: self.name(),
            values: vec![
                ("last_epoch".into(), vec![self.last_epoch as f64]),
                ("best".into(), vec![self.best]),
                ("num_bad_epochs".into(), count(self.num_bad_epochs)),
                ("cooldown_counter".into(), count(self.cooldown_counter)),
                ("last_lrs".into(), self.last_lrs.clone()),
            ],
        }
    }

    fn set_state(&mut self, state: &ScheduleState) -> Result<(), LayerError> {
        if state.scheduler != PLATEAU {
            let reason = format!("it is {}'s, this is {PLATEAU}", state.scheduler);
            return Err(LayerError::state(PLATEAU, "", reason));
        }
        let last_epoch = state.count(PLATEAU, "last_epoch")?;
        let best = match state.take(PLATEAU, "best")? {
            &[best] if !best.is_nan() => best,
            other => {
                let reason = format!("{other:?} is not one number");
                return Err(LayerError::state(PLATEAU, "best", reason));
            }
        };
        let bad = state.count(PLATEAU, "num_bad_epochs")?;
        let cooldown = state.count(PLATEAU, "cooldown_counter")?;
        let last_lrs = state.rates(PLATEAU, "last_lrs", self.last_lrs.len())?;
        for (name, value) in [
            ("last_epoch", last_epoch),
            ("num_bad_epochs", bad),
            ("cooldown_counter", cooldown),
        ] {
            if value < 0 {
                return Err(LayerError::state(
                    PLATEAU,
                    name,
                    format!("{value} is negative"),
                ));
            }
        }
        if state.values.len() != 5 {
            let reason = "it holds values other than ReduceLROnPlateau's five";
            return Err(LayerError::state(PLATEAU, "", reason));
        }
        self.last_epoch = last_epoch;
        self.best = best;
        self.num_bad_epochs = bad as u64;
        self.cooldown_counter = cooldown as u64;
        self.last_lrs = last_lrs;
        Ok(())
    }
}

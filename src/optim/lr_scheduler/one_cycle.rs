//! [`OneCycle`]: PyTorch's `OneCycleLR`.

use std::f64::consts::PI;

use super::{At, Rule, Scheduler};
use crate::error::{LayerError, require};
use crate::optim::Optimizer;
use crate::real::Real;

/// How [`OneCycle`] moves between two rates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Anneal {
    /// Along half a cosine: `end + (start - end) (1 + cos(π p)) / 2`; PyTorch's default.
    #[default]
    Cos,
    /// Along a line: `start + (end - start) p`.
    Linear,
}

impl Anneal {
    fn between(self, start: f64, end: f64, pct: f64) -> f64 {
        match self {
            Anneal::Cos => end + (start - end) / 2.0 * ((PI * pct).cos() + 1.0),
            Anneal::Linear => (end - start) * pct + start,
        }
    }
}

/// Which rate a phase starts or ends at.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Level {
    Initial,
    Max,
    Min,
}

/// The 1cycle policy (Smith & Topin), PyTorch's `OneCycleLR`: per
/// *batch*, from `max_lr / div_factor` up to `max_lr` over the first
/// `pct_start` of `total_steps`, then down to
/// `max_lr / (div_factor · final_div_factor)`; with `three_phase`, up,
/// back down to the start, then down to the minimum.
///
/// Unlike PyTorch's default, the momentum (or Adam's β₁) is not cycled.
/// Stepping past `total_steps` is an error, as in PyTorch.
#[derive(Debug, Clone, PartialEq)]
pub struct OneCycle {
    max_lrs: Vec<f64>,
    total_steps: u64,
    /// Each phase: the step it ends at, and the levels it goes between.
    phases: Vec<(f64, Level, Level)>,
    anneal: Anneal,
    div_factor: f64,
    final_div_factor: f64,
}

const ONE_CYCLE: &str = "OneCycleLR";

impl OneCycle {
    /// Peaks at `max_lr` (finite, non-negative) after `pct_start` of
    /// `total_steps` (positive), with PyTorch's defaults:
    /// `pct_start = 0.3`, cosine annealing, `div_factor = 25`,
    /// `final_div_factor = 1e4`, two phases.
    pub fn new(max_lr: f64, total_steps: u64) -> Result<Self, LayerError> {
        let valid = max_lr.is_finite() && max_lr >= 0.0;
        require(
            ONE_CYCLE,
            "max_lr",
            max_lr,
            valid,
            "must be finite and non-negative",
        )?;
        require(
            ONE_CYCLE,
            "total_steps",
            total_steps,
            total_steps > 0,
            "must be positive",
        )?;
        let mut one_cycle = OneCycle {
            max_lrs: vec![max_lr],
            total_steps,
            phases: Vec::new(),
            anneal: Anneal::Cos,
            div_factor: 25.0,
            final_div_factor: 1e4,
        };
        one_cycle.set_phases(0.3, false);
        Ok(one_cycle)
    }

    /// One peak per parameter group, in group order (PyTorch's list `max_lr`).
    pub fn with_max_lrs(mut self, max_lrs: &[f64]) -> Result<Self, LayerError> {
        let valid = !max_lrs.is_empty() && max_lrs.iter().all(|l| l.is_finite() && *l >= 0.0);
        let shown = format!("{max_lrs:?}");
        require(
            ONE_CYCLE,
            "max_lr",
            shown,
            valid,
            "must be finite and non-negative",
        )?;
        self.max_lrs = max_lrs.to_vec();
        Ok(self)
    }

    /// The fraction of the cycle spent going up, in `[0, 1]`; with
    /// `three_phase`, as PyTorch's, going up, down again, then annealing.
    pub fn with_phases(mut self, pct_start: f64, three_phase: bool) -> Result<Self, LayerError> {
        let valid = (0.0..=1.0).contains(&pct_start);
        require(
            ONE_CYCLE,
            "pct_start",
            pct_start,
            valid,
            "must be in [0, 1]",
        )?;
        self.set_phases(pct_start, three_phase);
        Ok(self)
    }

    /// How the rate moves within a phase.
    pub fn with_anneal(mut self, anneal: Anneal) -> Self {
        self.anneal = anneal;
        self
    }

    /// The start is `max_lr / div_factor`, the end `start / final_div_factor`
    /// (both positive and finite).
    pub fn with_div_factors(
        mut self,
        div_factor: f64,
        final_div_factor: f64,
    ) -> Result<Self, LayerError> {
        for (name, value) in [
            ("div_factor", div_factor),
            ("final_div_factor", final_div_factor),
        ] {
            let valid = value.is_finite() && value > 0.0;
            require(ONE_CYCLE, name, value, valid, "must be positive and finite")?;
        }
        (self.div_factor, self.final_div_factor) = (div_factor, final_div_factor);
        Ok(self)
    }

    fn set_phases(&mut self, pct_start: f64, three_phase: bool) {
        let total = self.total_steps as f64;
        let up = pct_start * total - 1.0;
        self.phases = if three_phase {
            vec![
                (up, Level::Initial, Level::Max),
                (2.0 * pct_start * total - 2.0, Level::Max, Level::Initial),
                (total - 1.0, Level::Initial, Level::Min),
            ]
        } else {
            vec![
                (up, Level::Initial, Level::Max),
                (total - 1.0, Level::Max, Level::Min),
            ]
        };
    }

    fn max_lr(&self, group: usize) -> f64 {
        match self.max_lrs.as_slice() {
            [one] => *one,
            several => several.get(group).copied().unwrap_or(f64::NAN),
        }
    }
}

impl Rule for OneCycle {
    fn name(&self) -> &'static str {
        ONE_CYCLE
    }

    fn base_lr(&self, group: usize, _current: f64) -> f64 {
        self.max_lr(group) / self.div_factor
    }

    fn rate(&self, group: usize, at: At) -> f64 {
        let initial = at.base;
        let level = |level| match level {
            Level::Initial => initial,
            Level::Max => self.max_lr(group),
            Level::Min => initial / self.final_div_factor,
        };
        let step = at.epoch as f64;
        let mut start_step = 0.0;
        for (i, &(end_step, from, to)) in self.phases.iter().enumerate() {
            if step <= end_step || i == self.phases.len() - 1 {
                let pct = (step - start_step) / (end_step - start_step);
                return self.anneal.between(level(from), level(to), pct);
            }
            start_step = end_step;
        }
        f64::NAN
    }

    fn last_epoch(&self) -> Option<i64> {
        Some(self.total_steps as i64)
    }
}

impl Scheduler<OneCycle> {
    /// PyTorch's `OneCycleLR(optimizer, max_lr, total_steps, cycle_momentum=False)`;
    /// the other options through [`Scheduler::start`] with a configured [`OneCycle`].
    pub fn new<F: Real>(
        optimizer: &mut dyn Optimizer<F>,
        max_lr: f64,
        total_steps: u64,
    ) -> Result<Self, LayerError> {
        Scheduler::start(optimizer, OneCycle::new(max_lr, total_steps)?)
    }
}

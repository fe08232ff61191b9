//! The optimisers, [`Sgd`], [`Adam`] and [`AdamW`], and the [`Optimizer`]
//! trait they share.
//!
//! An optimiser reads a network through the state interface
//! ([`StateDict`]): each [`Entry::Parameter`](crate::state::Entry::Parameter)
//! with the gradient its last `backward` stored, in PyTorch's orientation.
//! Buffers are not touched. Your own optimiser can be written against the
//! same walk without touching a layer's private fields:
//!
//! ```
//! use ndlayers::prelude::*;
//! use ndlayers::state::{EntryMut, Name, StateDict};
//! use rand::{SeedableRng, rngs::StdRng};
//!
//! /// Plain gradient descent with each gradient element clipped to ±clip.
//! fn clipped_step(net: &mut dyn StateDict<f32>, learning_rate: f32, clip: f32) {
//!     net.visit_state_mut(&Name::ROOT, &mut |_, entry| {
//!         if let EntryMut::Parameter { mut value, grad } = entry {
//!             value.zip_mut_with(&grad, |w, &g| *w -= learning_rate * g.clamp(-clip, clip));
//!         }
//!     });
//! }
//!
//! let mut dense = Dense::<f32>::new(4, 2, Init::HeNormal, &mut StdRng::seed_from_u64(0))?;
//! clipped_step(&mut dense, 0.1, 1.0);
//! # Ok::<(), LayerError>(())
//! ```
//!
//! Every step is all or nothing: the gradients, and the optimiser's state
//! against the parameters, are checked before anything is updated, so a
//! failed step leaves the network, the state and the step count as they were.

mod accumulate;
mod adam;
mod clip;
mod groups;
pub mod lr_scheduler;
mod sgd;
mod slots;

pub use accumulate::GradAccumulator;
pub use adam::{Adam, AdamFamily, AdamW, Coupled, Decoupled, WeightDecay};
pub use clip::{Norm, clip_grad_norm, clip_grad_value};
pub use groups::{ParamGroup, Select};
pub use sgd::Sgd;

use ndarray::ArrayD;

use crate::error::{LayerError, require};
use crate::real::Real;
use crate::state::StateDict;

/// What an optimiser carries from step to step, for checkpoints: the steps
/// taken and, for each parameter it has updated, its buffers.
///
/// Buffers are named as PyTorch's optimiser names them (`exp_avg`,
/// `exp_avg_sq`, `momentum_buffer`) and have their parameter's shape and
/// orientation (the walk's, which is PyTorch's).
#[derive(Debug, Clone, PartialEq)]
pub struct OptimizerState<F> {
    /// The optimiser's name, e.g. `"Adam"`.
    pub optimizer: &'static str,
    /// Steps taken; at most `i64::MAX`, as a checkpoint stores it in an `I64`.
    pub step: u64,
    /// The kinds of buffer kept for each parameter, e.g. `["exp_avg", "exp_avg_sq"]`.
    pub kinds: &'static [&'static str],
    /// For each parameter, in walking order: its full name and one array per kind.
    /// Empty before the first step, and always for optimisers without buffers.
    pub parameters: Vec<(String, Vec<ArrayD<F>>)>,
}

/// An optimiser: updates parameters from their gradients, and exposes its
/// state so a checkpoint can save and restore it.
///
/// `step` takes a slice of parts; each is walked with an empty prefix when
/// there is one, and with its position (`0.weight`, `1.weight`) when there
/// are several. The optimiser's state is keyed by those names, so pass the
/// same parts in the same order every time, and checkpoint the same
/// structure (one network, or a [`Named`](crate::state::Named) of its parts).
pub trait Optimizer<F> {
    /// The optimiser's name, e.g. `"Adam"`, as checkpoints record it.
    fn name(&self) -> &'static str;
    /// The buffers this optimiser, as configured, keeps for each parameter
    /// (none for plain SGD, `momentum_buffer` with momentum).
    fn kinds(&self) -> &'static [&'static str];
    /// Updates every parameter of `layers` from the gradients their last
    /// `backward` stored: all of them, or, on error, none.
    fn step(&mut self, layers: &mut [&mut dyn StateDict<F>]) -> Result<(), LayerError>;
    /// The step size (of group 0, the optimiser's own options, when there
    /// are [groups](ParamGroup)).
    fn learning_rate(&self) -> F;
    /// Sets the step size of every group; an invalid value (negative or not
    /// finite) is an error and changes nothing.
    fn set_learning_rate(&mut self, learning_rate: F) -> Result<(), LayerError>;
    /// How many parameter groups the optimiser has: 1, its own options,
    /// plus one for each [`ParamGroup`] added. Schedules set each one's
    /// learning rate, as PyTorch's do for each of `param_groups`.
    fn group_count(&self) -> usize {
        1
    }
    /// The learning rate of group `group` (0 is the optimiser's own), or
    /// `None` when there is no such group.
    fn group_learning_rate(&self, group: usize) -> Option<F> {
        (group == 0).then(|| self.learning_rate())
    }
    /// Sets the learning rate of group `group` alone; an invalid value or
    /// group is an error and changes nothing.
    fn set_group_learning_rate(
        &mut self,
        group: usize,
        learning_rate: F,
    ) -> Result<(), LayerError> {
        match group {
            0 => self.set_learning_rate(learning_rate),
            _ => Err(LayerError::invalid(
                self.name(),
                "group",
                group,
                "is not one of the optimiser's groups (it has one)",
            )),
        }
    }
    /// A copy of the state carried between steps.
    fn state(&self) -> OptimizerState<F>;
    /// Replaces the state with `state`, once it is one this optimiser, as
    /// configured, could have written: its name and kinds, no buffers at
    /// step 0 and buffers for at least one parameter after it, one array of
    /// one shape per kind, no name twice, a step count of at most `i64::MAX`,
    /// and values in each kind's domain (finite; `exp_avg_sq` non-negative).
    /// Whether the names and shapes fit a network is checked by the next
    /// `step` (and by a checkpoint, against its network). On error nothing changes.
    fn set_state(&mut self, state: OptimizerState<F>) -> Result<(), LayerError>;
}

/// Checks a learning rate: non-negative (a schedule may reach 0, as
/// PyTorch allows) and finite.
fn check_learning_rate<F: Real>(
    optimizer: &'static str,
    learning_rate: F,
) -> Result<F, LayerError> {
    let valid = learning_rate >= F::zero() && learning_rate.is_finite();
    require(
        optimizer,
        "learning_rate",
        learning_rate,
        valid,
        "must be non-negative and finite",
    )
}

/// Checks a decay rate (momentum, a beta): in `[0, 1)`.
fn check_rate<F: Real>(
    optimizer: &'static str,
    name: &'static str,
    rate: F,
) -> Result<F, LayerError> {
    let valid = rate >= F::zero() && rate < F::ONE;
    require(optimizer, name, rate, valid, "must be in [0, 1)")
}

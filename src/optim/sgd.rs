//! Stochastic gradient descent, with optional momentum and weight decay.

use ndarray::Zip;

use super::groups::{Groups, Options, ParamGroup, check_weight_decay};
use super::slots::{Slots, update_with};
use super::{Optimizer, OptimizerState, check_learning_rate, check_rate};
use crate::error::LayerError;
use crate::real::Real;
use crate::state::StateDict;

/// Stochastic gradient descent, with optional (heavy-ball) momentum and
/// weight decay, as PyTorch's `SGD` (`dampening = 0`, `nesterov = False`):
/// ```text
/// g ← g + λ w          (weight decay λ; λ = 0 by default)
/// v ← μ v + g
/// w ← w - η v          (μ = 0: w ← w - η g)
/// ```
///
/// With momentum, the velocity of each parameter is kept under the
/// parameter's name (PyTorch's `momentum_buffer`), so pass the same layers
/// in the same order to every [`step`](Sgd::step). After the first step, a
/// step allocates nothing. [`ParamGroup`]s give sets of parameters their
/// own learning rate and weight decay.
///
/// # Example
/// ```
/// use ndlayers::optim::Sgd;
/// use ndlayers::prelude::*;
/// use ndlayers::ndarray::array;
/// use rand::{SeedableRng, rngs::StdRng};
///
/// let mut rng = StdRng::seed_from_u64(1);
/// let mut dense = Dense::<f64>::new(2, 1, Init::GlorotUniform, &mut rng)?;
/// let mut sgd = Sgd::new(0.1)?.with_momentum(0.9)?;
/// dense.forward(array![[1.0, 2.0]].view())?;
/// dense.backward(array![[1.0]].view())?;
/// let before = dense.bias()[0];
/// sgd.step(&mut [&mut dense])?;
/// assert_eq!(dense.bias()[0], before - 0.1); // dL/db = 1
/// # Ok::<(), LayerError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Sgd<F> {
    groups: Groups<F>,
    momentum: F,
    steps: u64,
    velocity: Slots<F, 1>,
}

const SGD: &str = "Sgd";

/// The momentum buffers, as PyTorch's `SGD` names them.
const MOMENTUM: &[&str] = &["momentum_buffer"];

impl<F: Real> Default for Sgd<F> {
    /// Plain SGD with PyTorch's default learning rate, 1e-3: for a
    /// [schedule](super::lr_scheduler) to set.
    fn default() -> Self {
        Sgd {
            groups: Groups::new(F::lit(1e-3), F::zero()),
            momentum: F::zero(),
            steps: 0,
            velocity: Slots::default(),
        }
    }
}

impl<F: Real> Sgd<F> {
    /// Plain SGD with step size `learning_rate` (non-negative and finite).
    pub fn new(learning_rate: F) -> Result<Self, LayerError> {
        let mut sgd = Self::default();
        sgd.groups.own_mut().learning_rate = check_learning_rate(SGD, learning_rate)?;
        Ok(sgd)
    }

    /// Adds momentum `μ` in `[0, 1)`.
    pub fn with_momentum(mut self, momentum: F) -> Result<Self, LayerError> {
        self.momentum = check_rate(SGD, "momentum", momentum)?;
        Ok(self)
    }

    /// The weight decay λ (L2 regularisation, added to the gradient):
    /// non-negative and finite.
    pub fn with_weight_decay(mut self, weight_decay: F) -> Result<Self, LayerError> {
        self.groups.own_mut().weight_decay = check_weight_decay(SGD, weight_decay)?;
        Ok(self)
    }

    /// Adds a parameter group with its own options; options it does not
    /// set are this optimiser's as configured so far.
    pub fn with_group(mut self, group: ParamGroup<F>) -> Self {
        self.groups.add(group);
        self
    }

    /// The step size (group 0's).
    pub fn learning_rate(&self) -> F {
        self.groups.own().learning_rate
    }

    /// Sets every group's step size; an invalid value is an error and changes nothing.
    pub fn set_learning_rate(&mut self, learning_rate: F) -> Result<(), LayerError> {
        self.groups.set_all_learning_rates(SGD, learning_rate)
    }

    /// Steps taken so far.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// Updates every parameter of `layers` from the gradients their last
    /// `backward` stored. A gradient whose shape is not its parameter's, or
    /// momentum state that does not fit the parameters, is an error, and
    /// then nothing changes.
    pub fn step(&mut self, layers: &mut [&mut dyn StateDict<F>]) -> Result<(), LayerError> {
        let (groups, mu) = (&self.groups, self.momentum);
        let stateful = mu != F::zero();
        self.velocity
            .step(SGD, layers, stateful, |name, mut value, grad, buffers| {
                let Options {
                    learning_rate: lr,
                    weight_decay: decay,
                } = groups.options(name, value.shape());
                match buffers {
                    [v] if decay == F::zero() => {
                        update_with(&mut v.view_mut(), &grad, |v, g| mu * v + g);
                        update_with(&mut value, &v.view(), |w, v| w - lr * v);
                    }
                    [v] => Zip::from(&mut value)
                        .and(&grad)
                        .and(v)
                        .for_each(|w, &g, v| {
                            *v = mu * *v + (g + decay * *w);
                            *w -= lr * *v;
                        }),
                    _ if decay == F::zero() => update_with(&mut value, &grad, |w, g| w - lr * g),
                    _ => value.zip_mut_with(&grad, |w, &g| *w = *w - lr * (g + decay * *w)),
                }
            })?;
        self.steps += 1;
        Ok(())
    }
}

impl<F: Real> Optimizer<F> for Sgd<F> {
    fn name(&self) -> &'static str {
        SGD
    }

    fn kinds(&self) -> &'static [&'static str] {
        if self.momentum == F::zero() {
            &[]
        } else {
            MOMENTUM
        }
    }

    fn step(&mut self, layers: &mut [&mut dyn StateDict<F>]) -> Result<(), LayerError> {
        Sgd::step(self, layers)
    }

    fn learning_rate(&self) -> F {
        Sgd::learning_rate(self)
    }

    fn set_learning_rate(&mut self, learning_rate: F) -> Result<(), LayerError> {
        Sgd::set_learning_rate(self, learning_rate)
    }

    fn group_count(&self) -> usize {
        self.groups.count()
    }

    fn group_learning_rate(&self, group: usize) -> Option<F> {
        self.groups.get(group).map(|o| o.learning_rate)
    }

    fn set_group_learning_rate(
        &mut self,
        group: usize,
        learning_rate: F,
    ) -> Result<(), LayerError> {
        self.groups.set_learning_rate(SGD, group, learning_rate)
    }

    fn state(&self) -> OptimizerState<F> {
        self.velocity.to_state(SGD, self.steps, self.kinds())
    }

    fn set_state(&mut self, state: OptimizerState<F>) -> Result<(), LayerError> {
        let finite = |_, v: F| (!v.is_finite()).then_some("must be finite");
        (self.steps, self.velocity) = Slots::from_state(SGD, self.kinds(), state, finite)?;
        Ok(())
    }
}

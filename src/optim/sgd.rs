//! Stochastic gradient descent, with optional momentum.

use super::slots::{Slots, update_with};
use super::{Optimizer, OptimizerState, check_learning_rate, check_rate};
use crate::error::LayerError;
use crate::real::Real;
use crate::state::StateDict;

/// Stochastic gradient descent, with optional (heavy-ball) momentum, as PyTorch's `SGD`:
/// ```text
/// v ← μ v + g
/// w ← w - η v          (μ = 0: w ← w - η g)
/// ```
///
/// With momentum, the velocity of each parameter is kept under the
/// parameter's name (PyTorch's `momentum_buffer`), so pass the same layers
/// in the same order to every [`step`](Sgd::step). After the first step, a
/// step allocates nothing.
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
    learning_rate: F,
    momentum: F,
    steps: u64,
    velocity: Slots<F, 1>,
}

const SGD: &str = "Sgd";

/// The momentum buffers, as PyTorch's `SGD` names them.
const MOMENTUM: &[&str] = &["momentum_buffer"];

impl<F: Real> Sgd<F> {
    /// Plain SGD with step size `learning_rate` (positive and finite).
    pub fn new(learning_rate: F) -> Result<Self, LayerError> {
        Ok(Sgd {
            learning_rate: check_learning_rate(SGD, learning_rate)?,
            momentum: F::zero(),
            steps: 0,
            velocity: Slots::default(),
        })
    }

    /// Adds momentum `μ` in `[0, 1)`.
    pub fn with_momentum(mut self, momentum: F) -> Result<Self, LayerError> {
        self.momentum = check_rate(SGD, "momentum", momentum)?;
        Ok(self)
    }

    /// The step size.
    pub fn learning_rate(&self) -> F {
        self.learning_rate
    }

    /// Changes the step size (for schedules); an invalid value is an error and changes nothing.
    pub fn set_learning_rate(&mut self, learning_rate: F) -> Result<(), LayerError> {
        self.learning_rate = check_learning_rate(SGD, learning_rate)?;
        Ok(())
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
        let (lr, mu) = (self.learning_rate, self.momentum);
        let stateful = mu != F::zero();
        self.velocity
            .step(SGD, layers, stateful, |mut value, grad, buffers| {
                if let [v] = buffers {
                    update_with(&mut v.view_mut(), &grad, |v, g| mu * v + g);
                    update_with(&mut value, &v.view(), |w, v| w - lr * v);
                } else {
                    update_with(&mut value, &grad, |w, g| w - lr * g);
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
        self.learning_rate
    }

    fn set_learning_rate(&mut self, learning_rate: F) -> Result<(), LayerError> {
        Sgd::set_learning_rate(self, learning_rate)
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

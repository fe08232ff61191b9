//! Parameters with their gradients, and stochastic gradient descent.
//!
//! A layer with learnable parameters implements [`Parameters`]: it hands each
//! parameter to a visitor together with the gradient its last `backward`
//! stored. An optimiser is anything that walks those pairs; [`Sgd`] is one,
//! and yours can be another without touching a layer's private fields:
//!
//! ```
//! use ndlayers::optim::{Parameter, Parameters};
//! use ndlayers::prelude::*;
//! use rand::{SeedableRng, rngs::StdRng};
//!
//! /// Plain gradient descent with gradient clipping, written against the trait.
//! fn clipped_step(layer: &mut dyn Parameters<f32>, learning_rate: f32, clip: f32) {
//!     layer.visit_parameters(&mut |p: Parameter<'_, f32>| {
//!         let Parameter { mut value, grad, .. } = p;
//!         value.zip_mut_with(&grad, |w, &g| *w -= learning_rate * g.clamp(-clip, clip));
//!     });
//! }
//!
//! let mut dense = Dense::<f32>::new(4, 2, Init::HeNormal, &mut StdRng::seed_from_u64(0))?;
//! clipped_step(&mut dense, 0.1, 1.0);
//! # Ok::<(), LayerError>(())
//! ```

use ndarray::{ArrayD, ArrayViewD, ArrayViewMutD, IxDyn};

use crate::layer::LayerError;
use crate::real::Real;

/// One learnable array and the gradient of the loss with respect to it.
#[derive(Debug)]
pub struct Parameter<'a, F> {
    /// The parameter's name within its layer, e.g. `"weight"`.
    pub name: &'static str,
    /// The values, to be updated in place.
    pub value: ArrayViewMutD<'a, F>,
    /// `dL/dvalue` from the layer's last `backward`; same shape as `value`.
    pub grad: ArrayViewD<'a, F>,
}

/// A layer with learnable parameters, or (visiting nothing) one without.
///
/// Every [`Layer`](crate::Layer) is `Parameters`, so containers of layers can
/// give all their weights to an optimiser. A layer without weights needs only
/// `impl Parameters<F> for MyLayer {}`.
pub trait Parameters<F> {
    /// Calls `visit` once for each parameter, always in the same order.
    ///
    /// The default visits nothing.
    fn visit_parameters(&mut self, _visit: &mut dyn FnMut(Parameter<'_, F>)) {}
}

/// Stochastic gradient descent, with optional (heavy-ball) momentum, as PyTorch's `SGD`:
/// ```text
/// v ← μ v + g
/// w ← w - η v          (μ = 0: w ← w - η g)
/// ```
///
/// The velocity of each parameter is kept in the order the layers and their
/// parameters are visited, so pass the same layers in the same order to every
/// [`step`](Sgd::step). After the first step, a step allocates nothing.
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
    velocity: Vec<ArrayD<F>>,
}

const NAME: &str = "Sgd";

impl<F: Real> Sgd<F> {
    /// Plain SGD with step size `learning_rate` (positive and finite).
    pub fn new(learning_rate: F) -> Result<Self, LayerError> {
        if !(learning_rate > F::zero() && learning_rate.is_finite()) {
            return Err(LayerError::InvalidParameter {
                layer: NAME,
                name: "learning_rate",
                value: learning_rate.to_string(),
                requirement: "must be positive and finite",
            });
        }
        Ok(Sgd {
            learning_rate,
            momentum: F::zero(),
            velocity: Vec::new(),
        })
    }

    /// Adds momentum `μ` in `[0, 1)`.
    pub fn with_momentum(mut self, momentum: F) -> Result<Self, LayerError> {
        if !(momentum >= F::zero() && momentum < F::ONE) {
            return Err(LayerError::InvalidParameter {
                layer: NAME,
                name: "momentum",
                value: momentum.to_string(),
                requirement: "must be in [0, 1)",
            });
        }
        self.momentum = momentum;
        Ok(self)
    }

    /// The step size.
    pub fn learning_rate(&self) -> F {
        self.learning_rate
    }

    /// Changes the step size (for schedules); an invalid value is an error and changes nothing.
    pub fn set_learning_rate(&mut self, learning_rate: F) -> Result<(), LayerError> {
        self.learning_rate = Self::new(learning_rate)?.learning_rate;
        Ok(())
    }

    /// Updates every parameter of `layers` from the gradients their last `backward` stored.
    ///
    /// A parameter whose gradient has another shape than its value is an error
    /// and is left unchanged (the others are still updated).
    pub fn step(&mut self, layers: &mut [&mut dyn Parameters<F>]) -> Result<(), LayerError> {
        let (lr, mu) = (self.learning_rate, self.momentum);
        let mut index = 0;
        let mut result = Ok(());
        for layer in layers.iter_mut() {
            layer.visit_parameters(&mut |p: Parameter<'_, F>| {
                let Parameter {
                    name,
                    mut value,
                    grad,
                } = p;
                if let Err(e) = LayerError::check_shape(NAME, name, value.shape(), grad.shape()) {
                    result = Err(e);
                } else if mu == F::zero() {
                    value.zip_mut_with(&grad, |w, &g| *w -= lr * g);
                } else {
                    // One slot per visited parameter, also for those whose
                    // gradient was rejected, so the slots stay aligned.
                    if self.velocity.len() <= index {
                        self.velocity
                            .resize_with(index + 1, || ArrayD::zeros(IxDyn(&[0])));
                    }
                    let v = &mut self.velocity[index];
                    if v.shape() != grad.shape() {
                        *v = ArrayD::zeros(grad.raw_dim());
                    }
                    v.zip_mut_with(&grad, |v, &g| *v = mu * *v + g);
                    value.zip_mut_with(v, |w, &v| *w -= lr * v);
                }
                index += 1;
            });
        }
        result
    }
}

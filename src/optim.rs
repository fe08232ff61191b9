//! Parameters with their gradients, and the optimisers: [`Sgd`], [`Adam`], [`AdamW`].
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

use std::marker::PhantomData;

use ndarray::{ArrayD, ArrayViewD, ArrayViewMutD, IxDyn, ShapeBuilder};

use crate::buffer::is_fortran;
use crate::kernels::chunked;
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

    /// Calls `visit` with each parameter's full name and its values in
    /// PyTorch's orientation, in the order of
    /// [`visit_parameters`](Self::visit_parameters): the names and arrays of a
    /// PyTorch `state_dict`, which checkpoints read and write.
    ///
    /// Names are `prefix.name` (`name` alone for an empty prefix); a
    /// [`Sequential`](crate::Sequential) prefixes each layer's with its
    /// position, as `nn.Sequential` does (`0.weight`, `2.bias`). The default
    /// gives each [`Parameter`]'s values as they are; [`Dense`](crate::Dense)
    /// gives its weight transposed, `(outputs, inputs)` as `nn.Linear` stores it.
    fn visit_named_parameters(
        &mut self,
        prefix: &str,
        visit: &mut dyn FnMut(&str, ArrayViewMutD<'_, F>),
    ) {
        self.visit_parameters(&mut |p| visit(&join_name(prefix, p.name), p.value));
    }
}

/// Visits a layer's `"weight"` and `"bias"` with their gradients, the pair
/// most layers with parameters have.
pub(crate) fn visit_weight_and_bias<F, D: ndarray::Dimension, E: ndarray::Dimension>(
    visit: &mut dyn FnMut(Parameter<'_, F>),
    (weight, grad_weight): (&mut ndarray::Array<F, D>, &ndarray::Array<F, D>),
    (bias, grad_bias): (&mut ndarray::Array<F, E>, &ndarray::Array<F, E>),
) {
    visit(Parameter {
        name: "weight",
        value: weight.view_mut().into_dyn(),
        grad: grad_weight.view().into_dyn(),
    });
    visit(Parameter {
        name: "bias",
        value: bias.view_mut().into_dyn(),
        grad: grad_bias.view().into_dyn(),
    });
}

/// `prefix.name`, or `name` for an empty prefix.
pub(crate) fn join_name(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}

/// Several parts of a hand-written network under names of your choosing,
/// as one [`Parameters`]: `Named(vec![("fc1", &mut net.fc1), ("fc2", &mut net.fc2)])`
/// names the parameters `fc1.weight`, `fc1.bias`, `fc2.weight`, ….
pub struct Named<'a, F>(pub Vec<(&'a str, &'a mut dyn Parameters<F>)>);

impl<F> Parameters<F> for Named<'_, F> {
    fn visit_parameters(&mut self, visit: &mut dyn FnMut(Parameter<'_, F>)) {
        for (_, part) in &mut self.0 {
            part.visit_parameters(visit);
        }
    }

    fn visit_named_parameters(
        &mut self,
        prefix: &str,
        visit: &mut dyn FnMut(&str, ArrayViewMutD<'_, F>),
    ) {
        for (name, part) in &mut self.0 {
            part.visit_named_parameters(&join_name(prefix, name), visit);
        }
    }
}

/// What an optimiser carries from step to step, for checkpoints: the number
/// of steps taken and, per kind of buffer (`"exp_avg"`, …), one array per
/// parameter in visiting order (none before the first step).
#[derive(Debug, Clone, PartialEq)]
pub struct OptimizerState<F> {
    /// The optimiser's name, e.g. `"Adam"`.
    pub optimizer: &'static str,
    /// Steps taken.
    pub step: u64,
    /// Each kind of buffer, with one array per parameter.
    pub buffers: Vec<(&'static str, Vec<ArrayD<F>>)>,
}

/// An optimiser: updates parameters from their gradients, and exposes its
/// state so a checkpoint can save and restore it.
pub trait Optimizer<F> {
    /// Updates every parameter of `layers` from the gradients their last
    /// `backward` stored. Pass the same layers in the same order every time:
    /// per-parameter state is kept in visiting order.
    fn step(&mut self, layers: &mut [&mut dyn Parameters<F>]) -> Result<(), LayerError>;
    /// The step size.
    fn learning_rate(&self) -> F;
    /// Changes the step size (for schedules); an invalid value is an error and changes nothing.
    fn set_learning_rate(&mut self, learning_rate: F) -> Result<(), LayerError>;
    /// A copy of the state carried between steps.
    fn state(&self) -> OptimizerState<F>;
    /// Replaces the state with `state` (from [`state`](Self::state) of an
    /// optimiser of the same kind); an optimiser name or buffer kind that
    /// does not fit is an error and changes nothing.
    fn set_state(&mut self, state: OptimizerState<F>) -> Result<(), LayerError>;
}

/// Walks every parameter of `layers` with its position in visiting order.
/// A gradient whose shape differs from its value's is an error, and that
/// parameter is skipped (the others are still visited, and positions stay aligned).
fn for_each_parameter<F>(
    optimizer: &'static str,
    layers: &mut [&mut dyn Parameters<F>],
    mut update: impl FnMut(usize, ArrayViewMutD<'_, F>, ArrayViewD<'_, F>),
) -> Result<(), LayerError> {
    let mut index = 0;
    let mut result = Ok(());
    for layer in layers.iter_mut() {
        layer.visit_parameters(&mut |p: Parameter<'_, F>| {
            match LayerError::check_shape(optimizer, p.name, p.value.shape(), p.grad.shape()) {
                Ok(()) => update(index, p.value, p.grad),
                Err(e) => result = Err(e),
            }
            index += 1;
        });
    }
    result
}

/// `w = f(w, x)` for every element `w` of `value` and the matching `x` of
/// `input` (same shape). Arrays sharing one contiguous memory order (as
/// `Dense`'s parameters, their gradients and the state buffers do) are
/// updated as slices, split across threads with the `rayon` feature; the
/// others through `Zip`. The same operations either way, so the same bits.
fn update_with<F: Real>(
    value: &mut ArrayViewMutD<'_, F>,
    input: &ArrayViewD<'_, F>,
    f: impl Fn(F, F) -> F + Sync,
) {
    if value.strides() == input.strides()
        && let (Some(w), Some(x)) = (
            value.as_slice_memory_order_mut(),
            input.as_slice_memory_order(),
        )
    {
        // Equal strides: the same memory offset is the same element in both.
        chunked([x], w, 1, |[x], w| {
            for (w, &x) in w.iter_mut().zip(x) {
                *w = f(*w, x);
            }
        });
        return;
    }
    value.zip_mut_with(input, |w, &x| *w = f(*w, x));
}

/// The state buffer of parameter `index`, zeros of `grad`'s shape and memory
/// order the first time (so updates zip arrays of one layout).
fn state_slot<'a, F: Real>(
    slots: &'a mut Vec<ArrayD<F>>,
    index: usize,
    grad: &ArrayViewD<'_, F>,
) -> &'a mut ArrayD<F> {
    if slots.len() <= index {
        slots.resize_with(index + 1, || ArrayD::zeros(IxDyn(&[0])));
    }
    let slot = &mut slots[index];
    if slot.shape() != grad.shape() {
        *slot = ArrayD::zeros(grad.raw_dim().set_f(is_fortran(grad)));
    }
    slot
}

/// Checks a learning rate: positive and finite.
fn check_learning_rate<F: Real>(
    optimizer: &'static str,
    learning_rate: F,
) -> Result<F, LayerError> {
    check(
        optimizer,
        "learning_rate",
        learning_rate,
        learning_rate > F::zero() && learning_rate.is_finite(),
        "must be positive and finite",
    )
}

/// `value` if `valid`, otherwise the error naming it.
fn check<F: Real>(
    optimizer: &'static str,
    name: &'static str,
    value: F,
    valid: bool,
    requirement: &'static str,
) -> Result<F, LayerError> {
    if valid {
        Ok(value)
    } else {
        Err(LayerError::InvalidParameter {
            layer: optimizer,
            name,
            value: value.to_string(),
            requirement,
        })
    }
}

/// Checks that `state` is one this optimiser wrote: its name and buffer kinds.
fn check_state<F>(
    optimizer: &'static str,
    kinds: &[&'static str],
    state: &OptimizerState<F>,
) -> Result<(), LayerError> {
    let found: Vec<&str> = state.buffers.iter().map(|(kind, _)| *kind).collect();
    if state.optimizer != optimizer || found != kinds {
        return Err(LayerError::InvalidParameter {
            layer: optimizer,
            name: "state",
            value: format!("{} with buffers {found:?}", state.optimizer),
            requirement: "must come from an optimiser of the same kind",
        });
    }
    Ok(())
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
    steps: u64,
    velocity: Vec<ArrayD<F>>,
}

const SGD: &str = "Sgd";

impl<F: Real> Sgd<F> {
    /// Plain SGD with step size `learning_rate` (positive and finite).
    pub fn new(learning_rate: F) -> Result<Self, LayerError> {
        Ok(Sgd {
            learning_rate: check_learning_rate(SGD, learning_rate)?,
            momentum: F::zero(),
            steps: 0,
            velocity: Vec::new(),
        })
    }

    /// Adds momentum `μ` in `[0, 1)`.
    pub fn with_momentum(mut self, momentum: F) -> Result<Self, LayerError> {
        let valid = momentum >= F::zero() && momentum < F::ONE;
        self.momentum = check(SGD, "momentum", momentum, valid, "must be in [0, 1)")?;
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

    /// Updates every parameter of `layers` from the gradients their last `backward` stored.
    ///
    /// A parameter whose gradient has another shape than its value is an error
    /// and is left unchanged (the others are still updated).
    pub fn step(&mut self, layers: &mut [&mut dyn Parameters<F>]) -> Result<(), LayerError> {
        let (lr, mu) = (self.learning_rate, self.momentum);
        let velocity = &mut self.velocity;
        self.steps += 1;
        for_each_parameter(SGD, layers, |index, mut value, grad| {
            if mu == F::zero() {
                update_with(&mut value, &grad, |w, g| w - lr * g);
            } else {
                let v = state_slot(velocity, index, &grad);
                update_with(&mut v.view_mut(), &grad, |v, g| mu * v + g);
                update_with(&mut value, &v.view(), |w, v| w - lr * v);
            }
        })
    }
}

/// The momentum buffers, as PyTorch's `SGD` names them.
const SGD_BUFFERS: [&str; 1] = ["momentum_buffer"];

impl<F: Real> Optimizer<F> for Sgd<F> {
    fn step(&mut self, layers: &mut [&mut dyn Parameters<F>]) -> Result<(), LayerError> {
        Sgd::step(self, layers)
    }

    fn learning_rate(&self) -> F {
        self.learning_rate
    }

    fn set_learning_rate(&mut self, learning_rate: F) -> Result<(), LayerError> {
        Sgd::set_learning_rate(self, learning_rate)
    }

    fn state(&self) -> OptimizerState<F> {
        OptimizerState {
            optimizer: SGD,
            step: self.steps,
            buffers: vec![(SGD_BUFFERS[0], self.velocity.clone())],
        }
    }

    fn set_state(&mut self, state: OptimizerState<F>) -> Result<(), LayerError> {
        check_state(SGD, &SGD_BUFFERS, &state)?;
        let [(_, velocity)]: [_; 1] = state.buffers.try_into().expect("checked: one kind");
        self.steps = state.step;
        self.velocity = velocity;
        Ok(())
    }
}

/// How an Adam-family optimiser applies weight decay: [`Coupled`] for
/// [`Adam`], [`Decoupled`] for [`AdamW`].
pub trait WeightDecay: Clone + std::fmt::Debug + Send + Sync + sealed::Sealed {
    /// Name used in errors and checkpoints.
    const NAME: &'static str;
    /// PyTorch's default weight decay for this optimiser.
    const DEFAULT: f64;
    /// Whether the decay scales the weights directly (AdamW) instead of being
    /// added to the gradient (Adam).
    const DECOUPLED: bool;
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::Coupled {}
    impl Sealed for super::Decoupled {}
}

/// Adam's weight decay: `λ w` is added to the gradient (L2 regularisation).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Coupled;

impl WeightDecay for Coupled {
    const NAME: &'static str = "Adam";
    const DEFAULT: f64 = 0.0;
    const DECOUPLED: bool = false;
}

/// AdamW's weight decay: the weights shrink by `η λ w` before the Adam step.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Decoupled;

impl WeightDecay for Decoupled {
    const NAME: &'static str = "AdamW";
    const DEFAULT: f64 = 0.01;
    const DECOUPLED: bool = true;
}

/// The Adam family, as PyTorch's `Adam` and `AdamW` (`amsgrad=False`,
/// `maximize=False`): use it through [`Adam`] and [`AdamW`].
///
/// At step `t`, for each parameter `w` with gradient `g`:
/// ```text
/// g ← g + λ w                      (Adam, weight decay λ)
/// w ← w (1 - η λ)                  (AdamW)
/// m ← m + (1 - β₁)(g - m)          (= β₁ m + (1 - β₁) g)
/// v ← β₂ v + (1 - β₂) g²
/// w ← w - (η / (1 - β₁ᵗ)) · m / (√v / √(1 - β₂ᵗ) + ε)
/// ```
/// in this order of operations, which is PyTorch's on the CPU, so
/// trajectories agree with PyTorch's to rounding (`tests/optimizers.rs`:
/// 100 steps of a small network within 1e-12 relative in `f64`). The
/// moments are kept in each gradient's memory order; after the first step a
/// step allocates nothing.
#[derive(Debug, Clone)]
pub struct AdamFamily<F, W> {
    learning_rate: F,
    betas: (F, F),
    eps: F,
    weight_decay: F,
    steps: u64,
    exp_avg: Vec<ArrayD<F>>,
    exp_avg_sq: Vec<ArrayD<F>>,
    decay: PhantomData<W>,
}

/// Adam (Kingma & Ba), PyTorch's `torch.optim.Adam`: defaults `lr = 1e-3`
/// (pass it to `new`), betas `(0.9, 0.999)`, `eps = 1e-8`, weight decay 0
/// (added to the gradient). See [`AdamFamily`] for the update.
///
/// # Example
/// ```
/// use ndlayers::optim::Adam;
/// use ndlayers::prelude::*;
/// use ndlayers::ndarray::array;
///
/// let mut dense = Dense::<f64>::from_fn(2, 1, |_, _| 0.5)?;
/// let mut adam = Adam::new(1e-3)?.with_betas(0.9, 0.99)?;
/// dense.forward(array![[1.0, 2.0]].view())?;
/// dense.backward(array![[4.0]].view())?;
/// adam.step(&mut [&mut dense])?;
/// // The first step moves each weight by about the learning rate.
/// assert!((dense.bias()[0] + 1e-3).abs() < 1e-9);
/// # Ok::<(), LayerError>(())
/// ```
pub type Adam<F> = AdamFamily<F, Coupled>;

/// AdamW (Loshchilov & Hutter), PyTorch's `torch.optim.AdamW`: as [`Adam`],
/// with the weight decay decoupled from the gradient, default 0.01.
pub type AdamW<F> = AdamFamily<F, Decoupled>;

/// The moment buffers, as PyTorch's Adam names them.
const ADAM_BUFFERS: [&str; 2] = ["exp_avg", "exp_avg_sq"];

impl<F: Real, W: WeightDecay> AdamFamily<F, W> {
    /// The optimiser with step size `learning_rate` (positive and finite) and
    /// PyTorch's defaults for everything else.
    pub fn new(learning_rate: F) -> Result<Self, LayerError> {
        Ok(AdamFamily {
            learning_rate: check_learning_rate(W::NAME, learning_rate)?,
            betas: (F::lit(0.9), F::lit(0.999)),
            eps: F::lit(1e-8),
            weight_decay: F::lit(W::DEFAULT),
            steps: 0,
            exp_avg: Vec::new(),
            exp_avg_sq: Vec::new(),
            decay: PhantomData,
        })
    }

    /// The moments' decay rates, each in `[0, 1)`.
    pub fn with_betas(mut self, beta1: F, beta2: F) -> Result<Self, LayerError> {
        let in_range = |b: F| b >= F::zero() && b < F::ONE;
        let requirement = "must be in [0, 1)";
        self.betas = (
            check(W::NAME, "beta1", beta1, in_range(beta1), requirement)?,
            check(W::NAME, "beta2", beta2, in_range(beta2), requirement)?,
        );
        Ok(self)
    }

    /// The term that keeps the denominator from 0: positive and finite.
    pub fn with_eps(mut self, eps: F) -> Result<Self, LayerError> {
        let valid = eps > F::zero() && eps.is_finite();
        self.eps = check(W::NAME, "eps", eps, valid, "must be positive and finite")?;
        Ok(self)
    }

    /// The weight decay λ: non-negative and finite.
    pub fn with_weight_decay(mut self, weight_decay: F) -> Result<Self, LayerError> {
        let valid = weight_decay >= F::zero() && weight_decay.is_finite();
        self.weight_decay = check(
            W::NAME,
            "weight_decay",
            weight_decay,
            valid,
            "must be non-negative and finite",
        )?;
        Ok(self)
    }

    /// The step size.
    pub fn learning_rate(&self) -> F {
        self.learning_rate
    }

    /// Changes the step size (for schedules); an invalid value is an error and changes nothing.
    pub fn set_learning_rate(&mut self, learning_rate: F) -> Result<(), LayerError> {
        self.learning_rate = check_learning_rate(W::NAME, learning_rate)?;
        Ok(())
    }

    /// Steps taken so far.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// Updates every parameter of `layers` from the gradients their last
    /// `backward` stored. A parameter whose gradient has another shape than
    /// its value is an error and is left unchanged (the others are updated).
    pub fn step(&mut self, layers: &mut [&mut dyn Parameters<F>]) -> Result<(), LayerError> {
        self.steps += 1;
        let (lr, (beta1, beta2), eps, decay) =
            (self.learning_rate, self.betas, self.eps, self.weight_decay);
        // Scalars exactly as PyTorch computes them (pow, not repeated products).
        let t = F::from_u64(self.steps).unwrap_or(F::infinity());
        let step_size = lr / (F::ONE - beta1.powf(t));
        let correction2_sqrt = (F::ONE - beta2.powf(t)).sqrt();
        let (one_minus_beta1, one_minus_beta2) = (F::ONE - beta1, F::ONE - beta2);
        let shrink = F::ONE - lr * decay;
        let (exp_avg, exp_avg_sq) = (&mut self.exp_avg, &mut self.exp_avg_sq);
        for_each_parameter(W::NAME, layers, |index, mut value, grad| {
            if W::DECOUPLED && decay != F::zero() {
                value.mapv_inplace(|w| w * shrink);
            }
            let m = state_slot(exp_avg, index, &grad);
            let v = state_slot(exp_avg_sq, index, &grad);
            ndarray::Zip::from(&mut value)
                .and(&grad)
                .and(m)
                .and(v)
                .for_each(|w, &g, m, v| {
                    let g = if !W::DECOUPLED && decay != F::zero() {
                        g + decay * *w
                    } else {
                        g
                    };
                    *m += one_minus_beta1 * (g - *m);
                    *v = *v * beta2 + one_minus_beta2 * g * g;
                    let denom = v.sqrt() / correction2_sqrt + eps;
                    *w += -step_size * (*m / denom);
                });
        })
    }
}

impl<F: Real, W: WeightDecay> Optimizer<F> for AdamFamily<F, W> {
    fn step(&mut self, layers: &mut [&mut dyn Parameters<F>]) -> Result<(), LayerError> {
        AdamFamily::step(self, layers)
    }

    fn learning_rate(&self) -> F {
        self.learning_rate
    }

    fn set_learning_rate(&mut self, learning_rate: F) -> Result<(), LayerError> {
        AdamFamily::set_learning_rate(self, learning_rate)
    }

    fn state(&self) -> OptimizerState<F> {
        OptimizerState {
            optimizer: W::NAME,
            step: self.steps,
            buffers: vec![
                (ADAM_BUFFERS[0], self.exp_avg.clone()),
                (ADAM_BUFFERS[1], self.exp_avg_sq.clone()),
            ],
        }
    }

    fn set_state(&mut self, state: OptimizerState<F>) -> Result<(), LayerError> {
        check_state(W::NAME, &ADAM_BUFFERS, &state)?;
        let [(_, exp_avg), (_, exp_avg_sq)]: [_; 2] =
            state.buffers.try_into().expect("checked: two kinds");
        self.steps = state.step;
        self.exp_avg = exp_avg;
        self.exp_avg_sq = exp_avg_sq;
        Ok(())
    }
}

//! The Adam family: [`Adam`] and [`AdamW`], one implementation.

use std::marker::PhantomData;

use super::groups::{Groups, Options, ParamGroup, check_weight_decay};
use super::slots::Slots;
use super::{Optimizer, OptimizerState, check_learning_rate, check_rate};
use crate::error::{LayerError, require};
use crate::real::Real;
use crate::state::StateDict;

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
    /// The learning rate and weight decay of each parameter group.
    groups: Groups<F>,
    betas: (F, F),
    eps: F,
    steps: u64,
    /// `exp_avg` and `exp_avg_sq` of each parameter.
    moments: Slots<F, 2>,
    decay: PhantomData<W>,
}

/// Adam (Kingma & Ba), PyTorch's `torch.optim.Adam`: defaults `lr = 1e-3`
/// (pass it to `new`, or take [`Default`] for a schedule to set), betas `(0.9, 0.999)`, `eps = 1e-8`, weight decay 0
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
const MOMENTS: &[&str] = &["exp_avg", "exp_avg_sq"];

impl<F: Real, W: WeightDecay> Default for AdamFamily<F, W> {
    /// PyTorch's defaults, learning rate 1e-3 included.
    fn default() -> Self {
        AdamFamily {
            groups: Groups::new(F::lit(1e-3), F::lit(W::DEFAULT)),
            betas: (F::lit(0.9), F::lit(0.999)),
            eps: F::lit(1e-8),
            steps: 0,
            moments: Slots::default(),
            decay: PhantomData,
        }
    }
}

impl<F: Real, W: WeightDecay> AdamFamily<F, W> {
    /// The optimiser with step size `learning_rate` (non-negative and
    /// finite) and PyTorch's defaults for everything else.
    pub fn new(learning_rate: F) -> Result<Self, LayerError> {
        let mut adam = Self::default();
        adam.groups.own_mut().learning_rate = check_learning_rate(W::NAME, learning_rate)?;
        Ok(adam)
    }

    /// The moments' decay rates, each in `[0, 1)`.
    pub fn with_betas(mut self, beta1: F, beta2: F) -> Result<Self, LayerError> {
        self.betas = (
            check_rate(W::NAME, "beta1", beta1)?,
            check_rate(W::NAME, "beta2", beta2)?,
        );
        Ok(self)
    }

    /// The term that keeps the denominator from 0: positive and finite.
    pub fn with_eps(mut self, eps: F) -> Result<Self, LayerError> {
        let valid = eps > F::zero() && eps.is_finite();
        self.eps = require(W::NAME, "eps", eps, valid, "must be positive and finite")?;
        Ok(self)
    }

    /// The weight decay λ: non-negative and finite.
    pub fn with_weight_decay(mut self, weight_decay: F) -> Result<Self, LayerError> {
        self.groups.own_mut().weight_decay = check_weight_decay(W::NAME, weight_decay)?;
        Ok(self)
    }

    /// Adds a parameter group with its own learning rate or weight decay;
    /// options it does not set are this optimiser's as configured so far.
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
        self.groups.set_all_learning_rates(W::NAME, learning_rate)
    }

    /// Steps taken so far.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// Updates every parameter of `layers` from the gradients their last
    /// `backward` stored. A gradient whose shape is not its parameter's, or
    /// moments that do not fit the parameters, is an error, and then
    /// nothing changes.
    pub fn step(&mut self, layers: &mut [&mut dyn StateDict<F>]) -> Result<(), LayerError> {
        let steps = self.steps + 1;
        let (groups, (beta1, beta2), eps) = (&self.groups, self.betas, self.eps);
        // Scalars exactly as PyTorch computes them (pow, not repeated products).
        let t = F::from_u64(steps).unwrap_or(F::infinity());
        let correction1 = F::ONE - beta1.powf(t);
        let correction2_sqrt = (F::ONE - beta2.powf(t)).sqrt();
        let (one_minus_beta1, one_minus_beta2) = (F::ONE - beta1, F::ONE - beta2);
        self.moments
            .step(W::NAME, layers, true, |name, mut value, grad, moments| {
                let [m, v] = moments else {
                    unreachable!("a stateful step passes both moments")
                };
                let Options {
                    learning_rate: lr,
                    weight_decay: decay,
                } = groups.options(name, value.shape());
                let step_size = lr / correction1;
                let shrink = F::ONE - lr * decay;
                if W::DECOUPLED && decay != F::zero() {
                    value.mapv_inplace(|w| w * shrink);
                }
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
            })?;
        self.steps = steps;
        Ok(())
    }
}

impl<F: Real, W: WeightDecay> Optimizer<F> for AdamFamily<F, W> {
    fn name(&self) -> &'static str {
        W::NAME
    }

    fn kinds(&self) -> &'static [&'static str] {
        MOMENTS
    }

    fn step(&mut self, layers: &mut [&mut dyn StateDict<F>]) -> Result<(), LayerError> {
        AdamFamily::step(self, layers)
    }

    fn learning_rate(&self) -> F {
        AdamFamily::learning_rate(self)
    }

    fn set_learning_rate(&mut self, learning_rate: F) -> Result<(), LayerError> {
        AdamFamily::set_learning_rate(self, learning_rate)
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
        self.groups.set_learning_rate(W::NAME, group, learning_rate)
    }

    fn state(&self) -> OptimizerState<F> {
        self.moments.to_state(W::NAME, self.steps, MOMENTS)
    }

    fn set_state(&mut self, state: OptimizerState<F>) -> Result<(), LayerError> {
        // exp_avg_sq is a running mean of squares: a negative one makes the
        // next step's square root NaN.
        let violation = |kind, v: F| match kind {
            _ if !v.is_finite() => Some("must be finite"),
            1 if v < F::zero() => Some("must be non-negative"),
            _ => None,
        };
        (self.steps, self.moments) = Slots::from_state(W::NAME, MOMENTS, state, violation)?;
        Ok(())
    }
}

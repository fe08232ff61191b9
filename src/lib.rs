//! Neural-network layers for people who write their networks by hand with [`ndarray`].
//!
//! Every layer implements [`Layer`]: `forward` computes the output and caches
//! what the derivative needs, `backward` turns the upstream gradient
//! `g = dL/dy` into `dL/dx`. Layers are generic over `f32`/`f64` ([`Real`])
//! and, for the elementwise ones, over the array dimension.
//!
//! # The activations
//!
//! | layer | forward `y` | backward `dL/dx` |
//! |---|---|---|
//! | [`Sigmoid`] | `σ(x) = 1 / (1 + e^-x)` | `g ⊙ y ⊙ (1 - y)` |
//! | [`Tanh`] | `tanh x` | `g ⊙ (1 - y²)` |
//! | [`Relu`] | `max(x, 0)` | `g ⊙ [y > 0]` |
//! | [`Softmax`] (row-wise) | `e^(x_i - m) / Σ_j e^(x_j - m)` | `y ⊙ (g - (g·y))` per row |
//!
//! The sigmoid derivative, derived: with `u = 1 + e^-x`, `σ = u⁻¹` and
//! `dσ/dx = -u⁻² · du/dx = -u⁻² · (-e^-x) = e^-x / u² = σ · (e^-x / u) = σ (1 - σ)`,
//! since `e^-x / u = (u - 1) / u = 1 - σ`.
//!
//! The softmax Jacobian is `∂y_i/∂x_j = y_i (δ_ij - y_j)`; its product with `g`
//! is `Σ_i g_i y_i (δ_ij - y_j) = y_j g_j - y_j Σ_i g_i y_i`, which `backward`
//! computes in `O(classes)` per row ([`Softmax::jacobian`] gives the matrix).
//!
//! Beyond these four: the rest of the elementwise family in [`activation`]
//! (LeakyReLU, ELU, SELU, CELU, GELU exact and tanh, SiLU, Mish, Softplus,
//! Softsign, HardTanh, ReLU6, HardSigmoid, HardSwish, LogSigmoid), softmax,
//! [`LogSoftmax`] and [`Softmin`] along any axis ([`Softmax::along`]), the
//! learnable [`Prelu`], and for training: [`Dense`], the losses
//! [`SoftmaxCrossEntropy`] and [`Mse`], [`Sgd`], [`Adam`] and [`AdamW`] over
//! the [`StateDict`] trait, checkpoints, and a public gradient checker,
//! [`gradcheck`].
//!
//! Each layer's page has a table of what it does with `NaN`, `±∞`, huge
//! values and empty arrays. In short: forward results are within 4 ulps of
//! the correctly rounded value over the whole float range (the README's
//! accuracy table gives each function's bound, forward and backward), `NaN`
//! in gives `NaN` out, and bad calls return a [`LayerError`] instead of panicking.
//!
//! # How the modules stack
//!
//! From the bottom up; each uses only modules listed before it (checked
//! with `shared/tools/module-circles src`: no module imports one that
//! imports it back):
//!
//! | module | what |
//! |---|---|
//! | `error` (private), [`real`], [`math`] | [`LayerError`] and its checks; [`Real`], the float trait (`f32`, `f64`); branch-free `exp`, `expm1`, `ln_1p`, `sigmoid`, `tanh`, in two multiply-add flavours |
//! | `kernels` (private) | the SIMD loops, dispatched at run time; [`ElementwiseFn`] and [`ElementwiseKernel`] are what they run; nothing here knows about layers |
//! | [`state`] | [`StateDict`]: every layer's parameters and buffers, named as PyTorch's `state_dict` |
//! | `buffer` (private), `matmul` (private) | the arrays a layer keeps ([`zeros`], [`uninit`]); the matrix products |
//! | [`layer`] | [`Layer`] |
//! | [`activation`], [`softmax`] | the activation layers |
//! | `layers/`: [`dense`], [`dropout`], [`layer_norm`], [`prelu`], [`sequential`] | the layers around them |
//! | [`loss`] | [`SoftmaxCrossEntropy`], [`Mse`] |
//! | [`optim`] | the optimisers [`Sgd`], [`Adam`], [`AdamW`], over [`StateDict`]; parameter groups, clipping, gradient accumulation; [`optim::lr_scheduler`], the learning-rate schedules |
//! | [`gradcheck`], [`checkpoint`], [`metrics`], [`data`] | finite-difference checks for any [`Layer`]; network, optimiser and schedule state in safetensors; classification metrics; mini-batches, splits, one-hot, standardisation |
//!
//! # Where ndlayers differs from PyTorch
//!
//! PyTorch is the reference for names, defaults and semantics: every type's
//! default constructor is the PyTorch module of the same name with default
//! arguments (`Selu::new()` is `nn.SELU()`, `Gelu::new()` is `nn.GELU()`),
//! and `tests/pytorch.rs` compares every activation and the softmax family,
//! forward and backward, `f32` and `f64`, with values PyTorch computed
//! (`tests/reference/pytorch.py`, PyTorch 2.15, about 8,400 points: a grid,
//! kinks, tiny, huge, `±∞`, NaN). Each value agrees with PyTorch's to 4 ulps,
//! or both are within ndlayers' documented bound of the exact value, or it
//! differs in one of these ways, and no other:
//!
//! | difference | why | example (`f32`) |
//! |---|---|---|
//! | NaN propagates | NaN in gives NaN out, in backward too | ReLU, ELU, CELU, HardSwish backward at NaN: PyTorch 1 (PReLU, LeakyReLU: the slope), ndlayers NaN |
//! | Limits at ±∞ | the function has a limit there, PyTorch computes `∞ · 0` | GELU(-∞): PyTorch NaN, ndlayers -0; Softsign(∞): NaN, 1 |
//! | Digits PyTorch loses | PyTorch's formula cancels or underflows early; ndlayers is within its bound | GELU(-5.5): PyTorch -1.639e-7, ndlayers -1.0444267e-7 (exact -1.0444259e-7) |
//! | Signs of zero | a tiny negative result rounds to -0 | GELU'(-40): PyTorch +0, ndlayers -0 |
//!
//! # Example
//! ```
//! use ndlayers::prelude::*;
//! use ndlayers::ndarray::{array, Ix2};
//!
//! let x = array![[0.5_f32, -1.0, 2.0], [0.0, 3.0, -4.0]];
//! let mut hidden = Tanh::new();
//! let mut probs = Softmax::new();
//!
//! let h = hidden.forward(x.view())?;
//! let y = probs.forward(h.view())?;
//! assert!((y.sum_axis(ndarray::Axis(1)) - 1.0).iter().all(|e| e.abs() < 1e-6));
//!
//! let g = array![[1.0_f32, 0.0, 0.0], [0.0, 0.0, 1.0]];
//! let dh = probs.backward(g.view())?;
//! let dx = hidden.backward(dh.view())?;
//! assert_eq!(dx.dim(), (2, 3));
//! # Ok::<(), LayerError>(())
//! ```

#![warn(missing_docs)]

/// The README's code blocks, compiled and run as doctests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

pub use ndarray;
/// The `ndarray-rand` this crate is built against (0.16): its `RandomExt`
/// and distributions fit the arrays the layers take.
pub use ndarray_rand;
/// The `rand` this crate is built against (0.9): `Dense::new` takes an
/// `Rng` of this version. A generator from another `rand` (0.8, 0.10) is
/// not one, whatever its name; use `ndlayers::rand::rngs::StdRng`.
pub use rand;

pub mod activation;
mod buffer;
pub mod checkpoint;
pub mod data;
mod error;
pub mod gradcheck;
mod kernels;
pub mod layer;
mod layers;
pub mod loss;
pub mod math;
mod matmul;
pub mod metrics;
pub mod optim;
pub mod real;
pub mod softmax;
pub mod state;

pub use layers::{
    batch_norm, conv2d, dense, dropout, flatten, layer_norm, pool, prelu, sequential,
};

pub use activation::{
    DerivativeFrom, Elementwise, ElementwiseFn, ElementwiseKernel, Relu, Sigmoid, Tanh,
};
pub use batch_norm::{BatchNorm, BatchNorm1d, BatchNorm2d};
pub use buffer::{uninit, zeros};
pub use conv2d::Conv2d;
pub use dense::{Dense, Init};
pub use dropout::Dropout;
pub use flatten::Flatten;
pub use kernels::{SimdLevel, simd_level};
pub use layer::{Layer, LayerError};
pub use layer_norm::LayerNorm;
pub use loss::{ClassIndex, ClassTargets, Loss, Mse, Reduction, SoftmaxCrossEntropy};
pub use optim::{Adam, AdamW, Optimizer, Sgd};
pub use pool::{AvgPool2d, MaxPool2d};
pub use prelu::Prelu;
pub use real::Real;
pub use sequential::Sequential;
pub use state::{Named, StateDict};

pub use softmax::{LogSoftmax, Softmax, Softmin};

/// The traits and layers most programs need: `use ndlayers::prelude::*;`.
pub mod prelude {
    pub use crate::activation::{Relu, Sigmoid, Tanh};
    pub use crate::batch_norm::{BatchNorm1d, BatchNorm2d};
    pub use crate::conv2d::Conv2d;
    pub use crate::dense::{Dense, Init};
    pub use crate::dropout::Dropout;
    pub use crate::flatten::Flatten;
    pub use crate::layer::{Layer, LayerError};
    pub use crate::layer_norm::LayerNorm;
    pub use crate::loss::{Loss, Mse, Reduction, SoftmaxCrossEntropy};
    pub use crate::ndarray::Ix2;
    pub use crate::optim::{Adam, AdamW, Optimizer, Sgd};
    pub use crate::pool::{AvgPool2d, MaxPool2d};
    pub use crate::real::Real;
    pub use crate::sequential::Sequential;
    pub use crate::softmax::{LogSoftmax, Softmax, Softmin};
    pub use crate::state::{Named, StateDict};
}

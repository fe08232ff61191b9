//! Dropout: inverted, as PyTorch's `nn.Dropout`.

use ndarray::{Array, ArrayView, Dimension, Ix2, Zip};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::buffer::{cached_for, reuse_like};
use crate::error::{LayerError, require};
use crate::layer::Layer;
use crate::real::Real;
use crate::state::StateDict;

const NAME: &str = "Dropout";

/// Inverted dropout: in training, each element is zeroed with probability
/// `p` and the others scaled by `1 / (1 - p)`, so the expected output is the
/// input; in evaluation it is the identity. As PyTorch's `nn.Dropout(p)`:
/// ```text
/// training:   y = x ⊙ m,   m_i = 0 with probability p, 1/(1 - p) otherwise
///             dL/dx = g ⊙ m     (the same mask)
/// evaluation: y = x,           dL/dx = g
/// ```
/// The mask comes from the layer's own generator, seeded at construction,
/// so runs are reproducible (PyTorch's generator is another one: the masks
/// differ from PyTorch's, their distribution does not). A new mask is drawn
/// at every training forward; backward uses the last one. `p = 1` zeroes
/// everything; a NaN input stays NaN (also where it is dropped: `NaN · 0`).
/// [`Layer::infer`] is evaluation: the identity.
///
/// # Example
/// ```
/// use ndlayers::prelude::*;
/// use ndlayers::ndarray::Array2;
///
/// let mut dropout = Dropout::<f64>::new(0.5, 7)?;
/// let y = dropout.forward(Array2::ones((4, 250)).view())?;
/// assert!(y.iter().all(|&v| v == 0.0 || v == 2.0)); // kept ones are scaled by 1/(1 - p)
/// let dx = dropout.backward(Array2::ones((4, 250)).view())?;
/// assert_eq!(dx, y); // the same mask
/// dropout.set_training(false);
/// assert_eq!(dropout.forward(Array2::ones((2, 2)).view())?, Array2::<f64>::ones((2, 2)));
/// # Ok::<(), LayerError>(())
/// ```
#[derive(Clone, Debug)]
pub struct Dropout<F, D: Dimension = Ix2> {
    p: f64,
    rng: StdRng,
    training: bool,
    /// `m` from the last forward (all ones after an evaluation forward).
    mask: Option<Array<F, D>>,
    output: Option<Array<F, D>>,
    grad: Option<Array<F, D>>,
}

impl<F: Real, D: Dimension> Dropout<F, D> {
    /// Drops each element with probability `p` in `[0, 1]`; the mask's
    /// generator is seeded with `seed`. The layer starts in training mode.
    pub fn new(p: f64, seed: u64) -> Result<Self, LayerError> {
        let valid = (0.0..=1.0).contains(&p);
        require(NAME, "p", p, valid, "must be a probability, in [0, 1]")?;
        Ok(Dropout {
            p,
            rng: StdRng::seed_from_u64(seed),
            training: true,
            mask: None,
            output: None,
            grad: None,
        })
    }

    /// The drop probability.
    pub fn p(&self) -> f64 {
        self.p
    }

    /// Whether forward drops (training) or passes through (evaluation).
    pub fn is_training(&self) -> bool {
        self.training
    }
}

impl<F: Real, D: Dimension> Layer<F, D> for Dropout<F, D> {
    /// Draws a new mask in training mode. Allocates only for a larger array than before.
    fn forward_view(
        &mut self,
        input: ArrayView<'_, F, D>,
    ) -> Result<ArrayView<'_, F, D>, LayerError> {
        let mask = reuse_like(&mut self.mask, &input);
        if self.training && self.p > 0.0 {
            let (p, rng) = (self.p, &mut self.rng);
            // p = 1 keeps nothing, and 1/(1 - p) is never used.
            let scale = if p < 1.0 {
                F::lit(1.0 / (1.0 - p))
            } else {
                F::zero()
            };
            mask.map_inplace(|m| {
                *m = if rng.random::<f64>() >= p {
                    scale
                } else {
                    F::zero()
                }
            });
        } else {
            mask.fill(F::ONE);
        }
        let y = reuse_like(&mut self.output, &input);
        Zip::from(&mut *y)
            .and(&input)
            .and(&*mask)
            .for_each(|y, &x, &m| *y = x * m);
        Ok(y.view())
    }

    fn backward_view(
        &mut self,
        grad_output: ArrayView<'_, F, D>,
    ) -> Result<ArrayView<'_, F, D>, LayerError> {
        let mask = cached_for(&self.mask, NAME, &grad_output)?;
        let dx = reuse_like(&mut self.grad, &mask.view());
        Zip::from(&mut *dx)
            .and(&grad_output)
            .and(mask)
            .for_each(|dx, &g, &m| *dx = g * m);
        Ok(dx.view())
    }

    /// Evaluation: a copy of the input.
    fn infer(&self, input: ArrayView<'_, F, D>) -> Result<Array<F, D>, LayerError> {
        Ok(input.to_owned())
    }

    fn set_training(&mut self, training: bool) {
        self.training = training;
    }
}

/// Dropout has no parameters.
impl<F, D: Dimension> StateDict<F> for Dropout<F, D> {}

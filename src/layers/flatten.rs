//! [`Flatten`]: images to rows, as PyTorch's `nn.Flatten()`.

use std::fmt;
use std::marker::PhantomData;

use ndarray::{Array, Array2, ArrayView, ArrayView2, Dimension, Ix2, Ix4};

use crate::buffer::reuse;
use crate::error::LayerError;
use crate::layer::Layer;
use crate::real::Real;
use crate::state::StateDict;

/// `(batch, d₁, …, dₖ)` to `(batch, d₁·…·dₖ)`, each sample's elements in
/// row-major order, as PyTorch's `nn.Flatten()` (`start_dim = 1`): the
/// bridge from convolutions (`Ix4` images, the default `D`) to `Dense`.
/// `backward` reshapes the gradient back. No parameters.
///
/// # Example
/// ```
/// use ndlayers::prelude::*;
/// use ndlayers::ndarray::Array4;
///
/// let x = Array4::from_shape_fn((2, 3, 2, 2), |(b, c, i, j)| (b * 12 + c * 4 + i * 2 + j) as f32);
/// let mut flatten = Flatten::new();
/// let rows = flatten.forward(x.view())?;
/// assert_eq!(rows.dim(), (2, 12));
/// assert_eq!(rows[[1, 5]], x[[1, 1, 0, 1]]);
/// let back = flatten.backward(rows.view())?;
/// assert_eq!(back, x);
/// # Ok::<(), LayerError>(())
/// ```
pub struct Flatten<F, D: Dimension = Ix4> {
    /// The shape of the last forward's input.
    input_dim: Option<D>,
    output: Option<Array2<F>>,
    grad_input: Option<Array<F, D>>,
    dims: PhantomData<D>,
}

const NAME: &str = "Flatten";

impl<F, D: Dimension> Flatten<F, D> {
    /// The layer.
    pub fn new() -> Self {
        Flatten {
            input_dim: None,
            output: None,
            grad_input: None,
            dims: PhantomData,
        }
    }
}

impl<F, D: Dimension> Default for Flatten<F, D> {
    fn default() -> Self {
        Self::new()
    }
}

impl<F, D: Dimension> Clone for Flatten<F, D> {
    /// A fresh layer: caches are not copied.
    fn clone(&self) -> Self {
        Self::new()
    }
}

impl<F, D: Dimension> fmt::Debug for Flatten<F, D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct(NAME).finish_non_exhaustive()
    }
}

/// `(batch, the product of the other axes)`; a 0-D input has no batch axis.
fn flat(shape: &[usize]) -> Result<(usize, usize), LayerError> {
    match shape.split_first() {
        Some((&batch, rest)) => Ok((batch, rest.iter().product())),
        None => Err(LayerError::AxisOutOfRange {
            layer: NAME,
            axis: 0,
            ndim: 0,
        }),
    }
}

impl<F: Real, D: Dimension> Layer<F, D, Ix2> for Flatten<F, D> {
    fn forward_view(
        &mut self,
        input: ArrayView<'_, F, D>,
    ) -> Result<ArrayView2<'_, F>, LayerError> {
        let shape = flat(input.shape())?;
        let output = reuse(&mut self.output, Ix2(shape.0, shape.1), false);
        // Logical order on both sides: any layout of `input` is read correctly.
        for (out, &x) in output.iter_mut().zip(input.iter()) {
            *out = x;
        }
        self.input_dim = Some(input.raw_dim());
        Ok(output.view())
    }

    fn backward_view(
        &mut self,
        grad_output: ArrayView2<'_, F>,
    ) -> Result<ArrayView<'_, F, D>, LayerError> {
        let dim = self
            .input_dim
            .clone()
            .ok_or(LayerError::BackwardBeforeForward { layer: NAME })?;
        let (batch, features) = flat(dim.slice())?;
        LayerError::check_shape(NAME, "grad_output", &[batch, features], grad_output.shape())?;
        let grad = reuse(&mut self.grad_input, dim, false);
        for (out, &g) in grad.iter_mut().zip(grad_output.iter()) {
            *out = g;
        }
        Ok(grad.view())
    }

    fn infer(&self, input: ArrayView<'_, F, D>) -> Result<Array2<F>, LayerError> {
        let shape = flat(input.shape())?;
        Ok(
            Array2::from_shape_vec(shape, input.iter().copied().collect())
                .expect("batch · features elements"),
        )
    }
}

impl<F, D: Dimension> StateDict<F> for Flatten<F, D> {}

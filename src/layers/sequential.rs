//! [`Sequential`]: layers applied one after another, as PyTorch's `nn.Sequential`.

use std::fmt;

use ndarray::{Array, ArrayView, Dimension, Ix2};

use crate::buffer::reuse_like;
use crate::error::LayerError;
use crate::layer::Layer;
use crate::real::Real;
use crate::state::{Entry, EntryMut, Name, StateDict};

/// A chain of boxed layers of one dimension: `forward` runs them first to
/// last, `backward` last to first. No graph and no autograd: it is a
/// [`Layer`] whose output is its last layer's, and [`StateDict`] over all
/// its layers' weights, in order, so one optimiser step updates them all.
///
/// On the view path ([`Layer::forward_view`], [`Layer::backward_view`])
/// each layer reads the previous one's buffer, so a steady training step
/// allocates nothing outside the matrix products (whose GEMM allocates its
/// packing memory per call); [`Layer::infer`] runs through `&self` and leaves every
/// cache as the last training step left it.
///
/// # Example
/// A training step and an evaluation:
/// ```
/// use ndlayers::prelude::*;
/// use ndlayers::ndarray::array;
/// use ndlayers::rand::{SeedableRng, rngs::StdRng};
///
/// let mut rng = StdRng::seed_from_u64(0);
/// let mut net = Sequential::new()
///     .with(Dense::<f32>::new(2, 8, Init::HeUniform, &mut rng)?)
///     .with(Relu::new())
///     .with(Dense::new(8, 2, Init::GlorotUniform, &mut rng)?);
/// let mut loss = SoftmaxCrossEntropy::new();
/// let mut sgd = Sgd::new(0.5)?;
/// let (x, labels) = (array![[0.0_f32, 1.0], [1.0, 0.0]], array![1_u32, 0]);
///
/// for _ in 0..20 {
///     let logits = net.forward_view(x.view())?;
///     loss.forward(logits, labels.view())?;
///     net.backward_parameters(loss.backward_view()?)?;
///     sgd.step(&mut [&mut net])?;
/// }
/// let probabilities = loss.probabilities(net.infer(x.view())?.view())?;
/// assert!(probabilities[[0, 1]] > 0.9 && probabilities[[1, 0]] > 0.9);
/// # Ok::<(), LayerError>(())
/// ```
pub struct Sequential<F, D: Dimension = Ix2> {
    layers: Vec<Box<dyn Layer<F, D>>>,
    /// The output of a network of no layers: a copy of its input.
    identity: Option<Array<F, D>>,
}

const NAME: &str = "Sequential";

impl<F, D: Dimension> Default for Sequential<F, D> {
    fn default() -> Self {
        Sequential {
            layers: Vec::new(),
            identity: None,
        }
    }
}

impl<F, D: Dimension> fmt::Debug for Sequential<F, D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct(NAME)
            .field("layers", &self.layers.len())
            .finish_non_exhaustive()
    }
}

impl<F, D: Dimension> Sequential<F, D> {
    /// A network of no layers (the identity).
    pub fn new() -> Self {
        Self::default()
    }

    /// The network with `layer` appended, for building in one expression.
    pub fn with(mut self, layer: impl Layer<F, D> + 'static) -> Self {
        self.push(layer);
        self
    }

    /// Appends `layer`.
    pub fn push(&mut self, layer: impl Layer<F, D> + 'static) {
        self.layers.push(Box::new(layer));
    }

    /// Number of layers.
    pub fn len(&self) -> usize {
        self.layers.len()
    }

    /// Whether the network has no layers.
    pub fn is_empty(&self) -> bool {
        self.layers.is_empty()
    }

    /// The layers, first to last.
    pub fn layers(&self) -> &[Box<dyn Layer<F, D>>] {
        &self.layers
    }

    /// The layers, first to last, mutably (to adjust one in place).
    pub fn layers_mut(&mut self) -> &mut [Box<dyn Layer<F, D>>] {
        &mut self.layers
    }
}

impl<F: Real, D: Dimension> Layer<F, D> for Sequential<F, D> {
    fn forward_view(
        &mut self,
        input: ArrayView<'_, F, D>,
    ) -> Result<ArrayView<'_, F, D>, LayerError> {
        let Some((first, rest)) = self.layers.split_first_mut() else {
            let copy = reuse_like(&mut self.identity, &input);
            copy.assign(&input);
            return Ok(copy.view());
        };
        // Each layer's output borrows that layer only, so the next, a
        // disjoint element of the slice, can read it without a copy.
        let mut x = first.forward_view(input)?;
        for layer in rest {
            x = layer.forward_view(x)?;
        }
        Ok(x)
    }

    fn backward_view(
        &mut self,
        grad_output: ArrayView<'_, F, D>,
    ) -> Result<ArrayView<'_, F, D>, LayerError> {
        let Some((last, rest)) = self.layers.split_last_mut() else {
            let copy = reuse_like(&mut self.identity, &grad_output);
            copy.assign(&grad_output);
            return Ok(copy.view());
        };
        let mut g = last.backward_view(grad_output)?;
        for layer in rest.iter_mut().rev() {
            g = layer.backward_view(g)?;
        }
        Ok(g)
    }

    /// The first layer only stores its parameter gradients (see [`Layer::backward_parameters`]).
    fn backward_parameters(&mut self, grad_output: ArrayView<'_, F, D>) -> Result<(), LayerError> {
        let Some((first, rest)) = self.layers.split_first_mut() else {
            return Ok(());
        };
        let Some((last, middle)) = rest.split_last_mut() else {
            return first.backward_parameters(grad_output);
        };
        let mut g = last.backward_view(grad_output)?;
        for layer in middle.iter_mut().rev() {
            g = layer.backward_view(g)?;
        }
        first.backward_parameters(g)
    }

    /// Sets every layer's mode.
    fn set_training(&mut self, training: bool) {
        for layer in &mut self.layers {
            layer.set_training(training);
        }
    }

    fn infer(&self, input: ArrayView<'_, F, D>) -> Result<Array<F, D>, LayerError> {
        let Some((first, rest)) = self.layers.split_first() else {
            return Ok(input.to_owned());
        };
        let mut x = first.infer(input)?;
        for layer in rest {
            x = layer.infer(x.view())?;
        }
        Ok(x)
    }
}

/// Every layer's entries, first layer to last, each prefixed with the
/// layer's position, as `nn.Sequential` names them (`0.weight`, `2.bias`).
impl<F, D: Dimension> StateDict<F> for Sequential<F, D> {
    fn visit_state(&self, prefix: &Name<'_>, visit: &mut dyn FnMut(&Name<'_>, Entry<'_, F>)) {
        for (position, layer) in self.layers.iter().enumerate() {
            layer.visit_state(&prefix.index(position), visit);
        }
    }

    fn visit_state_mut(
        &mut self,
        prefix: &Name<'_>,
        visit: &mut dyn FnMut(&Name<'_>, EntryMut<'_, F>),
    ) {
        for (position, layer) in self.layers.iter_mut().enumerate() {
            layer.visit_state_mut(&prefix.index(position), visit);
        }
    }
}

//! [`Sequential`]: layers applied one after another, as PyTorch's `nn.Sequential`.

use std::any::Any;
use std::fmt;
use std::marker::PhantomData;

use ndarray::{Array, ArrayD, ArrayView, ArrayViewD, Dimension, Ix2};

use crate::buffer::reuse_like;
use crate::error::LayerError;
use crate::layer::Layer;
use crate::real::Real;
use crate::state::{Entry, EntryMut, Name, StateDict};

/// A chain of boxed layers: `forward` runs them first to last, `backward`
/// last to first. No graph and no autograd: it is a [`Layer`] from its first
/// layer's input dimension `D` to its last layer's output dimension `E`,
/// and [`StateDict`] over all its layers' state, in order, so one optimiser
/// step updates them all.
///
/// Layers may change the number of axes, as `nn.Sequential`'s do: each
/// [`with`](Self::with) takes a layer whose input dimension is the chain's
/// output so far, so a chain that does not fit is a compile error, and a
/// CNN (images `Ix4` through convolutions to `Flatten` and rows `Ix2`) is
/// one `Sequential<F, Ix4, Ix2>`. Inside, each layer sees its own
/// dimensions; the views between layers are the same arrays, not copies.
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
pub struct Sequential<F, D: Dimension = Ix2, E: Dimension = D> {
    layers: Vec<Box<dyn AnyLayer<F>>>,
    /// The output of a network of no layers: a copy of its input.
    identity: Option<ArrayD<F>>,
    dims: PhantomData<fn(D) -> E>,
}

const NAME: &str = "Sequential";

impl<F, D: Dimension> Default for Sequential<F, D, D> {
    fn default() -> Self {
        Sequential {
            layers: Vec::new(),
            identity: None,
            dims: PhantomData,
        }
    }
}

impl<F, D: Dimension, E: Dimension> fmt::Debug for Sequential<F, D, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct(NAME)
            .field("layers", &self.layers.len())
            .finish_non_exhaustive()
    }
}

impl<F, D: Dimension> Sequential<F, D, D> {
    /// A network of no layers (the identity).
    pub fn new() -> Self {
        Self::default()
    }
}

impl<F: Real, D: Dimension, E: Dimension> Sequential<F, D, E> {
    /// The network with `layer` appended, whose input is this network's
    /// output, for building in one expression.
    pub fn with<G: Dimension + 'static>(
        self,
        layer: impl Layer<F, E, G> + 'static,
    ) -> Sequential<F, D, G>
    where
        E: 'static,
    {
        let mut layers = self.layers;
        layers.push(Box::new(Typed {
            layer,
            dims: PhantomData,
        }));
        Sequential {
            layers,
            identity: None,
            dims: PhantomData,
        }
    }

    /// Appends `layer`, which keeps the output's dimension.
    pub fn push(&mut self, layer: impl Layer<F, E> + 'static)
    where
        E: 'static,
    {
        self.layers.push(Box::new(Typed {
            layer,
            dims: PhantomData::<fn(E) -> E>,
        }));
    }
}

impl<F, D: Dimension, E: Dimension> Sequential<F, D, E> {
    /// Number of layers.
    pub fn len(&self) -> usize {
        self.layers.len()
    }

    /// Whether the network has no layers.
    pub fn is_empty(&self) -> bool {
        self.layers.is_empty()
    }

    /// The layers, first to last.
    pub fn layers(&self) -> &[Box<dyn AnyLayer<F>>] {
        &self.layers
    }

    /// The layers, first to last, mutably (to adjust one in place).
    pub fn layers_mut(&mut self) -> &mut [Box<dyn AnyLayer<F>>] {
        &mut self.layers
    }

    /// Layer `index` as its concrete type `L`, if it is one: a layer can be
    /// reached again after it went into the network.
    ///
    /// ```
    /// use ndlayers::prelude::*;
    ///
    /// let net = Sequential::new()
    ///     .with(Dense::<f32>::from_fn(2, 3, |_, _| 0.5)?)
    ///     .with(Relu::new());
    /// assert_eq!(net.layer::<Dense<f32>>(0).map(|d| d.outputs()), Some(3));
    /// assert!(net.layer::<Dense<f32>>(1).is_none());
    /// # Ok::<(), LayerError>(())
    /// ```
    pub fn layer<L: 'static>(&self, index: usize) -> Option<&L> {
        self.layers.get(index)?.as_any().downcast_ref()
    }

    /// Layer `index` as its concrete type `L`, mutably, if it is one.
    pub fn layer_mut<L: 'static>(&mut self, index: usize) -> Option<&mut L> {
        self.layers.get_mut(index)?.as_any_mut().downcast_mut()
    }
}

/// The view `x` as dimension `E`: the same array. A `Sequential` built with
/// `with` can only chain layers whose dimensions fit, so this fails only for
/// layers swapped in through `layers_mut`.
fn as_dim<'a, F, E: Dimension>(
    x: ArrayViewD<'a, F>,
    what: &'static str,
) -> Result<ArrayView<'a, F, E>, LayerError> {
    let ndim = x.ndim();
    x.into_dimensionality().map_err(|_| {
        let expected = format!(
            "{} axes",
            E::NDIM.map_or("any number of".into(), |n| n.to_string())
        );
        LayerError::shape_described(NAME, what, expected, &vec![0; ndim])
    })
}

impl<F: Real, D: Dimension, E: Dimension> Layer<F, D, E> for Sequential<F, D, E> {
    fn forward_view(
        &mut self,
        input: ArrayView<'_, F, D>,
    ) -> Result<ArrayView<'_, F, E>, LayerError> {
        let Some((first, rest)) = self.layers.split_first_mut() else {
            let input = input.into_dyn();
            let copy = reuse_like(&mut self.identity, &input);
            copy.assign(&input);
            return as_dim(copy.view(), "output");
        };
        // Each layer's output borrows that layer only, so the next, a
        // disjoint element of the slice, can read it without a copy.
        let mut x = first.forward_any(input.into_dyn())?;
        for layer in rest {
            x = layer.forward_any(x)?;
        }
        as_dim(x, "output")
    }

    fn backward_view(
        &mut self,
        grad_output: ArrayView<'_, F, E>,
    ) -> Result<ArrayView<'_, F, D>, LayerError> {
        let Some((last, rest)) = self.layers.split_last_mut() else {
            let grad_output = grad_output.into_dyn();
            let copy = reuse_like(&mut self.identity, &grad_output);
            copy.assign(&grad_output);
            return as_dim(copy.view(), "grad_output");
        };
        let mut g = last.backward_any(grad_output.into_dyn())?;
        for layer in rest.iter_mut().rev() {
            g = layer.backward_any(g)?;
        }
        as_dim(g, "grad_input")
    }

    /// The first layer only stores its parameter gradients (see [`Layer::backward_parameters`]).
    fn backward_parameters(&mut self, grad_output: ArrayView<'_, F, E>) -> Result<(), LayerError> {
        let Some((first, rest)) = self.layers.split_first_mut() else {
            return Ok(());
        };
        let Some((last, middle)) = rest.split_last_mut() else {
            return first.backward_parameters_any(grad_output.into_dyn());
        };
        let mut g = last.backward_any(grad_output.into_dyn())?;
        for layer in middle.iter_mut().rev() {
            g = layer.backward_any(g)?;
        }
        first.backward_parameters_any(g)
    }

    /// Sets every layer's mode.
    fn set_training(&mut self, training: bool) {
        for layer in &mut self.layers {
            layer.set_training_any(training);
        }
    }

    fn infer(&self, input: ArrayView<'_, F, D>) -> Result<Array<F, E>, LayerError> {
        let Some((first, rest)) = self.layers.split_first() else {
            return Ok(as_dim(input.into_dyn(), "output")?.to_owned());
        };
        let mut x = first.infer_any(input.into_dyn())?;
        for layer in rest {
            x = layer.infer_any(x.view())?;
        }
        Ok(as_dim(x.view(), "output")?.to_owned())
    }
}

/// Every layer's entries, first layer to last, each prefixed with the
/// layer's position, as `nn.Sequential` names them (`0.weight`, `2.bias`).
impl<F, D: Dimension, E: Dimension> StateDict<F> for Sequential<F, D, E> {
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

/// A layer of any input and output dimensions, behind views of dynamic
/// dimension: what a [`Sequential`] holds. Each method is the [`Layer`]
/// method of the same name; an array of the wrong number of axes is an
/// error naming the layer's expected count.
pub trait AnyLayer<F>: StateDict<F> {
    /// [`Layer::forward_view`].
    fn forward_any(&mut self, input: ArrayViewD<'_, F>) -> Result<ArrayViewD<'_, F>, LayerError>;
    /// [`Layer::backward_view`].
    fn backward_any(
        &mut self,
        grad_output: ArrayViewD<'_, F>,
    ) -> Result<ArrayViewD<'_, F>, LayerError>;
    /// [`Layer::backward_parameters`].
    fn backward_parameters_any(&mut self, grad_output: ArrayViewD<'_, F>)
    -> Result<(), LayerError>;
    /// [`Layer::infer`].
    fn infer_any(&self, input: ArrayViewD<'_, F>) -> Result<ArrayD<F>, LayerError>;
    /// [`Layer::set_training`].
    fn set_training_any(&mut self, training: bool);
    /// The layer itself, to downcast to its concrete type.
    fn as_any(&self) -> &dyn Any;
    /// The layer itself, mutably, to downcast to its concrete type.
    fn as_any_mut(&mut self) -> &mut dyn Any;
}

/// A [`Layer`] from `D` to `E`, as an [`AnyLayer`].
struct Typed<L, D, E> {
    layer: L,
    dims: PhantomData<fn(D) -> E>,
}

impl<F, D: Dimension, E: Dimension, L: Layer<F, D, E>> StateDict<F> for Typed<L, D, E> {
    fn visit_state(&self, prefix: &Name<'_>, visit: &mut dyn FnMut(&Name<'_>, Entry<'_, F>)) {
        self.layer.visit_state(prefix, visit)
    }

    fn visit_state_mut(
        &mut self,
        prefix: &Name<'_>,
        visit: &mut dyn FnMut(&Name<'_>, EntryMut<'_, F>),
    ) {
        self.layer.visit_state_mut(prefix, visit)
    }
}

impl<F, D, E, L> AnyLayer<F> for Typed<L, D, E>
where
    D: Dimension + 'static,
    E: Dimension + 'static,
    L: Layer<F, D, E> + 'static,
{
    fn forward_any(&mut self, input: ArrayViewD<'_, F>) -> Result<ArrayViewD<'_, F>, LayerError> {
        let input = as_dim(input, "input")?;
        Ok(self.layer.forward_view(input)?.into_dyn())
    }

    fn backward_any(
        &mut self,
        grad_output: ArrayViewD<'_, F>,
    ) -> Result<ArrayViewD<'_, F>, LayerError> {
        let grad_output = as_dim(grad_output, "grad_output")?;
        Ok(self.layer.backward_view(grad_output)?.into_dyn())
    }

    fn backward_parameters_any(
        &mut self,
        grad_output: ArrayViewD<'_, F>,
    ) -> Result<(), LayerError> {
        self.layer
            .backward_parameters(as_dim(grad_output, "grad_output")?)
    }

    fn infer_any(&self, input: ArrayViewD<'_, F>) -> Result<ArrayD<F>, LayerError> {
        Ok(self.layer.infer(as_dim(input, "input")?)?.into_dyn())
    }

    fn set_training_any(&mut self, training: bool) {
        self.layer.set_training(training)
    }

    fn as_any(&self) -> &dyn Any {
        &self.layer
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        &mut self.layer
    }
}

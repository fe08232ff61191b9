//! The [`Layer`] trait every layer implements.

use ndarray::{Array, ArrayView, Axis, Dimension, Ix2, RemoveAxis};

pub use crate::error::LayerError;
use crate::state::StateDict;

/// A differentiable layer: `forward` maps an input batch to an output and
/// remembers what `backward` needs; `backward` maps `dL/dy` to `dL/dx`.
///
/// `D` is the input's dimension and `E` the output's, the same by default:
/// an activation is `Layer<F, D>` for any `D`, [`Dense`](crate::Dense) is
/// `Layer<F, Ix2>`, a convolution `Layer<F, Ix4>`, and a layer that changes
/// the number of axes, as `Flatten` does from images `(batch, c, h, w)` to
/// rows, is `Layer<F, Ix4, Ix2>`.
///
/// There are three ways to run a layer, one trait for all of them:
///
/// | call | returns | allocates | caches |
/// |---|---|---|---|
/// | [`forward_view`](Self::forward_view), [`backward_view`](Self::backward_view) | a view of the layer's own buffer | only for a batch larger than any before | yes |
/// | [`forward`](Self::forward), [`backward`](Self::backward) | an owned array | the result | yes |
/// | [`infer`](Self::infer) (`&self`) | an owned array | the result | no: training state is untouched |
///
/// `backward` always refers to the most recent successful `forward`. Every
/// layer is also [`StateDict`] (layers without state visit nothing), so a
/// container of layers, such as [`Sequential`](crate::Sequential), can hand
/// all its weights to an optimiser and a checkpoint.
///
/// A training step on the view path, written by hand: each view borrows
/// its layer until the next layer has read it, so the chain needs no copies
/// and the borrow checker is satisfied as long as the loss is not a field
/// of the same struct as the layers borrowed at that moment.
/// ```
/// use ndlayers::prelude::*;
/// use ndlayers::ndarray::array;
/// use ndlayers::rand::{SeedableRng, rngs::StdRng};
///
/// let mut rng = StdRng::seed_from_u64(0);
/// let (mut dense, mut tanh) = (Dense::<f32>::new(2, 3, Init::GlorotUniform, &mut rng)?, Tanh::new());
/// let mut loss = SoftmaxCrossEntropy::new();
/// let mut sgd = Sgd::new(0.1)?;
/// let (x, labels) = (array![[0.5_f32, -1.0], [1.0, 2.0]], array![2_u8, 0]);
///
/// let h = dense.forward_view(x.view())?;
/// let y = tanh.forward_view(h)?;
/// let before = loss.forward(y, labels.view())?;
/// let dh = tanh.backward_view(loss.backward_view()?)?;
/// dense.backward_parameters(dh)?; // the network's input needs no gradient
/// sgd.step(&mut [&mut dense])?;
/// let after = loss.loss(tanh.infer(dense.infer(x.view())?.view())?.view(), labels.view())?;
/// assert!(after < before);
/// # Ok::<(), LayerError>(())
/// ```
pub trait Layer<F, D: Dimension = Ix2, E: Dimension = D>: StateDict<F> {
    /// Computes the output for `input`, caches what `backward` needs, and
    /// returns a view of the output, kept inside the layer.
    fn forward_view(
        &mut self,
        input: ArrayView<'_, F, D>,
    ) -> Result<ArrayView<'_, F, E>, LayerError>;

    /// Returns a view of `dL/dx` for the cached forward, given
    /// `grad_output = dL/dy`, computed into a buffer the layer keeps; layers
    /// with parameters also store their gradients.
    fn backward_view(
        &mut self,
        grad_output: ArrayView<'_, F, E>,
    ) -> Result<ArrayView<'_, F, D>, LayerError>;

    /// The output for `input`, computed from `&self`: no cache, gradient or
    /// buffer of the layer is read or written, so a network can be evaluated
    /// between a training step's forward and backward, or shared across threads.
    fn infer(&self, input: ArrayView<'_, F, D>) -> Result<Array<F, E>, LayerError>;

    /// [`infer`](Self::infer) for one sample without its batch axis (a
    /// `(features)` row for a `(batch, features)` layer, a `(c, h, w)` image
    /// for an `(n, c, h, w)` one), as PyTorch accepts unbatched input: the
    /// sample becomes a batch of one, and the output loses the batch axis.
    ///
    /// ```
    /// use ndlayers::prelude::*;
    /// use ndlayers::ndarray::array;
    ///
    /// let dense = Dense::<f64>::from_fn(2, 1, |i, _| i as f64 + 1.0)?;
    /// assert_eq!(dense.infer_one(array![3.0, 4.0].view())?, array![11.0]);
    /// # Ok::<(), LayerError>(())
    /// ```
    fn infer_one(
        &self,
        sample: ArrayView<'_, F, D::Smaller>,
    ) -> Result<Array<F, E::Smaller>, LayerError>
    where
        E: RemoveAxis,
    {
        // D::Smaller with an axis inserted is D again (IxDyn stays IxDyn).
        let shape = sample.shape().to_vec();
        let batch = sample.insert_axis(Axis(0)).into_dimensionality::<D>();
        let batch = batch.map_err(|_| {
            let expected = "one sample without its batch axis".to_string();
            LayerError::shape_described("infer_one", "sample", expected, &shape)
        })?;
        Ok(self.infer(batch)?.index_axis_move(Axis(0), 0))
    }

    /// Computes the output for `input` and caches what `backward` needs; an owned copy of
    /// [`forward_view`](Self::forward_view).
    fn forward(&mut self, input: ArrayView<'_, F, D>) -> Result<Array<F, E>, LayerError>
    where
        F: Clone,
    {
        Ok(self.forward_view(input)?.to_owned())
    }

    /// Returns `dL/dx` for the cached forward, given `grad_output = dL/dy`; an owned copy of
    /// [`backward_view`](Self::backward_view).
    fn backward(&mut self, grad_output: ArrayView<'_, F, E>) -> Result<Array<F, D>, LayerError>
    where
        F: Clone,
    {
        Ok(self.backward_view(grad_output)?.to_owned())
    }

    /// Stores the parameter gradients of [`backward_view`](Self::backward_view)
    /// without returning `dL/dx`, for a network's first layer, whose input
    /// gradient nobody reads. Layers that can skip work here do
    /// ([`Dense`](crate::Dense) skips a third of its backward).
    fn backward_parameters(&mut self, grad_output: ArrayView<'_, F, E>) -> Result<(), LayerError> {
        self.backward_view(grad_output).map(drop)
    }

    /// Switches between training (`true`, the initial mode) and evaluation,
    /// as PyTorch's `module.train()` / `module.eval()`. Only layers that
    /// behave differently ([`Dropout`](crate::Dropout), BatchNorm) do
    /// anything; a [`Sequential`](crate::Sequential) passes it to every layer.
    /// [`infer`](Self::infer) always evaluates, whatever the mode.
    fn set_training(&mut self, _training: bool) {}
}

/// A boxed layer is a layer, so networks can hold `Vec<Box<dyn Layer<F, D>>>`.
impl<F, D: Dimension, E: Dimension, L: Layer<F, D, E> + ?Sized> Layer<F, D, E> for Box<L> {
    fn forward_view(
        &mut self,
        input: ArrayView<'_, F, D>,
    ) -> Result<ArrayView<'_, F, E>, LayerError> {
        (**self).forward_view(input)
    }

    fn backward_view(
        &mut self,
        grad_output: ArrayView<'_, F, E>,
    ) -> Result<ArrayView<'_, F, D>, LayerError> {
        (**self).backward_view(grad_output)
    }

    fn infer(&self, input: ArrayView<'_, F, D>) -> Result<Array<F, E>, LayerError> {
        (**self).infer(input)
    }

    fn forward(&mut self, input: ArrayView<'_, F, D>) -> Result<Array<F, E>, LayerError>
    where
        F: Clone,
    {
        (**self).forward(input)
    }

    fn backward(&mut self, grad_output: ArrayView<'_, F, E>) -> Result<Array<F, D>, LayerError>
    where
        F: Clone,
    {
        (**self).backward(grad_output)
    }

    fn backward_parameters(&mut self, grad_output: ArrayView<'_, F, E>) -> Result<(), LayerError> {
        (**self).backward_parameters(grad_output)
    }

    fn set_training(&mut self, training: bool) {
        (**self).set_training(training)
    }
}

//! The fully connected layer `y = x W + b`.

use ndarray::linalg::general_mat_mul;
use ndarray::{Array1, Array2, ArrayView1, ArrayView2, Ix2};
use ndarray_rand::rand_distr::{Distribution, Normal, Uniform};
use rand::Rng;

use crate::buffer::{reuse, reuse_like, try_vec};
use crate::layer::{Layer, LayerError};
use crate::optim::{Parameter, Parameters};
use crate::real::Real;

const NAME: &str = "Dense";

/// How [`Dense`] draws its initial weights (biases start at zero).
///
/// `fan_in` is the number of inputs, `fan_out` the number of outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Init {
    /// Glorot/Xavier uniform: `U(-a, a)`, `a = √(6 / (fan_in + fan_out))`; for tanh and sigmoid.
    GlorotUniform,
    /// Glorot/Xavier normal: `N(0, σ²)`, `σ = √(2 / (fan_in + fan_out))`.
    GlorotNormal,
    /// He/Kaiming uniform: `U(-a, a)`, `a = √(6 / fan_in)`; for ReLU.
    HeUniform,
    /// He/Kaiming normal: `N(0, σ²)`, `σ = √(2 / fan_in)`; for ReLU.
    HeNormal,
}

/// A fully connected layer: `y = x W + b` for a batch `x` of shape `(batch, inputs)`.
///
/// `W` has shape `(inputs, outputs)` and `b` shape `(outputs)`. With `g = dL/dy`:
/// ```text
/// dL/dW = xᵀ g      (summed over the batch)
/// dL/db = Σ_rows g
/// dL/dx = g Wᵀ
/// ```
/// `backward` stores `dL/dW` and `dL/db` (overwriting, not accumulating) for an
/// optimiser to read through [`Parameters`], and returns `dL/dx`. The matrix
/// products go through `ndarray`'s `general_mat_mul` into buffers the layer
/// reuses, so [`forward_view`](Self::forward_view) and
/// [`backward_view`](Self::backward_view) allocate nothing once the batch size is stable.
///
/// # Example
/// ```
/// use ndlayers::prelude::*;
/// use ndlayers::ndarray::{array, Array2};
/// use rand::{SeedableRng, rngs::StdRng};
///
/// let mut rng = StdRng::seed_from_u64(7);
/// let mut dense = Dense::<f64>::new(3, 2, Init::GlorotUniform, &mut rng)?;
/// let y = dense.forward(array![[1.0, 2.0, 3.0]].view())?;
/// assert_eq!(y.dim(), (1, 2));
/// let dx = dense.backward(array![[1.0, 0.0]].view())?;
/// assert_eq!(dx.row(0), dense.weight().column(0)); // dL/dx = g Wᵀ
/// assert_eq!(dense.grad_weight().column(0), array![1.0, 2.0, 3.0]); // dL/dW = xᵀ g
/// # Ok::<(), LayerError>(())
/// ```
#[derive(Clone, Debug)]
pub struct Dense<F> {
    weight: Array2<F>,
    bias: Array1<F>,
    grad_weight: Array2<F>,
    grad_bias: Array1<F>,
    /// The last input, needed for `dL/dW`.
    input: Option<Array2<F>>,
    /// Buffers behind the view-returning methods.
    output: Option<Array2<F>>,
    grad_input: Option<Array2<F>>,
}

impl<F: Real> Dense<F> {
    /// A layer with weights drawn by `init` from `rng` (seed it for reproducible runs) and zero biases.
    ///
    /// Zero inputs or outputs is an error.
    pub fn new<R: Rng + ?Sized>(
        inputs: usize,
        outputs: usize,
        init: Init,
        rng: &mut R,
    ) -> Result<Self, LayerError> {
        for (name, value) in [("inputs", inputs), ("outputs", outputs)] {
            if value == 0 {
                return Err(LayerError::InvalidParameter {
                    layer: NAME,
                    name,
                    value: value.to_string(),
                    requirement: "a dense layer needs at least one input and one output",
                });
            }
        }
        let (fan_in, fan_out) = (inputs as f64, outputs as f64);
        let shape = (inputs, outputs);
        let weight = match init {
            Init::GlorotUniform => uniform(shape, (6.0 / (fan_in + fan_out)).sqrt(), rng),
            Init::GlorotNormal => normal(shape, (2.0 / (fan_in + fan_out)).sqrt(), rng),
            Init::HeUniform => uniform(shape, (6.0 / fan_in).sqrt(), rng),
            Init::HeNormal => normal(shape, (2.0 / fan_in).sqrt(), rng),
        }?;
        Self::from_parameters(weight, Array1::zeros(outputs))
    }

    /// A layer with the given weight `(inputs, outputs)` and bias `(outputs)`.
    ///
    /// The same rules as [`Dense::new`]: at least one input and one output,
    /// and every value finite (a NaN weight would make every output NaN).
    pub fn from_parameters(weight: Array2<F>, bias: Array1<F>) -> Result<Self, LayerError> {
        if weight.is_empty() {
            return Err(LayerError::InvalidParameter {
                layer: NAME,
                name: "weight",
                value: format!("shape {:?}", weight.shape()),
                requirement: "a dense layer needs at least one input and one output",
            });
        }
        LayerError::check_shape(NAME, "bias", &[weight.ncols()], bias.shape())?;
        for (name, found) in [
            (
                "weight",
                weight
                    .indexed_iter()
                    .find(|(_, v)| !v.is_finite())
                    .map(|((i, j), v)| (vec![i, j], *v)),
            ),
            (
                "bias",
                bias.indexed_iter()
                    .find(|(_, v)| !v.is_finite())
                    .map(|(i, v)| (vec![i], *v)),
            ),
        ] {
            if let Some((index, value)) = found {
                return Err(LayerError::InvalidParameter {
                    layer: NAME,
                    name,
                    value: format!("{value} at {index:?}"),
                    requirement: "must be finite",
                });
            }
        }
        let grad_weight = zeros_fallible(weight.dim())?;
        Ok(Dense {
            grad_weight,
            grad_bias: Array1::zeros(bias.raw_dim()),
            weight,
            bias,
            input: None,
            output: None,
            grad_input: None,
        })
    }

    /// Number of input features.
    pub fn inputs(&self) -> usize {
        self.weight.nrows()
    }

    /// Number of output features.
    pub fn outputs(&self) -> usize {
        self.weight.ncols()
    }

    /// The weight matrix `W`, shape `(inputs, outputs)`.
    pub fn weight(&self) -> ArrayView2<'_, F> {
        self.weight.view()
    }

    /// The bias vector `b`, shape `(outputs)`.
    pub fn bias(&self) -> ArrayView1<'_, F> {
        self.bias.view()
    }

    /// `dL/dW` from the last `backward` (zeros before it).
    pub fn grad_weight(&self) -> ArrayView2<'_, F> {
        self.grad_weight.view()
    }

    /// `dL/db` from the last `backward` (zeros before it).
    pub fn grad_bias(&self) -> ArrayView1<'_, F> {
        self.grad_bias.view()
    }

    /// Runs forward and returns a view of `y`, kept inside the layer.
    pub fn forward_view(
        &mut self,
        input: ArrayView2<'_, F>,
    ) -> Result<ArrayView2<'_, F>, LayerError> {
        let batch = input.nrows();
        LayerError::check_shape(NAME, "input", &[batch, self.inputs()], input.shape())?;
        reuse_like(&mut self.input, &input).assign(&input);
        let outputs = self.outputs();
        let y = reuse(&mut self.output, Ix2(batch, outputs), false);
        y.assign(&self.bias); // broadcast over rows; the product is added on top
        general_mat_mul(F::ONE, &input, &self.weight, F::ONE, y);
        Ok(y.view())
    }

    /// Stores `dL/dW`, `dL/db` and returns a view of `dL/dx`, kept inside the layer.
    pub fn backward_view(
        &mut self,
        grad_output: ArrayView2<'_, F>,
    ) -> Result<ArrayView2<'_, F>, LayerError> {
        self.backward_parameters(grad_output)?;
        let inputs = self.inputs();
        let dx = reuse(
            &mut self.grad_input,
            Ix2(grad_output.nrows(), inputs),
            false,
        );
        general_mat_mul(F::ONE, &grad_output, &self.weight.t(), F::zero(), dx);
        Ok(dx.view())
    }

    /// Stores `dL/dW` and `dL/db` only, skipping `dL/dx` (for a network's first
    /// layer, whose input gradient nobody reads: about a third of the backward work).
    pub fn backward_parameters(
        &mut self,
        grad_output: ArrayView2<'_, F>,
    ) -> Result<(), LayerError> {
        let x = self
            .input
            .as_ref()
            .ok_or(LayerError::BackwardBeforeForward { layer: NAME })?;
        LayerError::check_shape(
            NAME,
            "grad_output",
            &[x.nrows(), self.outputs()],
            grad_output.shape(),
        )?;
        general_mat_mul(
            F::ONE,
            &x.t(),
            &grad_output,
            F::zero(),
            &mut self.grad_weight,
        );
        self.grad_bias.fill(F::zero());
        for row in grad_output.rows() {
            self.grad_bias += &row;
        }
        Ok(())
    }
}

/// The error for a layer so wide that its initial weight scale underflows.
fn scale_error(bound: f64) -> LayerError {
    LayerError::InvalidParameter {
        layer: NAME,
        name: "initial weight scale",
        value: bound.to_string(),
        requirement: "must be positive and finite; the layer is too wide to initialise",
    }
}

/// A vector for `(rows, cols)` elements, or an error where the size overflows
/// or the memory cannot be had (instead of ndarray's panic or an abort).
fn reserve<F>((rows, cols): (usize, usize)) -> Result<Vec<F>, LayerError> {
    // A product that overflows saturates, and try_vec reports it.
    let len = rows.saturating_mul(cols);
    try_vec(len, NAME, format!("{rows} x {cols}"))
}

/// `(rows, cols)` zeros, through [`reserve`].
fn zeros_fallible<F: Real>(shape: (usize, usize)) -> Result<Array2<F>, LayerError> {
    let mut v = reserve(shape)?;
    v.resize(shape.0 * shape.1, F::zero());
    Ok(Array2::from_shape_vec(shape, v).expect("rows x cols elements"))
}

/// Samples of `dist` in row-major order (as `ndarray_rand`'s `random_using`),
/// rounded to `F`, through [`reserve`].
fn sampled<F: Real, R: Rng + ?Sized>(
    shape: (usize, usize),
    dist: impl Distribution<f64>,
    rng: &mut R,
) -> Result<Array2<F>, LayerError> {
    let mut v = reserve(shape)?;
    v.extend((0..shape.0 * shape.1).map(|_| F::lit(dist.sample(rng))));
    Ok(Array2::from_shape_vec(shape, v).expect("rows x cols elements"))
}

fn uniform<F: Real, R: Rng + ?Sized>(
    shape: (usize, usize),
    bound: f64,
    rng: &mut R,
) -> Result<Array2<F>, LayerError> {
    let dist = Uniform::new(-bound, bound).map_err(|_| scale_error(bound))?;
    sampled(shape, dist, rng)
}

fn normal<F: Real, R: Rng + ?Sized>(
    shape: (usize, usize),
    std_dev: f64,
    rng: &mut R,
) -> Result<Array2<F>, LayerError> {
    let dist = Normal::new(0.0, std_dev).map_err(|_| scale_error(std_dev))?;
    sampled(shape, dist, rng)
}

impl<F: Real> Layer<F, Ix2> for Dense<F> {
    fn forward(&mut self, input: ArrayView2<'_, F>) -> Result<Array2<F>, LayerError> {
        Ok(self.forward_view(input)?.to_owned())
    }

    fn backward(&mut self, grad_output: ArrayView2<'_, F>) -> Result<Array2<F>, LayerError> {
        Ok(self.backward_view(grad_output)?.to_owned())
    }
}

impl<F: Real> Parameters<F> for Dense<F> {
    fn visit_parameters(&mut self, visit: &mut dyn FnMut(Parameter<'_, F>)) {
        visit(Parameter {
            name: "weight",
            value: self.weight.view_mut().into_dyn(),
            grad: self.grad_weight.view().into_dyn(),
        });
        visit(Parameter {
            name: "bias",
            value: self.bias.view_mut().into_dyn(),
            grad: self.grad_bias.view().into_dyn(),
        });
    }
}

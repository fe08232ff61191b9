//! The fully connected layer `y = x W + b`.

use ndarray::{Array1, Array2, ArrayView1, ArrayView2, Ix2, s};
use ndarray_rand::rand_distr::{Distribution, Normal, Uniform};
use rand::Rng;

use crate::buffer::{reuse, reuse_like, try_vec};
use crate::error::{LayerError, require, require_all};
use crate::layer::Layer;
use crate::matmul::product_into;
use crate::real::Real;
use crate::state::{Entry, EntryMut, Name, StateDict, visit_fields, visit_fields_mut};

const NAME: &str = "Dense";

/// How [`Dense`] draws its initial weights (biases start at zero).
///
/// `fan_in` is the number of inputs, `fan_out` the number of outputs. For
/// any other rule, [`Dense::from_fn`] takes a closure.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Init {
    /// Glorot/Xavier uniform: `U(-a, a)`, `a = √(6 / (fan_in + fan_out))`; for tanh and sigmoid.
    GlorotUniform,
    /// Glorot/Xavier normal: `N(0, σ²)`, `σ = √(2 / (fan_in + fan_out))`.
    GlorotNormal,
    /// He/Kaiming uniform: `U(-a, a)`, `a = √(6 / fan_in)`; for ReLU.
    HeUniform,
    /// He/Kaiming normal: `N(0, σ²)`, `σ = √(2 / fan_in)`; for ReLU.
    HeNormal,
    /// `U(-a, a)`, `a = 1 / √fan_in`: PyTorch's default for the weights of
    /// `nn.Linear` and `nn.Conv2d` (`kaiming_uniform_` with `a = √5`).
    FanInUniform,
    /// `U(-a, a)` for the given `a > 0`; `Uniform(1 / √fan_in)` is PyTorch's `nn.Linear` default.
    Uniform(f64),
    /// `N(0, σ²)` for the given `σ > 0`.
    Normal(f64),
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
/// optimiser to read through [`StateDict`], and returns `dL/dx`. The matrix
/// products go through the `gemm` crate (SIMD kernels up to AVX-512, chosen
/// at run time) into buffers the layer reuses for every batch no larger
/// than the largest seen.
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
    /// Column-major `dL/dx`, before its transposition (see `backward_view`).
    grad_input_columns: Option<Array2<F>>,
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
        check_sizes(inputs, outputs)?;
        let shape = (inputs, outputs);
        let values = init.sample(reserve(shape)?, inputs * outputs, (inputs, outputs), rng)?;
        let weight = Array2::from_shape_vec(shape, values).expect("rows x cols elements");
        Self::from_parameters(weight, Array1::zeros(outputs))
    }

    /// A layer whose weight `W[i, j]` (input `i`, output `j`) is `weight(i, j)`, with zero biases.
    ///
    /// For initialisations [`Init`] does not name:
    /// ```
    /// use ndlayers::prelude::*;
    ///
    /// let dense = Dense::<f32>::from_fn(3, 2, |i, j| (i + 10 * j) as f32)?;
    /// assert_eq!(dense.weight()[[2, 1]], 12.0);
    /// # Ok::<(), LayerError>(())
    /// ```
    pub fn from_fn(
        inputs: usize,
        outputs: usize,
        mut weight: impl FnMut(usize, usize) -> F,
    ) -> Result<Self, LayerError> {
        check_sizes(inputs, outputs)?;
        let mut v = reserve((inputs, outputs))?;
        v.extend(
            (0..inputs)
                .flat_map(|i| (0..outputs).map(move |j| (i, j)))
                .map(|(i, j)| weight(i, j)),
        );
        let weight = Array2::from_shape_vec((inputs, outputs), v).expect("rows x cols elements");
        Self::from_parameters(weight, Array1::zeros(outputs))
    }

    /// A layer with the given weight `(inputs, outputs)` and bias `(outputs)`.
    ///
    /// The same rules as [`Dense::new`]: at least one input and one output,
    /// and every value finite (a NaN weight would make every output NaN).
    ///
    /// The weight is kept row-major whatever its layout (a column-major one,
    /// such as the transpose of PyTorch's `(outputs, inputs)` weight, is
    /// copied once), so every layer trains at the same speed: the gradient
    /// and the optimiser's state are row-major too, and an update never
    /// zips two memory orders.
    pub fn from_parameters(weight: Array2<F>, bias: Array1<F>) -> Result<Self, LayerError> {
        require(
            NAME,
            "weight",
            format_args!("shape {:?}", weight.shape()),
            !weight.is_empty(),
            "a dense layer needs at least one input and one output",
        )?;
        check_bias_fits(&weight.view(), bias.shape())?;
        check_finite("weight", &weight.view().into_dyn())?;
        check_finite("bias", &bias.view().into_dyn())?;
        let weight = if weight.is_standard_layout() {
            weight
        } else {
            let mut copy = zeros_fallible(weight.dim())?;
            copy.assign(&weight);
            copy
        };
        let grad_weight = zeros_fallible(weight.dim())?;
        Ok(Dense {
            grad_weight,
            grad_bias: Array1::zeros(bias.raw_dim()),
            weight,
            bias,
            input: None,
            output: None,
            grad_input: None,
            grad_input_columns: None,
        })
    }

    /// Overwrites the weight in place with `weight` (shape `(inputs, outputs)`,
    /// any layout, finite), keeping every buffer. On error nothing changes.
    pub fn set_weight(&mut self, weight: ArrayView2<'_, F>) -> Result<(), LayerError> {
        if weight.dim() != self.weight.dim() {
            return Err(weight_shape_error(
                weight.shape(),
                self.inputs(),
                self.outputs(),
            ));
        }
        check_finite("weight", &weight.into_dyn())?;
        self.weight.assign(&weight);
        Ok(())
    }

    /// The layer with its bias drawn by `init` for the layer's fans, e.g.
    /// [`Init::FanInUniform`], PyTorch's `nn.Linear` default (`U(±1/√inputs)`):
    /// ```
    /// use ndlayers::prelude::*;
    /// use rand::{SeedableRng, rngs::StdRng};
    ///
    /// let mut rng = StdRng::seed_from_u64(0);
    /// let dense = Dense::<f32>::new(4, 3, Init::FanInUniform, &mut rng)?
    ///     .with_bias_init(Init::FanInUniform, &mut rng)?;
    /// assert!(dense.bias().iter().all(|b| b.abs() <= 0.5 && *b != 0.0));
    /// # Ok::<(), LayerError>(())
    /// ```
    pub fn with_bias_init<R: Rng + ?Sized>(
        mut self,
        init: Init,
        rng: &mut R,
    ) -> Result<Self, LayerError> {
        let outputs = self.outputs();
        let values = init.sample(Vec::new(), outputs, (self.inputs(), outputs), rng)?;
        self.bias.assign(&Array1::from(values));
        Ok(self)
    }

    /// Overwrites the bias in place with `bias` (shape `(outputs)`, finite). On error nothing changes.
    pub fn set_bias(&mut self, bias: ArrayView1<'_, F>) -> Result<(), LayerError> {
        LayerError::check_shape(NAME, "bias", self.bias.shape(), bias.shape())?;
        check_finite("bias", &bias.into_dyn())?;
        self.bias.assign(&bias);
        Ok(())
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

    /// Checks a batch against the layer's inputs, explaining the axes.
    fn check_input(&self, input: &ArrayView2<'_, F>) -> Result<(), LayerError> {
        let (batch, features) = input.dim();
        if features == self.inputs() {
            return Ok(());
        }
        let inputs = self.inputs();
        let transposed = if batch == inputs {
            " (its rows have that length: is it transposed?)"
        } else {
            ""
        };
        Err(LayerError::shape_described(
            NAME,
            "input",
            format!(
                "(batch, {inputs}): one sample per row, the layer's {inputs} input features along each row{transposed}"
            ),
            input.shape(),
        ))
    }

    /// Stores `dL/dW` and `dL/db` from the cached input and `grad_output`.
    fn store_parameter_gradients(
        &mut self,
        grad_output: &ArrayView2<'_, F>,
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
        product_into(&x.t(), grad_output, &mut self.grad_weight.view_mut(), false);
        self.grad_bias.fill(F::zero());
        for row in grad_output.rows() {
            self.grad_bias += &row;
        }
        Ok(())
    }
}

/// At least one input and one output.
fn check_sizes(inputs: usize, outputs: usize) -> Result<(), LayerError> {
    for (name, value) in [("inputs", inputs), ("outputs", outputs)] {
        let requirement = "a dense layer needs at least one input and one output";
        require(NAME, name, value, value > 0, requirement)?;
    }
    Ok(())
}

/// The error for a weight that is not `(inputs, outputs)`, pointing out a
/// PyTorch-oriented `(outputs, inputs)` one.
fn weight_shape_error(found: &[usize], inputs: usize, outputs: usize) -> LayerError {
    let transposed = if found == [outputs, inputs] {
        ": it is (outputs, inputs), as PyTorch's nn.Linear stores it; pass its transpose (`.t()` or `.reversed_axes()`)"
    } else {
        ""
    };
    LayerError::shape_described(
        NAME,
        "weight",
        format!("[{inputs}, {outputs}] (inputs, outputs){transposed}"),
        found,
    )
}

/// The bias has one entry per column of the weight. A bias matching the
/// weight's rows instead means the weight is the one in the wrong orientation.
fn check_bias_fits<F>(weight: &ArrayView2<'_, F>, bias: &[usize]) -> Result<(), LayerError> {
    let (rows, cols) = weight.dim();
    match bias {
        [outputs] if *outputs == cols => Ok(()),
        [outputs] if *outputs == rows => Err(weight_shape_error(weight.shape(), cols, rows)),
        _ => Err(LayerError::shape_described(
            NAME,
            "bias",
            format!("[{cols}] (one per output: the weight's {cols} columns)"),
            bias,
        )),
    }
}

/// Every value finite, or an error naming the first that is not and where.
fn check_finite<F: Real>(
    name: &'static str,
    values: &ndarray::ArrayViewD<'_, F>,
) -> Result<(), LayerError> {
    require_all(NAME, name, values, F::is_finite, "must be finite")
}

/// The error for an initial weight scale that is not positive and finite
/// (given so, or from a layer so wide that it underflows).
fn scale_error(bound: f64) -> LayerError {
    LayerError::invalid(
        NAME,
        "initial weight scale",
        bound,
        "must be positive and finite",
    )
}

/// `scale` if positive and finite (a zero scale would start every weight at 0).
fn checked_scale(scale: f64) -> Result<f64, LayerError> {
    if scale > 0.0 && scale.is_finite() {
        Ok(scale)
    } else {
        Err(scale_error(scale))
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

impl Init {
    /// `Init::Uniform(a)` from a scale of either float type, so an `f32`
    /// network's `a` needs no conversion.
    pub fn uniform(a: impl Into<f64>) -> Init {
        Init::Uniform(a.into())
    }

    /// `Init::Normal(σ)` from a scale of either float type.
    pub fn normal(std_dev: impl Into<f64>) -> Init {
        Init::Normal(std_dev.into())
    }

    /// The distribution's scale for these fans: the bound `a` of a uniform,
    /// `σ` of a normal.
    pub(crate) fn scale(self, (fan_in, fan_out): (usize, usize)) -> f64 {
        let (fan_in, fan_out) = (fan_in as f64, fan_out as f64);
        match self {
            Init::GlorotUniform => (6.0 / (fan_in + fan_out)).sqrt(),
            Init::GlorotNormal => (2.0 / (fan_in + fan_out)).sqrt(),
            Init::HeUniform => (6.0 / fan_in).sqrt(),
            Init::HeNormal => (2.0 / fan_in).sqrt(),
            Init::FanInUniform => 1.0 / fan_in.sqrt(),
            Init::Uniform(a) => a,
            Init::Normal(std_dev) => std_dev,
        }
    }

    /// `values` extended by `len` draws for a layer of `fans = (fan_in,
    /// fan_out)`; a scale that is not positive and finite (given so, or from
    /// a layer so wide that it underflows) is an error.
    pub(crate) fn sample<F: Real, R: Rng + ?Sized>(
        self,
        mut values: Vec<F>,
        len: usize,
        fans: (usize, usize),
        rng: &mut R,
    ) -> Result<Vec<F>, LayerError> {
        let scale = checked_scale(self.scale(fans))?;
        let mut draw = |dist: &dyn Fn(&mut R) -> f64| {
            values.extend((0..len).map(|_| F::lit(dist(rng))));
        };
        match self {
            Init::GlorotUniform | Init::HeUniform | Init::FanInUniform | Init::Uniform(_) => {
                let dist = Uniform::new(-scale, scale).map_err(|_| scale_error(scale))?;
                draw(&|rng| dist.sample(rng));
            }
            Init::GlorotNormal | Init::HeNormal | Init::Normal(_) => {
                let dist = Normal::new(0.0, scale).map_err(|_| scale_error(scale))?;
                draw(&|rng| dist.sample(rng));
            }
        }
        Ok(values)
    }
}

impl<F: Real> Layer<F, Ix2> for Dense<F> {
    /// Allocates only for a batch larger than any before.
    fn forward_view(&mut self, input: ArrayView2<'_, F>) -> Result<ArrayView2<'_, F>, LayerError> {
        self.check_input(&input)?;
        reuse_like(&mut self.input, &input).assign(&input);
        let outputs = self.outputs();
        let y = reuse(&mut self.output, Ix2(input.nrows(), outputs), false);
        product_plus_bias(&input, &self.weight, &self.bias, y);
        Ok(y.view())
    }

    /// Also stores `dL/dW` and `dL/db`, overwriting the last ones.
    fn backward_view(
        &mut self,
        grad_output: ArrayView2<'_, F>,
    ) -> Result<ArrayView2<'_, F>, LayerError> {
        self.store_parameter_gradients(&grad_output)?;
        let inputs = self.inputs();
        let batch = grad_output.nrows();
        let dim = Ix2(batch, inputs);
        // gemm's kernels write column-major blocks and read their left
        // operand by columns. A row-major dL/dx = g Wᵀ is computed as its
        // transpose W gᵀ, whose left operand W is row-major, so gemm copies
        // (packs) all of W, inputs·outputs elements, in every call. Into a
        // column-major buffer the left operand is g (batch·outputs elements
        // to pack) and W is read as stored; the one transposition left is of
        // dL/dx, batch·inputs elements: the cheaper route whenever the batch
        // is smaller than the outputs.
        let outputs = self.outputs();
        let dx = reuse(&mut self.grad_input, dim, false);
        if batch < outputs {
            let columns = reuse(&mut self.grad_input_columns, dim, true);
            product_into(
                &grad_output,
                &self.weight.t(),
                &mut columns.view_mut(),
                false,
            );
            assign_in_tiles(dx, columns);
        } else {
            product_into(&grad_output, &self.weight.t(), &mut dx.view_mut(), false);
        }
        Ok(dx.view())
    }

    /// Skips `dL/dx`, about a third of the backward work.
    fn backward_parameters(&mut self, grad_output: ArrayView2<'_, F>) -> Result<(), LayerError> {
        self.store_parameter_gradients(&grad_output)
    }

    fn infer(&self, input: ArrayView2<'_, F>) -> Result<Array2<F>, LayerError> {
        self.check_input(&input)?;
        let mut y = zeros_fallible((input.nrows(), self.outputs()))?;
        product_plus_bias(&input, &self.weight, &self.bias, &mut y);
        Ok(y)
    }
}

/// `dst.assign(src)` a square tile at a time, for `src` and `dst` in opposite
/// memory orders: both stay in cache within a tile.
fn assign_in_tiles<F: Real>(dst: &mut Array2<F>, src: &Array2<F>) {
    // Two 32x32 tiles of f64 are 16 KiB: in L1 on every x86 and Arm core.
    const TILE: usize = 32;
    let (rows, cols) = dst.dim();
    for i in (0..rows).step_by(TILE) {
        for j in (0..cols).step_by(TILE) {
            let tile = s![i..(i + TILE).min(rows), j..(j + TILE).min(cols)];
            dst.slice_mut(tile).assign(&src.slice(tile));
        }
    }
}

/// `y = x W + b`, into `y` of shape `(batch, outputs)`.
fn product_plus_bias<F: Real>(
    x: &ArrayView2<'_, F>,
    weight: &Array2<F>,
    bias: &Array1<F>,
    y: &mut Array2<F>,
) {
    y.assign(bias); // broadcast over rows; the product is added on top
    product_into(x, &weight.view(), &mut y.view_mut(), true);
}

/// The parameters `weight`, `(outputs, inputs)` as `nn.Linear` stores it (a
/// transposed view of the `(inputs, outputs)` array the products use), and `bias`.
impl<F: Real> StateDict<F> for Dense<F> {
    fn visit_state(&self, prefix: &Name<'_>, visit: &mut dyn FnMut(&Name<'_>, Entry<'_, F>)) {
        let weight = Entry::parameter(self.weight.t(), self.grad_weight.t());
        let bias = Entry::parameter(self.bias.view(), self.grad_bias.view());
        visit_fields(prefix, visit, [("weight", weight), ("bias", bias)]);
    }

    fn visit_state_mut(
        &mut self,
        prefix: &Name<'_>,
        visit: &mut dyn FnMut(&Name<'_>, EntryMut<'_, F>),
    ) {
        let (weight, grad_weight) = (self.weight.view_mut(), self.grad_weight.view_mut());
        let weight = EntryMut::parameter(weight.reversed_axes(), grad_weight.reversed_axes());
        let bias = EntryMut::parameter(self.bias.view_mut(), self.grad_bias.view_mut());
        visit_fields_mut(prefix, visit, [("weight", weight), ("bias", bias)]);
    }
}

//! PReLU: a leaky ReLU whose negative slope is learned, one per channel.

use ndarray::{
    Array, Array1, ArrayView, ArrayView1, ArrayViewMut, Axis, Dimension, Ix2, RemoveAxis,
    ShapeBuilder, Zip,
};

use crate::buffer::{cached_for, is_fortran, reuse_like, try_vec};
use crate::error::{LayerError, require, require_all};
use crate::layer::Layer;
use crate::real::Real;
use crate::state::{Entry, EntryMut, Name, StateDict, visit_fields, visit_fields_mut};

const NAME: &str = "Prelu";

/// PyTorch's initial slope.
const INITIAL_SLOPE: f64 = 0.25;

/// Parametric ReLU with a learnable slope `a_c` per channel (axis 1, as
/// PyTorch: the features of `(batch, features)`, the channels of
/// `(batch, channels, height, width)`), or one slope shared by every element:
///
/// ```text
/// y = x                 if x > 0
///     a_c · x           otherwise (also at x = 0)
/// dL/dx   = g · (1 if x > 0 else a_c)
/// dL/da_c = Σ over the channel's elements with x ≤ 0 of g · x
/// ```
/// Its backward needs `x`, not just `y` (for `a_c = 0` the output cannot tell
/// which side of zero `x` was on), so the layer caches its input. The slopes
/// are exposed to optimisers through [`StateDict`] as `"weight"`.
///
/// # Example
/// ```
/// use ndlayers::prelu::Prelu;
/// use ndlayers::prelude::*;
/// use ndlayers::ndarray::array;
///
/// let mut prelu = Prelu::<f64, _>::new(2)?; // slopes start at 0.25
/// let y = prelu.forward(array![[-4.0, -4.0], [1.0, 2.0]].view())?;
/// assert_eq!(y, array![[-1.0, -1.0], [1.0, 2.0]]);
/// prelu.backward(array![[1.0, 2.0], [1.0, 1.0]].view())?;
/// assert_eq!(prelu.grad_weight(), array![-4.0, -8.0]);
/// # Ok::<(), LayerError>(())
/// ```
#[derive(Clone, Debug)]
pub struct Prelu<F, D: Dimension = Ix2> {
    weight: Array1<F>,
    grad_weight: Array1<F>,
    /// `x` from the last forward.
    input: Option<Array<F, D>>,
    /// The buffers behind the view methods.
    output: Option<Array<F, D>>,
    grad_input: Option<Array<F, D>>,
}

impl<F: Real, D: Dimension> Prelu<F, D> {
    /// One slope per channel (`channels ≥ 1`; 1 means a single shared slope), each 0.25.
    pub fn new(channels: usize) -> Result<Self, LayerError> {
        let mut slopes = try_vec(channels, NAME, format!("{channels} channels"))?;
        slopes.resize(channels, F::lit(INITIAL_SLOPE));
        Self::with_weight(Array1::from_vec(slopes))
    }

    /// Starts from the given slopes (at least one, all finite).
    pub fn with_weight(weight: Array1<F>) -> Result<Self, LayerError> {
        let requirement = "needs at least one slope, all finite";
        require(NAME, "weight", &weight, !weight.is_empty(), requirement)?;
        require_all(NAME, "weight", &weight.view(), F::is_finite, requirement)?;
        let mut grad = try_vec(weight.len(), NAME, format!("{} channels", weight.len()))?;
        grad.resize(weight.len(), F::zero());
        Ok(Prelu {
            grad_weight: Array1::from_vec(grad),
            weight,
            input: None,
            output: None,
            grad_input: None,
        })
    }

    /// The slopes.
    pub fn weight(&self) -> ArrayView1<'_, F> {
        self.weight.view()
    }

    /// `dL/da` from the last `backward` (zeros before it).
    pub fn grad_weight(&self) -> ArrayView1<'_, F> {
        self.grad_weight.view()
    }

    /// Overwrites the slopes in place (same number, all finite), keeping
    /// every buffer. On error nothing changes.
    pub fn set_weight(&mut self, weight: ArrayView1<'_, F>) -> Result<(), LayerError> {
        LayerError::check_shape(NAME, "weight", self.weight.shape(), weight.shape())?;
        require_all(NAME, "weight", &weight, F::is_finite, "must be finite")?;
        self.weight.assign(&weight);
        Ok(())
    }

    /// Checks that `x` has the channel axis this layer's slopes need.
    fn check_channels(&self, x: &ArrayView<'_, F, D>) -> Result<(), LayerError> {
        let channels = self.weight.len();
        if channels == 1 || (x.ndim() >= 2 && x.len_of(Axis(1)) == channels) {
            return Ok(());
        }
        if x.ndim() < 2 {
            // No channel axis at all: say so, rather than invent a shape.
            return Err(LayerError::AxisOutOfRange {
                layer: NAME,
                axis: 1,
                ndim: x.ndim(),
            });
        }
        let mut expected = x.shape().to_vec();
        expected[1] = channels;
        Err(LayerError::shape(NAME, "input", &expected, x.shape()))
    }
}

/// `dx = g · (1 if x > 0 else a)` for one slope's elements; returns their
/// `dL/da = Σ_{x ≤ 0} g · x`.
fn backward_with_slope<F: Real, E: Dimension>(
    a: F,
    x: ArrayView<'_, F, E>,
    g: ArrayView<'_, F, E>,
    dx: ArrayViewMut<'_, F, E>,
) -> F {
    let mut da = F::zero();
    Zip::from(dx).and(&x).and(&g).for_each(|dx, &x, &g| {
        if x > F::zero() {
            *dx = g;
        } else if x <= F::zero() {
            *dx = a * g;
            da += g * x;
        } else {
            // NaN in, NaN out: for the input gradient and the slope's.
            *dx = x;
            da += x;
        }
    });
    da
}

/// `y = x if x > 0 else a · x`, with `a` the slope of each element's channel.
fn apply<F: Real, D: RemoveAxis>(
    weight: &Array1<F>,
    x: ArrayView<'_, F, D>,
    mut y: ArrayViewMut<'_, F, D>,
) {
    let leaky = |a: F| move |y: &mut F, &x: &F| *y = if x > F::zero() { x } else { a * x };
    if let [a] = weight.as_slice().unwrap_or(&[]) {
        Zip::from(y).and(&x).for_each(leaky(*a));
    } else {
        for ((y, x), &a) in y
            .axis_iter_mut(Axis(1))
            .zip(x.axis_iter(Axis(1)))
            .zip(weight)
        {
            Zip::from(y).and(&x).for_each(leaky(a));
        }
    }
}

impl<F: Real, D: RemoveAxis> Layer<F, D> for Prelu<F, D> {
    /// Allocates only for a larger array or another memory order than before.
    fn forward_view(
        &mut self,
        input: ArrayView<'_, F, D>,
    ) -> Result<ArrayView<'_, F, D>, LayerError> {
        self.check_channels(&input)?;
        reuse_like(&mut self.input, &input).assign(&input);
        let y = reuse_like(&mut self.output, &input);
        apply(&self.weight, input, y.view_mut());
        Ok(y.view())
    }

    /// Also stores `dL/da`.
    fn backward_view(
        &mut self,
        grad_output: ArrayView<'_, F, D>,
    ) -> Result<ArrayView<'_, F, D>, LayerError> {
        let x = cached_for(&self.input, NAME, &grad_output)?;
        let dx = reuse_like(&mut self.grad_input, &x.view());
        if self.weight.len() == 1 {
            self.grad_weight[0] =
                backward_with_slope(self.weight[0], x.view(), grad_output, dx.view_mut());
        } else {
            for (((x, g), dx), (&a, da)) in x
                .axis_iter(Axis(1))
                .zip(grad_output.axis_iter(Axis(1)))
                .zip(dx.axis_iter_mut(Axis(1)))
                .zip(self.weight.iter().zip(self.grad_weight.iter_mut()))
            {
                *da = backward_with_slope(a, x, g, dx);
            }
        }
        Ok(dx.view())
    }

    fn infer(&self, input: ArrayView<'_, F, D>) -> Result<Array<F, D>, LayerError> {
        self.check_channels(&input)?;
        let mut y = Array::zeros(input.raw_dim().set_f(is_fortran(&input)));
        apply(&self.weight, input, y.view_mut());
        Ok(y)
    }
}

impl<F: Real, D: Dimension> StateDict<F> for Prelu<F, D> {
    fn visit_state(&self, prefix: &Name<'_>, visit: &mut dyn FnMut(&Name<'_>, Entry<'_, F>)) {
        let weight = Entry::parameter(self.weight.view(), self.grad_weight.view());
        visit_fields(prefix, visit, [("weight", weight)]);
    }

    fn visit_state_mut(
        &mut self,
        prefix: &Name<'_>,
        visit: &mut dyn FnMut(&Name<'_>, EntryMut<'_, F>),
    ) {
        let weight = EntryMut::parameter(self.weight.view_mut(), self.grad_weight.view_mut());
        visit_fields_mut(prefix, visit, [("weight", weight)]);
    }
}

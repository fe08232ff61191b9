//! Pooling over windows of images: [`MaxPool2d`] and [`AvgPool2d`], as
//! PyTorch's `nn.MaxPool2d` and `nn.AvgPool2d` (`ceil_mode=False`,
//! `count_include_pad=True`), one window walk for both.

use std::fmt;
use std::marker::PhantomData;

use ndarray::{Array4, ArrayView4, Dimension, Ix4};

use crate::buffer::reuse;
use crate::error::{LayerError, require};
use crate::layer::Layer;
use crate::real::Real;
use crate::state::StateDict;

/// What a pooling layer does with a window: [`Max`] or [`Average`].
pub trait Pooling: Clone + fmt::Debug + Send + Sync + sealed::Sealed {
    /// The layer's name, PyTorch's.
    const NAME: &'static str;
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::Max {}
    impl Sealed for super::Average {}
}

/// The largest value of each window.
#[derive(Debug, Clone, Copy, Default)]
pub struct Max;

impl Pooling for Max {
    const NAME: &'static str = "MaxPool2d";
}

/// The mean of each window, padding counted in the divisor.
#[derive(Debug, Clone, Copy, Default)]
pub struct Average;

impl Pooling for Average {
    const NAME: &'static str = "AvgPool2d";
}

/// Pooling of `(batch, channels, height, width)` images over windows of
/// `kernel` elements, moved by `stride` (the kernel by default, as in
/// PyTorch), over the input padded by `padding` on each side. The output
/// has `⌊(h + 2p - k)/s⌋ + 1` rows (and the same for columns); an input
/// smaller than the kernel after padding is an error, and so is padding
/// above half the kernel (PyTorch's rule). Use it as [`MaxPool2d`] or [`AvgPool2d`].
pub struct Pool2d<P, F> {
    kernel: (usize, usize),
    stride: (usize, usize),
    padding: (usize, usize),
    /// `(batch, channels, height, width)` of the last forward's input.
    input_dim: Option<Ix4>,
    /// For max pooling: the flat position, in its image plane, of the
    /// element each output came from (where the gradient goes).
    argmax: Vec<usize>,
    output: Option<Array4<F>>,
    grad_input: Option<Array4<F>>,
    pooling: PhantomData<P>,
}

/// Max pooling, PyTorch's `nn.MaxPool2d`: each output is its window's
/// largest value; padding never wins (it is `-∞`). A NaN in a window gives
/// NaN. The gradient of each output goes where PyTorch's CPU kernel sends
/// it: to the window's first maximum in row-major order or, if the window
/// holds NaN, to its last NaN.
///
/// # Example
/// ```
/// use ndlayers::prelude::*;
/// use ndlayers::ndarray::{Array4, array};
///
/// let x = Array4::from_shape_vec((1, 1, 2, 4), vec![1.0_f32, 5.0, 2.0, 2.0, 3.0, 4.0, 8.0, 0.0]).unwrap();
/// let mut pool = MaxPool2d::new((2, 2))?;
/// let y = pool.forward(x.view())?;
/// assert_eq!(y, Array4::from_shape_vec((1, 1, 1, 2), vec![5.0, 8.0]).unwrap());
/// let dx = pool.backward(Array4::ones((1, 1, 1, 2)).view())?;
/// assert_eq!(dx.as_slice().unwrap(), &[0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0]);
/// # Ok::<(), LayerError>(())
/// ```
pub type MaxPool2d<F> = Pool2d<Max, F>;

/// Average pooling, PyTorch's `nn.AvgPool2d` with `count_include_pad=True`:
/// each output is its window's sum divided by the kernel's size, padding
/// counted as zeros. The gradient of each output is spread evenly over its window.
///
/// # Example
/// ```
/// use ndlayers::prelude::*;
/// use ndlayers::ndarray::Array4;
///
/// let x = Array4::from_elem((1, 1, 2, 2), 4.0_f64);
/// let mut pool = AvgPool2d::new((2, 2))?.with_padding((1, 1))?.with_stride((1, 1))?;
/// let y = pool.forward(x.view())?;
/// assert_eq!(y[[0, 0, 0, 0]], 1.0); // one element of four inside the input
/// assert_eq!(y[[0, 0, 1, 1]], 4.0);
/// # Ok::<(), LayerError>(())
/// ```
pub type AvgPool2d<F> = Pool2d<Average, F>;

impl<P: Pooling, F> Pool2d<P, F> {
    /// Pools windows of `kernel = (kh, kw)`, each at least 1, with the
    /// stride equal to the kernel and no padding.
    pub fn new(kernel: (usize, usize)) -> Result<Self, LayerError> {
        let positive = kernel.0 > 0 && kernel.1 > 0;
        require(
            P::NAME,
            "kernel",
            format_args!("{kernel:?}"),
            positive,
            "must be at least 1 on each axis",
        )?;
        Ok(Pool2d {
            kernel,
            stride: kernel,
            padding: (0, 0),
            input_dim: None,
            argmax: Vec::new(),
            output: None,
            grad_input: None,
            pooling: PhantomData,
        })
    }

    /// The layer with `stride = (sh, sw)`, each at least 1.
    pub fn with_stride(mut self, stride: (usize, usize)) -> Result<Self, LayerError> {
        let positive = stride.0 > 0 && stride.1 > 0;
        require(
            P::NAME,
            "stride",
            format_args!("{stride:?}"),
            positive,
            "must be at least 1 on each axis",
        )?;
        self.stride = stride;
        Ok(self)
    }

    /// The layer with `padding = (ph, pw)` on each side, at most half the kernel.
    pub fn with_padding(mut self, padding: (usize, usize)) -> Result<Self, LayerError> {
        let valid = padding.0 <= self.kernel.0 / 2 && padding.1 <= self.kernel.1 / 2;
        require(
            P::NAME,
            "padding",
            format_args!("{padding:?}"),
            valid,
            "must be at most half the kernel on each axis",
        )?;
        self.padding = padding;
        Ok(self)
    }

    /// The window's size.
    pub fn kernel(&self) -> (usize, usize) {
        self.kernel
    }

    /// The window's step.
    pub fn stride(&self) -> (usize, usize) {
        self.stride
    }

    /// The zeros (average) or `-∞` (max) added on each side.
    pub fn padding(&self) -> (usize, usize) {
        self.padding
    }

    /// The output's `(height, width)` for an input of `shape`, or the error
    /// naming the axis that is smaller than the kernel after padding.
    fn output_size(&self, shape: &[usize]) -> Result<(usize, usize), LayerError> {
        let mut size = [0; 2];
        let kernel = [self.kernel.0, self.kernel.1];
        let (stride, padding) = (
            [self.stride.0, self.stride.1],
            [self.padding.0, self.padding.1],
        );
        for axis in 0..2 {
            // Padding is at most half the kernel: an overflow means the kernel is larger.
            let padded = shape[2 + axis].saturating_add(2 * padding[axis]);
            // An empty image has no window that is not all padding (PyTorch refuses it too).
            if padded < kernel[axis] || shape[2 + axis] == 0 {
                let what = ["height", "width"][axis];
                let expected = format!(
                    "(batch, channels, height, width) with a {what} of at least {} (the kernel's {} less padding twice {})",
                    kernel[axis].saturating_sub(2 * padding[axis]).max(1),
                    kernel[axis],
                    padding[axis]
                );
                return Err(LayerError::shape_described(
                    P::NAME,
                    "input",
                    expected,
                    shape,
                ));
            }
            size[axis] = (padded - kernel[axis]) / stride[axis] + 1;
        }
        Ok((size[0], size[1]))
    }

    /// The input's rows (or columns) under output row `o`: `start..end`
    /// within `0..len`, the window's first row with padding counted.
    fn window(
        o: usize,
        stride: usize,
        padding: usize,
        kernel: usize,
        len: usize,
    ) -> (usize, usize) {
        // In i128, where no product or sum of these usizes overflows.
        let start = o as i128 * stride as i128 - padding as i128;
        let end = (start + kernel as i128).min(len as i128);
        (start.max(0) as usize, end.max(0) as usize)
    }
}

impl<P: Pooling, F> Clone for Pool2d<P, F> {
    /// The same settings; caches start empty.
    fn clone(&self) -> Self {
        Pool2d {
            kernel: self.kernel,
            stride: self.stride,
            padding: self.padding,
            input_dim: None,
            argmax: Vec::new(),
            output: None,
            grad_input: None,
            pooling: PhantomData,
        }
    }
}

impl<P: Pooling, F> fmt::Debug for Pool2d<P, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct(P::NAME)
            .field("kernel", &self.kernel)
            .field("stride", &self.stride)
            .field("padding", &self.padding)
            .finish_non_exhaustive()
    }
}

impl<P: Pooling, F> StateDict<F> for Pool2d<P, F> {}

/// Walks every output of a pooling over `x` (row-major, `(n, c, h, w)`),
/// calling `pool(plane, rows, cols)` with the image plane of the output, the
/// window's rows and columns inside the plane, and storing its result in
/// `out` (row-major, `(n, c, oh, ow)`).
fn for_each_window<P: Pooling, F: Real>(
    layer: &Pool2d<P, F>,
    x: &[F],
    (planes, h, w): (usize, usize, usize),
    (oh, ow): (usize, usize),
    out: &mut [F],
    mut pool: impl FnMut(usize, &[F], (usize, usize), (usize, usize)) -> F,
) {
    for p in 0..planes {
        let plane = &x[p * h * w..][..h * w];
        for i in 0..oh {
            let rows =
                Pool2d::<P, F>::window(i, layer.stride.0, layer.padding.0, layer.kernel.0, h);
            for j in 0..ow {
                let cols =
                    Pool2d::<P, F>::window(j, layer.stride.1, layer.padding.1, layer.kernel.1, w);
                out[(p * oh + i) * ow + j] = pool(p * oh * ow + i * ow + j, plane, rows, cols);
            }
        }
    }
}

/// The largest value of the window and its flat position in the plane,
/// as PyTorch's CPU kernel picks them: the first maximum, or the last NaN.
#[inline]
fn window_max<F: Real>(
    plane: &[F],
    w: usize,
    (r0, r1): (usize, usize),
    (c0, c1): (usize, usize),
) -> (F, usize) {
    let (mut best, mut at) = (F::neg_infinity(), r0 * w + c0);
    for r in r0..r1 {
        for (c, &v) in plane[r * w..][c0..c1].iter().enumerate() {
            if v > best || v.is_nan() {
                (best, at) = (v, r * w + c0 + c);
            }
        }
    }
    (best, at)
}

/// Max pooling in 2x2 windows with stride 2 and no padding, the CNNs'
/// usual one, a pair of rows at a time: the same maxima and positions as
/// [`window_max`] (the first maximum, or the last NaN, in reading order),
/// without its general window arithmetic.
fn max_pool_2x2<F: Real>(
    xs: &[F],
    (planes, h, w): (usize, usize, usize),
    (oh, ow): (usize, usize),
    out: &mut [F],
    argmax: &mut [usize],
) {
    for p in 0..planes {
        let plane = &xs[p * h * w..][..h * w];
        let out = &mut out[p * oh * ow..][..oh * ow];
        let argmax = &mut argmax[p * oh * ow..][..oh * ow];
        for i in 0..oh {
            let (top, bottom) = (
                &plane[2 * i * w..][..2 * ow],
                &plane[(2 * i + 1) * w..][..2 * ow],
            );
            let (out, argmax) = (&mut out[i * ow..][..ow], &mut argmax[i * ow..][..ow]);
            for (j, ((y, at), (t, b))) in out
                .iter_mut()
                .zip(argmax.iter_mut())
                .zip(top.chunks_exact(2).zip(bottom.chunks_exact(2)))
                .enumerate()
            {
                let first = 2 * i * w + 2 * j;
                let (mut best, mut offset) = (F::neg_infinity(), 0);
                for (k, v) in [t[0], t[1], b[0], b[1]].into_iter().enumerate() {
                    if v > best || v.is_nan() {
                        (best, offset) = (v, k);
                    }
                }
                *y = best;
                *at = first + (offset & 1) + (offset >> 1) * w;
            }
        }
    }
}

impl<P: Pooling, F: Real> Pool2d<P, F> {
    /// Whether the windows are 2x2, with stride 2 and no padding: each input
    /// element in at most one window.
    fn is_2x2(&self) -> bool {
        (self.kernel, self.stride, self.padding) == ((2, 2), (2, 2), (0, 0))
    }

    /// The output of the pooling of `x`, and for max pooling the positions of the maxima.
    fn pool_into(&self, x: &ArrayView4<'_, F>, out: &mut Array4<F>, argmax: &mut Vec<usize>) {
        let (n, c, h, w) = x.dim();
        let (oh, ow) = (out.dim().2, out.dim().3);
        // Row-major planes: borrowed when the input is, else one copy.
        let x = x.as_standard_layout();
        let xs = x.as_slice().expect("standard layout");
        let out = out.as_slice_mut().expect("a fresh row-major buffer");
        let is_max = P::NAME == Max::NAME;
        if is_max {
            argmax.resize(out.len(), 0);
            if self.is_2x2() {
                max_pool_2x2(xs, (n * c, h, w), (oh, ow), out, argmax);
                return;
            }
        }
        let area = F::lit((self.kernel.0 * self.kernel.1) as f64);
        for_each_window(
            self,
            xs,
            (n * c, h, w),
            (oh, ow),
            out,
            |o, plane, rows, cols| {
                if is_max {
                    let (value, at) = window_max(plane, w, rows, cols);
                    argmax[o] = at;
                    value
                } else {
                    let mut sum = F::zero();
                    for r in rows.0..rows.1 {
                        for &v in &plane[r * w..][cols.0..cols.1] {
                            sum += v;
                        }
                    }
                    sum / area
                }
            },
        );
    }
}

impl<P: Pooling, F: Real> Layer<F, Ix4> for Pool2d<P, F> {
    fn forward_view(&mut self, input: ArrayView4<'_, F>) -> Result<ArrayView4<'_, F>, LayerError> {
        let (oh, ow) = self.output_size(input.shape())?;
        let (n, c, _, _) = input.dim();
        // Out of `self` while `pool_into` reads the settings.
        let (mut output, mut argmax) = (self.output.take(), std::mem::take(&mut self.argmax));
        self.pool_into(
            &input,
            reuse(&mut output, Ix4(n, c, oh, ow), false),
            &mut argmax,
        );
        (self.output, self.argmax) = (output, argmax);
        self.input_dim = Some(input.raw_dim());
        Ok(self.output.as_ref().expect("filled by reuse").view())
    }

    fn backward_view(
        &mut self,
        grad_output: ArrayView4<'_, F>,
    ) -> Result<ArrayView4<'_, F>, LayerError> {
        let dim = self
            .input_dim
            .ok_or(LayerError::BackwardBeforeForward { layer: P::NAME })?;
        let (oh, ow) = self.output_size(dim.slice())?;
        let (n, c, h, w) = (dim[0], dim[1], dim[2], dim[3]);
        LayerError::check_shape(P::NAME, "grad_output", &[n, c, oh, ow], grad_output.shape())?;
        let is_max = P::NAME == Max::NAME;
        let two_by_two = is_max && self.is_2x2();
        let grad = reuse(&mut self.grad_input, dim, false);
        let gi = grad.as_slice_mut().expect("a fresh row-major buffer");
        if two_by_two {
            // Plane by plane, zeroed then scattered while it is in cache.
            let g = grad_output.as_standard_layout();
            let g = g.as_slice().expect("standard layout");
            for p in 0..n * c {
                let plane = &mut gi[p * h * w..][..h * w];
                plane.fill(F::zero());
                let (g, argmax) = (
                    &g[p * oh * ow..][..oh * ow],
                    &self.argmax[p * oh * ow..][..oh * ow],
                );
                for (&g, &at) in g.iter().zip(argmax) {
                    plane[at] = g;
                }
            }
            return Ok(grad.view());
        }
        gi.fill(F::zero());
        let area = F::lit((self.kernel.0 * self.kernel.1) as f64);
        for (o, &g) in grad_output.iter().enumerate() {
            let plane = o / (oh * ow);
            let base = plane * h * w;
            if is_max {
                gi[base + self.argmax[o]] += g;
            } else {
                let (i, j) = ((o / ow) % oh, o % ow);
                let rows = Self::window(i, self.stride.0, self.padding.0, self.kernel.0, h);
                let cols = Self::window(j, self.stride.1, self.padding.1, self.kernel.1, w);
                let share = g / area;
                for r in rows.0..rows.1 {
                    for v in &mut gi[base + r * w..][cols.0..cols.1] {
                        *v += share;
                    }
                }
            }
        }
        Ok(grad.view())
    }

    fn infer(&self, input: ArrayView4<'_, F>) -> Result<Array4<F>, LayerError> {
        let (oh, ow) = self.output_size(input.shape())?;
        let (n, c, _, _) = input.dim();
        let mut output = Array4::zeros((n, c, oh, ow));
        self.pool_into(&input, &mut output, &mut Vec::new());
        Ok(output)
    }
}

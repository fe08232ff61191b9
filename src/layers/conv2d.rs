//! [`Conv2d`]: 2-D convolution (cross-correlation) of images, as PyTorch's
//! `nn.Conv2d` (zero padding), on the crate's matrix products.

use std::fmt;
use std::ops::Range;

use ndarray::{Array1, Array4, ArrayView1, ArrayView2, ArrayView4, ArrayViewMut2, Ix4, s};
use rand::Rng;

use crate::buffer::{reuse, try_reuse, try_vec};
use crate::dense::Init;
use crate::error::{LayerError, require, require_all};
use crate::kernels::{Windows, window_backward, window_forward};
use crate::layer::Layer;
use crate::matmul::product_into;
use crate::real::Real;
use crate::state::{Entry, EntryMut, Name, StateDict, visit_fields, visit_fields_mut};

/// A 2-D convolution of `(batch, in_channels, height, width)` images into
/// `(batch, out_channels, oh, ow)`, PyTorch's `nn.Conv2d` with zero padding:
/// ```text
/// y[n, o, i, j] = b[o] + Σ_{c, p, q} W[o, c, p, q] · x[n, g·C + c, i·sh - ph + p·dh, j·sw - pw + q·dw]
/// ```
/// where `C = in_channels / groups` is the channels of one group, `g` the
/// group of output channel `o` (each group maps its `C` input channels to
/// `out_channels / groups` outputs; `groups = in_channels` is a depthwise
/// convolution), `x` is zero outside the image, and
/// `oh = ⌊(h + 2ph - dh (kh - 1) - 1) / sh⌋ + 1` (the same for `ow`).
///
/// The weight has PyTorch's shape `(out_channels, in_channels / groups, kh,
/// kw)`, in every accessor, checkpoint and gradient. Each sample and group is
/// a few matrix products on the crate's GEMM: the image's windows unrolled
/// into the columns of a scratch matrix (`im2col`, `C·kh·kw` rows, one
/// column per output pixel of a band of output rows, the bands sized so that
/// the matrix stays in cache), multiplied by the group's `(out/groups,
/// C·kh·kw)` weight. Backward: `dL/dW += g · colsᵀ`, `dL/db = Σ g`, and
/// `Wᵀ · g` scattered back onto the image (`col2im`) for `dL/dx`. Depthwise
/// convolutions slide the kernel over the image directly.
///
/// # Example
/// ```
/// use ndlayers::prelude::*;
/// use ndlayers::ndarray::{Array1, Array4};
///
/// // A 2x2 box filter over a 1-channel 3x3 image: each output is a window's sum.
/// let weight = Array4::from_elem((1, 1, 2, 2), 1.0_f32);
/// let mut conv = Conv2d::from_parameters(weight, Some(Array1::zeros(1)))?;
/// let x = Array4::from_shape_fn((1, 1, 3, 3), |(_, _, i, j)| (3 * i + j) as f32);
/// let y = conv.forward(x.view())?;
/// assert_eq!(y.shape(), [1, 1, 2, 2]);
/// assert_eq!(y[[0, 0, 0, 0]], 0.0 + 1.0 + 3.0 + 4.0);
/// // Padding 1 and stride 2: the windows are centred on the even pixels.
/// let mut strided = Conv2d::from_parameters(Array4::from_elem((1, 1, 3, 3), 1.0_f32), None)?
///     .with_padding((1, 1))?
///     .with_stride((2, 2))?;
/// assert_eq!(strided.forward(x.view())?.shape(), [1, 1, 2, 2]);
/// # Ok::<(), LayerError>(())
/// ```
pub struct Conv2d<F> {
    weight: Array4<F>,
    bias: Option<Array1<F>>,
    grad_weight: Array4<F>,
    grad_bias: Option<Array1<F>>,
    stride: (usize, usize),
    padding: (usize, usize),
    dilation: (usize, usize),
    groups: usize,
    /// How `new` drew the weight, so that `with_groups` can rescale it to
    /// the grouped fan-in.
    init: Option<Init>,
    /// A row-major copy of the last forward's input, for backward.
    input: Option<Array4<F>>,
    /// Scratch for each piece of the batch: the unrolled windows of one
    /// sample and group in forward; with their gradient and a share of
    /// `dL/dW` in backward.
    columns: Vec<Vec<F>>,
    pieces: Vec<Piece<F>>,
    output: Option<Array4<F>>,
    grad_input: Option<Array4<F>>,
}

const NAME: &str = "Conv2d";

/// The sizes of one convolution: what `forward` and `backward` loop over.
#[derive(Clone, Copy, Debug)]
struct Geometry {
    batch: usize,
    /// Input channels, height and width.
    channels: usize,
    h: usize,
    w: usize,
    /// Output channels, height and width.
    outputs: usize,
    oh: usize,
    ow: usize,
    groups: usize,
    kernel: (usize, usize),
    stride: (usize, usize),
    padding: (usize, usize),
    dilation: (usize, usize),
}

impl Geometry {
    /// Input channels of one group.
    fn group_channels(&self) -> usize {
        self.channels / self.groups
    }

    /// One image plane's window walk.
    fn windows(&self) -> Windows {
        Windows {
            h: self.h,
            w: self.w,
            ow: self.ow,
            kernel: self.kernel,
            stride: self.stride,
            padding: self.padding,
            dilation: self.dilation,
        }
    }

    /// Whether the convolution is depthwise (groups of one input channel,
    /// more than one group): computed directly from the image, as a product
    /// with a one-row weight would only add copies. One group of one channel
    /// is a product with `out_channels` rows, which the GEMM does better.
    fn depthwise(&self) -> bool {
        self.groups > 1 && self.group_channels() == 1
    }

    /// Output channels of one group.
    fn group_outputs(&self) -> usize {
        self.outputs / self.groups
    }

    /// Rows of the unrolled windows: a group's channels times the kernel.
    fn rows(&self) -> usize {
        self.group_channels() * self.kernel.0 * self.kernel.1
    }

    /// Output pixels of a plane.
    fn pixels(&self) -> usize {
        self.oh * self.ow
    }

    /// The output columns `j0..j1` whose kernel tap `q` reads inside a row of
    /// the image, and the image column that `j0` reads: column `j` reads
    /// `j·sw + q·dw - pw`, so the range is where that lies in `0..w`.
    #[inline]
    fn inside(&self, q: usize) -> (usize, usize, usize) {
        self.windows().inside(q)
    }

    /// The output rows of one band: the bands split the output plane so that
    /// a band's unrolled windows (`rows() x band · ow` elements of `F`) take
    /// about [`BAND_BYTES`], and each product reads the windows, and the
    /// backward's `Wᵀ · g` is scattered, while they are in cache.
    fn band_rows<F>(&self) -> usize {
        let row = self.rows() * self.ow * std::mem::size_of::<F>();
        let rows = (BAND_BYTES / row.max(1)).clamp(1, self.oh.max(1));
        // Rounded down to a multiple of 64 pixels where that leaves some:
        // the GEMM's AVX-512 tiles are 64 pixels tall, and a remainder runs
        // on a slower edge kernel.
        let step = 64 / gcd(self.ow.max(1), 64);
        if rows >= step && rows < self.oh {
            rows / step * step
        } else {
            rows
        }
    }

    /// Output pixels of the largest band: the columns of the unrolled windows.
    fn band_pixels<F>(&self) -> usize {
        self.band_rows::<F>() * self.ow
    }

    /// The bands of output rows, in order.
    fn bands<F>(&self) -> impl Iterator<Item = Range<usize>> + use<F> {
        let (oh, band) = (self.oh, self.band_rows::<F>());
        (0..oh)
            .step_by(band)
            .map(move |start| start..(start + band).min(oh))
    }

    /// Each group with each of its bands, in order.
    fn group_bands<F>(&self) -> impl Iterator<Item = (usize, Range<usize>)> + use<F> {
        let geometry = *self;
        (0..self.groups).flat_map(move |g| geometry.bands::<F>().map(move |b| (g, b)))
    }

    /// For a tap `(p, q)` whose output rows read the image at one flat shift
    /// ([`Windows::shifted_rows`]), within the output rows `band`: the rows
    /// of the band that read inside the image (counted from the band's
    /// first), the band's flat outputs that read inside the plane, and the
    /// image element the first of them reads. The outputs of those rows left
    /// out of the run lie in the columns outside [`Self::inside`].
    #[inline]
    fn shifted(
        &self,
        band: &Range<usize>,
        p: usize,
        q: usize,
    ) -> Option<(Range<usize>, Range<usize>, usize)> {
        let (i0, i1, shift) = self.windows().shifted_rows(self.oh, p, q)?;
        let i0 = i0.clamp(band.start, band.end) - band.start;
        let i1 = i1.clamp(band.start, band.end).max(i0 + band.start) - band.start;
        // Output k of the band is output k + start·ow of the plane.
        let shift = shift + (band.start * self.ow) as isize;
        // The flat outputs k of those rows with k + shift inside the plane.
        let plane = (self.h * self.w) as isize;
        let low = ((i0 * self.ow) as isize).max(-shift);
        let high = ((i1 * self.ow) as isize).min(plane - shift);
        if high <= low {
            return Some((i0..i1, 0..0, 0));
        }
        Some((i0..i1, low as usize..high as usize, (low + shift) as usize))
    }

    /// `cols = im2col(x)` for the channels of group `group` of one sample `x`
    /// (row-major `(channels, h, w)`) and the output rows `band`:
    /// `cols[(c·kh + p)·kw + q, (i - band.start)·ow + j]`. A tap whose rows
    /// read at one flat shift ([`Self::shifted`]) is one copy; otherwise each
    /// output row copies one run of an image row. Zeros where the window
    /// hangs over the padding.
    fn unroll<F: Real>(&self, x: &[F], group: usize, band: &Range<usize>, cols: &mut [F]) {
        let walk = self.windows();
        let (kh, kw) = self.kernel;
        let (h, w, ow, stride) = (self.h, self.w, self.ow, self.stride.1);
        let first = group * self.group_channels();
        let mut rows = cols.chunks_exact_mut(band.len() * ow);
        for c in 0..self.group_channels() {
            let plane = &x[(first + c) * h * w..][..h * w];
            for p in 0..kh {
                for q in 0..kw {
                    let row = rows.next().expect("rows() rows");
                    let (j0, j1, from) = self.inside(q);
                    if let Some((inside, run, from)) = self.shifted(band, p, q) {
                        row[run.clone()].copy_from_slice(&plane[from..from + run.len()]);
                        row[..inside.start * ow].fill(F::zero());
                        row[inside.end * ow..].fill(F::zero());
                        for line in row[inside.start * ow..inside.end * ow].chunks_exact_mut(ow) {
                            line[..j0].fill(F::zero());
                            line[j1..].fill(F::zero());
                        }
                        continue;
                    }
                    for (i, out) in band.clone().zip(row.chunks_exact_mut(ow)) {
                        let Some(r) = walk.source_row(i, p) else {
                            out.fill(F::zero());
                            continue;
                        };
                        let line = &plane[r * w..][..w];
                        out[..j0].fill(F::zero());
                        out[j1..].fill(F::zero());
                        let out = &mut out[j0..j1];
                        if out.is_empty() {
                            // `from` may lie past the row: nothing is read.
                        } else if stride == 1 {
                            out.copy_from_slice(&line[from..from + out.len()]);
                        } else {
                            for (k, out) in out.iter_mut().enumerate() {
                                *out = line[from + k * stride];
                            }
                        }
                    }
                }
            }
        }
    }

    /// `dx += col2im(cols)`: the transpose of [`Self::unroll`], adding each
    /// column entry onto the input pixel it was read from. The columns
    /// outside [`Self::inside`] of `cols` are overwritten (with zeros, so
    /// that a tap [`Self::shifted`] serves adds in one run).
    fn scatter<F: Real>(&self, cols: &mut [F], group: usize, band: &Range<usize>, dx: &mut [F]) {
        let walk = self.windows();
        let (kh, kw) = self.kernel;
        let (h, w, ow, stride) = (self.h, self.w, self.ow, self.stride.1);
        let first = group * self.group_channels();
        let mut rows = cols.chunks_exact_mut(band.len() * ow);
        for c in 0..self.group_channels() {
            let plane = &mut dx[(first + c) * h * w..][..h * w];
            for p in 0..kh {
                for q in 0..kw {
                    let row = rows.next().expect("rows() rows");
                    let (j0, j1, from) = self.inside(q);
                    if let Some((inside, run, from)) = self.shifted(band, p, q) {
                        for line in row[inside.start * ow..inside.end * ow].chunks_exact_mut(ow) {
                            line[..j0].fill(F::zero());
                            line[j1..].fill(F::zero());
                        }
                        let line = &mut plane[from..from + run.len()];
                        for (d, &v) in line.iter_mut().zip(&row[run]) {
                            *d += v;
                        }
                        continue;
                    }
                    for (i, values) in band.clone().zip(row.chunks_exact(ow)) {
                        let Some(r) = walk.source_row(i, p) else {
                            continue;
                        };
                        let line = &mut plane[r * w..][..w];
                        let values = &values[j0..j1];
                        if values.is_empty() {
                            // `from` may lie past the row: nothing is written.
                        } else if stride == 1 {
                            let line = &mut line[from..from + values.len()];
                            for (d, &v) in line.iter_mut().zip(values) {
                                *d += v;
                            }
                        } else {
                            for (k, &v) in values.iter().enumerate() {
                                line[from + k * stride] += v;
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Bytes of unrolled windows a band of output rows aims at
/// ([`Geometry::band_rows`]): a quarter of a 2 MiB L2 cache, leaving room
/// for the product's packed operands and, in backward, for `Wᵀ · g` beside
/// the windows.
const BAND_BYTES: usize = 1 << 19;

impl<F: Real> Conv2d<F> {
    /// A convolution from `in_channels` to `out_channels` with a kernel of
    /// `(kh, kw)`, its weight drawn by `init` from `rng` with PyTorch's fans
    /// (`fan_in = in_channels / groups · kh · kw`, `fan_out = out_channels ·
    /// kh · kw`), and a zero bias; stride 1, no padding, no dilation, one group.
    pub fn new<R: Rng + ?Sized>(
        in_channels: usize,
        out_channels: usize,
        (kh, kw): (usize, usize),
        init: Init,
        rng: &mut R,
    ) -> Result<Self, LayerError> {
        for (name, value) in [
            ("in_channels", in_channels),
            ("out_channels", out_channels),
            ("kernel height", kh),
            ("kernel width", kw),
        ] {
            require(NAME, name, value, value > 0, "must be at least 1")?;
        }
        let product =
            |factors: &[usize]| factors.iter().try_fold(1_usize, |p, &f| p.checked_mul(f));
        let too_large = || {
            let shape = format!("({out_channels}, {in_channels}, {kh}, {kw})");
            LayerError::invalid(NAME, "weight size", shape, "overflows the address space")
        };
        let len = product(&[out_channels, in_channels, kh, kw]).ok_or_else(too_large)?;
        let fans = (in_channels * kh * kw, out_channels * kh * kw);
        let values = init.sample(
            try_vec(len, NAME, format!("{len} weights"))?,
            len,
            fans,
            rng,
        )?;
        let weight = Array4::from_shape_vec((out_channels, in_channels, kh, kw), values)
            .expect("len weights");
        let mut conv = Self::from_parameters(weight, Some(Array1::zeros(out_channels)))?;
        conv.init = Some(init);
        Ok(conv)
    }

    /// A convolution with the given weight, `(out_channels, in_channels /
    /// groups, kh, kw)` as PyTorch stores it, and bias (one per output
    /// channel, or none); every value finite, no axis empty. One group until
    /// [`with_groups`](Self::with_groups).
    pub fn from_parameters(weight: Array4<F>, bias: Option<Array1<F>>) -> Result<Self, LayerError> {
        let shape = weight.shape().to_vec();
        require(
            NAME,
            "weight",
            format_args!("shape {shape:?}"),
            !weight.is_empty(),
            "needs every axis at least 1: (out_channels, in_channels / groups, kh, kw)",
        )?;
        require_all(
            NAME,
            "weight",
            &weight.view(),
            F::is_finite,
            "must be finite",
        )?;
        if let Some(bias) = &bias {
            LayerError::check_shape(NAME, "bias", &[shape[0]], bias.shape())?;
            require_all(NAME, "bias", &bias.view(), F::is_finite, "must be finite")?;
        }
        let weight = weight.as_standard_layout().into_owned();
        Ok(Conv2d {
            grad_weight: Array4::zeros(weight.raw_dim()),
            grad_bias: bias.as_ref().map(|b| Array1::zeros(b.len())),
            weight,
            bias,
            stride: (1, 1),
            padding: (0, 0),
            dilation: (1, 1),
            groups: 1,
            init: None,
            input: None,
            columns: Vec::new(),
            pieces: Vec::new(),
            output: None,
            grad_input: None,
        })
    }

    /// The layer with `stride = (sh, sw)`, each at least 1.
    pub fn with_stride(mut self, stride: (usize, usize)) -> Result<Self, LayerError> {
        self.stride = positive_pair("stride", stride)?;
        Ok(self)
    }

    /// The layer with `padding = (ph, pw)` zeros on each side.
    pub fn with_padding(mut self, padding: (usize, usize)) -> Result<Self, LayerError> {
        self.padding = padding;
        Ok(self)
    }

    /// The layer with `dilation = (dh, dw)` between kernel taps, each at least 1.
    pub fn with_dilation(mut self, dilation: (usize, usize)) -> Result<Self, LayerError> {
        self.dilation = positive_pair("dilation", dilation)?;
        Ok(self)
    }

    /// The layer with a bias drawn by `init` for the layer's fans as they
    /// are now (call it after [`with_groups`](Self::with_groups)), e.g.
    /// [`Init::FanInUniform`], PyTorch's `nn.Conv2d` default; a layer
    /// without a bias gets one.
    pub fn with_bias_init<R: Rng + ?Sized>(
        mut self,
        init: Init,
        rng: &mut R,
    ) -> Result<Self, LayerError> {
        let (outputs, per_group, kh, kw) = self.weight.dim();
        let fans = (per_group * kh * kw, outputs * kh * kw);
        let values = init.sample(Vec::new(), outputs, fans, rng)?;
        self.bias = Some(Array1::from(values));
        self.grad_bias = Some(Array1::zeros(outputs));
        Ok(self)
    }

    /// The layer in `groups` groups, which must divide the output channels.
    ///
    /// After [`from_parameters`](Self::from_parameters) the weight is kept
    /// and the input channels become `groups · weight.shape[1]`. After
    /// [`new`](Self::new), the input channels stay, must be divisible by
    /// `groups`, and each output channel keeps the first `in_channels /
    /// groups` input channels of its drawn weight, rescaled to the grouped
    /// fan-in so the weight has `Init`'s distribution for it.
    pub fn with_groups(mut self, groups: usize) -> Result<Self, LayerError> {
        let (outputs, per_group, kh, kw) = self.weight.dim();
        require(
            NAME,
            "groups",
            groups,
            groups > 0 && outputs.is_multiple_of(groups),
            "must be at least 1 and divide out_channels",
        )?;
        if let Some(init) = self.init {
            // `new` drew one group's worth of input channels: all of them.
            let in_channels = per_group * self.groups;
            require(
                NAME,
                "groups",
                groups,
                in_channels.is_multiple_of(groups),
                "must divide in_channels",
            )?;
            let old = (in_channels / self.groups * kh * kw, outputs * kh * kw);
            let new = (in_channels / groups * kh * kw, outputs * kh * kw);
            let factor = F::lit(init.scale(new) / init.scale(old));
            self.weight = self
                .weight
                .slice(s![.., ..in_channels / groups, .., ..])
                .mapv(|w| w * factor);
            self.grad_weight = Array4::zeros(self.weight.raw_dim());
        }
        self.groups = groups;
        Ok(self)
    }

    /// The weight, `(out_channels, in_channels / groups, kh, kw)`.
    pub fn weight(&self) -> ArrayView4<'_, F> {
        self.weight.view()
    }

    /// The bias, one per output channel, if the layer has one.
    pub fn bias(&self) -> Option<ArrayView1<'_, F>> {
        self.bias.as_ref().map(|b| b.view())
    }

    /// `dL/dW` from the last backward, in the weight's shape.
    pub fn grad_weight(&self) -> ArrayView4<'_, F> {
        self.grad_weight.view()
    }

    /// `dL/db` from the last backward, if the layer has a bias.
    pub fn grad_bias(&self) -> Option<ArrayView1<'_, F>> {
        self.grad_bias.as_ref().map(|b| b.view())
    }

    /// Input channels: `groups · weight.shape[1]`.
    pub fn in_channels(&self) -> usize {
        self.groups * self.weight.dim().1
    }

    /// Output channels.
    pub fn out_channels(&self) -> usize {
        self.weight.dim().0
    }

    /// The sizes of the convolution of an input of `shape`, or the error
    /// naming the axis that does not fit.
    fn geometry(&self, shape: &[usize]) -> Result<Geometry, LayerError> {
        let (outputs, _, kh, kw) = self.weight.dim();
        let channels = self.in_channels();
        if shape[1] != channels {
            let expected = format!(
                "[batch, {channels}, height, width]: axis 1 holds the {channels} input channels"
            );
            return Err(LayerError::shape_described(NAME, "input", expected, shape));
        }
        let overflow = || {
            let settings = format!("{:?}, {:?}", self.padding, self.dilation);
            let requirement = "overflow the address space with this input";
            LayerError::invalid(NAME, "padding and dilation", settings, requirement)
        };
        let mut size = [0; 2];
        let (kernel, stride) = ([kh, kw], [self.stride.0, self.stride.1]);
        let (padding, dilation) = (
            [self.padding.0, self.padding.1],
            [self.dilation.0, self.dilation.1],
        );
        for axis in 0..2 {
            let span = dilation[axis]
                .checked_mul(kernel[axis] - 1)
                .and_then(|s| s.checked_add(1))
                .ok_or_else(overflow)?;
            let padded = padding[axis]
                .checked_mul(2)
                .and_then(|p| p.checked_add(shape[2 + axis]))
                .ok_or_else(overflow)?;
            if padded < span {
                let what = ["height", "width"][axis];
                let expected = format!(
                    "(batch, channels, height, width) with a padded {what} of at least {span} (the dilated kernel's), found {padded}"
                );
                return Err(LayerError::shape_described(NAME, "input", expected, shape));
            }
            size[axis] = (padded - span) / stride[axis] + 1;
        }
        Ok(Geometry {
            batch: shape[0],
            channels,
            h: shape[2],
            w: shape[3],
            outputs,
            oh: size[0],
            ow: size[1],
            groups: self.groups,
            kernel: (kh, kw),
            stride: self.stride,
            padding: self.padding,
            dilation: self.dilation,
        })
    }

    /// The group's weight as a `(out / groups, in / groups · kh · kw)` matrix.
    fn group_weight(&self, geometry: &Geometry, group: usize) -> ArrayView2<'_, F> {
        let per = geometry.group_outputs();
        let all = self
            .weight
            .view()
            .into_shape_with_order((geometry.outputs, geometry.rows()))
            .expect("row-major weight");
        all.slice_move(s![group * per..(group + 1) * per, ..])
    }

    /// `y = conv(x)` for row-major `x`, into row-major `y`, with one
    /// scratch vector per piece of the batch ([`pieces`]; split across
    /// threads with the `rayon` feature).
    fn convolve(
        &self,
        geometry: &Geometry,
        x: &[F],
        keep: Option<&mut [F]>,
        y: &mut [F],
        scratch: &mut Vec<Vec<F>>,
    ) {
        if x.is_empty() || y.is_empty() {
            if let Some(keep) = keep {
                keep.copy_from_slice(x);
            }
            // No pixel to read (every window is padding) or none to write:
            // the output is the bias.
            for (plane, o) in y
                .chunks_exact_mut(geometry.pixels().max(1))
                .zip((0..geometry.outputs).cycle())
            {
                plane.fill(self.bias.as_ref().map_or(F::zero(), |b| b[o]));
            }
            return;
        }
        let per = pieces(geometry);
        scratch.resize_with(geometry.batch.div_ceil(per).max(1), Vec::new);
        let sample_in = geometry.channels * geometry.h * geometry.w;
        let sample_out = geometry.outputs * geometry.pixels();
        let work = x
            .chunks(per * sample_in)
            .zip(chunks_of(keep, per * sample_in))
            .zip(y.chunks_mut(per * sample_out))
            .zip(scratch.iter_mut());
        #[cfg(feature = "rayon")]
        {
            use rayon::prelude::*;
            let work: Vec<_> = work.collect();
            work.into_par_iter().for_each(|(((x, keep), y), cols)| {
                self.convolve_samples(geometry, x, keep, y, cols)
            });
        }
        #[cfg(not(feature = "rayon"))]
        work.for_each(|(((x, keep), y), cols)| self.convolve_samples(geometry, x, keep, y, cols));
    }

    /// [`convolve`](Self::convolve) for the samples of `x`, one after
    /// another, each copied into `keep` first if given.
    fn convolve_samples(
        &self,
        geometry: &Geometry,
        x: &[F],
        keep: Option<&mut [F]>,
        y: &mut [F],
        cols: &mut Vec<F>,
    ) {
        let (rows, pixels, ow) = (geometry.rows(), geometry.pixels(), geometry.ow);
        cols.resize(rows * geometry.band_pixels::<F>(), F::zero());
        let per = geometry.group_outputs();
        let sample_in = geometry.channels * geometry.h * geometry.w;
        let sample_out = geometry.outputs * pixels;
        let weight = self.weight.as_slice().expect("row-major weight");
        let samples = x
            .chunks_exact(sample_in.max(1))
            .zip(chunks_of(keep, sample_in.max(1)))
            .zip(y.chunks_exact_mut(sample_out.max(1)));
        for ((x, keep), y) in samples {
            if let Some(keep) = keep {
                keep.copy_from_slice(x);
            }
            if geometry.depthwise() {
                let (walk, taps, plane) = (geometry.windows(), kh_kw(geometry), h_w(geometry));
                for (o, out) in y.chunks_exact_mut(pixels).enumerate() {
                    let image = &x[(o / geometry.group_outputs()) * plane..][..plane];
                    let bias = self.bias.as_ref().map_or(F::zero(), |b| b[o]);
                    window_forward(&walk, image, &weight[o * taps..][..taps], bias, out, cols);
                }
                continue;
            }
            for (group, band) in geometry.group_bands::<F>() {
                let cols = &mut cols[..rows * band.len() * ow];
                geometry.unroll(x, group, &band, cols);
                let cols =
                    ArrayView2::from_shape((rows, band.len() * ow), &*cols).expect("rows x band");
                let out = &mut y[group * per * pixels..][..per * pixels];
                let mut out = ArrayViewMut2::from_shape((per, pixels), out).expect("per x pixels");
                let mut out = out.slice_mut(s![.., band.start * ow..band.end * ow]);
                product_into(&self.group_weight(geometry, group), &cols, &mut out, false);
            }
            if let Some(bias) = &self.bias {
                for (plane, &b) in y.chunks_exact_mut(pixels).zip(bias) {
                    plane.iter_mut().for_each(|v| *v += b);
                }
            }
        }
    }

    /// `dL/dx` and `dL/dW` for the samples of `x` and `g`: `dx` is
    /// overwritten, `dw` (`(out_channels, rows)`) overwritten by the sum over
    /// these samples.
    fn backward_samples(
        &self,
        geometry: &Geometry,
        x: &[F],
        g: &[F],
        dx: &mut [F],
        piece: &mut Piece<F>,
    ) {
        let (rows, pixels, per) = (geometry.rows(), geometry.pixels(), geometry.group_outputs());
        let sample_in = geometry.channels * geometry.h * geometry.w;
        let sample_out = geometry.outputs * pixels;
        let ow = geometry.ow;
        piece
            .cols
            .resize(rows * geometry.band_pixels::<F>(), F::zero());
        piece
            .grad_cols
            .resize(rows * geometry.band_pixels::<F>(), F::zero());
        piece.grad_weight.resize(geometry.outputs * rows, F::zero());
        piece.grad_weight.fill(F::zero());
        if !geometry.depthwise() {
            // The depthwise path writes each plane's first gradient.
            dx.fill(F::zero());
        }
        let samples = x
            .chunks_exact(sample_in.max(1))
            .zip(g.chunks_exact(sample_out.max(1)));
        let weight = self.weight.as_slice().expect("row-major weight");
        for (n, ((x, g), dx)) in samples
            .zip(dx.chunks_exact_mut(sample_in.max(1)))
            .enumerate()
        {
            if geometry.depthwise() {
                let dw = piece.grad_weight.as_mut_slice();
                let (walk, taps, plane) = (geometry.windows(), kh_kw(geometry), h_w(geometry));
                for (o, g) in g.chunks_exact(pixels).enumerate() {
                    let c = o / geometry.group_outputs();
                    let (image, grad_image) =
                        (&x[c * plane..][..plane], &mut dx[c * plane..][..plane]);
                    let (kernel, grad_kernel) =
                        (&weight[o * taps..][..taps], &mut dw[o * taps..][..taps]);
                    window_backward(
                        &walk,
                        image,
                        g,
                        kernel,
                        (grad_image, o % geometry.group_outputs() == 0),
                        grad_kernel,
                        &mut piece.cols,
                    );
                }
                continue;
            }
            for (group, band) in geometry.group_bands::<F>() {
                let band_pixels = band.len() * ow;
                let cols = &mut piece.cols[..rows * band_pixels];
                geometry.unroll(x, group, &band, cols);
                let cols =
                    ArrayView2::from_shape((rows, band_pixels), &*cols).expect("rows x band");
                let g = ArrayView2::from_shape(
                    (per, pixels),
                    &g[group * per * pixels..][..per * pixels],
                )
                .expect("per x pixels");
                let g = g.slice(s![.., band.start * ow..band.end * ow]);
                // dL/dW_groupᵀ (+)= cols · gᵀ, kept transposed (see `Piece`).
                let share = &mut piece.grad_weight[group * rows * per..][..rows * per];
                let mut dw_t = ArrayViewMut2::from_shape((rows, per), share).expect("rows x per");
                product_into(&cols, &g.t(), &mut dw_t, n > 0 || band.start > 0);
                // dL/dcols = W_groupᵀ · g, scattered onto the image.
                let grad_cols = &mut piece.grad_cols[..rows * band_pixels];
                let mut dcols = ArrayViewMut2::from_shape((rows, band_pixels), &mut *grad_cols)
                    .expect("rows x band");
                product_into(
                    &self.group_weight(geometry, group).t(),
                    &g,
                    &mut dcols,
                    false,
                );
                geometry.scatter(grad_cols, group, &band, dx);
            }
        }
    }
}

/// The greatest common divisor of `a` and `b`.
fn gcd(a: usize, b: usize) -> usize {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// `slice` in chunks of `len`, each `Some`, then `None` for ever (no slice).
fn chunks_of<F>(slice: Option<&mut [F]>, len: usize) -> impl Iterator<Item = Option<&mut [F]>> {
    let chunks = slice
        .into_iter()
        .flat_map(move |s| s.chunks_mut(len.max(1)));
    chunks.map(Some).chain(std::iter::repeat_with(|| None))
}

/// Taps of the kernel.
fn kh_kw(geometry: &Geometry) -> usize {
    geometry.kernel.0 * geometry.kernel.1
}

/// Pixels of an input plane.
fn h_w(geometry: &Geometry) -> usize {
    geometry.h * geometry.w
}

/// What one piece of the batch needs in backward: its unrolled windows,
/// their gradient, and its share of `dL/dW`.
///
/// The share is the weight's `(out_channels, rows)` matrix for a depthwise
/// convolution, and otherwise each group's `(rows, out / groups)` block
/// transposed, one group after another: `gemm` computes `cols · gᵀ` into
/// that orientation about twice as fast as `g · colsᵀ` into the weight's
/// (it packs the long `cols` along its contiguous axis), measured on the
/// 64→64 bench case; `backward_view` transposes while it sums the shares.
#[derive(Debug, Clone)]
struct Piece<F> {
    cols: Vec<F>,
    grad_cols: Vec<F>,
    grad_weight: Vec<F>,
}

impl<F> Default for Piece<F> {
    fn default() -> Self {
        Piece {
            cols: Vec::new(),
            grad_cols: Vec::new(),
            grad_weight: Vec::new(),
        }
    }
}

/// Samples a piece of the batch holds: the whole batch on one thread, an
/// even share on each with the `rayon` feature when the work is large
/// enough to repay the split (the products' threshold).
fn pieces(geometry: &Geometry) -> usize {
    let batch = geometry.batch.max(1);
    #[cfg(feature = "rayon")]
    {
        let work = geometry.outputs * geometry.rows() * geometry.pixels() * batch;
        let threads = rayon::current_num_threads();
        if threads > 1 && batch > 1 && work >= 1 << 20 && rayon::current_thread_index().is_none() {
            return batch.div_ceil(threads);
        }
    }
    batch
}

/// Room in `scratch` for `rows · pixels` elements, or the error where that
/// overflows or cannot be allocated.
fn try_scratch<F>(scratch: &mut Vec<F>, rows: usize, pixels: usize) -> Result<(), LayerError> {
    let len = rows.checked_mul(pixels);
    let fits = len.is_some_and(|len| {
        scratch
            .try_reserve(len.saturating_sub(scratch.len()))
            .is_ok()
    });
    let size = format_args!("{rows} x {pixels}");
    require(NAME, "unrolled windows", size, fits, "must fit in memory").map(drop)
}

/// `pair` if both are at least 1.
fn positive_pair(name: &'static str, pair: (usize, usize)) -> Result<(usize, usize), LayerError> {
    let valid = pair.0 > 0 && pair.1 > 0;
    require(
        NAME,
        name,
        format_args!("{pair:?}"),
        valid,
        "must be at least 1 on each axis",
    )?;
    Ok(pair)
}

impl<F: Real> Layer<F, Ix4> for Conv2d<F> {
    fn forward_view(&mut self, input: ArrayView4<'_, F>) -> Result<ArrayView4<'_, F>, LayerError> {
        let geometry = self.geometry(input.shape())?;
        // The input, row-major, kept for backward.
        // A row-major input is copied sample by sample as it is convolved
        // (read once, while in cache); any other layout is copied first.
        let mut cached = self.input.take();
        let x = reuse(&mut cached, input.raw_dim(), false);
        if input.as_slice().is_none() {
            x.assign(&input);
        }
        let (mut output, mut scratch) = (self.output.take(), std::mem::take(&mut self.columns));
        let dim = Ix4(geometry.batch, geometry.outputs, geometry.oh, geometry.ow);
        let result = try_reuse(&mut output, dim, false, NAME)
            .map(drop)
            .and_then(|()| {
                try_scratch(
                    &mut Vec::<F>::new(),
                    geometry.rows(),
                    geometry.band_pixels::<F>(),
                )
            });
        if let Err(e) = result {
            x.assign(&input);
            (self.input, self.columns) = (cached, scratch);
            return Err(e);
        }
        let y = output.as_mut().expect("filled by try_reuse");
        let ys = y.as_slice_mut().expect("row-major");
        let x = x.as_slice_mut().expect("row-major");
        match input.as_slice() {
            Some(from) => self.convolve(&geometry, from, Some(x), ys, &mut scratch),
            None => self.convolve(&geometry, x, None, ys, &mut scratch),
        }
        (self.input, self.output, self.columns) = (cached, output, scratch);
        Ok(self.output.as_ref().expect("filled by try_reuse").view())
    }

    fn backward_view(
        &mut self,
        grad_output: ArrayView4<'_, F>,
    ) -> Result<ArrayView4<'_, F>, LayerError> {
        let input = self
            .input
            .as_ref()
            .ok_or(LayerError::BackwardBeforeForward { layer: NAME })?;
        let geometry = self.geometry(input.shape())?;
        let expected = [geometry.batch, geometry.outputs, geometry.oh, geometry.ow];
        LayerError::check_shape(NAME, "grad_output", &expected, grad_output.shape())?;
        let g = grad_output.as_standard_layout();
        let gs = g.as_slice().expect("row-major");
        let pixels = geometry.pixels();
        let sample_in = geometry.channels * geometry.h * geometry.w;
        let sample_out = geometry.outputs * pixels;
        let xs = input.as_slice().expect("row-major");
        let mut grad_input = self.grad_input.take();
        let dx = reuse(&mut grad_input, input.raw_dim(), false);
        let dxs = dx.as_slice_mut().expect("row-major");
        let per = pieces(&geometry);
        let mut pieces = std::mem::take(&mut self.pieces);
        let used = if xs.is_empty() || gs.is_empty() {
            // No pixel or no output: every product is empty.
            dxs.fill(F::zero());
            0
        } else {
            pieces.resize_with(geometry.batch.div_ceil(per), Piece::default);
            let work = xs
                .chunks(per * sample_in)
                .zip(gs.chunks(per * sample_out))
                .zip(dxs.chunks_mut(per * sample_in))
                .zip(pieces.iter_mut());
            #[cfg(feature = "rayon")]
            {
                use rayon::prelude::*;
                let work: Vec<_> = work.collect();
                work.into_par_iter().for_each(|(((x, g), dx), piece)| {
                    self.backward_samples(&geometry, x, g, dx, piece)
                });
            }
            #[cfg(not(feature = "rayon"))]
            work.for_each(|(((x, g), dx), piece)| {
                self.backward_samples(&geometry, x, g, dx, piece)
            });
            geometry.batch.div_ceil(per)
        };
        // dL/dW: the pieces' shares, summed in order (the same sum on any
        // number of threads for a given split).
        let grad_weight = self.grad_weight.as_slice_mut().expect("row-major gradient");
        grad_weight.fill(F::zero());
        let (rows, per) = (geometry.rows(), geometry.group_outputs());
        for piece in &pieces[..used] {
            if geometry.depthwise() {
                for (total, &share) in grad_weight.iter_mut().zip(&piece.grad_weight) {
                    *total += share;
                }
                continue;
            }
            let groups = grad_weight.chunks_exact_mut(per * rows);
            for (totals, shares) in groups.zip(piece.grad_weight.chunks_exact(rows * per)) {
                for (o, totals) in totals.chunks_exact_mut(rows).enumerate() {
                    for (total, &share) in totals.iter_mut().zip(shares[o..].iter().step_by(per)) {
                        *total += share;
                    }
                }
            }
        }
        if let Some(grad_bias) = &mut self.grad_bias {
            grad_bias.fill(F::zero());
            for sample in gs.chunks_exact(sample_out.max(1)) {
                for (b, plane) in grad_bias.iter_mut().zip(sample.chunks_exact(pixels.max(1))) {
                    *b += crate::kernels::total(plane);
                }
            }
        }
        (self.pieces, self.grad_input) = (pieces, grad_input);
        Ok(self.grad_input.as_ref().expect("filled by reuse").view())
    }

    fn infer(&self, input: ArrayView4<'_, F>) -> Result<Array4<F>, LayerError> {
        let geometry = self.geometry(input.shape())?;
        let x = input.as_standard_layout();
        let dim = Ix4(geometry.batch, geometry.outputs, geometry.oh, geometry.ow);
        let mut output = None;
        try_reuse(&mut output, dim, false, NAME)?;
        try_scratch(
            &mut Vec::<F>::new(),
            geometry.rows(),
            geometry.band_pixels::<F>(),
        )?;
        let mut y = output.expect("filled by try_reuse");
        let (xs, ys) = (
            x.as_slice().expect("row-major"),
            y.as_slice_mut().expect("row-major"),
        );
        self.convolve(&geometry, xs, None, ys, &mut Vec::new());
        Ok(y)
    }
}

/// `weight` `(out_channels, in_channels / groups, kh, kw)` and, if the layer has one, `bias`.
impl<F: Real> StateDict<F> for Conv2d<F> {
    fn visit_state(&self, prefix: &Name<'_>, visit: &mut dyn FnMut(&Name<'_>, Entry<'_, F>)) {
        let weight = Entry::parameter(self.weight.view(), self.grad_weight.view());
        visit_fields(prefix, visit, [("weight", weight)]);
        if let (Some(bias), Some(grad)) = (&self.bias, &self.grad_bias) {
            visit_fields(
                prefix,
                visit,
                [("bias", Entry::parameter(bias.view(), grad.view()))],
            );
        }
    }

    fn visit_state_mut(
        &mut self,
        prefix: &Name<'_>,
        visit: &mut dyn FnMut(&Name<'_>, EntryMut<'_, F>),
    ) {
        let weight = EntryMut::parameter(self.weight.view_mut(), self.grad_weight.view_mut());
        visit_fields_mut(prefix, visit, [("weight", weight)]);
        if let (Some(bias), Some(grad)) = (&mut self.bias, &mut self.grad_bias) {
            let bias = EntryMut::parameter(bias.view_mut(), grad.view_mut());
            visit_fields_mut(prefix, visit, [("bias", bias)]);
        }
    }
}

impl<F: Real> Clone for Conv2d<F> {
    /// The parameters and settings; caches start empty.
    fn clone(&self) -> Self {
        Conv2d {
            weight: self.weight.clone(),
            bias: self.bias.clone(),
            grad_weight: self.grad_weight.clone(),
            grad_bias: self.grad_bias.clone(),
            stride: self.stride,
            padding: self.padding,
            dilation: self.dilation,
            groups: self.groups,
            init: self.init,
            input: None,
            columns: Vec::new(),
            pieces: Vec::new(),
            output: None,
            grad_input: None,
        }
    }
}

impl<F: Real> fmt::Debug for Conv2d<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct(NAME)
            .field("in_channels", &self.in_channels())
            .field("out_channels", &self.out_channels())
            .field("kernel", &(self.weight.dim().2, self.weight.dim().3))
            .field("stride", &self.stride)
            .field("padding", &self.padding)
            .field("dilation", &self.dilation)
            .field("groups", &self.groups)
            .field("bias", &self.bias.is_some())
            .finish_non_exhaustive()
    }
}

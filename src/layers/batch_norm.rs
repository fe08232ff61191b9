//! Batch normalisation over the channel axis: [`BatchNorm1d`] for
//! `(batch, features)` rows, [`BatchNorm2d`] for `(batch, channels, h, w)`
//! images, one implementation, as PyTorch's `nn.BatchNorm1d`/`nn.BatchNorm2d`.

use std::fmt;

use ndarray::{
    Array, Array0, Array1, ArrayView, ArrayView1, Axis, Dimension, Ix2, Ix4, RemoveAxis,
};

use crate::buffer::{reuse, try_vec};
use crate::error::{LayerError, require};
use crate::kernels::{
    grad_sums_f64, normalize, normalize_backward, squared_deviations_f64, sum_f64,
};
use crate::layer::Layer;
use crate::real::Real;
use crate::state::{Entry, EntryMut, Name, StateDict, visit_fields, visit_fields_mut};

/// Batch normalisation of axis 1 (the channels), statistics over every other
/// axis, as PyTorch's `_BatchNorm`. For channel `c`, with `n` values per
/// channel in the batch:
/// ```text
/// training:   μ = mean(x_c),  σ² = mean((x_c - μ)²)          (biased: normalises)
///             y = (x - μ) / √(σ² + ε) · γ_c + β_c
///             running_mean ← (1 - m) running_mean + m μ
///             running_var  ← (1 - m) running_var  + m σ² n / (n - 1)   (unbiased)
///             num_batches_tracked ← num_batches_tracked + 1
/// evaluation: y = (x - running_mean) / √(running_var + ε) · γ_c + β_c
/// ```
/// Backward in training, with `x̂ = (x - μ)/√(σ² + ε)` and sums over the channel:
/// `dL/dx = γ/√(σ² + ε) · (g - Σg/n - x̂ Σ(g x̂)/n)`, `dL/dγ = Σ g x̂`,
/// `dL/dβ = Σ g`; in evaluation the statistics are constants and
/// `dL/dx = g γ / √(running_var + ε)`.
///
/// The sums are accumulated in `f64` whatever `F` is. Training with one value
/// per channel (`n = 1`, where the unbiased variance is undefined) is an
/// error, as in PyTorch. [`infer`](Layer::infer) always uses the running
/// statistics and changes nothing. State, as PyTorch names it: `weight` (γ,
/// ones) and `bias` (β, zeros) are parameters; `running_mean` (zeros),
/// `running_var` (ones) and `num_batches_tracked` (an `i64`) are buffers.
///
/// # Example
/// ```
/// use ndlayers::prelude::*;
/// use ndlayers::ndarray::{Array4, Axis};
///
/// let x = Array4::from_shape_fn((4, 2, 3, 3), |(b, c, i, j)| (b + 3 * c + i * j) as f32);
/// let mut bn = BatchNorm2d::new(2)?;
/// let y = bn.forward(x.view())?;
/// // Each channel of the output has mean 0 and (biased) variance 1, up to ε.
/// let channel = y.index_axis(Axis(1), 1);
/// assert!(channel.mean().unwrap().abs() < 1e-5);
/// assert!((channel.mapv(|v| v * v).mean().unwrap() - 1.0).abs() < 1e-3);
/// assert_eq!(bn.num_batches_tracked(), 1);
/// bn.set_training(false); // now the running statistics
/// # Ok::<(), LayerError>(())
/// ```
pub struct BatchNorm<F, D: Dimension> {
    weight: Array1<F>,
    bias: Array1<F>,
    grad_weight: Array1<F>,
    grad_bias: Array1<F>,
    running_mean: Array1<F>,
    running_var: Array1<F>,
    num_batches_tracked: Array0<i64>,
    eps: F,
    momentum: F,
    training: bool,
    /// `x̂` of the last forward, and whether it used the batch's statistics.
    normalized: Option<Array<F, D>>,
    batch_statistics: bool,
    /// The mean and `1/√(σ² + ε)` per channel, of the statistics the last forward used.
    mean: Vec<F>,
    rstd: Vec<F>,
    output: Option<Array<F, D>>,
    grad_input: Option<Array<F, D>>,
}

/// Batch normalisation of `(batch, features)` rows, PyTorch's `nn.BatchNorm1d`.
pub type BatchNorm1d<F> = BatchNorm<F, Ix2>;
/// Batch normalisation of `(batch, channels, height, width)` images, PyTorch's `nn.BatchNorm2d`.
pub type BatchNorm2d<F> = BatchNorm<F, Ix4>;

/// PyTorch's defaults.
const DEFAULT_EPS: f64 = 1e-5;
const DEFAULT_MOMENTUM: f64 = 0.1;

impl<F, D: Dimension> BatchNorm<F, D> {
    /// The layer's name in errors: PyTorch's class name for the dimension.
    fn name() -> &'static str {
        match D::NDIM {
            Some(2) => "BatchNorm1d",
            Some(4) => "BatchNorm2d",
            _ => "BatchNorm",
        }
    }
}

impl<F: Real, D: RemoveAxis> BatchNorm<F, D> {
    /// Normalises `channels ≥ 1` channels, with PyTorch's `eps = 1e-5` and
    /// `momentum = 0.1`, in training mode.
    pub fn new(channels: usize) -> Result<Self, LayerError> {
        require(
            Self::name(),
            "channels",
            channels,
            channels > 0,
            "must be at least 1",
        )?;
        let filled = |value: F| -> Result<Array1<F>, LayerError> {
            let mut v = try_vec(channels, Self::name(), format!("{channels} channels"))?;
            v.resize(channels, value);
            Ok(Array1::from_vec(v))
        };
        Ok(BatchNorm {
            weight: filled(F::ONE)?,
            bias: filled(F::zero())?,
            grad_weight: filled(F::zero())?,
            grad_bias: filled(F::zero())?,
            running_mean: filled(F::zero())?,
            running_var: filled(F::ONE)?,
            num_batches_tracked: Array0::zeros(()),
            eps: F::lit(DEFAULT_EPS),
            momentum: F::lit(DEFAULT_MOMENTUM),
            training: true,
            normalized: None,
            batch_statistics: true,
            mean: Vec::new(),
            rstd: Vec::new(),
            output: None,
            grad_input: None,
        })
    }

    /// The layer with `eps` (positive and finite) added to the variance.
    pub fn with_eps(mut self, eps: F) -> Result<Self, LayerError> {
        let valid = eps > F::zero() && eps.is_finite();
        self.eps = require(
            Self::name(),
            "eps",
            eps,
            valid,
            "must be positive and finite",
        )?;
        Ok(self)
    }

    /// The layer with the running statistics' `momentum` in `[0, 1]`.
    pub fn with_momentum(mut self, momentum: F) -> Result<Self, LayerError> {
        let valid = momentum >= F::zero() && momentum <= F::ONE;
        self.momentum = require(
            Self::name(),
            "momentum",
            momentum,
            valid,
            "must be in [0, 1]",
        )?;
        Ok(self)
    }

    /// Number of channels.
    pub fn channels(&self) -> usize {
        self.weight.len()
    }

    /// The scale `γ`.
    pub fn weight(&self) -> ArrayView1<'_, F> {
        self.weight.view()
    }

    /// The shift `β`.
    pub fn bias(&self) -> ArrayView1<'_, F> {
        self.bias.view()
    }

    /// `dL/dγ` from the last backward.
    pub fn grad_weight(&self) -> ArrayView1<'_, F> {
        self.grad_weight.view()
    }

    /// `dL/dβ` from the last backward.
    pub fn grad_bias(&self) -> ArrayView1<'_, F> {
        self.grad_bias.view()
    }

    /// The running mean, which evaluation normalises with.
    pub fn running_mean(&self) -> ArrayView1<'_, F> {
        self.running_mean.view()
    }

    /// The running (unbiased) variance, which evaluation normalises with.
    pub fn running_var(&self) -> ArrayView1<'_, F> {
        self.running_var.view()
    }

    /// Training forwards so far (PyTorch's `num_batches_tracked`).
    pub fn num_batches_tracked(&self) -> i64 {
        self.num_batches_tracked[()]
    }

    /// Whether the layer is in training mode.
    pub fn is_training(&self) -> bool {
        self.training
    }

    /// Checks the input's channels, and in training that each channel has
    /// more than one value; returns the values per channel.
    fn check(&self, input: &ArrayView<'_, F, D>, training: bool) -> Result<usize, LayerError> {
        let channels = self.channels();
        let shape = input.shape();
        if shape.get(1) != Some(&channels) {
            let mut expected = vec!["batch".to_string(); shape.len().max(2)];
            expected[1] = channels.to_string();
            let expected = format!(
                "[{}]: axis 1 holds the {channels} channels",
                expected.join(", ")
            );
            return Err(LayerError::shape_described(
                Self::name(),
                "input",
                expected,
                shape,
            ));
        }
        let n = input.len() / channels;
        if training && n <= 1 && !input.is_empty() {
            return Err(LayerError::shape_described(
                Self::name(),
                "input",
                "more than 1 value per channel in training (batch × spatial size > 1)".into(),
                shape,
            ));
        }
        Ok(n)
    }

    /// `(mean, 1/√(var + ε))` of channel `c`: the batch's (updating the
    /// running statistics; `xs` is the input in row-major order, `n` values
    /// per channel, `inner` per sample and channel) or the running ones.
    fn statistics(&mut self, c: usize, xs: &[F], n: usize, inner: usize) -> (F, F) {
        // An empty batch has no statistics: it is normalised (to nothing)
        // with the running ones, which it leaves as they were.
        if !self.training || n == 0 {
            let rstd = F::ONE / (self.running_var[c] + self.eps).sqrt();
            return (self.running_mean[c], rstd);
        }
        // Two passes in f64: the mean, then the squares about it (the
        // second from cache: a channel's planes are a few hundred KiB at most
        // in the CNNs this is for).
        let planes = || channel_planes(xs, self.channels(), inner, c);
        let mean = planes().map(sum_f64).sum::<f64>() / n as f64;
        let var = planes()
            .map(|p| squared_deviations_f64(p, mean))
            .sum::<f64>()
            / n as f64;
        let (m, keep) = (self.momentum, F::ONE - self.momentum);
        let unbiased = var * n as f64 / (n - 1) as f64;
        self.running_mean[c] = m * F::lit(mean) + keep * self.running_mean[c];
        self.running_var[c] = m * F::lit(unbiased) + keep * self.running_var[c];
        let rstd = 1.0 / (var + self.eps.to_f64().unwrap_or(0.0)).sqrt();
        (F::lit(mean), F::lit(rstd))
    }
}

/// Values per sample and channel of an input of `shape` `(batch, channels, …)`.
fn plane_size(shape: &[usize]) -> usize {
    shape.iter().skip(2).product()
}

/// The planes of channel `c` in a row-major `(batch, channels, …)` array
/// with `inner` values per sample and channel: one contiguous slice a sample.
fn channel_planes<T>(
    xs: &[T],
    channels: usize,
    inner: usize,
    c: usize,
) -> impl Iterator<Item = &[T]> {
    xs.chunks_exact(inner.max(1))
        .skip(c)
        .step_by(channels.max(1))
}

impl<F: Real, D: RemoveAxis> Layer<F, D> for BatchNorm<F, D> {
    fn forward_view(
        &mut self,
        input: ArrayView<'_, F, D>,
    ) -> Result<ArrayView<'_, F, D>, LayerError> {
        let n = self.check(&input, self.training)?;
        // Row-major planes: borrowed when the input is, else one copy.
        let x = input.as_standard_layout();
        let xs = x.as_slice().expect("standard layout");
        let (channels, inner) = (self.channels(), plane_size(input.shape()));
        // Out of `self` while `statistics` updates the running ones.
        let (mut normalized, mut output) = (self.normalized.take(), self.output.take());
        let (xhats, ys) = (
            reuse(&mut normalized, input.raw_dim(), false)
                .as_slice_mut()
                .expect("row-major buffer"),
            reuse(&mut output, input.raw_dim(), false)
                .as_slice_mut()
                .expect("row-major buffer"),
        );
        self.mean.clear();
        self.rstd.clear();
        // Channel by channel: its statistics, then its planes normalised
        // while they are still in cache.
        for c in 0..channels {
            let (mean, rstd) = self.statistics(c, xs, n, inner);
            self.mean.push(mean);
            self.rstd.push(rstd);
            let (w, b) = (self.weight[c], self.bias[c]);
            let planes = xhats
                .chunks_exact_mut(inner.max(1))
                .skip(c)
                .step_by(channels.max(1))
                .zip(
                    ys.chunks_exact_mut(inner.max(1))
                        .skip(c)
                        .step_by(channels.max(1)),
                )
                .zip(channel_planes(xs, channels, inner, c));
            for ((xhat, y), x) in planes {
                normalize(x, (mean, rstd), (w, b), xhat, y);
            }
        }
        if self.training && n > 0 {
            self.num_batches_tracked[()] += 1;
        }
        (self.normalized, self.output) = (normalized, output);
        self.batch_statistics = self.training;
        Ok(self.output.as_ref().expect("filled by reuse").view())
    }

    fn backward_view(
        &mut self,
        grad_output: ArrayView<'_, F, D>,
    ) -> Result<ArrayView<'_, F, D>, LayerError> {
        let name = Self::name();
        let normalized = self
            .normalized
            .as_ref()
            .ok_or(LayerError::BackwardBeforeForward { layer: name })?;
        LayerError::check_shape(name, "grad_output", normalized.shape(), grad_output.shape())?;
        let channels = self.channels();
        let inner = plane_size(normalized.shape());
        let n = (normalized.len() / channels).max(1) as f64;
        let g = grad_output.as_standard_layout();
        let (gs, xhats) = (
            g.as_slice().expect("standard layout"),
            normalized.as_slice().expect("row-major buffer"),
        );
        let grad_input = reuse(&mut self.grad_input, normalized.raw_dim(), false);
        let dxs = grad_input.as_slice_mut().expect("row-major buffer");
        // Channel by channel: Σ g and Σ g·x̂ over its planes in f64, then
        // its dx while those planes are still in cache.
        for c in 0..channels {
            let (mut sum_g, mut sum_gx) = (0.0, 0.0);
            for (g, xhat) in channel_planes(gs, channels, inner, c)
                .zip(channel_planes(xhats, channels, inner, c))
            {
                let (a, b) = grad_sums_f64(g, xhat);
                sum_g += a;
                sum_gx += b;
            }
            self.grad_bias[c] = F::lit(sum_g);
            self.grad_weight[c] = F::lit(sum_gx);
            let scale = self.weight[c] * self.rstd[c];
            let (mean_g, mean_gx) = (F::lit(sum_g / n), F::lit(sum_gx / n));
            let planes = dxs
                .chunks_exact_mut(inner.max(1))
                .skip(c)
                .step_by(channels.max(1))
                .zip(channel_planes(gs, channels, inner, c))
                .zip(channel_planes(xhats, channels, inner, c));
            let means = self.batch_statistics.then_some((mean_g, mean_gx));
            for ((dx, g), xhat) in planes {
                normalize_backward(g, xhat, scale, means, dx);
            }
        }
        Ok(grad_input.view())
    }

    fn infer(&self, input: ArrayView<'_, F, D>) -> Result<Array<F, D>, LayerError> {
        self.check(&input, false)?;
        let mut output = input.to_owned();
        for (c, mut lane) in output.axis_iter_mut(Axis(1)).enumerate() {
            let rstd = F::ONE / (self.running_var[c] + self.eps).sqrt();
            let (mean, w, b) = (self.running_mean[c], self.weight[c], self.bias[c]);
            lane.mapv_inplace(|x| (x - mean) * rstd * w + b);
        }
        Ok(output)
    }

    fn set_training(&mut self, training: bool) {
        self.training = training;
    }
}

impl<F: Real, D: Dimension> StateDict<F> for BatchNorm<F, D> {
    fn visit_state(&self, prefix: &Name<'_>, visit: &mut dyn FnMut(&Name<'_>, Entry<'_, F>)) {
        let weight = Entry::parameter(self.weight.view(), self.grad_weight.view());
        let bias = Entry::parameter(self.bias.view(), self.grad_bias.view());
        let mean = Entry::Buffer(self.running_mean.view().into_dyn());
        let var = Entry::Buffer(self.running_var.view().into_dyn());
        let count = Entry::IntBuffer(self.num_batches_tracked.view().into_dyn());
        let fields = [("weight", weight), ("bias", bias), ("running_mean", mean)];
        visit_fields(prefix, visit, fields);
        visit_fields(
            prefix,
            visit,
            [("running_var", var), ("num_batches_tracked", count)],
        );
    }

    fn visit_state_mut(
        &mut self,
        prefix: &Name<'_>,
        visit: &mut dyn FnMut(&Name<'_>, EntryMut<'_, F>),
    ) {
        let weight = EntryMut::parameter(self.weight.view_mut(), self.grad_weight.view_mut());
        let bias = EntryMut::parameter(self.bias.view_mut(), self.grad_bias.view_mut());
        let mean = EntryMut::Buffer(self.running_mean.view_mut().into_dyn());
        let var = EntryMut::Buffer(self.running_var.view_mut().into_dyn());
        let count = EntryMut::IntBuffer(self.num_batches_tracked.view_mut().into_dyn());
        let fields = [("weight", weight), ("bias", bias), ("running_mean", mean)];
        visit_fields_mut(prefix, visit, fields);
        visit_fields_mut(
            prefix,
            visit,
            [("running_var", var), ("num_batches_tracked", count)],
        );
    }
}

impl<F: Real, D: Dimension> Clone for BatchNorm<F, D> {
    /// The parameters, statistics and settings; caches start empty.
    fn clone(&self) -> Self {
        BatchNorm {
            weight: self.weight.clone(),
            bias: self.bias.clone(),
            grad_weight: self.grad_weight.clone(),
            grad_bias: self.grad_bias.clone(),
            running_mean: self.running_mean.clone(),
            running_var: self.running_var.clone(),
            num_batches_tracked: self.num_batches_tracked.clone(),
            eps: self.eps,
            momentum: self.momentum,
            training: self.training,
            normalized: None,
            batch_statistics: true,
            mean: Vec::new(),
            rstd: Vec::new(),
            output: None,
            grad_input: None,
        }
    }
}

impl<F: Real, D: Dimension> fmt::Debug for BatchNorm<F, D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct(Self::name())
            .field("channels", &self.weight.len())
            .field("eps", &self.eps)
            .field("momentum", &self.momentum)
            .field("training", &self.training)
            .finish_non_exhaustive()
    }
}

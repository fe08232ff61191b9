//! Shared by the `digits` example, its integration test and the training-step
//! bench: loading the UCI digits, and a 64-128-10 ReLU MLP with its training step.
#![allow(dead_code)] // each user takes the part it needs

use std::error::Error;
use std::fs::File;
use std::io::Read;
use std::path::Path;

use flate2::read::GzDecoder;
use ndlayers::ndarray::{Array1, Array2, ArrayView1, ArrayView2, Axis};
use ndlayers::prelude::*;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

/// Where the digits live inside the crate (with their attribution beside them).
pub const DIGITS_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/data/digits.csv.gz");

/// Pixel values run from 0 to 16.
const PIXEL_MAX: f32 = 16.0;
const PIXELS: usize = 64;
pub const CLASSES: usize = 10;

/// A set of images, one per row, with their labels.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// `(samples, 64)`, pixels scaled to `[0, 1]`.
    pub features: Array2<f32>,
    /// The digit shown, `0..10`.
    pub labels: Array1<usize>,
}

impl Dataset {
    /// The rows at `indices`, in that order.
    pub fn select(&self, indices: &[usize]) -> Dataset {
        Dataset {
            features: self.features.select(Axis(0), indices),
            labels: self.labels.select(Axis(0), indices),
        }
    }

    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Splits into `(train, test)` with `train_fraction` of the rows, shuffled by `seed`.
    pub fn split(&self, train_fraction: f64, seed: u64) -> (Dataset, Dataset) {
        let mut order: Vec<usize> = (0..self.len()).collect();
        order.shuffle(&mut StdRng::seed_from_u64(seed));
        let cut = (self.len() as f64 * train_fraction).round() as usize;
        (self.select(&order[..cut]), self.select(&order[cut..]))
    }
}

/// Reads the gzip-compressed CSV: 64 pixel counts and a label per line.
pub fn load_digits(path: impl AsRef<Path>) -> Result<Dataset, Box<dyn Error>> {
    let path = path.as_ref();
    let mut text = String::new();
    GzDecoder::new(File::open(path).map_err(|e| format!("{}: {e}", path.display()))?)
        .read_to_string(&mut text)?;
    let mut pixels = Vec::new();
    let mut labels = Vec::new();
    for (n, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let fields: Vec<&str> = line.split(',').collect();
        if fields.len() != PIXELS + 1 {
            return Err(format!(
                "line {}: {} fields, expected {}",
                n + 1,
                fields.len(),
                PIXELS + 1
            )
            .into());
        }
        for field in &fields[..PIXELS] {
            pixels.push(field.trim().parse::<f32>()? / PIXEL_MAX);
        }
        let label: usize = fields[PIXELS].trim().parse()?;
        if label >= CLASSES {
            return Err(format!("line {}: label {label} is not a digit", n + 1).into());
        }
        labels.push(label);
    }
    Ok(Dataset {
        features: Array2::from_shape_vec((labels.len(), PIXELS), pixels)?,
        labels: Array1::from(labels),
    })
}

/// `64 → Dense(128) → ReLU → Dense(10) → softmax cross-entropy`.
#[derive(Debug, Clone)]
pub struct Mlp {
    pub hidden: Dense<f32>,
    pub relu: Relu<f32, ndlayers::ndarray::Ix2>,
    pub output: Dense<f32>,
    pub loss: SoftmaxCrossEntropy<f32>,
}

impl Mlp {
    /// He initialisation for the ReLU layer, Glorot for the output, from `seed`.
    pub fn new(hidden: usize, seed: u64) -> Result<Self, LayerError> {
        let mut rng = StdRng::seed_from_u64(seed);
        Ok(Mlp {
            hidden: Dense::new(PIXELS, hidden, Init::HeNormal, &mut rng)?,
            relu: Relu::new(),
            output: Dense::new(hidden, CLASSES, Init::GlorotUniform, &mut rng)?,
            loss: SoftmaxCrossEntropy::new(),
        })
    }

    /// One step of mini-batch SGD; returns the batch's mean loss before the update.
    ///
    /// Uses the layers' view methods, so once the batch size is stable the
    /// step allocates nothing but the packing memory of the matrix products.
    pub fn train_step(
        &mut self,
        x: ArrayView2<'_, f32>,
        labels: ArrayView1<'_, usize>,
        sgd: &mut Sgd<f32>,
    ) -> Result<f32, LayerError> {
        let h = self.hidden.forward_view(x)?;
        let a = self.relu.forward_view(h)?;
        let logits = self.output.forward_view(a)?;
        let loss = self.loss.forward(logits, labels)?;
        let da = self.output.backward_view(self.loss.backward_view()?)?;
        let dh = self.relu.backward_view(da)?;
        self.hidden.backward_parameters(dh)?; // nobody reads dL/dx of the pixels
        sgd.step(&mut [&mut self.hidden, &mut self.output])?;
        Ok(loss)
    }

    /// The most likely class of each row, through `&self`: the training
    /// caches and buffers are left alone.
    pub fn predict(&self, x: ArrayView2<'_, f32>) -> Result<Array1<usize>, LayerError> {
        let mut h = self.hidden.infer(x)?;
        self.relu.infer_in_place(h.view_mut());
        let logits = self.output.infer(h.view())?;
        Ok(argmax_rows(logits.view()))
    }

    /// Fraction of `data` classified correctly.
    pub fn accuracy(&self, data: &Dataset) -> Result<f64, LayerError> {
        Ok(accuracy(
            self.predict(data.features.view())?.view(),
            data.labels.view(),
        ))
    }
}

/// The index of each row's largest value.
pub fn argmax_rows(logits: ArrayView2<'_, f32>) -> Array1<usize> {
    logits
        .rows()
        .into_iter()
        .map(|row| {
            row.iter()
                .enumerate()
                .fold((0, f32::NEG_INFINITY), |best, (i, &v)| {
                    if v > best.1 { (i, v) } else { best }
                })
                .0
        })
        .collect()
}

/// Fraction of `predicted` equal to `labels`.
pub fn accuracy(predicted: ArrayView1<'_, usize>, labels: ArrayView1<'_, usize>) -> f64 {
    let correct = predicted
        .iter()
        .zip(&labels)
        .filter(|(p, t)| p == t)
        .count();
    correct as f64 / labels.len().max(1) as f64
}

/// What one epoch of training measured.
#[derive(Debug, Clone, Copy)]
pub struct EpochStats {
    pub loss: f32,
    pub train_accuracy: f64,
    pub test_accuracy: f64,
}

/// Trains for one epoch over `train` in shuffled mini-batches, then evaluates.
pub fn train_epoch(
    model: &mut Mlp,
    sgd: &mut Sgd<f32>,
    train: &Dataset,
    test: &Dataset,
    batch_size: usize,
    rng: &mut StdRng,
) -> Result<EpochStats, LayerError> {
    let mut order: Vec<usize> = (0..train.len()).collect();
    order.shuffle(rng);
    let (mut loss_sum, mut batches) = (0.0, 0);
    // Drop the ragged last batch, so every step sees the same shape and reuses its buffers.
    for indices in order.chunks_exact(batch_size) {
        let batch = train.select(indices);
        loss_sum += model.train_step(batch.features.view(), batch.labels.view(), sgd)?;
        batches += 1;
    }
    Ok(EpochStats {
        loss: loss_sum / batches.max(1) as f32,
        train_accuracy: model.accuracy(train)?,
        test_accuracy: model.accuracy(test)?,
    })
}

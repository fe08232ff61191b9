//! Shared by the examples, the digits integration test and the training-step
//! bench: what is not a crate feature. Loading the UCI digits (a CSV of this
//! repository), and the 64-128-10 ReLU MLP of the test and the bench, written
//! as separate layers, with its training step.
#![allow(dead_code)] // each user takes the part it needs

use std::error::Error;
use std::fs::File;
use std::io::Read;
use std::path::Path;

use flate2::read::GzDecoder;
use ndlayers::data::{Batches, shuffled_split};
use ndlayers::metrics::{accuracy, argmax_rows};
use ndlayers::ndarray::{Array1, Array2, ArrayView1, ArrayView2, Axis};
use ndlayers::prelude::*;
use rand::SeedableRng;
use rand::rngs::StdRng;

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

    /// Splits into `(train, test)`, holding out `test_fraction` of the rows,
    /// shuffled by `seed` (the crate's `shuffled_split`).
    pub fn split(&self, test_fraction: f64, seed: u64) -> Result<(Dataset, Dataset), LayerError> {
        let (train, test) = shuffled_split(self.len(), test_fraction, seed)?;
        Ok((self.select(&train), self.select(&test)))
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
        argmax_rows(logits.view())
    }

    /// Fraction of `data` classified correctly.
    pub fn accuracy(&self, data: &Dataset) -> Result<f64, LayerError> {
        accuracy(
            self.predict(data.features.view())?.view(),
            data.labels.view(),
        )
    }
}

/// What one epoch of training measured.
#[derive(Debug, Clone, Copy)]
pub struct EpochStats {
    pub loss: f32,
    pub train_accuracy: f64,
    pub test_accuracy: f64,
}

/// Trains for epoch `epoch` over `train` in mini-batches shuffled by `seed`
/// (the ragged last batch dropped, so every step has one shape and reuses
/// its buffers), then evaluates.
pub fn train_epoch(
    model: &mut Mlp,
    sgd: &mut Sgd<f32>,
    (train, test): (&Dataset, &Dataset),
    batch_size: usize,
    (seed, epoch): (u64, u64),
) -> Result<EpochStats, LayerError> {
    let mut batches = Batches::new(train.features.view(), train.labels.view(), batch_size)?
        .with_shuffle(seed)
        .with_drop_last(true);
    batches.set_epoch(epoch);
    let (mut loss_sum, mut count) = (0.0, 0);
    while let Some((x, labels)) = batches.next_batch() {
        loss_sum += model.train_step(x, labels, sgd)?;
        count += 1;
    }
    Ok(EpochStats {
        loss: loss_sum / count.max(1) as f32,
        train_accuracy: model.accuracy(train)?,
        test_accuracy: model.accuracy(test)?,
    })
}

//! A hand-written sigmoid MLP, ported onto ndlayers: 64-512-512-10 on the
//! UCI digits, built as a `Sequential`, trained allocation-free on one-hot
//! targets (as the original network stored them) and evaluated through `&self`.
//!
//! `cargo run --release --example port`
//!
//! The steady-state training step allocates only inside the matrix products
//! (`tests/allocations.rs` counts it); evaluating the test set between
//! epochs leaves the training caches and buffers as they were.

mod support;

use std::error::Error;
use std::time::Instant;

use ndlayers::metrics::{accuracy, argmax_rows};
use ndlayers::ndarray::{Array2, Axis};
use ndlayers::prelude::*;
use ndlayers::rand::SeedableRng;
use ndlayers::rand::rngs::StdRng;
use ndlayers::rand::seq::SliceRandom;
use support::{CLASSES, DIGITS_PATH, Dataset, load_digits};

const SEED: u64 = 7;
const HIDDEN: usize = 512;
const EPOCHS: usize = 30;
const BATCH: usize = 32;
const LEARNING_RATE: f32 = 0.1;
const MOMENTUM: f32 = 0.9;

/// One row per sample, 1 in the column of its label.
fn one_hot(data: &Dataset) -> Array2<f32> {
    let mut targets = Array2::zeros((data.len(), CLASSES));
    for (mut row, &label) in targets.rows_mut().into_iter().zip(&data.labels) {
        row[label] = 1.0;
    }
    targets
}

fn main() -> Result<(), Box<dyn Error>> {
    let data = load_digits(DIGITS_PATH)?;
    let (train, test) = data.split(0.2, SEED)?;
    let targets = one_hot(&train);
    let mut rng = StdRng::seed_from_u64(SEED);
    // Glorot/Xavier uniform, the initialisation made for sigmoid layers.
    let linear = |inputs: usize, outputs: usize, rng: &mut StdRng| {
        Dense::<f32>::new(inputs, outputs, Init::GlorotUniform, rng)
    };
    let mut net = Sequential::new()
        .with(linear(64, HIDDEN, &mut rng)?)
        .with(Sigmoid::new())
        .with(linear(HIDDEN, HIDDEN, &mut rng)?)
        .with(Sigmoid::new())
        .with(linear(HIDDEN, CLASSES, &mut rng)?);
    let mut loss = SoftmaxCrossEntropy::new();
    let mut sgd = Sgd::new(LEARNING_RATE)?.with_momentum(MOMENTUM)?;
    println!(
        "UCI digits: {} training, {} test images; 64-{HIDDEN}-{HIDDEN}-10 sigmoid MLP in a Sequential of {} layers, SGD lr {LEARNING_RATE} momentum {MOMENTUM}, batch {BATCH}",
        train.len(),
        test.len(),
        net.len()
    );

    let mut order: Vec<usize> = (0..train.len()).collect();
    let (mut batch_x, mut batch_t) = (Array2::zeros((BATCH, 64)), Array2::zeros((BATCH, CLASSES)));
    let start = Instant::now();
    for epoch in 1..=EPOCHS {
        order.shuffle(&mut rng);
        let mut total = 0.0;
        let batches = order.len() / BATCH;
        for indices in order.chunks_exact(BATCH) {
            // Gather the batch into buffers allocated once.
            for (k, &i) in indices.iter().enumerate() {
                batch_x.row_mut(k).assign(&train.features.row(i));
                batch_t.row_mut(k).assign(&targets.row(i));
            }
            let logits = net.forward_view(batch_x.view())?;
            total += loss.forward(logits, batch_t.view())?;
            net.backward_parameters(loss.backward_view()?)?;
            sgd.step(&mut [&mut net])?;
        }
        if epoch % 5 == 0 || epoch == 1 {
            // Evaluation through &self: no cache, buffer or gradient is touched.
            let logits = net.infer(test.features.view())?;
            let test_loss = loss.loss(logits.view(), test.labels.view())?;
            let test_accuracy = accuracy(argmax_rows(logits.view())?.view(), test.labels.view())?;
            println!(
                "epoch {epoch:2}: train loss {:.4}, test loss {test_loss:.4}, test accuracy {:.2}%",
                total / batches as f32,
                100.0 * test_accuracy
            );
        }
    }
    let elapsed = start.elapsed();
    let probabilities = loss.probabilities(net.infer(test.features.view())?.view())?;
    let confident = probabilities
        .map_axis(Axis(1), |row| row.iter().copied().fold(0.0, f32::max))
        .iter()
        .filter(|&&p| p > 0.9)
        .count();
    let final_accuracy = accuracy(
        argmax_rows(probabilities.view())?.view(),
        test.labels.view(),
    )?;
    println!(
        "test accuracy {:.2}%; {confident} of {} test images predicted with probability > 0.9; {:.1} ms an epoch",
        100.0 * final_accuracy,
        test.len(),
        elapsed.as_secs_f64() * 1e3 / EPOCHS as f64
    );
    Ok(())
}

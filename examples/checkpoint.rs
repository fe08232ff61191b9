//! Trains the digits network (64-128-10 ReLU MLP) with Adam, saves a
//! checkpoint (weights and optimiser state, safetensors), reloads it into a
//! fresh network, and checks that the reloaded network classifies exactly as
//! the original and that training resumed from the checkpoint continues bit
//! for bit as the uninterrupted run.
//!
//! `cargo run --release --example checkpoint`

mod support;

use std::error::Error;

use ndlayers::checkpoint;
use ndlayers::metrics::{accuracy, argmax_rows};
use ndlayers::ndarray::{Array1, Array2};
use ndlayers::prelude::*;
use ndlayers::rand::SeedableRng;
use ndlayers::rand::rngs::StdRng;
use ndlayers::rand::seq::SliceRandom;
use support::{CLASSES, DIGITS_PATH, Dataset, load_digits};

const SEED: u64 = 2024;
const HIDDEN: usize = 128;
const EPOCHS: usize = 30;
const BATCH: usize = 32;
const LEARNING_RATE: f32 = 2e-3;

fn network(rng: &mut StdRng) -> Result<Sequential<f32>, LayerError> {
    Ok(Sequential::new()
        .with(Dense::new(64, HIDDEN, Init::HeUniform, rng)?)
        .with(Relu::new())
        .with(Dense::new(HIDDEN, CLASSES, Init::GlorotUniform, rng)?))
}

/// One epoch of mini-batches in the order `rng` shuffles; returns the mean loss.
fn epoch(
    net: &mut Sequential<f32>,
    adam: &mut Adam<f32>,
    train: &Dataset,
    rng: &mut StdRng,
) -> Result<f32, LayerError> {
    let mut loss = SoftmaxCrossEntropy::new();
    let mut order: Vec<usize> = (0..train.len()).collect();
    order.shuffle(rng);
    let (mut x, mut labels) = (Array2::zeros((BATCH, 64)), Array1::zeros(BATCH));
    let mut total = 0.0;
    for indices in order.chunks_exact(BATCH) {
        for (k, &i) in indices.iter().enumerate() {
            x.row_mut(k).assign(&train.features.row(i));
            labels[k] = train.labels[i];
        }
        let logits = net.forward_view(x.view())?;
        total += loss.forward(logits, labels.view())?;
        net.backward_parameters(loss.backward_view()?)?;
        adam.step(&mut [net])?;
    }
    Ok(total / (order.len() / BATCH) as f32)
}

/// Every parameter, by name.
fn parameters(net: &Sequential<f32>) -> Vec<(String, Vec<f32>)> {
    ndlayers::state::named_parameters(net)
        .into_iter()
        .map(|(name, value)| (name, value.iter().copied().collect()))
        .collect()
}

fn test_accuracy(net: &Sequential<f32>, test: &Dataset) -> Result<f64, LayerError> {
    let logits = net.infer(test.features.view())?;
    accuracy(argmax_rows(logits.view())?.view(), test.labels.view())
}

fn main() -> Result<(), Box<dyn Error>> {
    let data = load_digits(DIGITS_PATH)?;
    let (train, test) = data.split(0.2, SEED)?;
    let mut rng = StdRng::seed_from_u64(SEED);
    let mut net = network(&mut rng)?;
    let mut adam = Adam::new(LEARNING_RATE)?;
    println!(
        "UCI digits, 64-{HIDDEN}-10 ReLU MLP, Adam lr {LEARNING_RATE}, batch {BATCH}, {EPOCHS} epochs"
    );
    let half = EPOCHS / 2;
    let mut saved = None;
    for e in 1..=EPOCHS {
        let loss = epoch(&mut net, &mut adam, &train, &mut rng)?;
        if e == half {
            // Mid-run checkpoint, with the optimiser's state and the batch order's generator.
            saved = Some((checkpoint::to_bytes(&net, Some(&adam))?, rng.clone()));
        }
        if e % 10 == 0 {
            println!(
                "epoch {e:2}: train loss {loss:.4}, test accuracy {:.2}%",
                100.0 * test_accuracy(&net, &test)?
            );
        }
    }
    let original = test_accuracy(&net, &test)?;

    // Save the trained network and load it into a fresh one built from another seed.
    let path = std::env::temp_dir().join("ndlayers_digits.safetensors");
    checkpoint::save(&path, &net, Some(&adam))?;
    let mut reloaded = network(&mut StdRng::seed_from_u64(SEED + 1))?;
    checkpoint::load(&path, &mut reloaded, None)?;
    let reloaded_accuracy = test_accuracy(&reloaded, &test)?;
    let same_logits = reloaded.infer(test.features.view())? == net.infer(test.features.view())?;
    println!(
        "saved to {} ({} bytes); test accuracy: original {:.2}%, reloaded {:.2}%, identical logits: {same_logits}",
        path.display(),
        std::fs::metadata(&path)?.len(),
        100.0 * original,
        100.0 * reloaded_accuracy
    );

    // Resume from the mid-run checkpoint in a fresh network and optimiser.
    let (bytes, mut resumed_rng) = saved.ok_or("no mid-run checkpoint")?;
    let mut resumed = network(&mut StdRng::seed_from_u64(SEED + 2))?;
    let mut resumed_adam = Adam::new(LEARNING_RATE)?;
    checkpoint::from_bytes(&bytes, &mut resumed, Some(&mut resumed_adam))?;
    for _ in half + 1..=EPOCHS {
        epoch(&mut resumed, &mut resumed_adam, &train, &mut resumed_rng)?;
    }
    let resumed_same =
        parameters(&resumed) == parameters(&net) && resumed_adam.state() == adam.state();
    println!(
        "resumed at epoch {half} from the checkpoint: the same weights and Adam state as the uninterrupted run, bit for bit: {resumed_same}"
    );
    if !(same_logits && resumed_same) {
        return Err("a reloaded or resumed network differs from the original".into());
    }
    Ok(())
}

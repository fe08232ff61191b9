//! Trains a 64-128-10 ReLU MLP on the UCI handwritten digits (8x8 images,
//! 1797 samples), with the training loop's furniture from the crate: a
//! stratified split, pixels standardised on the training set, shuffled
//! mini-batches, AdamW without weight decay on the biases, five epochs of
//! warm-up then cosine annealing, gradient clipping, and a confusion matrix.
//!
//! `cargo run --release --example digits`
//!
//! Seeded and reproducible: the split, the initial weights and the batch order
//! all come from `SEED`.

#[path = "support/plot.rs"]
mod plot;
mod support;

use std::error::Error;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use ndlayers::data::{Batches, Standardizer, stratified_split};
use ndlayers::metrics::{ConfusionMatrix, accuracy, argmax_rows};
use ndlayers::ndarray::Axis;
use ndlayers::optim::lr_scheduler::{
    CosineAnnealingLR, LinearLR, LrScheduler, Schedule, SequentialLR,
};
use ndlayers::optim::{AdamW, Norm, ParamGroup, clip_grad_norm};
use ndlayers::prelude::*;
use plot::{Series, line_chart};
use plotters::chart::SeriesLabelPosition;
use rand::SeedableRng;
use rand::rngs::StdRng;
use support::{CLASSES, DIGITS_PATH, load_digits};

const SEED: u64 = 2024;
const HIDDEN: usize = 128;
const EPOCHS: u64 = 40;
const WARM_UP: u64 = 5;
const BATCH: usize = 32;
const LEARNING_RATE: f32 = 3e-3;
const WEIGHT_DECAY: f32 = 1e-2;
const MAX_NORM: f32 = 1.0;

/// What one epoch measured.
struct EpochStats {
    loss: f64,
    train_accuracy: f64,
    test_accuracy: f64,
    learning_rate: f64,
}

fn main() -> Result<(), Box<dyn Error>> {
    let start = Instant::now();
    let data = load_digits(DIGITS_PATH)?;
    let (train, test) = stratified_split(data.labels.view(), 0.2, SEED)?;
    let (train, test) = (data.select(&train), data.select(&test));
    let scale = Standardizer::fit(train.features.view())?;
    let (train_x, test_x) = (
        scale.transform(train.features.view())?,
        scale.transform(test.features.view())?,
    );
    println!(
        "UCI digits: {} images, {} for training, {} held out (stratified); 64-{HIDDEN}-10 ReLU MLP, AdamW lr {LEARNING_RATE} (weight decay {WEIGHT_DECAY}, none on biases), {WARM_UP} epochs of warm-up then cosine, gradients clipped to norm {MAX_NORM}, batch {BATCH}",
        data.len(),
        train.len(),
        test.len()
    );

    let mut rng = StdRng::seed_from_u64(SEED);
    let mut net = Sequential::new()
        .with(Dense::new(64, HIDDEN, Init::HeNormal, &mut rng)?)
        .with(Relu::new())
        .with(Dense::new(HIDDEN, CLASSES, Init::GlorotUniform, &mut rng)?);
    let mut adamw = AdamW::new(LEARNING_RATE)?
        .with_weight_decay(WEIGHT_DECAY)?
        .with_group(ParamGroup::one_dimensional().with_weight_decay(0.0)?);
    let warm_up = LinearLR::new(&mut adamw, 0.1, 1.0, WARM_UP)?;
    let cosine = CosineAnnealingLR::new(&mut adamw, EPOCHS - WARM_UP, 0.0)?;
    let mut schedule = SequentialLR::new(
        &mut adamw,
        vec![warm_up.boxed(), cosine.boxed()],
        &[WARM_UP],
    )?;
    let mut loss = SoftmaxCrossEntropy::new();
    let mut batches = Batches::new(train_x.view(), train.labels.view(), BATCH)?
        .with_shuffle(SEED)
        .with_drop_last(true); // every step one shape: the layers reuse their buffers

    let bar = ProgressBar::new(EPOCHS).with_style(
        ProgressStyle::with_template("{bar:30} epoch {pos}/{len} {msg}")?.progress_chars("=> "),
    );
    let mut history = Vec::new();
    for epoch in 0..EPOCHS {
        let learning_rate = schedule.last_lrs()[0];
        batches.set_epoch(epoch);
        let (mut loss_sum, mut steps) = (0.0, 0);
        while let Some((x, labels)) = batches.next_batch() {
            let logits = net.forward_view(x)?;
            loss_sum += f64::from(loss.forward(logits, labels)?);
            net.backward_parameters(loss.backward_view()?)?;
            clip_grad_norm(&mut net, MAX_NORM, Norm::L2, true)?;
            adamw.step(&mut [&mut net])?;
            steps += 1;
        }
        schedule.step(&mut adamw)?;
        let evaluate = |x: &ndlayers::ndarray::Array2<f32>, labels| -> Result<f64, LayerError> {
            accuracy(argmax_rows(net.infer(x.view())?.view())?.view(), labels)
        };
        let stats = EpochStats {
            loss: loss_sum / f64::from(steps),
            train_accuracy: evaluate(&train_x, train.labels.view())?,
            test_accuracy: evaluate(&test_x, test.labels.view())?,
            learning_rate,
        };
        bar.set_message(format!(
            "loss {:.4}, test {:.2}%",
            stats.loss,
            100.0 * stats.test_accuracy
        ));
        // `suspend` rather than `bar.println`, so the lines also appear when output is piped.
        bar.suspend(|| {
            println!(
                "epoch {:2}: lr {:.2e}, train loss {:.4}, train accuracy {:6.2}%, test accuracy {:6.2}%",
                epoch + 1,
                stats.learning_rate,
                stats.loss,
                100.0 * stats.train_accuracy,
                100.0 * stats.test_accuracy
            )
        });
        bar.inc(1);
        history.push(stats);
    }
    bar.finish();

    let predicted = argmax_rows(net.infer(test_x.view())?.view())?;
    let confusion = ConfusionMatrix::new(predicted.view(), test.labels.view(), CLASSES)?;
    println!("{confusion}");
    let worst = (0..CLASSES)
        .min_by(|&a, &b| confusion.f1(a).total_cmp(&confusion.f1(b)))
        .unwrap_or(0);
    println!(
        "final test accuracy {:.2}% ({} held-out images; lowest F1: digit {worst}, {:.3}), in {:.2} s",
        100.0 * confusion.accuracy(),
        test.len(),
        confusion.f1(worst),
        start.elapsed().as_secs_f64()
    );
    debug_assert_eq!(predicted.len_of(Axis(0)), test.len());
    plot_history(&history)
}

/// Writes the per-epoch curves to `images/digits_training.png`.
fn plot_history(history: &[EpochStats]) -> Result<(), Box<dyn Error>> {
    let curve = |f: fn(&EpochStats) -> f64| {
        history
            .iter()
            .enumerate()
            .map(|(i, s)| ((i + 1) as f64, f(s)))
            .collect()
    };
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("images/digits_training.png");
    std::fs::create_dir_all(path.parent().unwrap_or(std::path::Path::new(".")))?;
    line_chart(
        &path,
        "Digits MLP: training curves",
        ("epoch", "loss / accuracy"),
        SeriesLabelPosition::MiddleRight,
        &[
            Series {
                label: "train loss (cross-entropy)",
                points: curve(|s| s.loss),
            },
            Series {
                label: "train accuracy",
                points: curve(|s| s.train_accuracy),
            },
            Series {
                label: "test accuracy",
                points: curve(|s| s.test_accuracy),
            },
            Series {
                label: "learning rate / max",
                points: curve(|s| s.learning_rate / f64::from(LEARNING_RATE)),
            },
        ],
    )?;
    println!("wrote {}", path.display());
    Ok(())
}

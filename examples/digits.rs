//! Trains a 64-128-10 ReLU MLP on the UCI handwritten digits (8x8 images,
//! 1797 samples), with mini-batch SGD and the fused softmax cross-entropy.
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
use ndlayers::prelude::*;
use plot::{Series, line_chart};
use plotters::chart::SeriesLabelPosition;
use rand::SeedableRng;
use rand::rngs::StdRng;
use support::{DIGITS_PATH, EpochStats, Mlp, load_digits, train_epoch};

const SEED: u64 = 2024;
const HIDDEN: usize = 128;
const EPOCHS: u64 = 40;
const BATCH: usize = 32;
const LEARNING_RATE: f32 = 0.05;
const MOMENTUM: f32 = 0.9;

fn main() -> Result<(), Box<dyn Error>> {
    let start = Instant::now();
    let data = load_digits(DIGITS_PATH)?;
    let (train, test) = data.split(0.8, SEED);
    println!(
        "UCI digits: {} images, {} for training, {} held out; 64-{HIDDEN}-10 ReLU MLP, SGD lr {LEARNING_RATE} momentum {MOMENTUM}, batch {BATCH}",
        data.len(),
        train.len(),
        test.len()
    );

    let mut model = Mlp::new(HIDDEN, SEED)?;
    let mut sgd = Sgd::new(LEARNING_RATE)?.with_momentum(MOMENTUM)?;
    let mut rng = StdRng::seed_from_u64(SEED);
    let bar = ProgressBar::new(EPOCHS).with_style(
        ProgressStyle::with_template("{bar:30} epoch {pos}/{len} {msg}")?.progress_chars("=> "),
    );
    let mut history: Vec<EpochStats> = Vec::new();
    for epoch in 1..=EPOCHS {
        let stats = train_epoch(&mut model, &mut sgd, &train, &test, BATCH, &mut rng)?;
        bar.set_message(format!(
            "loss {:.4}, test {:.2}%",
            stats.loss,
            100.0 * stats.test_accuracy
        ));
        // `suspend` rather than `bar.println`, so the lines also appear when output is piped.
        bar.suspend(|| {
            println!(
                "epoch {epoch:2}: train loss {:.4}, train accuracy {:6.2}%, test accuracy {:6.2}%",
                stats.loss,
                100.0 * stats.train_accuracy,
                100.0 * stats.test_accuracy
            )
        });
        bar.inc(1);
        history.push(stats);
    }
    bar.finish();
    if let Some(stats) = history.last() {
        println!(
            "final test accuracy {:.2}% ({} held-out images), in {:.2} s",
            100.0 * stats.test_accuracy,
            test.len(),
            start.elapsed().as_secs_f64()
        );
    }
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
                points: curve(|s| s.loss as f64),
            },
            Series {
                label: "train accuracy",
                points: curve(|s| s.train_accuracy),
            },
            Series {
                label: "test accuracy",
                points: curve(|s| s.test_accuracy),
            },
        ],
    )?;
    println!("wrote {}", path.display());
    Ok(())
}

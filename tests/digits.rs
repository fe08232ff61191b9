//! Trains the digits MLP of `examples/digits.rs` for a few epochs: it must learn.

#[path = "../examples/support/mod.rs"]
mod support;

use ndlayers::prelude::*;
use support::{DIGITS_PATH, Mlp, load_digits, train_epoch};

#[test]
fn a_few_epochs_reach_ninety_percent_test_accuracy() {
    let data = load_digits(DIGITS_PATH).expect("examples/data/digits.csv.gz is part of the crate");
    assert_eq!((data.len(), data.features.ncols()), (1797, 64));
    let (train, test) = data.split(0.2, 7).unwrap();
    let mut model = Mlp::new(128, 7).unwrap();
    let mut sgd = Sgd::new(0.05).unwrap().with_momentum(0.9).unwrap();
    let mut losses = Vec::new();
    let mut last = None;
    for epoch in 0..4 {
        let stats = train_epoch(&mut model, &mut sgd, (&train, &test), 32, (7, epoch)).unwrap();
        losses.push(stats.loss);
        last = Some(stats);
    }
    let stats = last.unwrap();
    assert!(losses[3] < losses[0] / 2.0, "loss did not fall: {losses:?}");
    assert!(
        stats.test_accuracy > 0.90,
        "test accuracy {:.3}",
        stats.test_accuracy
    );
}

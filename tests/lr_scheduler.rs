//! Learning-rate schedules (issue 29) against PyTorch 2.15's
//! `torch.optim.lr_scheduler` (`tests/reference/lr_scheduler.py`: an SGD
//! with two parameter groups, rates 0.1 and 0.01; the rates after creation
//! and after each step), their state in checkpoints, and their errors.

use std::collections::HashMap;

use ndlayers::checkpoint;
use ndlayers::ndarray::{Array2, ArrayD, Ix2, array};
use ndlayers::optim::lr_scheduler::{
    Anneal, CosineAnnealingLR, ExponentialLR, LinearLR, LrScheduler, Mode, MultiStepLR, OneCycle,
    OneCycleLR, ReduceLROnPlateau, Schedule, Scheduler, SequentialLR, StepLR, ThresholdMode,
};
use ndlayers::optim::{AdamW, Optimizer, ParamGroup, Sgd};
use ndlayers::prelude::*;

fn reference() -> HashMap<String, ArrayD<f64>> {
    crate::common::reference_table(include_str!("reference/lr_scheduler.txt"))
}

/// The reference's optimiser: biases in a group of their own at 0.01.
fn sgd() -> Sgd<f64> {
    let biases = ParamGroup::new(|name, _| name.leaf() == Some("bias"));
    Sgd::new(0.1)
        .unwrap()
        .with_group(biases.with_learning_rate(0.01).unwrap())
}

fn rates<F: Real>(optimizer: &dyn Optimizer<F>) -> Vec<f64> {
    (0..optimizer.group_count())
        .map(|g| optimizer.group_learning_rate(g).unwrap().to_f64().unwrap())
        .collect()
}

/// Compares the rows of rates to the reference `case`, within 1e-12 (and
/// counts the ones that are the same bits).
#[track_caller]
fn check(case: &str, got: &[Vec<f64>]) {
    let epochs = reference()[&format!("{case}/lrs")].shape()[0];
    assert_eq!(got.len(), epochs, "{case}: epochs");
    check_prefix(case, got);
}

/// [`check`] for the first rows of the reference only.
#[track_caller]
fn check_prefix(case: &str, got: &[Vec<f64>]) {
    let table = reference();
    let want: Array2<f64> = table[&format!("{case}/lrs")]
        .clone()
        .into_dimensionality::<Ix2>()
        .unwrap();
    let mut same = 0;
    for (epoch, (row, want)) in got.iter().zip(want.rows()).enumerate() {
        for (g, (&got, &want)) in row.iter().zip(want).enumerate() {
            assert!(
                (got - want).abs() <= 1e-12,
                "{case}: epoch {epoch}, group {g}: {got} against PyTorch's {want}"
            );
            same += usize::from(got.to_bits() == want.to_bits());
        }
    }
    assert!(same > 0, "{case}: not one rate the same bits as PyTorch's");
}

/// The rates after creating a schedule and after each of `epochs` steps.
fn run(
    optimizer: &mut Sgd<f64>,
    schedule: &mut dyn LrScheduler<f64>,
    epochs: usize,
) -> Vec<Vec<f64>> {
    let mut rows = vec![rates(optimizer)];
    for _ in 0..epochs {
        schedule.step(optimizer).unwrap();
        rows.push(rates(optimizer));
        assert_eq!(schedule.last_lrs(), rows.last().unwrap().as_slice());
    }
    rows
}

#[test]
fn each_schedule_matches_pytorch() {
    let mut o = sgd();
    let mut s = StepLR::new(&mut o, 3, 0.5).unwrap();
    check("step", &run(&mut o, &mut s, 20));

    let mut o = sgd();
    let mut s = MultiStepLR::new(&mut o, &[2, 5, 5, 9], 0.3).unwrap();
    check("multistep", &run(&mut o, &mut s, 15));

    let mut o = sgd();
    let mut s = ExponentialLR::new(&mut o, 0.9).unwrap();
    check("exponential", &run(&mut o, &mut s, 30));

    let mut o = sgd();
    let mut s = CosineAnnealingLR::new(&mut o, 10, 0.001).unwrap();
    check("cosine", &run(&mut o, &mut s, 35));

    let mut o = sgd();
    let mut s = LinearLR::new(&mut o, 0.25, 1.0, 4).unwrap();
    check("linear", &run(&mut o, &mut s, 10));

    let mut o = sgd();
    let mut s = LinearLR::new(&mut o, 1.0, 0.1, 6).unwrap();
    check("linear_decay", &run(&mut o, &mut s, 10));

    let mut o = sgd();
    let rule = OneCycle::new(1.0, 25)
        .unwrap()
        .with_max_lrs(&[1.0, 0.5])
        .unwrap();
    let mut s = OneCycleLR::start(&mut o, rule).unwrap();
    check("one_cycle", &run(&mut o, &mut s, 25));

    let mut o = sgd();
    let rule = OneCycle::new(0.4, 40)
        .unwrap()
        .with_phases(0.25, true)
        .unwrap()
        .with_anneal(Anneal::Linear)
        .with_div_factors(10.0, 100.0)
        .unwrap();
    let mut s = OneCycleLR::start(&mut o, rule).unwrap();
    // The 40th step, past the cycle, extrapolates the line below zero in
    // PyTorch; here that is an error (a learning rate is non-negative).
    let rows = run(&mut o, &mut s, 39);
    let err = LrScheduler::<f64>::step(&mut s, &mut o).unwrap_err();
    assert!(err.to_string().contains("computed -0.00148"), "{err}");
    let table = reference();
    assert!(table["one_cycle_three_phase/lrs"][[40, 0]] < 0.0);
    check_prefix("one_cycle_three_phase", &rows);
}

#[test]
fn chained_schedules_match_pytorch() {
    let mut o = sgd();
    let warm_up = LinearLR::new(&mut o, 0.1, 1.0, 5).unwrap();
    let cosine = CosineAnnealingLR::new(&mut o, 20, 0.0).unwrap();
    let mut s = SequentialLR::new(&mut o, vec![warm_up.boxed(), cosine.boxed()], &[5]).unwrap();
    check("warmup_cosine", &run(&mut o, &mut s, 30));
    assert_eq!(s.name(), "SequentialLR(LinearLR,CosineAnnealingLR)");

    let mut o = sgd();
    let a = LinearLR::new(&mut o, 0.5, 1.0, 3).unwrap();
    let b = ExponentialLR::new(&mut o, 0.8).unwrap();
    let c = StepLR::new(&mut o, 2, 0.5).unwrap();
    let mut s = SequentialLR::new(&mut o, vec![a.boxed(), b.boxed(), c.boxed()], &[3, 8]).unwrap();
    check("sequential_three", &run(&mut o, &mut s, 15));
}

#[test]
fn reduce_on_plateau_matches_pytorch() {
    let table = reference();
    for case in ["plateau", "plateau_max_abs"] {
        let mut o = sgd();
        let mut s = match case {
            "plateau" => ReduceLROnPlateau::new(&mut o)
                .with_factor(0.5)
                .unwrap()
                .with_patience(2)
                .with_threshold(0.01, ThresholdMode::Rel)
                .unwrap()
                .with_cooldown(1)
                .with_min_lrs(&[0.02, 0.001])
                .unwrap(),
            _ => ReduceLROnPlateau::new(&mut o)
                .with_mode(Mode::Max)
                .with_factor(0.2)
                .unwrap()
                .with_patience(0)
                .with_threshold(0.05, ThresholdMode::Abs)
                .unwrap(),
        };
        let mut rows = vec![rates(&o)];
        for &metric in &table[&format!("{case}/metrics")] {
            s.step(&mut o, metric).unwrap();
            rows.push(rates(&o));
        }
        check(case, &rows);
    }
}

#[test]
fn an_f32_optimizer_gets_the_f64_sequence_rounded_once() {
    // The schedule works from the f64 rate it set, not from the f32 the
    // optimiser holds, so each rate is rounded once, not compounded: the
    // f32 rates are those of an f64 optimiser with the same base, rounded.
    let base = 0.1f32;
    let mut o32 = Sgd::<f32>::new(base).unwrap();
    let mut o64 = Sgd::<f64>::new(f64::from(base)).unwrap();
    let mut s32 = CosineAnnealingLR::new(&mut o32, 10, 0.001).unwrap();
    let mut s64 = CosineAnnealingLR::new(&mut o64, 10, 0.001).unwrap();
    for epoch in 0..35 {
        assert_eq!(
            o32.learning_rate(),
            o64.learning_rate() as f32,
            "epoch {epoch}"
        );
        s32.step(&mut o32).unwrap();
        s64.step(&mut o64).unwrap();
    }
}

#[test]
fn a_rate_changed_by_hand_is_the_one_a_chainable_schedule_scales() {
    // As PyTorch's get_lr, which scales group["lr"].
    let mut o = Sgd::new(1.0).unwrap();
    let mut s = ExponentialLR::new(&mut o, 0.5).unwrap();
    s.step(&mut o).unwrap();
    assert_eq!(o.learning_rate(), 0.5);
    o.set_learning_rate(3.0).unwrap();
    s.step(&mut o).unwrap();
    assert_eq!(o.learning_rate(), 1.5);
}

#[test]
fn stepping_past_one_cycle_is_an_error_that_changes_nothing() {
    let mut o = Sgd::<f64>::new(0.1).unwrap();
    let mut s = OneCycleLR::new(&mut o, 1.0, 3).unwrap();
    for _ in 0..3 {
        s.step(&mut o).unwrap();
    }
    let (rate, state) = (o.learning_rate(), s.state());
    let err = LrScheduler::<f64>::step(&mut s, &mut o).unwrap_err();
    assert!(
        err.to_string()
            .contains("epoch 4 is past the schedule's last, 3"),
        "{err}"
    );
    assert_eq!((o.learning_rate(), s.state()), (rate, state));
}

#[test]
fn invalid_schedules_are_errors() {
    let mut o = Sgd::<f64>::new(0.1).unwrap();
    for err in [
        StepLR::new(&mut o, 0, 0.1).unwrap_err(),
        StepLR::new(&mut o, 1, f64::NAN).unwrap_err(),
        CosineAnnealingLR::new(&mut o, 0, 0.0).unwrap_err(),
        LinearLR::new(&mut o, 0.0, 1.0, 5).unwrap_err(),
        LinearLR::new(&mut o, 0.5, 1.5, 5).unwrap_err(),
        OneCycleLR::new(&mut o, -1.0, 5).unwrap_err(),
        OneCycleLR::new(&mut o, 1.0, 0).unwrap_err(),
    ] {
        assert!(matches!(err, LayerError::InvalidParameter { .. }), "{err}");
    }
    let a = StepLR::new(&mut o, 1, 0.5).unwrap();
    let b = StepLR::new(&mut o, 1, 0.5).unwrap();
    let err = SequentialLR::new(&mut o, vec![a.boxed(), b.boxed()], &[]).unwrap_err();
    assert!(
        err.to_string().contains("0 milestones for 2 schedulers"),
        "{err}"
    );
    assert!(ReduceLROnPlateau::new(&mut o).with_factor(1.0).is_err());
    assert!(
        ReduceLROnPlateau::new(&mut o)
            .with_min_lrs(&[0.0, 0.0])
            .is_err()
    );
}

#[test]
fn a_schedule_for_other_groups_is_an_error_that_changes_nothing() {
    let mut one_group = Sgd::<f64>::new(0.1).unwrap();
    let mut s = StepLR::new(&mut one_group, 1, 0.5).unwrap();
    let mut two_groups = sgd();
    let err = LrScheduler::<f64>::step(&mut s, &mut two_groups).unwrap_err();
    assert!(
        err.to_string()
            .contains("the schedule has 1 groups, the optimizer 2"),
        "{err}"
    );
    assert_eq!(rates(&two_groups), [0.1, 0.01]);
    assert_eq!(s.last_epoch(), 0);
}

#[test]
fn state_round_trips_and_is_checked() {
    let mut o = sgd();
    let mut s = CosineAnnealingLR::new(&mut o, 10, 0.0).unwrap();
    for _ in 0..4 {
        s.step(&mut o).unwrap();
    }
    let state = s.state();
    let mut fresh = CosineAnnealingLR::new(&mut sgd(), 10, 0.0).unwrap();
    fresh.set_state(&state).unwrap();
    assert_eq!(fresh.state(), state);

    let mut wrong = state.clone();
    wrong.scheduler = "StepLR".into();
    assert!(
        fresh
            .set_state(&wrong)
            .unwrap_err()
            .to_string()
            .contains("it is StepLR's")
    );
    let mut wrong = state.clone();
    wrong.values[2].1 = vec![0.1, f64::NAN];
    let err = fresh.set_state(&wrong).unwrap_err();
    assert!(err.to_string().contains("last_lrs"), "{err}");
    let mut wrong = state.clone();
    wrong.values[0].1 = vec![2.5];
    assert!(fresh.set_state(&wrong).is_err());
    assert_eq!(fresh.state(), state, "a refused state changes nothing");
}

/// A small regression problem trained with AdamW under warm-up then cosine.
fn train(
    net: &mut Sequential<f64>,
    adamw: &mut AdamW<f64>,
    schedule: &mut SequentialLR,
    epochs: std::ops::Range<usize>,
) {
    let x = array![
        [0.5, -1.0, 2.0],
        [1.5, 0.25, -0.5],
        [-1.0, 1.0, 0.0],
        [0.0, 2.0, 1.0]
    ];
    let y = array![[1.0, 0.0], [0.0, 1.0], [0.5, 0.5], [1.0, -1.0]];
    let mut mse = Mse::new();
    for epoch in epochs {
        for batch in 0..3 {
            let shift = (epoch * 3 + batch) as f64 * 0.01;
            let out = net.forward(x.mapv(|v| v + shift).view()).unwrap();
            mse.forward(out.view(), y.view()).unwrap();
            net.backward(mse.backward_view().unwrap()).unwrap();
            adamw.step(&mut [net]).unwrap();
        }
        schedule.step(adamw).unwrap();
    }
}

fn training_run(seed: u64) -> (Sequential<f64>, AdamW<f64>, SequentialLR) {
    use rand::{SeedableRng, rngs::StdRng};
    let mut rng = StdRng::seed_from_u64(seed);
    let net = Sequential::new()
        .with(Dense::new(3, 8, Init::HeUniform, &mut rng).unwrap())
        .with(Tanh::new())
        .with(Dense::new(8, 2, Init::GlorotUniform, &mut rng).unwrap());
    let mut adamw = AdamW::new(0.01)
        .unwrap()
        .with_weight_decay(0.1)
        .unwrap()
        .with_group(
            ParamGroup::one_dimensional()
                .with_weight_decay(0.0)
                .unwrap(),
        );
    let warm_up = LinearLR::new(&mut adamw, 0.1, 1.0, 3).unwrap();
    let cosine = CosineAnnealingLR::new(&mut adamw, 9, 0.0).unwrap();
    let schedule =
        SequentialLR::new(&mut adamw, vec![warm_up.boxed(), cosine.boxed()], &[3]).unwrap();
    (net, adamw, schedule)
}

#[test]
fn a_resumed_run_continues_bit_for_bit_through_a_schedule() {
    let (mut net, mut adamw, mut schedule) = training_run(5);
    train(&mut net, &mut adamw, &mut schedule, 0..12);
    let straight = ndlayers::state::named_parameters(&net);

    let (mut net, mut adamw, mut schedule) = training_run(5);
    train(&mut net, &mut adamw, &mut schedule, 0..5);
    let bytes = checkpoint::to_bytes_training(&net, &adamw, &schedule).unwrap();

    // A fresh run (another seed, so nothing is right by accident) resumed
    // from the file: same parameters, optimiser state, schedule and rates.
    let (mut resumed, mut adamw, mut schedule) = training_run(99);
    checkpoint::from_bytes_training(&bytes, &mut resumed, &mut adamw, &mut schedule).unwrap();
    assert_eq!(
        adamw.learning_rate().to_bits(),
        schedule.last_lrs()[0].to_bits()
    );
    train(&mut resumed, &mut adamw, &mut schedule, 5..12);
    let resumed = ndlayers::state::named_parameters(&resumed);
    assert_eq!(straight.len(), resumed.len());
    for ((name, a), (_, b)) in straight.iter().zip(&resumed) {
        assert!(
            a.iter().zip(b).all(|(a, b)| a.to_bits() == b.to_bits()),
            "{name} differs after resuming"
        );
    }
}

#[test]
fn a_checkpoint_with_a_schedule_is_checked_as_a_whole() {
    let (mut net, mut adamw, mut schedule) = training_run(5);
    train(&mut net, &mut adamw, &mut schedule, 0..2);
    let bytes = checkpoint::to_bytes_training(&net, &adamw, &schedule).unwrap();

    // Loading without a schedule skips its state.
    let (mut plain, mut plain_adamw, _) = training_run(5);
    checkpoint::from_bytes(&bytes, &mut plain, Some(&mut plain_adamw)).unwrap();

    // Another schedule: refused, and nothing changes.
    let (mut other, mut other_adamw, _) = training_run(7);
    let mut step = StepLR::new(&mut other_adamw, 2, 0.5).unwrap();
    let (before, rate) = (
        ndlayers::state::named_parameters(&other),
        other_adamw.learning_rate(),
    );
    let err = checkpoint::from_bytes_training(&bytes, &mut other, &mut other_adamw, &mut step)
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("it is SequentialLR(LinearLR,CosineAnnealingLR)'s"),
        "{err}"
    );
    assert_eq!(ndlayers::state::named_parameters(&other), before);
    assert_eq!(other_adamw.learning_rate(), rate);
    assert_eq!(other_adamw.steps(), 0);

    // A file saved without a schedule, loaded with one.
    let plain_bytes = checkpoint::to_bytes(&net, Some(&adamw)).unwrap();
    let (mut fresh, mut fresh_adamw, mut fresh_schedule) = training_run(5);
    let err = checkpoint::from_bytes_training(
        &plain_bytes,
        &mut fresh,
        &mut fresh_adamw,
        &mut fresh_schedule,
    )
    .unwrap_err();
    assert!(err.to_string().contains("no schedule state"), "{err}");
}

#[test]
fn a_schedule_starts_from_an_optimizer_without_a_learning_rate() {
    // Default: PyTorch's 1e-3, which a schedule with its own rates ignores.
    let mut sgd = Sgd::<f32>::default();
    assert_eq!(sgd.learning_rate(), 1e-3);
    let schedule = OneCycleLR::new(&mut sgd, 0.5, 10).unwrap();
    // max_lr / div_factor, through the cosine at 0 as PyTorch computes it.
    assert!((schedule.last_lrs()[0] - 0.5 / 25.0).abs() < 1e-15);
    assert_eq!(sgd.learning_rate(), schedule.last_lrs()[0] as f32);
    let _ = Scheduler::start(&mut AdamW::<f32>::default(), OneCycle::new(0.1, 5).unwrap()).unwrap();
}

#[test]
fn reduce_on_plateau_resumes_from_a_checkpoint() {
    // Its best metric starts at +∞, which the checkpoint keeps exactly.
    let net = Dense::<f64>::from_fn(2, 2, |i, j| (i + j) as f64).unwrap();
    let mut sgd = sgd();
    let plateau = ReduceLROnPlateau::new(&mut sgd).with_patience(0);
    let bytes = checkpoint::to_bytes_training(&net, &sgd, &plateau).unwrap();
    let mut fresh_sgd = sgd.clone();
    let mut fresh = ReduceLROnPlateau::new(&mut fresh_sgd).with_patience(0);
    let mut fresh_net = net.clone();
    checkpoint::from_bytes_training(&bytes, &mut fresh_net, &mut fresh_sgd, &mut fresh).unwrap();
    assert_eq!(fresh.best(), f64::INFINITY);

    let mut plateau = plateau;
    for metric in [1.0, 2.0, 0.5, 0.7] {
        plateau.step(&mut sgd, metric).unwrap();
    }
    let bytes = checkpoint::to_bytes_training(&net, &sgd, &plateau).unwrap();
    checkpoint::from_bytes_training(&bytes, &mut fresh_net, &mut fresh_sgd, &mut fresh).unwrap();
    assert_eq!(fresh.state(), plateau.state());
    assert_eq!(
        rates(&fresh_sgd),
        rates(&sgd),
        "the rates it set are restored"
    );
    plateau.step(&mut sgd, 0.9).unwrap();
    fresh.step(&mut fresh_sgd, 0.9).unwrap();
    assert_eq!(rates(&fresh_sgd), rates(&sgd));
}

#[test]
fn hostile_training_checkpoints_never_panic_and_change_nothing_when_refused() {
    use rand::{Rng, SeedableRng, rngs::StdRng};
    let (mut net, mut adamw, mut schedule) = training_run(5);
    train(&mut net, &mut adamw, &mut schedule, 0..4);
    let bytes = checkpoint::to_bytes_training(&net, &adamw, &schedule).unwrap();
    let mut rng = StdRng::seed_from_u64(29);
    let (mut accepted, mut refused) = (0, 0);
    for case in 0..400 {
        let mut hostile = bytes.clone();
        match case % 4 {
            0 => hostile.truncate(rng.random_range(0..bytes.len())),
            1 => {
                for _ in 0..rng.random_range(1..4) {
                    let at = rng.random_range(0..hostile.len());
                    hostile[at] ^= 1 << rng.random_range(0..8);
                }
            }
            2 => {
                // An 8-byte value of the data rewritten (the schedule's
                // state is F64): NaN, -1, 2^60, +inf.
                let header = u64::from_le_bytes(hostile[..8].try_into().unwrap()) as usize;
                let data = 8 + header;
                let offset = data + rng.random_range(0..(hostile.len() - data) / 8) * 8;
                let value = [f64::NAN, -1.0, 2f64.powi(60), f64::INFINITY][rng.random_range(0..4)];
                hostile[offset..offset + 8].copy_from_slice(&value.to_le_bytes());
            }
            _ => {
                let at = rng.random_range(0..hostile.len());
                hostile.insert(at, rng.random());
            }
        }
        let (mut n, mut a, mut s) = training_run(7);
        let before = (
            ndlayers::state::named_parameters(&n),
            a.state(),
            s.state(),
            a.learning_rate(),
        );
        match checkpoint::from_bytes_training(&hostile, &mut n, &mut a, &mut s) {
            Ok(()) => accepted += 1,
            Err(_) => {
                refused += 1;
                let after = (
                    ndlayers::state::named_parameters(&n),
                    a.state(),
                    s.state(),
                    a.learning_rate(),
                );
                assert!(
                    before.0 == after.0
                        && before.1 == after.1
                        && before.2 == after.2
                        && before.3 == after.3,
                    "case {case}: a refused file changed something"
                );
            }
        }
    }
    assert!(
        refused > 0 && accepted + refused > 300,
        "{accepted} accepted, {refused} refused"
    );
}

//! Adam and AdamW against PyTorch's trajectories, their validation, their
//! state, and the named parameters that checkpoints use.

use crate::common;

use std::collections::BTreeMap;

use common::{TwoParameters, state_dict};

use ndlayers::ndarray::{Array1, Array2, ArrayD, IxDyn, array};
use ndlayers::optim::{OptimizerState, ParamGroup, Sgd};
use ndlayers::prelude::*;

/// `tests/reference/optimizers.txt`, written by `tests/reference/optimizers.py`
/// (PyTorch 2.15, float64).
const REFERENCE: &str = include_str!("reference/optimizers.txt");

/// One `label name [shape] values…` line's array.
fn parse_array(shape: &str, values: &str) -> ArrayD<f64> {
    let shape: Vec<usize> = shape
        .split_whitespace()
        .map(|d| d.parse().expect("a dimension"))
        .collect();
    let values: Vec<f64> = values
        .split_whitespace()
        .map(|v| v.parse().expect("a float"))
        .collect();
    ArrayD::from_shape_vec(IxDyn(&shape), values).expect("values fit the shape")
}

/// Per case, per `stepN` label, the state_dict at that step; and the data.
struct Reference {
    x: Array2<f64>,
    y: Array2<f64>,
    cases: BTreeMap<String, BTreeMap<String, BTreeMap<String, ArrayD<f64>>>>,
}

fn reference() -> Reference {
    let mut data = BTreeMap::new();
    let mut cases: BTreeMap<String, BTreeMap<String, BTreeMap<String, ArrayD<f64>>>> =
        BTreeMap::new();
    let mut case = String::new();
    for line in REFERENCE.lines().filter(|l| !l.starts_with('#')) {
        if let Some(name) = line.strip_prefix("case ") {
            case = name.to_string();
            continue;
        }
        let (head, rest) = line.split_once(" [").expect("label [shape] values");
        let (shape, values) = rest.split_once("] ").expect("[shape] values");
        let array = parse_array(shape, values);
        match head.split_once(' ') {
            Some((label, name)) => {
                cases
                    .entry(case.clone())
                    .or_default()
                    .entry(label.to_string())
                    .or_default()
                    .insert(name.to_string(), array);
            }
            None => {
                data.insert(head.to_string(), array);
            }
        }
    }
    let matrix = |name: &str| data[name].clone().into_dimensionality().expect("a matrix");
    Reference {
        x: matrix("x"),
        y: matrix("y"),
        cases,
    }
}

/// `Linear(3, 4) → Tanh → Linear(4, 2)` from a PyTorch state_dict.
fn network(state: &BTreeMap<String, ArrayD<f64>>) -> Sequential<f64> {
    let linear = |prefix: &str| {
        let weight: Array2<f64> = state[&format!("{prefix}.weight")]
            .clone()
            .into_dimensionality()
            .expect("a matrix");
        let bias: Array1<f64> = state[&format!("{prefix}.bias")]
            .clone()
            .into_dimensionality()
            .expect("a vector");
        // nn.Linear stores (outputs, inputs).
        Dense::from_parameters(weight.reversed_axes(), bias).expect("valid parameters")
    };
    Sequential::new()
        .with(linear("0"))
        .with(Tanh::new())
        .with(linear("2"))
}

/// Trains a case for 100 steps, comparing with PyTorch after steps 1, 10 and
/// 100; returns the worst relative difference.
fn follow(case: &str, mut optimizer: impl Optimizer<f64>) -> f64 {
    let reference = reference();
    let steps = &reference.cases[case];
    let mut net = network(&steps["step0"]);
    assert_eq!(
        state_dict(&net),
        steps["step0"],
        "{case}: starts where PyTorch does"
    );
    let mut loss = Mse::new();
    let mut worst = 0.0_f64;
    for step in 1..=100 {
        let prediction = net.forward_view(reference.x.view()).unwrap();
        loss.forward(prediction, reference.y.view()).unwrap();
        net.backward_parameters(loss.backward_view().unwrap())
            .unwrap();
        optimizer.step(&mut [&mut net]).unwrap();
        if let Some(expected) = steps.get(&format!("step{step}")) {
            let got = state_dict(&net);
            assert_eq!(
                got.keys().collect::<Vec<_>>(),
                expected.keys().collect::<Vec<_>>()
            );
            for (name, want) in expected {
                for (index, (&g, &w)) in got[name].iter().zip(want).enumerate() {
                    let relative = (g - w).abs() / w.abs().max(1e-300);
                    worst = worst.max(relative);
                    assert!(
                        relative <= 1e-6,
                        "{case}, step {step}, {name}[{index}]: ndlayers {g:e}, PyTorch {w:e}, relative {relative:.1e}"
                    );
                }
            }
        }
    }
    println!("{case}: worst relative difference from PyTorch {worst:.2e}");
    worst
}

#[test]
fn adam_follows_pytorch() {
    let worst = follow("adam", Adam::new(1e-2).unwrap());
    // Same operations in the same order: the trajectories agree to rounding.
    assert!(worst < 1e-12, "{worst:e}");
    let worst = follow(
        "adam_weight_decay",
        Adam::new(1e-2).unwrap().with_weight_decay(0.1).unwrap(),
    );
    assert!(worst < 1e-12, "{worst:e}");
}

#[test]
fn adamw_follows_pytorch() {
    let worst = follow("adamw", AdamW::new(1e-2).unwrap());
    assert!(worst < 1e-12, "{worst:e}");
    let options = AdamW::new(3e-2)
        .unwrap()
        .with_betas(0.8, 0.99)
        .unwrap()
        .with_eps(1e-6)
        .unwrap()
        .with_weight_decay(0.05)
        .unwrap();
    let worst = follow("adamw_options", options);
    assert!(worst < 1e-12, "{worst:e}");
}

#[test]
fn invalid_hyperparameters_are_errors_naming_them() {
    let message = |r: Result<Adam<f64>, LayerError>| r.unwrap_err().to_string();
    assert_eq!(
        message(Adam::new(-0.5)),
        "Adam: invalid learning_rate = -0.5: must be non-negative and finite"
    );
    assert_eq!(
        message(Adam::new(1e-3).unwrap().with_betas(0.9, 1.0)),
        "Adam: invalid beta2 = 1: must be in [0, 1)"
    );
    assert_eq!(
        message(Adam::new(1e-3).unwrap().with_betas(f64::NAN, 0.5)),
        "Adam: invalid beta1 = NaN: must be in [0, 1)"
    );
    assert_eq!(
        message(Adam::new(1e-3).unwrap().with_eps(0.0)),
        "Adam: invalid eps = 0: must be positive and finite"
    );
    assert_eq!(
        AdamW::<f32>::new(1e-3)
            .unwrap()
            .with_weight_decay(-0.1)
            .unwrap_err()
            .to_string(),
        "AdamW: invalid weight_decay = -0.1: must be non-negative and finite"
    );
    let mut adam = Adam::<f32>::new(1e-3).unwrap();
    assert!(adam.set_learning_rate(f32::INFINITY).is_err());
    assert_eq!(adam.learning_rate(), 1e-3, "unchanged after an error");
    adam.set_learning_rate(5e-4).unwrap();
    assert_eq!(Optimizer::learning_rate(&adam), 5e-4);
}

#[test]
fn state_round_trips_and_foreign_state_is_refused() {
    let mut dense = Dense::<f64>::from_fn(2, 2, |i, j| (i + j) as f64).unwrap();
    let mut adam = Adam::new(1e-2).unwrap();
    assert_eq!(adam.state().step, 0);
    for _ in 0..3 {
        dense.forward(array![[1.0, -1.0]].view()).unwrap();
        dense.backward(array![[0.5, 2.0]].view()).unwrap();
        adam.step(&mut [&mut dense]).unwrap();
    }
    let state = adam.state();
    assert_eq!(state.step, 3);
    assert_eq!(state.kinds, ["exp_avg", "exp_avg_sq"]);
    assert_eq!(state.parameters.len(), 2, "one entry per parameter");
    assert_eq!(state.parameters[0].0, "weight");
    assert_eq!(
        state.parameters[0].1[0].shape(),
        [2, 2],
        "the parameter's (outputs, inputs) shape"
    );
    let mut other = Adam::new(1e-2).unwrap();
    other.set_state(state.clone()).unwrap();
    assert_eq!(other.state(), state);
    let refused = OptimizerState {
        optimizer: "Sgd",
        ..state.clone()
    };
    assert!(other.set_state(refused).is_err());
    assert!(AdamW::new(1e-2).unwrap().set_state(state).is_err());
    let mut sgd = Sgd::new(0.1).unwrap().with_momentum(0.9).unwrap();
    sgd.step(&mut [&mut dense]).unwrap();
    let sgd_state = sgd.state();
    assert_eq!(sgd_state.kinds, ["momentum_buffer"]);
    assert!(Adam::new(1e-2).unwrap().set_state(sgd_state).is_err());
}

#[test]
fn a_wrong_gradient_shape_is_an_error_and_nothing_is_updated() {
    let mut two = TwoParameters {
        a: ArrayD::zeros(IxDyn(&[2])),
        a_grad: ArrayD::zeros(IxDyn(&[3])),
        b: ArrayD::zeros(IxDyn(&[2])),
        b_grad: ArrayD::ones(IxDyn(&[2])),
    };
    let mut adamw = AdamW::new(0.1).unwrap();
    let err = adamw.step(&mut [&mut two]).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("AdamW: state of `a`: its gradient has shape"),
        "{err}"
    );
    assert_eq!(two.a, ArrayD::<f64>::zeros(IxDyn(&[2])), "left unchanged");
    assert_eq!(
        two.b,
        ArrayD::<f64>::zeros(IxDyn(&[2])),
        "left unchanged too"
    );
    assert_eq!((adamw.steps(), adamw.state().parameters.len()), (0, 0));
}

#[test]
fn names_follow_pytorch() {
    let net = Sequential::<f32>::new()
        .with(Dense::from_fn(3, 4, |_, _| 0.0).unwrap())
        .with(Relu::new())
        .with(Dense::from_fn(4, 2, |i, j| (10 * i + j) as f32).unwrap());
    let names: Vec<(String, Vec<usize>)> = ndlayers::state::named_parameters(&net)
        .into_iter()
        .map(|(name, value)| (name, value.shape().to_vec()))
        .collect();
    let expected = [
        ("0.weight", vec![4, 3]),
        ("0.bias", vec![4]),
        ("2.weight", vec![2, 4]),
        ("2.bias", vec![2]),
    ];
    assert_eq!(
        names,
        expected.map(|(n, s)| (n.to_string(), s)).to_vec(),
        "nn.Sequential's names, nn.Linear's (outputs, inputs) weights"
    );
    // A hand-written network names its parts.
    let (mut first, mut second) = (
        Dense::<f32>::from_fn(2, 2, |_, _| 1.0).unwrap(),
        Dense::<f32>::from_fn(2, 1, |_, _| 1.0).unwrap(),
    );
    let named = ndlayers::Named(vec![("fc1", &mut first), ("fc2", &mut second)]);
    let mut names = Vec::new();
    let model = ndlayers::state::Name::ROOT;
    let model = model.field("model");
    named.visit_state(&model, &mut |name, _| names.push(name.to_string()));
    assert_eq!(
        names,
        [
            "model.fc1.weight",
            "model.fc1.bias",
            "model.fc2.weight",
            "model.fc2.bias"
        ]
    );
}

/// SGD on parameters large enough to be updated as slices split across
/// threads (with `rayon`), row-major and column-major, against the update
/// written out with ndarray (the same operations, so the same bits): plain,
/// then with momentum over two steps.
#[test]
fn sgd_updates_large_parameters_of_either_layout_exactly() {
    let (inputs, outputs, batch) = (300, 220, 3);
    let x = Array2::from_shape_fn((batch, inputs), |(i, j)| ((i * 13 + j) % 7) as f64 * 0.25);
    let g = Array2::from_shape_fn((batch, outputs), |(i, j)| ((i + j * 5) % 11) as f64 - 5.0);
    let weight = Array2::from_shape_fn((inputs, outputs), |(i, j)| {
        ((i * 3 + j * 7) % 19) as f64 * 0.1
    });
    for momentum in [0.0, 0.9] {
        for column_major in [false, true] {
            let w0 = if column_major {
                weight.t().as_standard_layout().reversed_axes().to_owned()
            } else {
                weight.clone()
            };
            let mut layer = Dense::from_parameters(w0, Array1::zeros(outputs)).unwrap();
            let mut sgd = Sgd::new(0.01).unwrap().with_momentum(momentum).unwrap();
            let (mut want, mut velocity) = (weight.clone(), Array2::<f64>::zeros(weight.dim()));
            for _ in 0..2 {
                layer.forward_view(x.view()).unwrap();
                layer.backward_parameters(g.view()).unwrap();
                let grad = layer.grad_weight().to_owned();
                sgd.step(&mut [&mut layer]).unwrap();
                if momentum == 0.0 {
                    want.zip_mut_with(&grad, |w, &g| *w -= 0.01 * g);
                } else {
                    velocity.zip_mut_with(&grad, |v, &g| *v = momentum * *v + g);
                    want.zip_mut_with(&velocity, |w, &v| *w -= 0.01 * v);
                }
                assert_eq!(
                    layer.weight(),
                    want,
                    "momentum {momentum}, column-major {column_major}"
                );
            }
        }
    }
}

#[test]
fn parameter_groups_follow_pytorch() {
    // Biases (the one-dimensional parameters) in a group of their own, as
    // the usual AdamW recipe: no weight decay, another learning rate.
    let biases = || {
        ParamGroup::one_dimensional()
            .with_weight_decay(0.0)
            .unwrap()
    };
    let adamw = AdamW::new(2e-2)
        .unwrap()
        .with_weight_decay(0.1)
        .unwrap()
        .with_group(biases().with_learning_rate(1e-2).unwrap());
    assert_eq!(adamw.group_count(), 2);
    let worst = follow("adamw_groups", adamw);
    assert!(worst < 1e-12, "{worst:e}");
    let sgd = Sgd::new(0.1)
        .unwrap()
        .with_momentum(0.9)
        .unwrap()
        .with_weight_decay(0.01)
        .unwrap()
        .with_group(biases().with_learning_rate(0.05).unwrap());
    let worst = follow("sgd_groups", sgd);
    assert!(worst < 1e-12, "{worst:e}");
}

#[test]
fn group_learning_rates_are_checked() {
    let mut adamw = AdamW::<f64>::new(1e-3).unwrap().with_group(
        ParamGroup::one_dimensional()
            .with_learning_rate(1e-2)
            .unwrap(),
    );
    assert_eq!(adamw.group_learning_rate(1), Some(1e-2));
    assert_eq!(adamw.group_learning_rate(2), None);
    let err = adamw.set_group_learning_rate(2, 0.1).unwrap_err();
    assert!(err.to_string().contains("invalid group = 2"), "{err}");
    assert!(adamw.set_group_learning_rate(1, f64::NAN).is_err());
    adamw.set_learning_rate(0.5).unwrap();
    assert_eq!(
        (adamw.group_learning_rate(0), adamw.group_learning_rate(1)),
        (Some(0.5), Some(0.5)),
        "set_learning_rate sets every group's"
    );
    assert!(
        ParamGroup::<f64>::one_dimensional()
            .with_weight_decay(-1.0)
            .is_err()
    );
}

//! Checkpoints: round trips, resuming bit for bit, PyTorch models in and
//! out, and every kind of bad file refused with the network unchanged.

use std::collections::{BTreeMap, HashMap};

use ndlayers::checkpoint::{self, CheckpointError};
use ndlayers::ndarray::{Array2, ArrayD, Axis};
use ndlayers::prelude::*;
use ndlayers::rand::SeedableRng;
use ndlayers::rand::rngs::StdRng;
use ndlayers::state::{EntryMut, Name};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};

/// `Linear(64, 32) → ReLU → Linear(32, 10)` trained in PyTorch 2.15 by
/// `tests/reference/pytorch_model.py`, which also printed the logits below.
const MODEL_F32: &[u8] = include_bytes!("reference/pytorch_model.safetensors");
const MODEL_F64: &[u8] = include_bytes!("reference/pytorch_model_f64.safetensors");
const MODEL_BF16: &[u8] = include_bytes!("reference/pytorch_model_bf16.safetensors");
const OUTPUTS: &str = include_str!("reference/pytorch_model.txt");

/// The array printed on the line starting with `label`.
fn printed(label: &str) -> Array2<f64> {
    let line = OUTPUTS
        .lines()
        .find(|l| l.starts_with(&format!("{label} [")))
        .expect("label in the file");
    let (shape, values) = line[label.len() + 2..]
        .split_once("] ")
        .expect("[shape] values");
    let shape: Vec<usize> = shape.split(' ').map(|d| d.parse().unwrap()).collect();
    let values: Vec<f64> = values.split(' ').map(|v| v.parse().unwrap()).collect();
    Array2::from_shape_vec((shape[0], shape[1]), values).unwrap()
}

fn network<F: Real>(hidden: usize) -> Sequential<F> {
    let mut rng = StdRng::seed_from_u64(3);
    Sequential::new()
        .with(Dense::new(64, hidden, Init::HeUniform, &mut rng).unwrap())
        .with(Relu::new())
        .with(Dense::new(hidden, 10, Init::GlorotUniform, &mut rng).unwrap())
}

fn state_dict<F: Real>(net: &Sequential<F>) -> BTreeMap<String, ArrayD<F>> {
    ndlayers::state::named_parameters(net).into_iter().collect()
}

/// Sets every parameter of `layer` to `value`.
fn fill(layer: &mut dyn StateDict<f32>, value: f32) {
    layer.visit_state_mut(&Name::ROOT, &mut |_, entry| {
        if let EntryMut::Parameter { value: mut v, .. } = entry {
            v.fill(value);
        }
    });
}

/// The largest difference from PyTorch's logits, relative to the largest logit.
fn worst<F: Real>(net: &Sequential<F>, label: &str) -> f64 {
    let inputs = printed("inputs").mapv(F::lit);
    let want = printed(label);
    let got = net.infer(inputs.view()).unwrap();
    let scale = want.iter().fold(0.0_f64, |m, v| m.max(v.abs()));
    got.iter()
        .zip(&want)
        .map(|(g, w)| (g.to_f64().unwrap() - w).abs() / scale)
        .fold(0.0, f64::max)
}

#[test]
fn a_pytorch_model_reproduces_pytorchs_outputs() {
    let mut net = network::<f32>(32);
    checkpoint::from_bytes(MODEL_F32, &mut net, None).unwrap();
    let f32_worst = worst(&net, "logits_f32");
    assert!(f32_worst <= 1e-5, "f32: {f32_worst:e}");

    let mut net64 = network::<f64>(32);
    checkpoint::from_bytes(MODEL_F64, &mut net64, None).unwrap();
    let f64_worst = worst(&net64, "logits_f64");
    assert!(f64_worst <= 1e-12, "f64: {f64_worst:e}");

    // bfloat16 weights, converted to f32 on the way in.
    let mut from_bf16 = network::<f32>(32);
    checkpoint::from_bytes(MODEL_BF16, &mut from_bf16, None).unwrap();
    let bf16_worst = worst(&from_bf16, "logits_bf16");
    assert!(bf16_worst <= 1e-5, "bf16: {bf16_worst:e}");
    println!(
        "largest difference from PyTorch: f32 {f32_worst:.1e}, f64 {f64_worst:.1e}, bf16 {bf16_worst:.1e}"
    );

    // f32 weights into an f64 network are exact.
    let mut widened = network::<f64>(32);
    checkpoint::from_bytes(MODEL_F32, &mut widened, None).unwrap();
    assert!(worst(&widened, "logits_f32") <= 1e-5);
}

#[test]
fn an_export_is_the_state_dict_pytorch_wrote() {
    let mut net = network::<f32>(32);
    checkpoint::from_bytes(MODEL_F32, &mut net, None).unwrap();
    let exported = checkpoint::to_bytes(&net, None).unwrap();
    let (ours, theirs) = (
        SafeTensors::deserialize(&exported).unwrap(),
        SafeTensors::deserialize(MODEL_F32).unwrap(),
    );
    let mut names = ours.names();
    names.sort();
    assert_eq!(names, ["0.bias", "0.weight", "2.bias", "2.weight"]);
    for name in names {
        let (a, b) = (ours.tensor(name).unwrap(), theirs.tensor(name).unwrap());
        assert_eq!((a.dtype(), a.shape()), (b.dtype(), b.shape()), "{name}");
        assert_eq!(a.data(), b.data(), "{name}: the same bytes");
    }
    let (_, metadata) = SafeTensors::read_metadata(&exported).unwrap();
    assert_eq!(metadata.metadata().as_ref().unwrap()["format"], "pt");
}

#[test]
fn files_round_trip() {
    let net = network::<f64>(16);
    let path = std::env::temp_dir().join(format!("ndlayers-{}.safetensors", std::process::id()));
    checkpoint::save(&path, &net, None).unwrap();
    let mut fresh = network::<f64>(16);
    fresh.layers_mut()[0].visit_state_mut(&Name::ROOT, &mut |_, entry| {
        if let EntryMut::Parameter { mut value, .. } = entry {
            value.fill(0.0);
        }
    });
    checkpoint::load(&path, &mut fresh, None).unwrap();
    assert_eq!(state_dict(&fresh), state_dict(&net));
    std::fs::remove_file(&path).unwrap();
    let err = checkpoint::load(&path, &mut fresh, None).unwrap_err();
    assert!(matches!(err, CheckpointError::Io { .. }), "{err}");
    assert!(
        err.to_string().starts_with(&path.display().to_string()),
        "{err}"
    );
}

/// Trains `net` on a fixed batch of digits-sized data for `steps` steps.
fn train(net: &mut Sequential<f32>, optimizer: &mut dyn Optimizer<f32>, steps: usize) {
    let x = Array2::from_shape_fn((32, 64), |(i, j)| ((i * 7 + j * 3) % 17) as f32 / 16.0);
    let labels = ndlayers::ndarray::Array1::from_shape_fn(32, |i| (i % 10) as u8);
    let mut loss = SoftmaxCrossEntropy::new();
    for _ in 0..steps {
        let logits = net.forward_view(x.view()).unwrap();
        loss.forward(logits, labels.view()).unwrap();
        net.backward_parameters(loss.backward_view().unwrap())
            .unwrap();
        optimizer.step(&mut [net]).unwrap();
    }
}

/// Builds a fresh optimiser.
type MakeOptimizer = fn() -> Box<dyn Optimizer<f32>>;

#[test]
fn a_resumed_run_continues_bit_for_bit() {
    let optimizers: [MakeOptimizer; 3] = [
        || Box::new(Adam::new(1e-2).unwrap()),
        || Box::new(AdamW::new(1e-2).unwrap().with_weight_decay(0.1).unwrap()),
        || Box::new(Sgd::new(0.1).unwrap().with_momentum(0.9).unwrap()),
    ];
    for make in optimizers {
        // Uninterrupted: 20 steps.
        let (mut net, mut optimizer) = (network::<f32>(24), make());
        train(&mut net, &mut *optimizer, 20);
        // Interrupted after 10: save, rebuild everything from scratch, resume.
        let (mut first, mut first_optimizer) = (network::<f32>(24), make());
        train(&mut first, &mut *first_optimizer, 10);
        let bytes = checkpoint::to_bytes(&first, Some(&*first_optimizer)).unwrap();
        let mut resumed = Sequential::new()
            .with(Dense::<f32>::from_fn(64, 24, |_, _| 0.0).unwrap())
            .with(Relu::new())
            .with(Dense::from_fn(24, 10, |_, _| 0.0).unwrap());
        let mut resumed_optimizer = make();
        checkpoint::from_bytes(&bytes, &mut resumed, Some(&mut *resumed_optimizer)).unwrap();
        assert_eq!(resumed_optimizer.state(), first_optimizer.state());
        train(&mut resumed, &mut *resumed_optimizer, 10);
        let name = optimizer.state().optimizer;
        assert_eq!(
            state_dict(&resumed),
            state_dict(&net),
            "{name}: same weights, bit for bit"
        );
        assert_eq!(
            resumed_optimizer.state(),
            optimizer.state(),
            "{name}: same state"
        );
    }
}

/// A safetensors file of the given tensors (f32 unless stated).
fn file(tensors: &[(&str, Dtype, Vec<usize>, Vec<u8>)]) -> Vec<u8> {
    let views: Vec<(String, TensorView<'_>)> = tensors
        .iter()
        .map(|(n, d, s, b)| (n.to_string(), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    safetensors::serialize(views, Some(HashMap::new())).unwrap()
}

/// The PyTorch model's tensors, with `change` applied to the list.
fn model_with(
    change: impl FnOnce(&mut Vec<(&'static str, Dtype, Vec<usize>, Vec<u8>)>),
) -> Vec<u8> {
    let model = SafeTensors::deserialize(MODEL_F32).unwrap();
    let mut tensors: Vec<(&'static str, Dtype, Vec<usize>, Vec<u8>)> =
        ["0.weight", "0.bias", "2.weight", "2.bias"]
            .into_iter()
            .map(|n| {
                let t = model.tensor(n).unwrap();
                (n, t.dtype(), t.shape().to_vec(), t.data().to_vec())
            })
            .collect();
    change(&mut tensors);
    file(&tensors)
}

/// Loads `bytes`, expecting an error whose message is `message`, and checks
/// that the network and the optimiser are unchanged.
fn refused(bytes: &[u8], hidden: usize, with_optimizer: bool, message: &str) {
    let mut net = network::<f32>(hidden);
    let mut adam = Adam::new(1e-3).unwrap();
    train(&mut net, &mut adam, 1);
    let (before, state) = (state_dict(&net), adam.state());
    let optimizer: Option<&mut dyn Optimizer<f32>> = if with_optimizer {
        Some(&mut adam)
    } else {
        None
    };
    let err = checkpoint::from_bytes(bytes, &mut net, optimizer).unwrap_err();
    assert_eq!(err.to_string(), message);
    assert_eq!(
        state_dict(&net),
        before,
        "{message}: the network is unchanged"
    );
    assert_eq!(adam.state(), state, "{message}: the optimiser is unchanged");
}

#[test]
fn bad_files_are_refused_by_name_and_change_nothing() {
    // Missing: the network has a tensor the file lacks (the last bias is dropped).
    refused(
        &model_with(|t| {
            t.pop();
        }),
        32,
        false,
        "tensor `2.bias` is missing from the file (it has `0.bias`, `0.weight`, `2.weight`)",
    );
    // Unexpected: a tensor the network has no parameter for.
    refused(
        &model_with(|t| t.push(("4.weight", Dtype::F32, vec![1], vec![0; 4]))),
        32,
        false,
        "the file has tensors the network does not: `4.weight`",
    );
    // Wrong shape: a network of 16 hidden units.
    refused(
        MODEL_F32,
        16,
        false,
        "tensor `0.weight` has shape [32, 64], the network's entry [16, 64]",
    );
    // Wrong dtype.
    refused(
        &model_with(|t| t[1] = ("0.bias", Dtype::I32, vec![32], vec![0; 128])),
        32,
        false,
        "tensor `0.bias` has dtype I32; expected F16, BF16, F32 or F64",
    );
    // A NaN weight.
    refused(
        &model_with(|t| t[3].3[8..12].copy_from_slice(&f32::NAN.to_le_bytes())),
        32,
        false,
        "tensor `2.bias` holds NaN at [2]; state must be finite",
    );
    // Truncated, and a corrupt header.
    let truncated = &MODEL_F32[..MODEL_F32.len() - 10];
    let err = checkpoint::from_bytes(truncated, &mut network::<f32>(32), None).unwrap_err();
    assert!(matches!(err, CheckpointError::Format(_)), "{err}");
    refused(truncated, 32, false, &err.to_string());
    let mut corrupt = MODEL_F32.to_vec();
    corrupt[8] = b'#'; // the header's opening brace
    let err = checkpoint::from_bytes(&corrupt, &mut network::<f32>(32), None).unwrap_err();
    assert!(
        err.to_string().starts_with("not a valid safetensors file"),
        "{err}"
    );
    refused(&corrupt, 32, false, &err.to_string());
    refused(
        &[1, 2, 3],
        32,
        false,
        "not a valid safetensors file: header too small",
    );
    // Optimizer state asked for but absent, or of another optimiser.
    refused(
        MODEL_F32,
        32,
        true,
        "optimizer state: the file has no optimizer state (saved without an optimizer)",
    );
    // Some moments but not all.
    let mut net = network::<f32>(32);
    let mut adam = Adam::new(1e-3).unwrap();
    train(&mut net, &mut adam, 1);
    let full = checkpoint::to_bytes(&net, Some(&adam)).unwrap();
    let parsed = SafeTensors::deserialize(&full).unwrap();
    let kept: Vec<(String, TensorView<'_>)> = parsed
        .tensors()
        .into_iter()
        .filter(|(n, _)| n != "optimizer/exp_avg/0.weight")
        .collect();
    refused(
        &safetensors::serialize(kept, None).unwrap(),
        32,
        true,
        "optimizer state: `optimizer/exp_avg/0.weight` is missing from the file",
    );
    let mut net = network::<f32>(32);
    let mut sgd = Sgd::new(0.1).unwrap().with_momentum(0.5).unwrap();
    train(&mut net, &mut sgd, 2);
    refused(
        &checkpoint::to_bytes(&net, Some(&sgd)).unwrap(),
        32,
        true,
        "optimizer state: the file has Sgd's state, the optimizer given is Adam",
    );
}

#[test]
fn a_checkpoint_without_the_optimizer_still_loads_the_weights() {
    let mut net = network::<f32>(8);
    let mut adam = Adam::new(1e-3).unwrap();
    train(&mut net, &mut adam, 3);
    let bytes = checkpoint::to_bytes(&net, Some(&adam)).unwrap();
    let mut weights_only = network::<f32>(8);
    fill(&mut weights_only.layers_mut()[2], 1.0);
    checkpoint::from_bytes(&bytes, &mut weights_only, None).unwrap();
    assert_eq!(state_dict(&weights_only), state_dict(&net));
    // The digits' first row through both gives the same logits.
    let x = printed("inputs").mapv(|v| v as f32);
    let row = x.index_axis(Axis(0), 0).insert_axis(Axis(0));
    assert_eq!(weights_only.infer(row).unwrap(), net.infer(row).unwrap());
}

#[test]
fn f16_tensors_are_converted_exactly() {
    // The PyTorch model's f32 weights rounded to f16 (as `tensor.half()`
    // would), loaded into an f32 network: each weight is the f16 value, exactly.
    let model = SafeTensors::deserialize(MODEL_F32).unwrap();
    let halves: Vec<(String, Vec<usize>, Vec<u8>)> = model
        .tensors()
        .into_iter()
        .map(|(name, t)| {
            let bytes = t
                .data()
                .chunks_exact(4)
                .flat_map(|b| {
                    half::f16::from_f32(f32::from_le_bytes(b.try_into().unwrap())).to_le_bytes()
                })
                .collect();
            (name, t.shape().to_vec(), bytes)
        })
        .collect();
    let views: Vec<(String, TensorView<'_>)> = halves
        .iter()
        .map(|(n, s, b)| {
            (
                n.clone(),
                TensorView::new(Dtype::F16, s.clone(), b).unwrap(),
            )
        })
        .collect();
    let bytes = safetensors::serialize(views, None).unwrap();
    let mut net = network::<f32>(32);
    checkpoint::from_bytes(&bytes, &mut net, None).unwrap();
    let loaded = state_dict(&net);
    for (name, shape, data) in &halves {
        let want: Vec<f32> = data
            .chunks_exact(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect();
        assert_eq!(loaded[name].shape(), &shape[..]);
        assert_eq!(
            loaded[name].iter().copied().collect::<Vec<_>>(),
            want,
            "{name}"
        );
    }
}

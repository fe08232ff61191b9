//! The state interface and what reads it (issue 27): names that must be
//! unique, buffers, optimiser state keyed by name and checked as a whole,
//! files that a careless or hostile user could produce, and steps that
//! change everything or nothing.

use std::collections::HashMap;

use ndlayers::checkpoint::{self, CheckpointError, IncompatibleKeys};
use ndlayers::ndarray::{Array0, Array1, Array2, ArrayD, ArrayView2, IxDyn, array};
use ndlayers::optim::OptimizerState;
use ndlayers::prelu::Prelu;
use ndlayers::prelude::*;
use ndlayers::state::{self, Entry, EntryMut, Name, Tensor};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};

/// `Linear(3, 4) → ReLU → Linear(4, 2)` with fixed weights.
fn network() -> Sequential<f32> {
    Sequential::new()
        .with(Dense::from_fn(3, 4, |i, j| (i as f32 - j as f32) / 4.0).unwrap())
        .with(Relu::new())
        .with(Dense::from_fn(4, 2, |i, j| (i + 2 * j) as f32 / 8.0 - 0.3).unwrap())
}

/// `steps` steps of `optimizer` on a fixed batch.
fn train(net: &mut Sequential<f32>, optimizer: &mut dyn Optimizer<f32>, steps: usize) {
    let x = array![[0.5_f32, -1.0, 2.0], [1.5, 0.25, -0.5], [0.0, 1.0, 1.0]];
    let labels = array![0_u8, 1, 1];
    let mut loss = SoftmaxCrossEntropy::new();
    for _ in 0..steps {
        let logits = net.forward_view(x.view()).unwrap();
        loss.forward(logits, labels.view()).unwrap();
        net.backward_parameters(loss.backward_view().unwrap())
            .unwrap();
        optimizer.step(&mut [net]).unwrap();
    }
}

/// Everything a load could change, as bits: the network's entries and the
/// optimiser's state.
fn snapshot(net: &Sequential<f32>, optimizer: &dyn Optimizer<f32>) -> Vec<(String, Vec<u32>)> {
    let mut all: Vec<(String, Vec<u32>)> = state::named_parameters(net)
        .into_iter()
        .map(|(name, value)| (name, value.iter().map(|v| v.to_bits()).collect()))
        .collect();
    let state = optimizer.state();
    all.push(("step".into(), vec![state.step as u32]));
    for (name, buffers) in state.parameters {
        for (kind, buffer) in state.kinds.iter().zip(buffers) {
            all.push((
                format!("{kind}/{name}"),
                buffer.iter().map(|v| v.to_bits()).collect(),
            ));
        }
    }
    all
}

/// A file's tensors, in the file's (sorted) order.
type Tensors = Vec<(String, Dtype, Vec<usize>, Vec<u8>)>;

fn tensors(bytes: &[u8]) -> Tensors {
    let file = SafeTensors::deserialize(bytes).unwrap();
    let mut all: Tensors = file
        .tensors()
        .into_iter()
        .map(|(n, t)| (n, t.dtype(), t.shape().to_vec(), t.data().to_vec()))
        .collect();
    all.sort_by(|a, b| a.0.cmp(&b.0));
    all
}

fn serialize(tensors: &Tensors) -> Vec<u8> {
    let views: Vec<(String, TensorView<'_>)> = tensors
        .iter()
        .map(|(n, d, s, b)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    safetensors::serialize(views, None).unwrap()
}

fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// The bytes of a network trained 2 steps with Adam, with its state.
fn adam_file() -> Vec<u8> {
    let (mut net, mut adam) = (network(), Adam::new(1e-2).unwrap());
    train(&mut net, &mut adam, 2);
    checkpoint::to_bytes(&net, Some(&adam)).unwrap()
}

/// Loads `bytes` into a network and Adam trained one step, expecting an
/// error containing `message`, and checks that neither changed.
#[track_caller]
fn refused_by_adam(bytes: &[u8], message: &str) {
    let (mut net, mut adam) = (network(), Adam::new(1e-2).unwrap());
    train(&mut net, &mut adam, 1);
    let before = snapshot(&net, &adam);
    let err = checkpoint::from_bytes(bytes, &mut net, Some(&mut adam)).unwrap_err();
    assert!(
        err.to_string().contains(message),
        "{err}\nshould contain: {message}"
    );
    assert_eq!(snapshot(&net, &adam), before, "{message}: nothing changed");
}

/// Finding 1: `Named` with one name twice lost a layer's weights.
#[test]
fn a_name_used_twice_is_an_error_not_an_overwrite() {
    let mut a = Dense::<f32>::from_fn(2, 2, |_, _| 1.0).unwrap();
    let mut b = Dense::<f32>::from_fn(2, 2, |_, _| 2.0).unwrap();
    let mut twice = Named(vec![("fc", &mut a), ("fc", &mut b)]);
    let expected = "two state entries are named `fc.weight`";
    let err = checkpoint::to_bytes(&twice, None).unwrap_err();
    assert!(matches!(
        err,
        CheckpointError::State(LayerError::DuplicateName { .. })
    ));
    assert!(err.to_string().contains(expected), "{err}");
    let err = state::check_walks(&mut twice).unwrap_err();
    assert!(err.to_string().starts_with(expected), "{err}");
    let err = Adam::new(0.1).unwrap().step(&mut [&mut twice]).unwrap_err();
    assert!(err.to_string().starts_with(expected), "{err}");
    let bytes = checkpoint::to_bytes(&Named(vec![("fc", &mut a)]), None).unwrap();
    let mut twice = Named(vec![("fc", &mut a), ("fc", &mut b)]);
    let err = checkpoint::from_bytes(&bytes, &mut twice, None).unwrap_err();
    assert!(err.to_string().contains(expected), "{err}");
    assert_eq!(b.weight(), Array2::from_elem((2, 2), 2.0), "unchanged");
}

/// Finding 2: a header listing a tensor twice was accepted.
#[test]
fn a_header_naming_a_tensor_twice_is_refused() {
    let entry = r#"{"dtype":"F32","shape":[1],"data_offsets":[0,4]}"#;
    let header = format!(r#"{{"weight":{entry},"weight":{entry}}}"#);
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(&1.5_f32.to_le_bytes());
    // The safetensors crate alone takes it (the last entry wins).
    assert!(SafeTensors::deserialize(&bytes).is_ok());
    let mut layer = Prelu::<f32, ndlayers::ndarray::Ix2>::new(1).unwrap();
    let err = checkpoint::from_bytes(&bytes, &mut layer, None).unwrap_err();
    assert_eq!(
        err.to_string(),
        "not a valid safetensors file: the header lists tensor `weight` twice"
    );
}

/// Finding 2, with Adam given: every malformed state is refused by name and
/// changes nothing.
#[test]
fn adam_state_is_checked_as_a_whole() {
    let file = tensors(&adam_file());
    let edited = |change: &dyn Fn(&mut Tensors)| {
        let mut t = file.clone();
        change(&mut t);
        serialize(&t)
    };
    // Half of its state: every exp_avg, no exp_avg_sq.
    refused_by_adam(
        &edited(&|t| t.retain(|(n, ..)| !n.starts_with("optimizer/exp_avg_sq/"))),
        "`optimizer/exp_avg_sq/0.weight` is missing from the file",
    );
    // No moments at all at step 2.
    refused_by_adam(
        &edited(&|t| t.retain(|(n, ..)| !n.starts_with("optimizer/exp_"))),
        "at step 2 there are no buffers",
    );
    // One parameter's moments missing.
    refused_by_adam(
        &edited(&|t| t.retain(|(n, ..)| !n.ends_with("/2.bias"))),
        "`optimizer/exp_avg/2.bias` is missing from the file",
    );
    // A negative exp_avg_sq (NaN weights one step later).
    refused_by_adam(
        &edited(&|t| {
            let sq = t
                .iter_mut()
                .find(|(n, ..)| n == "optimizer/exp_avg_sq/0.bias")
                .unwrap();
            sq.3[..4].copy_from_slice(&(-1.0_f32).to_le_bytes());
        }),
        "exp_avg_sq holds -1 at [0]; it must be non-negative",
    );
    // A moment for a parameter the network lacks.
    refused_by_adam(
        &edited(&|t| {
            t.push((
                "optimizer/exp_avg/9.weight".into(),
                Dtype::F32,
                vec![1],
                f32_bytes(&[0.0]),
            ))
        }),
        "`optimizer/exp_avg/9.weight` is state for `9.weight`, which is not a parameter of the network",
    );
    // Another optimiser's buffer, and an unknown entry.
    refused_by_adam(
        &edited(&|t| {
            t.push((
                "optimizer/momentum_buffer/0.bias".into(),
                Dtype::F32,
                vec![4],
                f32_bytes(&[0.0; 4]),
            ))
        }),
        "`optimizer/momentum_buffer/0.bias` is not state Adam keeps",
    );
    refused_by_adam(
        &edited(&|t| {
            t.push((
                "optimizer/lr".into(),
                Dtype::F32,
                vec![1],
                f32_bytes(&[0.1]),
            ))
        }),
        "`optimizer/lr` is not state Adam keeps",
    );
    // A moment of the wrong shape.
    refused_by_adam(
        &edited(&|t| {
            let m = t
                .iter_mut()
                .find(|(n, ..)| n == "optimizer/exp_avg/0.bias")
                .unwrap();
            (m.2, m.3) = (vec![3], f32_bytes(&[0.0; 3]));
        }),
        "tensor `optimizer/exp_avg/0.bias` has shape [3], the network's entry [4]",
    );
    // A negative step count.
    refused_by_adam(
        &edited(&|t| {
            let step = t
                .iter_mut()
                .find(|(n, ..)| n == "optimizer/step/Adam")
                .unwrap();
            step.3 = (-2_i64).to_le_bytes().to_vec();
        }),
        "`optimizer/step/Adam` must be one non-negative I64",
    );
    // Two optimisers' step counts: refused every time (it used to depend on
    // hash-map order and load in about 60% of runs).
    let two = edited(&|t| {
        let step = t
            .iter()
            .find(|(n, ..)| n == "optimizer/step/Adam")
            .unwrap()
            .clone();
        t.push(("optimizer/step/Sgd".into(), step.1, step.2, step.3));
    });
    for _ in 0..20 {
        refused_by_adam(
            &two,
            "the file has the state of several optimizers: `Adam`, `Sgd`",
        );
    }
}

/// Finding 2: a step count above `i64::MAX` was saved as -2.
#[test]
fn step_counts_must_fit_an_i64() {
    let (mut net, mut adam) = (network(), Adam::new(1e-2).unwrap());
    train(&mut net, &mut adam, 1);
    let state = OptimizerState {
        step: i64::MAX as u64 + 1,
        ..adam.state()
    };
    let before = snapshot(&net, &adam);
    let err = adam.set_state(state).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Adam: state of `step`: 9223372036854775808 steps do not fit a checkpoint's I64"
    );
    assert_eq!(snapshot(&net, &adam), before);
    // The largest count that fits round-trips.
    adam.set_state(OptimizerState {
        step: i64::MAX as u64,
        ..adam.state()
    })
    .unwrap();
    let bytes = checkpoint::to_bytes(&net, Some(&adam)).unwrap();
    let mut other = Adam::new(1e-2).unwrap();
    checkpoint::from_bytes(&bytes, &mut network(), Some(&mut other)).unwrap();
    assert_eq!(other.steps(), i64::MAX as u64);
}

/// `set_state` applies the rules a checkpoint does.
#[test]
fn set_state_refuses_what_a_checkpoint_refuses() {
    let (mut net, mut adam) = (network(), Adam::new(1e-2).unwrap());
    train(&mut net, &mut adam, 2);
    let good = adam.state();
    let mut negative = good.clone();
    negative.parameters[1].1[1][[0]] = -0.5;
    let mut no_moments = good.clone();
    no_moments.parameters.clear();
    let early = OptimizerState {
        step: 0,
        ..good.clone()
    };
    let mut ragged = good.clone();
    ragged.parameters[0].1.pop();
    let mut twice = good.clone();
    twice.parameters[1].0 = twice.parameters[0].0.clone();
    let mut infinite = good.clone();
    infinite.parameters[0].1[0][[0, 0]] = f32::INFINITY;
    let cases = [
        (
            negative,
            "Adam: state of `0.bias`: exp_avg_sq holds -0.5 at [0]; it must be non-negative",
        ),
        (
            no_moments,
            "Adam: state of `step`: at step 2 there are no buffers [\"exp_avg\", \"exp_avg_sq\"]",
        ),
        (
            early,
            "Adam: state of `step`: there are buffers before the first step",
        ),
        (
            ragged,
            "Adam: state of `0.weight`: 1 buffers for the kinds [\"exp_avg\", \"exp_avg_sq\"]",
        ),
        (
            twice,
            "two state entries are named `0.weight`; give each part of the network its own name",
        ),
        (
            infinite,
            "Adam: state of `0.weight`: exp_avg holds inf at [0, 0]; it must be finite",
        ),
    ];
    for (state, message) in cases {
        let err = adam.set_state(state).unwrap_err();
        assert_eq!(err.to_string(), message);
        assert_eq!(adam.state(), good, "{message}: unchanged");
    }
    // Plain SGD keeps no buffers; momentum SGD's are refused by it.
    let mut momentum = Sgd::new(0.1).unwrap().with_momentum(0.9).unwrap();
    train(&mut network(), &mut momentum, 1);
    let err = Sgd::new(0.1)
        .unwrap()
        .set_state(momentum.state())
        .unwrap_err();
    assert!(err.to_string().contains("keeps []"), "{err}");
}

/// Finding 2: an f64 beyond f32's range was reported as `holds inf`.
#[test]
fn an_f64_beyond_f32_is_out_of_range_not_infinite() {
    let mut t = tensors(&checkpoint::to_bytes(&network(), None).unwrap());
    let bias = t.iter_mut().find(|(n, ..)| n == "0.bias").unwrap();
    let values = [0.5_f64, 1e300, 0.0, 0.0];
    (bias.1, bias.3) = (
        Dtype::F64,
        values.iter().flat_map(|v| v.to_le_bytes()).collect(),
    );
    let bytes = serialize(&t);
    let mut net = network();
    let err = checkpoint::from_bytes(&bytes, &mut net, None).unwrap_err();
    assert_eq!(
        err.to_string(),
        "tensor `0.bias` holds 1e300 at [1], outside the range of f32"
    );
    // The same file is exact for an f64 network.
    let mut wide = Sequential::<f64>::new()
        .with(Dense::from_fn(3, 4, |_, _| 0.0).unwrap())
        .with(Relu::new())
        .with(Dense::from_fn(4, 2, |_, _| 0.0).unwrap());
    checkpoint::from_bytes(&bytes, &mut wide, None).unwrap();
    assert_eq!(state::named_parameters(&wide)[1].1[[1]], 1e300);
}

/// Finding 2: an empty tensor name gave an error that showed nothing, and a
/// missing tensor in a huge file a 2.6 MB message.
#[test]
fn error_messages_show_empty_names_and_stay_short() {
    let mut t = tensors(&checkpoint::to_bytes(&network(), None).unwrap());
    t.push((String::new(), Dtype::F32, vec![1], f32_bytes(&[1.0])));
    let err = checkpoint::from_bytes(&serialize(&t), &mut network(), None).unwrap_err();
    assert_eq!(
        err.to_string(),
        "the file has tensors the network does not: ``"
    );

    let huge: Tensors = (0..300_000)
        .map(|i| (format!("layer{i}.weight"), Dtype::F32, vec![0], Vec::new()))
        .collect();
    let err = checkpoint::from_bytes(&serialize(&huge), &mut network(), None).unwrap_err();
    let message = err.to_string();
    assert!(message.len() < 300, "{} bytes: {message}", message.len());
    assert!(message.ends_with("and 299995 more)"), "{message}");
}

/// What to build: optimiser moments have their parameter's shape (Dense's
/// weight is `(outputs, inputs)` in both).
#[test]
fn moments_have_their_parameters_shape() {
    let t = tensors(&adam_file());
    let shape = |name: &str| t.iter().find(|(n, ..)| n == name).unwrap().2.clone();
    assert_eq!(shape("0.weight"), [4, 3]);
    assert_eq!(shape("optimizer/exp_avg/0.weight"), [4, 3]);
    assert_eq!(shape("optimizer/exp_avg_sq/0.weight"), [4, 3]);
    assert_eq!(shape("optimizer/exp_avg/2.weight"), [2, 4]);
}

/// Finding 3: Adam took a parameter whose shape changed since the last step,
/// and a step that failed half-applied.
#[test]
fn adam_refuses_state_that_no_longer_fits() {
    let mut adam = Adam::new(0.1).unwrap();
    let mut dense = Dense::<f32>::from_fn(3, 4, |_, _| 0.5).unwrap();
    dense.forward(array![[1.0, 2.0, 3.0]].view()).unwrap();
    dense.backward(array![[1.0, 1.0, 1.0, 1.0]].view()).unwrap();
    adam.step(&mut [&mut dense]).unwrap();
    let state = adam.state();

    let mut wider = Dense::<f32>::from_fn(3, 5, |_, _| 0.5).unwrap();
    let err = adam.step(&mut [&mut wider]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Adam: state of `weight`: the parameter has shape [5, 3], its optimiser state [4, 3] (it changed since the last step)"
    );
    assert_eq!(wider.weight(), Array2::from_elem((3, 5), 0.5), "unchanged");
    assert_eq!(adam.state(), state, "unchanged");

    // Other layers, or the same ones in another order, are refused by name.
    let mut renamed = Named(vec![("fc", &mut dense)]);
    let err = adam.step(&mut [&mut renamed]).unwrap_err();
    assert!(
        err.to_string()
            .contains("parameter 0 is `fc.weight`, the optimiser's state is for `weight`"),
        "{err}"
    );
    let mut extra = Dense::<f32>::from_fn(4, 1, |_, _| 0.5).unwrap();
    let err = adam.step(&mut [&mut dense, &mut extra]).unwrap_err();
    assert!(err.to_string().contains("`0.weight`"), "{err}");
    assert_eq!(adam.state(), state, "unchanged");
}

/// Finding 3: zero classes gave `LabelOutOfRange` for labels, `Empty` for probabilities.
#[test]
fn cross_entropy_with_no_classes_is_empty_for_both_kinds_of_target() {
    let logits = Array2::<f32>::zeros((2, 0));
    let mut loss = SoftmaxCrossEntropy::new();
    let labels = array![0_u8, 0];
    let probabilities = Array2::<f32>::zeros((2, 0));
    let by_label = loss.forward(logits.view(), labels.view()).unwrap_err();
    let by_probability = loss
        .forward(logits.view(), probabilities.view())
        .unwrap_err();
    assert!(matches!(by_label, LayerError::Empty { .. }), "{by_label}");
    assert_eq!(by_label, by_probability);
}

/// `load_state_dict(strict=False)`: what matches loads, the rest is returned.
#[test]
fn a_non_strict_load_returns_the_missing_and_unexpected_keys() {
    let mut t = tensors(&checkpoint::to_bytes(&network(), None).unwrap());
    t.retain(|(n, ..)| n != "2.bias");
    t.push((
        "classifier.weight".into(),
        Dtype::F32,
        vec![1],
        f32_bytes(&[1.0]),
    ));
    let bytes = serialize(&t);
    let mut last = Dense::from_fn(4, 2, |_, _| 7.0).unwrap();
    last.set_bias(array![7.0, 7.0].view()).unwrap();
    let mut net = Sequential::new()
        .with(Dense::<f32>::from_fn(3, 4, |_, _| 0.0).unwrap())
        .with(Relu::new())
        .with(last);
    let err = checkpoint::from_bytes(&bytes, &mut net, None).unwrap_err();
    assert!(matches!(err, CheckpointError::Missing { .. }), "{err}");
    let keys = checkpoint::from_bytes_with(&bytes, &mut net, None, false).unwrap();
    assert_eq!(
        keys,
        IncompatibleKeys {
            missing_keys: vec!["2.bias".into()],
            unexpected_keys: vec!["classifier.weight".into()],
        }
    );
    let loaded = state::named_parameters(&net);
    assert_eq!(loaded[0].1, state::named_parameters(&network())[0].1);
    assert_eq!(loaded[3].1, ArrayD::from_elem(IxDyn(&[2]), 7.0), "kept");
    // Shapes are still checked.
    let mut small = Sequential::new().with(Dense::<f32>::from_fn(3, 5, |_, _| 0.0).unwrap());
    let err = checkpoint::from_bytes_with(&bytes, &mut small, None, false).unwrap_err();
    assert!(matches!(err, CheckpointError::Shape { .. }), "{err}");
}

/// A user-written layer with a parameter, a float buffer and an integer
/// buffer: saved, loaded, stepped, in PyTorch's dtypes.
struct Scale {
    scale: Array1<f32>,
    grad_scale: Array1<f32>,
    running_mean: Array1<f32>,
    batches: Array0<i64>,
}

impl Scale {
    fn new(n: usize) -> Self {
        Scale {
            scale: Array1::ones(n),
            grad_scale: Array1::zeros(n),
            running_mean: Array1::zeros(n),
            batches: Array0::zeros(()),
        }
    }
}

impl StateDict<f32> for Scale {
    fn visit_state(&self, prefix: &Name<'_>, visit: &mut dyn FnMut(&Name<'_>, Entry<'_, f32>)) {
        let entry = Entry::parameter(self.scale.view(), self.grad_scale.view());
        visit(&prefix.field("scale"), entry);
        let mean = self.running_mean.view().into_dyn();
        visit(&prefix.field("running_mean"), Entry::Buffer(mean));
        let batches = self.batches.view().into_dyn();
        visit(&prefix.field("batches"), Entry::IntBuffer(batches));
    }

    fn visit_state_mut(
        &mut self,
        prefix: &Name<'_>,
        visit: &mut dyn FnMut(&Name<'_>, EntryMut<'_, f32>),
    ) {
        let entry = EntryMut::parameter(self.scale.view_mut(), self.grad_scale.view_mut());
        visit(&prefix.field("scale"), entry);
        let mean = self.running_mean.view_mut().into_dyn();
        visit(&prefix.field("running_mean"), EntryMut::Buffer(mean));
        let batches = self.batches.view_mut().into_dyn();
        visit(&prefix.field("batches"), EntryMut::IntBuffer(batches));
    }
}

#[test]
fn buffers_are_saved_loaded_and_never_stepped() {
    let mut layer = Scale::new(3);
    state::check_walks(&mut layer).unwrap();
    layer.grad_scale.fill(1.0);
    layer.running_mean.assign(&array![0.25, -1.5, 3.0]);
    layer.batches.fill(i64::MAX - 1);
    let mut sgd = Sgd::new(0.5).unwrap().with_momentum(0.5).unwrap();
    sgd.step(&mut [&mut layer]).unwrap();
    assert_eq!(
        layer.scale,
        Array1::from_elem(3, 0.5),
        "the parameter moved"
    );
    assert_eq!(
        layer.running_mean,
        array![0.25, -1.5, 3.0],
        "buffers did not"
    );
    assert_eq!(
        sgd.state().parameters.len(),
        1,
        "state for the parameter only"
    );

    let path =
        std::env::temp_dir().join(format!("ndlayers-state-{}.safetensors", std::process::id()));
    checkpoint::save(&path, &layer, Some(&sgd)).unwrap(); // a shared reference
    let bytes = std::fs::read(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    let t = tensors(&bytes);
    let find = |name: &str| t.iter().find(|(n, ..)| n == name).unwrap();
    assert_eq!(
        find("batches").1,
        Dtype::I64,
        "as PyTorch's num_batches_tracked"
    );
    assert_eq!(find("running_mean").1, Dtype::F32);
    assert!(
        t.iter()
            .all(|(n, ..)| !n.contains("momentum_buffer/running_mean"))
    );

    let mut fresh = Scale::new(3);
    let mut resumed = Sgd::new(0.5).unwrap().with_momentum(0.5).unwrap();
    checkpoint::from_bytes(&bytes, &mut fresh, Some(&mut resumed)).unwrap();
    assert_eq!(fresh.scale, layer.scale);
    assert_eq!(fresh.running_mean, layer.running_mean);
    assert_eq!(fresh.batches, layer.batches);
    assert_eq!(resumed.state(), sgd.state());
    let buffers = state::named_buffers(&fresh);
    assert_eq!(
        buffers[1],
        (
            "batches".into(),
            Tensor::Int(ArrayD::from_elem(IxDyn(&[]), i64::MAX - 1))
        )
    );

    // An integer buffer stored as a float is refused by name.
    let mut t = t.clone();
    let batches = t.iter_mut().find(|(n, ..)| n == "batches").unwrap();
    (batches.1, batches.3) = (Dtype::F64, 1.0_f64.to_le_bytes().to_vec());
    let err = checkpoint::from_bytes(&serialize(&t), &mut Scale::new(3), None).unwrap_err();
    assert_eq!(
        err.to_string(),
        "tensor `batches` has dtype F64; expected I64"
    );
}

/// Walks that disagree are caught by `check_walks` and refused by a load.
#[test]
fn drifting_walks_are_caught() {
    struct Drifting(Scale);
    impl StateDict<f32> for Drifting {
        fn visit_state(&self, prefix: &Name<'_>, visit: &mut dyn FnMut(&Name<'_>, Entry<'_, f32>)) {
            self.0.visit_state(prefix, visit)
        }
        fn visit_state_mut(
            &mut self,
            prefix: &Name<'_>,
            visit: &mut dyn FnMut(&Name<'_>, EntryMut<'_, f32>),
        ) {
            // Forgets the buffers.
            let entry = EntryMut::parameter(self.0.scale.view_mut(), self.0.grad_scale.view_mut());
            visit(&prefix.field("scale"), entry);
        }
    }
    let mut layer = Drifting(Scale::new(2));
    let err = state::check_walks(&mut layer).unwrap_err();
    assert!(
        err.to_string()
            .contains("the mutable walk visits 1 entries, the shared one 3"),
        "{err}"
    );
    let bytes = checkpoint::to_bytes(&layer, None).unwrap();
    let err = checkpoint::from_bytes(&bytes, &mut layer, None).unwrap_err();
    assert!(err.to_string().contains("state walk"), "{err}");
}

/// Every built-in layer's two walks agree.
#[test]
fn every_layer_walks_consistently() {
    let mut net = Sequential::<f64>::new()
        .with(Dense::from_fn(3, 4, |_, _| 0.0).unwrap())
        .with(LayerNorm::new(4).unwrap())
        .with(Prelu::new(4).unwrap())
        .with(Dropout::new(0.5, 1).unwrap())
        .with(Tanh::new())
        .with(Softmax::new());
    state::check_walks(&mut net).unwrap();
    assert_eq!(state::named_parameters(&net).len(), 5);
    let x = Array2::from_elem((2, 3), 0.5);
    let _: ArrayView2<'_, f64> = net.forward_view(x.view()).unwrap();
}

/// Builds a fresh optimiser.
type MakeOptimizer = fn() -> Box<dyn Optimizer<f32>>;

/// Seeded mutations of valid files, and arbitrary bytes, into `from_bytes`:
/// no panic, and every rejection leaves network and optimiser bit-identical.
#[test]
fn hostile_model_files_never_panic_and_rejections_change_nothing() {
    let make: [MakeOptimizer; 3] = [
        || Box::new(Adam::new(1e-2).unwrap()),
        || Box::new(AdamW::new(1e-2).unwrap()),
        || Box::new(Sgd::new(0.1).unwrap().with_momentum(0.9).unwrap()),
    ];
    // Valid files: without state, and with each optimiser's after 0 and 2 steps.
    let mut valid = vec![checkpoint::to_bytes(&network(), None).unwrap()];
    for make in make {
        for steps in [0, 2] {
            let (mut net, mut optimizer) = (network(), make());
            train(&mut net, &mut *optimizer, steps);
            valid.push(checkpoint::to_bytes(&net, Some(&*optimizer)).unwrap());
        }
    }
    let mutated = (
        0..valid.len(),
        any::<u64>(),
        0..4_usize,
        prop::collection::vec(any::<u8>(), 1..16),
    );
    let arbitrary = prop::collection::vec(any::<u8>(), 0..512);
    let strategy = prop_oneof![
        3 => mutated.prop_map(move |(which, at, how, junk)| mutate(&valid[which], at, how, &junk)),
        1 => arbitrary,
    ];
    let config = Config {
        cases: 2000,
        failure_persistence: None,
        ..Config::default()
    };
    let mut runner =
        TestRunner::new_with_rng(config, TestRng::deterministic_rng(RngAlgorithm::ChaCha));
    let outcomes = std::cell::RefCell::new(HashMap::<bool, usize>::new());
    runner
        .run(&strategy, |bytes| {
            for (k, make) in make.iter().enumerate() {
                let (mut net, mut optimizer) = (network(), make());
                train(&mut net, &mut *optimizer, 1 + k % 2);
                let before = snapshot(&net, &*optimizer);
                let result = checkpoint::from_bytes(&bytes, &mut net, Some(&mut *optimizer));
                if result.is_err() {
                    prop_assert_eq!(snapshot(&net, &*optimizer), before);
                }
                *outcomes.borrow_mut().entry(result.is_ok()).or_default() += 1;
            }
            let mut net = network();
            let before = state::named_parameters(&net);
            if checkpoint::from_bytes(&bytes, &mut net, None).is_err() {
                prop_assert_eq!(state::named_parameters(&net), before);
            }
            Ok(())
        })
        .unwrap();
    let outcomes = outcomes.into_inner();
    println!("loads: {outcomes:?} (true: accepted)");
    assert!(
        outcomes.get(&false).copied().unwrap_or(0) > 1000,
        "most are refused"
    );
}

/// One mutation of `bytes` at a position drawn from `at`: truncation, byte
/// flips, an insertion, or a rewrite inside the JSON header.
fn mutate(bytes: &[u8], at: u64, how: usize, junk: &[u8]) -> Vec<u8> {
    let mut out = bytes.to_vec();
    let header_end = 8 + u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let position = (at % out.len() as u64) as usize;
    match how {
        0 => out.truncate(position),
        1 => {
            for (i, &j) in junk.iter().enumerate() {
                let p = (position + i * 7919) % out.len();
                out[p] ^= j | 1;
            }
        }
        2 => {
            out.splice(position..position, junk.iter().copied());
        }
        _ => {
            // Overwrite header bytes with JSON-ish characters, so the header
            // often stays parseable but says something else.
            let alphabet = b"0123456789,:[]{}\"FIBU68";
            let start = 8 + (at as usize % (header_end - 8));
            for (i, &j) in junk.iter().enumerate() {
                if start + i < header_end {
                    out[start + i] = alphabet[j as usize % alphabet.len()];
                }
            }
        }
    }
    out
}

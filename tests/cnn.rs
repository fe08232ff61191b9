//! The CNN layers (issue 28): Conv2d, MaxPool2d, AvgPool2d, BatchNorm1d/2d
//! and Flatten against PyTorch's numbers, finite differences, a CNN in one
//! `Sequential`, and bad input.

use std::collections::HashMap;
use std::sync::OnceLock;

use ndlayers::StateDict;
use ndlayers::checkpoint;
use ndlayers::gradcheck::GradCheck;
use ndlayers::ndarray::{
    Array, Array1, Array2, Array4, ArrayView, Dimension, Ix1, Ix2, Ix4, IxDyn, ShapeBuilder,
};
use ndlayers::prelude::*;
use ndlayers::rand::SeedableRng;
use ndlayers::rand::rngs::StdRng;
use ndlayers::state;

/// Tensors by name: shape and values.
type Table = HashMap<String, (Vec<usize>, Vec<f64>)>;

/// Every tensor `tests/reference/cnn.py` printed (PyTorch 2.15, CPU): name → (shape, values).
fn reference() -> &'static Table {
    static TABLE: OnceLock<Table> = OnceLock::new();
    TABLE.get_or_init(|| {
        include_str!("reference/cnn.txt")
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|line| {
                let (name, rest) = line.split_once(' ').expect("name dtype [shape] values");
                let (_dtype, rest) = rest.split_once(" [").expect("dtype");
                let (shape, values) = rest.split_once(']').expect("shape");
                let shape = shape
                    .split_whitespace()
                    .map(|d| d.parse().unwrap())
                    .collect();
                let values = values
                    .split_whitespace()
                    .map(|v| v.parse().unwrap())
                    .collect();
                (name.to_string(), (shape, values))
            })
            .collect()
    })
}

/// The reference tensor `name` as an array of `F` and dimension `D`.
fn tensor<F: Real, D: Dimension>(name: &str) -> Array<F, D> {
    let (shape, values) = reference()
        .get(name)
        .unwrap_or_else(|| panic!("{name} in cnn.txt"));
    Array::from_shape_vec(IxDyn(shape), values.iter().map(|&v| F::lit(v)).collect())
        .unwrap()
        .into_dimensionality()
        .unwrap()
}

/// The largest difference from the reference `name`, relative to its largest
/// magnitude; NaN where PyTorch has NaN is a match, anywhere else a failure.
fn worst<F: Real, D: Dimension>(got: ArrayView<'_, F, D>, name: &str) -> f64 {
    let (shape, want) = &reference()[name];
    assert_eq!(got.shape(), shape.as_slice(), "{name}: shape");
    let scale = want
        .iter()
        .filter(|v| v.is_finite())
        .fold(1e-300_f64, |m, v| m.max(v.abs()));
    got.iter()
        .zip(want)
        .map(|(g, &w)| {
            let g = g.to_f64().unwrap();
            match (g.is_nan(), w.is_nan()) {
                (true, true) => 0.0,
                (false, false) if g == w => 0.0,
                (false, false) => (g - w).abs() / scale,
                _ => f64::INFINITY,
            }
        })
        .fold(0.0, f64::max)
}

/// The tolerance for `F`: PyTorch and ndlayers sum in different orders.
fn tolerance<F: Real>() -> f64 {
    if size_of::<F>() == 4 { 1e-5 } else { 1e-12 }
}

fn suffix<F: Real>() -> &'static str {
    if size_of::<F>() == 4 { "f32" } else { "f64" }
}

#[track_caller]
fn assert_close<F: Real, D: Dimension>(got: ArrayView<'_, F, D>, name: &str) {
    let worst = worst(got, name);
    assert!(
        worst <= tolerance::<F>(),
        "{name}: worst relative difference {worst:e}"
    );
}

/// The convolution cases of cnn.py: name, stride, padding, dilation, groups.
type Pair = (usize, usize);
const CONVOLUTIONS: [(&str, Pair, Pair, Pair, usize); 8] = [
    ("basic", (1, 1), (0, 0), (1, 1), 1),
    ("strided", (2, 1), (1, 2), (1, 1), 1),
    ("dilated", (1, 1), (2, 2), (2, 2), 1),
    ("groups", (1, 1), (0, 0), (1, 1), 2),
    ("depthwise", (1, 1), (1, 1), (1, 1), 3),
    ("multiplier", (2, 2), (1, 1), (1, 1), 2),
    ("nobias", (1, 1), (0, 0), (1, 1), 1),
    ("batch1", (3, 2), (1, 0), (1, 2), 1),
];

fn conv_from_reference<F: Real>(
    case: &str,
    stride: Pair,
    padding: Pair,
    dilation: Pair,
    groups: usize,
) -> Conv2d<F> {
    let c = format!("conv.{case}.{}", suffix::<F>());
    let bias = reference()
        .contains_key(&format!("{c}/bias"))
        .then(|| tensor::<F, Ix1>(&format!("{c}/bias")));
    Conv2d::from_parameters(tensor(&format!("{c}/weight")), bias)
        .and_then(|l| l.with_stride(stride))
        .and_then(|l| l.with_padding(padding))
        .and_then(|l| l.with_dilation(dilation))
        .and_then(|l| l.with_groups(groups))
        .unwrap()
}

fn convolutions_match_pytorch<F: Real>() {
    for (case, stride, padding, dilation, groups) in CONVOLUTIONS {
        let c = format!("conv.{case}.{}", suffix::<F>());
        let mut conv = conv_from_reference::<F>(case, stride, padding, dilation, groups);
        let x = tensor::<F, Ix4>(&format!("{c}/x"));
        let y = conv.forward(x.view()).unwrap();
        assert_close(y.view(), &format!("{c}/y"));
        assert_close(conv.infer(x.view()).unwrap().view(), &format!("{c}/y"));
        let dx = conv
            .backward(tensor::<F, Ix4>(&format!("{c}/g")).view())
            .unwrap();
        assert_close(dx.view(), &format!("{c}/dx"));
        assert_close(conv.grad_weight(), &format!("{c}/dweight"));
        match conv.grad_bias() {
            Some(db) => assert_close(db, &format!("{c}/dbias")),
            None => assert_eq!(case, "nobias"),
        }
        // A transposed (column-major) input gives the same numbers.
        let mut columns = Array4::zeros(x.raw_dim().f());
        columns.assign(&x);
        assert_eq!(
            conv.infer(columns.view()).unwrap(),
            conv.infer(x.view()).unwrap()
        );
    }
}

#[test]
fn convolutions_match_pytorch_in_f32_and_f64() {
    convolutions_match_pytorch::<f32>();
    convolutions_match_pytorch::<f64>();
}

fn pools_match_pytorch<F: Real>() {
    let max_cases = [
        ("plain", (2, 2), (2, 2), (0, 0)),
        ("overlap", (3, 3), (2, 2), (1, 1)),
        ("ties", (3, 3), (1, 1), (1, 1)),
        ("nan", (2, 2), (2, 2), (1, 1)),
    ];
    for (case, kernel, stride, padding) in max_cases {
        let c = format!("maxpool.{case}.{}", suffix::<F>());
        let mut pool = MaxPool2d::<F>::new(kernel)
            .unwrap()
            .with_stride(stride)
            .unwrap()
            .with_padding(padding)
            .unwrap();
        let x = tensor::<F, Ix4>(&format!("{c}/x"));
        assert_close(pool.forward(x.view()).unwrap().view(), &format!("{c}/y"));
        assert_close(pool.infer(x.view()).unwrap().view(), &format!("{c}/y"));
        // Exact: each gradient goes to one element, as PyTorch sends it.
        let dx = pool
            .backward(tensor::<F, Ix4>(&format!("{c}/g")).view())
            .unwrap();
        assert_eq!(
            worst(dx.view(), &format!("{c}/dx")),
            0.0,
            "{c}: gradients routed as PyTorch routes them"
        );
    }
    let avg_cases = [
        ("overlap", (3, 3), (2, 2), (1, 1)),
        ("rect", (2, 3), (1, 2), (0, 0)),
    ];
    for (case, kernel, stride, padding) in avg_cases {
        let c = format!("avgpool.{case}.{}", suffix::<F>());
        let mut pool = AvgPool2d::<F>::new(kernel)
            .unwrap()
            .with_stride(stride)
            .unwrap()
            .with_padding(padding)
            .unwrap();
        let x = tensor::<F, Ix4>(&format!("{c}/x"));
        assert_close(pool.forward(x.view()).unwrap().view(), &format!("{c}/y"));
        let dx = pool
            .backward(tensor::<F, Ix4>(&format!("{c}/g")).view())
            .unwrap();
        assert_close(dx.view(), &format!("{c}/dx"));
    }
}

#[test]
fn pooling_matches_pytorch_ties_and_nan_included() {
    pools_match_pytorch::<f32>();
    pools_match_pytorch::<f64>();
}

fn batch_norm_matches_pytorch<F: Real, D: ndarray::RemoveAxis>(case: &str, batches: usize) {
    let c = format!("batchnorm.{case}.{}", suffix::<F>());
    let channels = reference()[&format!("{c}/weight")].0[0];
    let mut bn = ndlayers::BatchNorm::<F, D>::new(channels).unwrap();
    // PyTorch's affine parameters, through the state interface.
    let (weight, bias) = (
        tensor::<F, Ix1>(&format!("{c}/weight")),
        tensor::<F, Ix1>(&format!("{c}/bias")),
    );
    bn.visit_state_mut(&state::Name::ROOT, &mut |name, entry| {
        if let state::EntryMut::Parameter { mut value, .. } = entry {
            value.assign(if name.is("weight") { &weight } else { &bias });
        }
    });
    for step in 0..=batches {
        let mode = if step < batches { "train" } else { "eval" };
        bn.set_training(step < batches);
        let s = format!("{c}.{mode}{step}");
        let x = tensor::<F, D>(&format!("{s}/x"));
        let y = bn.forward(x.view()).unwrap();
        if case == "constant" && step < batches {
            // A constant channel normalises to exactly β. PyTorch's f32 mean
            // of it is an ulp off, which 1/√ε = 316 amplifies (1.2e-5 of the
            // largest output here); ndlayers sums in f64 and is exact.
            let beta = bn.bias()[0];
            assert!(
                y.index_axis(ndlayers::ndarray::Axis(1), 0)
                    .iter()
                    .all(|&v| v == beta),
                "{s}"
            );
            assert!(worst(y.view(), &format!("{s}/y")) <= 1e-4, "{s}");
        } else {
            assert_close(y.view(), &format!("{s}/y"));
        }
        let dx = bn
            .backward(tensor::<F, D>(&format!("{s}/g")).view())
            .unwrap();
        assert_close(dx.view(), &format!("{s}/dx"));
        assert_close(bn.grad_weight(), &format!("{s}/dweight"));
        assert_close(bn.grad_bias(), &format!("{s}/dbias"));
        assert_close(bn.running_mean(), &format!("{s}/running_mean"));
        assert_close(bn.running_var(), &format!("{s}/running_var"));
        let tracked = reference()[&format!("{s}/num_batches_tracked")].1[0];
        assert_eq!(bn.num_batches_tracked() as f64, tracked, "{s}");
        if step == batches {
            assert_close(bn.infer(x.view()).unwrap().view(), &format!("{s}/y"));
        }
    }
}

#[test]
fn batch_norm_matches_pytorch_over_training_batches_and_evaluation() {
    batch_norm_matches_pytorch::<f32, Ix4>("images", 3);
    batch_norm_matches_pytorch::<f64, Ix4>("images", 3);
    batch_norm_matches_pytorch::<f32, Ix2>("rows", 3);
    batch_norm_matches_pytorch::<f64, Ix2>("rows", 3);
    batch_norm_matches_pytorch::<f32, Ix4>("constant", 3);
    batch_norm_matches_pytorch::<f64, Ix4>("constant", 3);
}

/// Uniform values in [-1, 1), seeded.
fn uniform<D: Dimension>(shape: D, seed: u64) -> Array<f64, D> {
    use ndlayers::rand::Rng;
    let mut rng = StdRng::seed_from_u64(seed);
    Array::from_shape_simple_fn(shape, || rng.random_range(-1.0..1.0))
}

#[test]
fn every_cnn_layer_passes_the_gradient_check() {
    let check = GradCheck::default();
    for (case, stride, padding, dilation, groups) in CONVOLUTIONS {
        let mut conv = conv_from_reference::<f64>(case, stride, padding, dilation, groups);
        let x = tensor::<f64, Ix4>(&format!("conv.{case}.f64/x"));
        check
            .check_layer(&mut conv, x.view())
            .unwrap_or_else(|e| panic!("{case}: {e}"));
    }
    // Distinct values, so no window has a tie a finite difference would straddle.
    let x = Array4::from_shape_fn((2, 2, 5, 6), |(n, c, i, j)| {
        ((n * 60 + c * 30 + i * 6 + j) as f64 * 0.37).sin()
    });
    let mut max = MaxPool2d::new((2, 3))
        .unwrap()
        .with_padding((1, 1))
        .unwrap()
        .with_stride((2, 2))
        .unwrap();
    check.check_layer(&mut max, x.view()).unwrap();
    let mut avg = AvgPool2d::new((3, 3))
        .unwrap()
        .with_padding((1, 1))
        .unwrap()
        .with_stride((2, 1))
        .unwrap();
    check.check_layer(&mut avg, x.view()).unwrap();
    let mut bn = BatchNorm2d::new(2).unwrap();
    check.check_layer(&mut bn, x.view()).unwrap();
    bn.set_training(false);
    check.check_layer(&mut bn, x.view()).unwrap();
    let mut bn1 = BatchNorm1d::new(3).unwrap();
    check
        .check_layer(&mut bn1, uniform(Ix2(5, 3), 4).view())
        .unwrap();
    let mut flatten = Flatten::new();
    check.check_layer(&mut flatten, x.view()).unwrap();
}

/// The small CNN of the issue, as one `Sequential`.
fn cnn<F: Real>(seed: u64) -> Sequential<F, Ix4, Ix2> {
    let mut rng = StdRng::seed_from_u64(seed);
    Sequential::new()
        .with(
            Conv2d::new(1, 4, (3, 3), Init::HeUniform, &mut rng)
                .unwrap()
                .with_padding((1, 1))
                .unwrap(),
        )
        .with(BatchNorm2d::new(4).unwrap())
        .with(Relu::new())
        .with(MaxPool2d::new((2, 2)).unwrap())
        .with(
            Conv2d::new(4, 6, (3, 3), Init::HeUniform, &mut rng)
                .unwrap()
                .with_padding((1, 1))
                .unwrap(),
        )
        .with(BatchNorm2d::new(6).unwrap())
        .with(Relu::new())
        .with(MaxPool2d::new((2, 2)).unwrap())
        .with(Flatten::new())
        .with(Dense::new(6 * 2 * 2, 3, Init::GlorotUniform, &mut rng).unwrap())
}

#[test]
fn a_cnn_is_one_sequential_with_pytorchs_state_dict() {
    let mut net = cnn::<f64>(1);
    state::check_walks(&mut net).unwrap();
    let names: Vec<String> = state::named_parameters(&net)
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(
        names,
        [
            "0.weight", "0.bias", "1.weight", "1.bias", "4.weight", "4.bias", "5.weight", "5.bias",
            "9.weight", "9.bias"
        ]
    );
    let buffers: Vec<String> = state::named_buffers(&net)
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(
        buffers,
        [
            "1.running_mean",
            "1.running_var",
            "1.num_batches_tracked",
            "5.running_mean",
            "5.running_var",
            "5.num_batches_tracked"
        ]
    );
    assert_eq!(state::named_parameters(&net)[4].1.shape(), [6, 4, 3, 3]);
    let x = uniform(Ix4(4, 1, 8, 8), 2);
    GradCheck::default()
        .check_layer(&mut net, x.view())
        .unwrap();

    // Trains: the loss on a fixed batch falls, through the view path.
    let labels = Array1::from_shape_fn(4, |i| i % 3);
    let mut loss = SoftmaxCrossEntropy::new();
    let mut adam = Adam::new(1e-2).unwrap();
    let mut first = None;
    let mut last = 0.0;
    for _ in 0..30 {
        let logits = net.forward_view(x.view()).unwrap();
        last = loss.forward(logits, labels.view()).unwrap();
        first.get_or_insert(last);
        net.backward_parameters(loss.backward_view().unwrap())
            .unwrap();
        adam.step(&mut [&mut net]).unwrap();
    }
    assert!(last < first.unwrap() / 4.0, "{first:?} -> {last}");

    // Saved with buffers (num_batches_tracked as I64), loaded into a fresh net.
    let bytes = checkpoint::to_bytes(&net, Some(&adam)).unwrap();
    let (mut fresh, mut fresh_adam) = (cnn::<f64>(9), Adam::new(1e-2).unwrap());
    checkpoint::from_bytes(&bytes, &mut fresh, Some(&mut fresh_adam)).unwrap();
    let tracked = |net: &Sequential<f64, Ix4, Ix2>| {
        net.layer::<BatchNorm2d<f64>>(1)
            .unwrap()
            .num_batches_tracked()
    };
    // 30 steps, and the gradient check's forwards before them.
    assert!(tracked(&net) > 30);
    assert_eq!(tracked(&fresh), tracked(&net));
    net.set_training(false);
    fresh.set_training(false);
    assert_eq!(fresh.infer(x.view()).unwrap(), net.infer(x.view()).unwrap());
    assert_eq!(
        fresh.forward(x.view()).unwrap(),
        net.infer(x.view()).unwrap(),
        "eval mode is inference"
    );
}

#[test]
fn a_hand_written_cnn_works_too() {
    struct Net {
        conv: Conv2d<f32>,
        relu: Relu<f32, Ix4>,
        pool: AvgPool2d<f32>,
        flatten: Flatten<f32>,
        dense: Dense<f32>,
    }
    let mut rng = StdRng::seed_from_u64(3);
    let mut net = Net {
        conv: Conv2d::new(2, 3, (3, 3), Init::HeNormal, &mut rng).unwrap(),
        relu: Relu::new(),
        pool: AvgPool2d::new((2, 2)).unwrap(),
        flatten: Flatten::new(),
        dense: Dense::new(3 * 2 * 2, 2, Init::GlorotUniform, &mut rng).unwrap(),
    };
    let x = Array4::from_shape_fn((2, 2, 6, 6), |(n, c, i, j)| (n + c + i * j) as f32 / 10.0);
    let h = net.conv.forward_view(x.view()).unwrap();
    let h = net.relu.forward_view(h).unwrap();
    let h = net.pool.forward_view(h).unwrap();
    let h = net.flatten.forward_view(h).unwrap();
    let y = net.dense.forward_view(h).unwrap();
    assert_eq!(y.dim(), (2, 2));
    let g = Array2::ones((2, 2));
    let g = net.dense.backward_view(g.view()).unwrap();
    let g = net.flatten.backward_view(g).unwrap();
    let g = net.pool.backward_view(g).unwrap();
    let g = net.relu.backward_view(g).unwrap();
    net.conv.backward_parameters(g).unwrap();
    let mut sgd = Sgd::new(0.1).unwrap();
    sgd.step(&mut [&mut net.conv, &mut net.dense]).unwrap();
}

#[test]
fn bad_input_is_an_error_naming_the_layer_and_axis() {
    let mut rng = StdRng::seed_from_u64(0);
    let conv = Conv2d::<f32>::new(3, 4, (3, 3), Init::HeUniform, &mut rng).unwrap();
    let message = |e: LayerError| e.to_string();
    let wrong_channels = conv.infer(Array4::zeros((1, 2, 5, 5)).view()).unwrap_err();
    assert!(
        message(wrong_channels)
            .contains("Conv2d: input has shape [1, 2, 5, 5], expected [batch, 3, height, width]")
    );
    let small = conv.infer(Array4::zeros((1, 3, 2, 5)).view()).unwrap_err();
    assert!(
        message(small).contains("padded height of at least 3"),
        "small"
    );
    let dilated = conv
        .clone()
        .with_dilation((1, 3))
        .unwrap()
        .infer(Array4::zeros((1, 3, 5, 6)).view())
        .unwrap_err();
    assert!(message(dilated).contains("padded width of at least 7"));
    for err in [
        Conv2d::<f32>::new(3, 4, (0, 3), Init::HeUniform, &mut rng).unwrap_err(),
        Conv2d::<f32>::new(0, 4, (3, 3), Init::HeUniform, &mut rng).unwrap_err(),
        conv.clone().with_stride((0, 1)).unwrap_err(),
        conv.clone().with_dilation((1, 0)).unwrap_err(),
        conv.clone().with_groups(2).unwrap_err(),
        conv.clone().with_groups(0).unwrap_err(),
        Conv2d::<f32>::from_parameters(Array4::zeros((0, 1, 3, 3)), None).unwrap_err(),
        Conv2d::<f32>::from_parameters(Array4::zeros((2, 1, 3, 3)), Some(Array1::zeros(3)))
            .unwrap_err(),
        Conv2d::<f32>::from_parameters(Array4::from_elem((2, 1, 1, 1), f32::NAN), None)
            .unwrap_err(),
        MaxPool2d::<f32>::new((0, 2)).unwrap_err(),
        MaxPool2d::<f32>::new((2, 2))
            .unwrap()
            .with_stride((1, 0))
            .unwrap_err(),
        AvgPool2d::<f32>::new((2, 2))
            .unwrap()
            .with_padding((2, 0))
            .unwrap_err(),
        BatchNorm2d::<f32>::new(0).unwrap_err(),
        BatchNorm2d::<f32>::new(2)
            .unwrap()
            .with_eps(0.0)
            .unwrap_err(),
        BatchNorm1d::<f32>::new(2)
            .unwrap()
            .with_momentum(1.5)
            .unwrap_err(),
    ] {
        assert!(
            matches!(
                err,
                LayerError::InvalidParameter { .. } | LayerError::ShapeMismatch { .. }
            ),
            "{err}"
        );
        let text = message(err);
        assert!(
            ["Conv2d", "MaxPool2d", "AvgPool2d", "BatchNorm"]
                .iter()
                .any(|l| text.starts_with(l)),
            "{text}"
        );
    }
    // Groups of 2 and 3 input channels: 3 % 2 != 0.
    let grouped = Conv2d::<f32>::new(3, 4, (3, 3), Init::HeUniform, &mut rng)
        .unwrap()
        .with_groups(2)
        .unwrap_err();
    assert!(message(grouped).contains("must divide in_channels"));
    let pool_small = MaxPool2d::<f32>::new((3, 3))
        .unwrap()
        .infer(Array4::zeros((1, 1, 2, 4)).view())
        .unwrap_err();
    assert!(message(pool_small).starts_with("MaxPool2d: input has shape [1, 1, 2, 4]"));
    // One value per channel cannot train BatchNorm (PyTorch's rule); it can evaluate.
    let mut bn = BatchNorm2d::<f32>::new(2).unwrap();
    let single = bn.forward(Array4::zeros((1, 2, 1, 1)).view()).unwrap_err();
    assert!(message(single).contains("more than 1 value per channel"));
    bn.set_training(false);
    bn.forward(Array4::zeros((1, 2, 1, 1)).view()).unwrap();
    let channels = bn.forward(Array4::zeros((2, 3, 1, 1)).view()).unwrap_err();
    assert!(message(channels).contains("axis 1 holds the 2 channels"));
    // Backward before forward.
    let mut fresh = Conv2d::<f32>::from_parameters(Array4::ones((1, 1, 1, 1)), None).unwrap();
    assert!(matches!(
        fresh.backward(Array4::zeros((1, 1, 1, 1)).view()),
        Err(LayerError::BackwardBeforeForward { .. })
    ));
    let mut flatten = Flatten::<f32>::new();
    assert!(matches!(
        flatten.backward(Array2::zeros((1, 1)).view()),
        Err(LayerError::BackwardBeforeForward { .. })
    ));
    flatten.forward(Array4::zeros((2, 1, 2, 2)).view()).unwrap();
    assert!(flatten.backward(Array2::zeros((2, 3)).view()).is_err());
}

#[test]
fn new_draws_with_the_grouped_fan_in() {
    // He-uniform bound √(6 / fan_in): groups of 4 of 8 channels, 3x3 kernel, fan_in 36.
    let mut rng = StdRng::seed_from_u64(5);
    let conv = Conv2d::<f64>::new(8, 16, (3, 3), Init::HeUniform, &mut rng)
        .unwrap()
        .with_groups(2)
        .unwrap();
    assert_eq!(conv.weight().shape(), [16, 4, 3, 3]);
    assert_eq!(conv.in_channels(), 8);
    let bound = (6.0_f64 / 36.0).sqrt();
    let largest = conv.weight().iter().fold(0.0_f64, |m, w| m.max(w.abs()));
    assert!(
        largest <= bound && largest > 0.9 * bound,
        "{largest} against {bound}"
    );
    // Depthwise: one input channel a group.
    let depthwise = Conv2d::<f64>::new(8, 8, (3, 3), Init::HeUniform, &mut rng)
        .unwrap()
        .with_groups(8)
        .unwrap();
    assert_eq!(depthwise.weight().shape(), [8, 1, 3, 3]);
}

/// An image batch of up to `(2, 3, 6, 6)` of any values, presented
/// row-major, with its last two axes swapped, stepped, or reversed.
fn any_images() -> impl Strategy<Value = (Array4<f64>, usize)> {
    ((0usize..3, 0usize..4, 0usize..7, 0usize..7), 0usize..4).prop_flat_map(
        |((n, c, h, w), layout)| {
            let len = n * c * h * w;
            (
                prop::collection::vec(crate::common::any_value(), len)
                    .prop_map(move |v| Array4::from_shape_vec((n, c, h, w), v).unwrap()),
                Just(layout),
            )
        },
    )
}

fn present(x: &Array4<f64>, layout: usize) -> Array4<f64> {
    use ndlayers::ndarray::s;
    match layout {
        0 => x.clone(),
        // Column-major in the last two axes: the same values, another layout.
        1 => {
            let mut t = Array4::zeros(x.raw_dim().f());
            t.assign(x);
            t
        }
        2 => x.slice(s![.., .., .., ..;-1]).to_owned(),
        _ => x.slice(s![.., .., ..;2, ..]).to_owned(),
    }
}

/// Images to images.
type Images = Sequential<f64, Ix4, Ix4>;

/// Every CNN layer as a `Layer<f64, Ix4, _>` behind one `Sequential`, so one
/// driver calls them all; `None` where the settings are refused.
fn hostile_layers(
    channels: usize,
    (kernel, stride, padding, dilation, groups): (usize, usize, usize, usize, usize),
) -> Vec<(&'static str, Option<Images>)> {
    let mut rng = StdRng::seed_from_u64(7);
    let k = (kernel, kernel.max(1) - 1 + kernel);
    let conv = Conv2d::new(channels, 2 * channels.max(1), k, Init::HeUniform, &mut rng)
        .and_then(|c| c.with_stride((stride, 1)))
        .and_then(|c| c.with_padding((padding, padding)))
        .and_then(|c| c.with_dilation((dilation, 1)))
        .and_then(|c| c.with_groups(groups));
    let max = MaxPool2d::new(k)
        .and_then(|p| p.with_stride((stride, stride)))
        .and_then(|p| p.with_padding((padding, 0)));
    let avg = AvgPool2d::new(k)
        .and_then(|p| p.with_stride((1, stride)))
        .and_then(|p| p.with_padding((0, padding)));
    vec![
        ("conv", conv.ok().map(|l| Sequential::new().with(l))),
        ("maxpool", max.ok().map(|l| Sequential::new().with(l))),
        ("avgpool", avg.ok().map(|l| Sequential::new().with(l))),
        (
            "batchnorm",
            BatchNorm2d::new(channels)
                .ok()
                .map(|l| Sequential::new().with(l)),
        ),
        (
            "flatten",
            Some(
                Sequential::new()
                    .with(Flatten::new())
                    .with(Relu::<f64, Ix2>::new())
                    .with(Unflatten),
            ),
        ),
    ]
}

/// `(batch, n)` back to `(batch, n, 1, 1)`, so Flatten fits the driver's `Ix4 → Ix4`.
struct Unflatten;

impl StateDict<f64> for Unflatten {}

impl Layer<f64, Ix2, Ix4> for Unflatten {
    fn forward_view(
        &mut self,
        _: ndlayers::ndarray::ArrayView2<'_, f64>,
    ) -> Result<ndlayers::ndarray::ArrayView4<'_, f64>, LayerError> {
        Err(LayerError::Empty {
            layer: "Unflatten",
            what: "the view path (unused)",
        })
    }
    fn backward_view(
        &mut self,
        _: ndlayers::ndarray::ArrayView4<'_, f64>,
    ) -> Result<ndlayers::ndarray::ArrayView2<'_, f64>, LayerError> {
        Err(LayerError::Empty {
            layer: "Unflatten",
            what: "the view path (unused)",
        })
    }
    fn infer(&self, x: ndlayers::ndarray::ArrayView2<'_, f64>) -> Result<Array4<f64>, LayerError> {
        let (b, n) = x.dim();
        Ok(x.to_owned().into_shape_with_order((b, n, 1, 1)).unwrap())
    }
}

use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    /// Any images and settings through every CNN layer: every call returns,
    /// and what returns `Ok` has the shape it should.
    #[test]
    fn cnn_layers_return_on_anything(
        (x, layout) in any_images(),
        settings in (0usize..4, 0usize..3, 0usize..3, 0usize..3, 0usize..4),
        channels in 0usize..4,
        g_scale in -2.0f64..2.0,
    ) {
        let x = present(&x, layout);
        for (name, layer) in hostile_layers(channels, settings) {
            let Some(mut layer) = layer else { continue };
            let inferred = layer.infer(x.view());
            match layer.forward(x.view()) {
                Ok(y) => {
                    if let Ok(inferred) = &inferred {
                        prop_assert_eq!(inferred.shape(), y.shape(), "{}", name);
                    }
                    prop_assert_eq!(y.shape()[0], x.shape()[0], "{}: batch", name);
                    let g = y.mapv(|v| if v.is_finite() { v * g_scale } else { 1.0 });
                    if let Ok(dx) = layer.backward(g.view()) {
                        prop_assert_eq!(dx.shape(), x.shape(), "{}", name);
                    }
                    let wrong = Array4::<f64>::zeros((y.shape()[0] + 1, 1, 1, 1));
                    prop_assert!(layer.backward(wrong.view()).is_err(), "{}", name);
                    let _ = Adam::new(0.1).unwrap().step(&mut [&mut layer]);
                }
                Err(_) => {
                    let _ = layer.backward(x.view());
                }
            }
            layer.set_training(false);
            let _ = layer.forward(x.view());
            let _ = layer.backward(x.view());
        }
    }

    /// Sizes and settings no allocation could hold are errors, not aborts.
    #[test]
    fn absurd_settings_are_errors(
        big in prop_oneof![Just(usize::MAX), Just(1usize << 40), Just(1usize << 62), Just(usize::MAX / 2)],
        small in 1usize..4,
    ) {
        let mut rng = StdRng::seed_from_u64(0);
        prop_assert!(Conv2d::<f32>::new(big, big, (small, small), Init::HeUniform, &mut rng).is_err());
        prop_assert!(Conv2d::<f32>::new(small, small, (big, 3), Init::HeUniform, &mut rng).is_err());
        prop_assert!(BatchNorm2d::<f32>::new(big).is_err());
        let x = Array4::<f32>::zeros((1, small, 4, 4));
        let conv = Conv2d::<f32>::new(small, 1, (3, 3), Init::HeUniform, &mut rng).unwrap();
        prop_assert!(conv.clone().with_padding((big, 0)).unwrap().infer(x.view()).is_err());
        prop_assert!(conv.clone().with_dilation((big, 1)).unwrap().infer(x.view()).is_err());
        let _ = conv.with_stride((big, big)).unwrap().infer(x.view());
        let pool = MaxPool2d::<f32>::new((big, 2)).unwrap();
        prop_assert!(pool.infer(x.view()).is_err());
        let _ = MaxPool2d::<f32>::new((2, 2)).unwrap().with_stride((big, big)).unwrap().infer(x.view());
    }
}

/// `y[n, o, i, j]` by the definition, in `f64`: the reference for a
/// convolution large enough to be split across threads with `rayon`.
fn direct(
    x: &Array4<f64>,
    w: &Array4<f64>,
    stride: usize,
    padding: usize,
    groups: usize,
) -> Array4<f64> {
    let (n, c, h, wd) = x.dim();
    let (o, cg, kh, kw) = w.dim();
    let (oh, ow) = (
        (h + 2 * padding - kh) / stride + 1,
        (wd + 2 * padding - kw) / stride + 1,
    );
    Array4::from_shape_fn((n, o, oh, ow), |(b, oc, i, j)| {
        let group = oc / (o / groups);
        let mut sum = 0.0;
        for ci in 0..cg {
            for p in 0..kh {
                for q in 0..kw {
                    let (r, s) = (
                        (i * stride + p) as isize - padding as isize,
                        (j * stride + q) as isize - padding as isize,
                    );
                    if r >= 0 && s >= 0 && (r as usize) < h && (s as usize) < wd {
                        sum += w[[oc, ci, p, q]] * x[[b, group * cg + ci, r as usize, s as usize]];
                    }
                }
            }
        }
        let _ = c;
        sum
    })
}

#[test]
fn large_convolutions_match_the_definition_on_any_number_of_threads() {
    // Work above 2^20 multiply-adds, so the rayon feature splits the batch.
    for (groups, cg) in [(1, 16), (16, 1), (4, 4)] {
        let x = uniform(Ix4(4, 16, 16, 16), 11);
        let w = uniform(Ix4(16, cg, 3, 3), 12);
        let mut conv = Conv2d::from_parameters(w.clone(), None)
            .and_then(|c| c.with_padding((1, 1)))
            .and_then(|c| c.with_groups(groups))
            .unwrap();
        let y = conv.forward(x.view()).unwrap();
        let want = direct(&x, &w, 1, 1, groups);
        let worst = (&y - &want).iter().fold(0.0_f64, |m, d| m.max(d.abs()));
        assert!(worst < 1e-12, "groups {groups}: {worst:e}");
        // Backward: the gradients of Σ y · g, checked on a few elements by
        // differences of the (linear) convolution, exact up to rounding.
        let g = uniform(Ix4(4, 16, 16, 16), 13);
        let dx = conv.backward(g.view()).unwrap();
        let dw = conv.grad_weight().to_owned();
        let loss = |x: &Array4<f64>, w: &Array4<f64>| (direct(x, w, 1, 1, groups) * &g).sum();
        for &(b, ch, i, j) in &[(0, 0, 0, 0), (3, 15, 15, 15), (2, 7, 8, 3)] {
            let mut bumped = x.clone();
            bumped[[b, ch, i, j]] += 1.0;
            let slope = loss(&bumped, &w) - loss(&x, &w);
            assert!(
                (dx[[b, ch, i, j]] - slope).abs() < 1e-9,
                "groups {groups}: dx {:?}",
                (b, ch, i, j)
            );
        }
        for &(oc, ci, p, q) in &[(0, 0, 0, 0), (15, cg - 1, 2, 2), (5, 0, 1, 2)] {
            let mut bumped = w.clone();
            bumped[[oc, ci, p, q]] += 1.0;
            let slope = loss(&x, &bumped) - loss(&x, &w);
            assert!(
                (dw[[oc, ci, p, q]] - slope).abs() < 1e-9,
                "groups {groups}: dw {:?}",
                (oc, ci, p, q)
            );
        }
    }
}

/// MaxPool2d's 2x2, stride 2 path against a plain reading of PyTorch's
/// rule (each window's first maximum in reading order, or its last NaN),
/// on odd sizes (a trailing row and column in no window), many ties, NaN
/// and -∞.
#[test]
fn max_pool_2x2_routes_as_the_rule_says() {
    use rand::{Rng, SeedableRng, rngs::StdRng};
    let mut rng = StdRng::seed_from_u64(11);
    let (n, c, h, w) = (2, 3, 5, 7);
    let values = [0.0, 1.0, 1.0, 2.0, f64::NAN, f64::NEG_INFINITY, -1.0];
    let x = Array4::from_shape_fn((n, c, h, w), |_| values[rng.random_range(0..values.len())]);
    let g = Array4::from_shape_fn((n, c, h / 2, w / 2), |(a, b, i, j)| {
        (1 + a * 100 + b * 10 + i * 3 + j) as f64
    });
    let mut pool = MaxPool2d::<f64>::new((2, 2)).unwrap();
    let y = pool.forward(x.view()).unwrap();
    let dx = pool.backward(g.view()).unwrap();
    let mut want_dx = Array4::<f64>::zeros((n, c, h, w));
    for ((a, b, i, j), &gv) in g.indexed_iter() {
        let (mut best, mut at) = (f64::NEG_INFINITY, (2 * i, 2 * j));
        for (r, s) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
            let v = x[[a, b, 2 * i + r, 2 * j + s]];
            if v > best || v.is_nan() {
                (best, at) = (v, (2 * i + r, 2 * j + s));
            }
        }
        let got = y[[a, b, i, j]];
        assert!(
            got == best || (got.is_nan() && best.is_nan()),
            "{got} against {best}"
        );
        want_dx[[a, b, at.0, at.1]] += gv;
    }
    assert_eq!(dx, want_dx);
    assert_eq!(
        pool.infer(x.view()).unwrap().mapv(f64::to_bits),
        y.mapv(f64::to_bits)
    );
}

/// Depthwise convolutions at stride 1 (computed on the zero-padded plane)
/// and 2, against the definition summed in f64, over paddings larger and
/// smaller than the kernel, dilations, non-square kernels and two outputs
/// per channel.
#[test]
fn depthwise_convolution_matches_its_definition() {
    use rand::{Rng, SeedableRng, rngs::StdRng};
    let mut rng = StdRng::seed_from_u64(5);
    for (kernel, padding, dilation, stride) in [
        ((3, 3), (1, 1), (1, 1), (1, 1)),
        ((3, 2), (3, 0), (2, 1), (1, 1)),
        ((1, 3), (0, 2), (1, 3), (1, 1)),
        ((3, 3), (1, 2), (1, 1), (2, 1)),
    ] {
        let (n, c, mult, h, w) = (2, 3, 2, 6, 7);
        let weight = Array4::from_shape_fn((c * mult, 1, kernel.0, kernel.1), |_| {
            rng.random_range(-1.0..1.0)
        });
        let bias: Array1<f64> = (0..c * mult).map(|o| o as f64 * 0.5 - 1.0).collect();
        let mut conv = Conv2d::from_parameters(weight.clone(), Some(bias.clone()))
            .unwrap()
            .with_groups(c)
            .unwrap()
            .with_padding(padding)
            .unwrap()
            .with_dilation(dilation)
            .unwrap()
            .with_stride(stride)
            .unwrap();
        let x = Array4::from_shape_fn((n, c, h, w), |_| rng.random_range(-1.0..1.0));
        let y = conv.forward(x.view()).unwrap();
        let (oh, ow) = (y.shape()[2], y.shape()[3]);
        for ((b, o, i, j), &got) in y.indexed_iter() {
            let mut want = bias[o];
            for p in 0..kernel.0 {
                for q in 0..kernel.1 {
                    let r = (i * stride.0 + p * dilation.0) as isize - padding.0 as isize;
                    let s = (j * stride.1 + q * dilation.1) as isize - padding.1 as isize;
                    if (0..h as isize).contains(&r) && (0..w as isize).contains(&s) {
                        want += weight[[o, 0, p, q]] * x[[b, o / mult, r as usize, s as usize]];
                    }
                }
            }
            assert!(
                (got - want).abs() < 1e-12,
                "{kernel:?} {padding:?} at {:?}: {got} against {want}",
                (b, o, i, j)
            );
        }
        assert!(oh > 0 && ow > 0);
        GradCheck::default()
            .check_layer(&mut conv, x.view())
            .unwrap_or_else(|e| panic!("{kernel:?} {padding:?} {dilation:?}: {e}"));
    }
}

/// `y`, `dL/dx` and `dL/dW` of `Σ y · g` by the definition, summed in f64
/// (no bias): the reference for the convolutions too large for PyTorch's
/// table.
fn convolution_by_definition(
    conv: &Conv2d<f64>,
    x: &Array4<f64>,
    g: &Array4<f64>,
    (stride, padding, dilation): ((usize, usize), (usize, usize), (usize, usize)),
) -> (Array4<f64>, Array4<f64>, Array4<f64>) {
    let w = conv.weight();
    let (o, cg, kh, kw) = w.dim();
    let (_, c, h, wd) = x.dim();
    let per = o / (c / cg);
    let mut y = Array4::<f64>::zeros(g.raw_dim());
    let mut dx = Array4::<f64>::zeros(x.raw_dim());
    let mut dw = Array4::<f64>::zeros(w.raw_dim());
    for ((b, oc, i, j), &gv) in g.indexed_iter() {
        let first = oc / per * cg;
        for ci in 0..cg {
            for p in 0..kh {
                for q in 0..kw {
                    let r = (i * stride.0 + p * dilation.0) as isize - padding.0 as isize;
                    let s = (j * stride.1 + q * dilation.1) as isize - padding.1 as isize;
                    if (0..h as isize).contains(&r) && (0..wd as isize).contains(&s) {
                        let at = [b, first + ci, r as usize, s as usize];
                        y[[b, oc, i, j]] += w[[oc, ci, p, q]] * x[at];
                        dx[at] += w[[oc, ci, p, q]] * gv;
                        dw[[oc, ci, p, q]] += x[at] * gv;
                    }
                }
            }
        }
    }
    (y, dx, dw)
}

/// Convolutions whose unrolled windows are computed in several bands of
/// output rows (about 512 KiB each: here 2 to 4 in f64), against the
/// definition: whole taps copied at one shift (stride 1 with `ow = w`,
/// dilations and kernels taller than the padding covers included), and the
/// row-by-row walk (narrower or wider outputs, stride 2), groups, a
/// non-square image and images smaller than the padding; forward and both
/// gradients, every element.
#[test]
fn banded_convolutions_match_the_definition() {
    for (case, kernel, stride, padding, dilation, groups, (h, w)) in [
        ("same 3x3", (3, 3), (1, 1), (1, 1), (1, 1), 1, (50, 47)),
        ("dilated rows", (3, 3), (1, 1), (2, 1), (2, 1), 1, (50, 47)),
        ("5x3, oh < h", (5, 3), (1, 1), (1, 1), (1, 1), 2, (50, 47)),
        ("no padding", (3, 3), (1, 1), (0, 0), (1, 1), 1, (50, 47)),
        (
            "padding past the kernel",
            (3, 3),
            (1, 1),
            (3, 3),
            (1, 1),
            1,
            (50, 47),
        ),
        ("stride 2", (3, 3), (2, 2), (1, 1), (1, 1), 2, (50, 47)),
        ("1x1", (1, 1), (1, 1), (0, 0), (1, 1), 1, (50, 47)),
        // One band; taps that read nothing or hang past both ends of the plane.
        (
            "padding wider than the image",
            (3, 3),
            (1, 1),
            (2, 2),
            (2, 2),
            1,
            (3, 1),
        ),
        ("one pixel", (3, 3), (1, 1), (1, 1), (1, 1), 2, (1, 1)),
    ] {
        let (n, c, o) = (2, 8, 6);
        let weight = uniform(Ix4(o, c / groups, kernel.0, kernel.1), 31);
        let mut conv = Conv2d::from_parameters(weight, None)
            .and_then(|l| l.with_stride(stride))
            .and_then(|l| l.with_padding(padding))
            .and_then(|l| l.with_dilation(dilation))
            .and_then(|l| l.with_groups(groups))
            .unwrap();
        let x = uniform(Ix4(n, c, h, w), 32);
        let y = conv.forward(x.view()).unwrap();
        let g = uniform(y.raw_dim(), 33);
        let dx = conv.backward(g.view()).unwrap();
        let (want_y, want_dx, want_dw) =
            convolution_by_definition(&conv, &x, &g, (stride, padding, dilation));
        for (name, got, want) in [
            ("y", y.view(), want_y.view()),
            ("dx", dx.view(), want_dx.view()),
            ("dW", conv.grad_weight(), want_dw.view()),
        ] {
            assert_eq!(got.shape(), want.shape(), "{case}: {name}");
            let scale = want.iter().fold(1.0_f64, |m, v| m.max(v.abs()));
            let worst = (&got - &want).iter().fold(0.0_f64, |m, d| m.max(d.abs()));
            assert!(worst <= 1e-13 * scale, "{case}: {name} off by {worst:e}");
        }
        // f32 splits into other bands: the same numbers within its rounding.
        let mut conv32 = Conv2d::from_parameters(conv.weight().mapv(|v| v as f32), None)
            .and_then(|l| l.with_stride(stride))
            .and_then(|l| l.with_padding(padding))
            .and_then(|l| l.with_dilation(dilation))
            .and_then(|l| l.with_groups(groups))
            .unwrap();
        let y32 = conv32.forward(x.mapv(|v| v as f32).view()).unwrap();
        let dx32 = conv32.backward(g.mapv(|v| v as f32).view()).unwrap();
        for (name, got, want) in [
            ("y", y32.mapv(f64::from), &want_y),
            ("dx", dx32.mapv(f64::from), &want_dx),
            ("dW", conv32.grad_weight().mapv(f64::from), &want_dw),
        ] {
            let scale = want.iter().fold(1.0_f64, |m, v| m.max(v.abs()));
            let worst = (&got - want).iter().fold(0.0_f64, |m, d| m.max(d.abs()));
            assert!(worst <= 1e-5 * scale, "{case}: f32 {name} off by {worst:e}");
        }
    }
}

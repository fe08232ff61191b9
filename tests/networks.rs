//! From layers to networks: `Sequential`, inference through `&self`, in-place
//! forward, class targets of every kind, layout-independent `Dense`,
//! initialisation, in-place parameter assignment and reused buffers.

use crate::common;

use common::uniform;
use ndlayers::activation::Gelu;
use ndlayers::gradcheck::GradCheck;
use ndlayers::ndarray::{Array1, Array2, ArrayView2, Axis, Ix2, array, s};
use ndlayers::prelu::Prelu;
use ndlayers::prelude::*;
use ndlayers::rand::SeedableRng;
use ndlayers::rand::rngs::StdRng;
use ndlayers::state::{Entry, Name};
use ndlayers::{Elementwise, ElementwiseKernel};

fn dense(inputs: usize, outputs: usize, seed: u64) -> Dense<f64> {
    Dense::new(
        inputs,
        outputs,
        Init::GlorotUniform,
        &mut StdRng::seed_from_u64(seed),
    )
    .unwrap()
}

fn network() -> Sequential<f64> {
    Sequential::new()
        .with(dense(5, 7, 1))
        .with(Tanh::new())
        .with(dense(7, 4, 2))
        .with(Prelu::new(4).unwrap())
}

/// Every parameter gradient of `layer`, in visiting order.
fn gradients(layer: &dyn StateDict<f64>) -> Vec<(String, Vec<f64>)> {
    let mut all = Vec::new();
    layer.visit_state(&Name::ROOT, &mut |name, entry| {
        if let Entry::Parameter { grad, .. } = entry {
            all.push((name.to_string(), grad.iter().copied().collect()))
        }
    });
    all
}

#[test]
fn sequential_is_its_layers_called_in_order() {
    let x = uniform((3, 5), -2.0, 2.0, 7);
    let g = uniform((3, 4), -1.0, 1.0, 8);
    let mut net = network();
    let y = net.forward(x.view()).unwrap();
    let dx = net.backward(g.view()).unwrap();

    let (mut d1, mut t, mut d2, mut p) = (
        dense(5, 7, 1),
        Tanh::new(),
        dense(7, 4, 2),
        Prelu::new(4).unwrap(),
    );
    let by_hand = p
        .forward(
            d2.forward(
                t.forward(d1.forward(x.view()).unwrap().view())
                    .unwrap()
                    .view(),
            )
            .unwrap()
            .view(),
        )
        .unwrap();
    assert_eq!(y, by_hand);
    let dx_by_hand = d1
        .backward(
            t.backward(
                d2.backward(p.backward(g.view()).unwrap().view())
                    .unwrap()
                    .view(),
            )
            .unwrap()
            .view(),
        )
        .unwrap();
    assert_eq!(dx, dx_by_hand);
    // Each layer's entries, named by its position in the network.
    let expected: Vec<_> = [
        ("0", gradients(&d1)),
        ("2", gradients(&d2)),
        ("3", gradients(&p)),
    ]
    .into_iter()
    .flat_map(|(position, all)| {
        all.into_iter()
            .map(move |(name, grad)| (format!("{position}.{name}"), grad))
    })
    .collect();
    assert_eq!(
        gradients(&net),
        expected,
        "the state walk visits every layer, in order"
    );
    assert_eq!(net.len(), 4);

    // backward_parameters gives the same parameter gradients without dL/dx.
    let mut other = network();
    other.forward_view(x.view()).unwrap();
    other.backward_parameters(g.view()).unwrap();
    assert_eq!(gradients(&other), expected);

    // An empty Sequential is the identity.
    let mut identity = Sequential::<f64>::new();
    assert!(identity.is_empty());
    assert_eq!(identity.forward(x.view()).unwrap(), x);
    assert_eq!(identity.backward(x.view()).unwrap(), x);
    assert_eq!(identity.infer(x.view()).unwrap(), x);
    identity.backward_parameters(x.view()).unwrap();
}

#[test]
fn sequential_passes_the_gradient_check_and_reports_errors() {
    let mut net = network();
    let report = GradCheck::default()
        .check_layer(&mut net, uniform((3, 5), -1.5, 1.5, 9).view())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report.checked, 3 * 5 + 5 * 7 + 7 + 7 * 4 + 4 + 4);
    // An error from inside the chain is the layer's own.
    let err = network().forward(Array2::zeros((3, 6)).view()).unwrap_err();
    assert!(
        err.to_string().starts_with("Dense: input has shape [3, 6]"),
        "{err}"
    );
    let err = network()
        .backward(Array2::zeros((3, 4)).view())
        .unwrap_err();
    assert_eq!(err, LayerError::BackwardBeforeForward { layer: "Prelu" });
}

#[test]
fn inference_leaves_the_training_state_untouched() {
    let x = uniform((3, 5), -2.0, 2.0, 10);
    let g = uniform((3, 4), -1.0, 1.0, 11);
    let other = uniform((6, 5), -3.0, 3.0, 12);

    let mut reference = network();
    reference.forward_view(x.view()).unwrap();
    let dx = reference.backward(g.view()).unwrap();

    let mut net = network();
    let y = net.forward(x.view()).unwrap();
    // Evaluate on another batch between forward and backward.
    let inferred = net.infer(other.view()).unwrap();
    assert_eq!(inferred.dim(), (6, 4));
    assert_eq!(
        net.infer(x.view()).unwrap(),
        y,
        "infer computes what forward does"
    );
    assert_eq!(
        net.backward(g.view()).unwrap(),
        dx,
        "backward still refers to the forward"
    );
    assert_eq!(gradients(&net), gradients(&reference));

    // The same for the losses.
    let logits = uniform((3, 4), -2.0, 2.0, 13);
    let mut ce = SoftmaxCrossEntropy::new();
    let value = ce
        .forward(logits.view(), array![0_u8, 3, 1].view())
        .unwrap();
    let gradient = ce.backward().unwrap();
    assert_eq!(
        ce.loss(logits.view(), array![0_u8, 3, 1].view()).unwrap(),
        value
    );
    ce.loss(other.view(), array![0, 1, 2, 3, 4, 0].view())
        .unwrap();
    assert_eq!(ce.backward().unwrap(), gradient);
    let probabilities = ce.probabilities(logits.view()).unwrap();
    assert_eq!(
        probabilities,
        Softmax::new().forward(logits.view()).unwrap()
    );

    let mut mse = Mse::new();
    let value = mse.forward(logits.view(), g.view()).unwrap();
    let gradient = mse.backward().unwrap();
    assert_eq!(mse.loss(logits.view(), g.view()).unwrap(), value);
    mse.loss(g.view(), logits.view()).unwrap();
    assert_eq!(mse.backward_view().unwrap(), gradient);
}

#[test]
fn every_layer_infers_what_it_forwards() {
    let x = uniform((4, 6), -3.0, 3.0, 14);
    let views: [ArrayView2<'_, f64>; 3] = [x.view(), x.t(), x.slice(s![..;-1, ..;2])];
    for view in views {
        let mut layers: Vec<Box<dyn Layer<f64, Ix2>>> = vec![
            Box::new(Sigmoid::new()),
            Box::new(Gelu::new()),
            Box::new(Softmax::new()),
            Box::new(LogSoftmax::along(Axis(0))),
            Box::new(Prelu::new(view.ncols()).unwrap()),
            Box::new(dense(view.ncols(), 3, 15)),
        ];
        for layer in &mut layers {
            let inferred = layer.infer(view).unwrap();
            assert_eq!(layer.forward(view).unwrap(), inferred);
        }
    }
}

#[test]
fn in_place_forward_matches_the_view_path_on_every_layout() {
    fn check<A: ElementwiseKernel<f64> + Default>() {
        let x = uniform((5, 40), -6.0, 6.0, 16);
        let g = uniform((5, 40), -1.0, 1.0, 17);
        for (name, select) in [
            ("contiguous", s![.., ..]),
            ("stepped", s![..;2, ..;3]),
            ("reversed", s![..;-1, ..;-1]),
        ] {
            let view = x.slice(select);
            let mut layer = Elementwise::<A, f64>::new();
            let expected = layer.forward(view).unwrap();
            let dx = layer.backward(g.slice(select)).unwrap();

            for transposed in [false, true] {
                let mut data = x.clone();
                let mut target = data.slice_mut(select);
                if transposed {
                    target.swap_axes(0, 1);
                }
                let want = if transposed {
                    expected.t().to_owned()
                } else {
                    expected.clone()
                };
                layer.infer_in_place(target.view_mut());
                assert_eq!(target, want, "{} infer_in_place, {name}", A::NAME);
            }
            let mut data = x.clone();
            let mut fresh = Elementwise::<A, f64>::new();
            fresh.forward_in_place(data.slice_mut(select));
            assert_eq!(
                data.slice(select),
                expected,
                "{} forward_in_place, {name}",
                A::NAME
            );
            assert_eq!(
                fresh.backward(g.slice(select)).unwrap(),
                dx,
                "{} backward after it",
                A::NAME
            );
        }
    }
    check::<ndlayers::activation::SigmoidFn>();
    check::<ndlayers::activation::GeluFn>();
    check::<ndlayers::activation::ReluFn>();
}

#[test]
fn class_targets_of_every_integer_type_and_probabilities_agree() {
    let logits = uniform((4, 3), -3.0, 3.0, 18);
    let mut ce = SoftmaxCrossEntropy::new();
    let value = ce
        .forward(logits.view(), array![2_usize, 0, 1, 2].view())
        .unwrap();
    let gradient = ce.backward().unwrap();
    let same = |value_b: f64, ce: &SoftmaxCrossEntropy<f64>| {
        assert_eq!(value_b, value);
        assert_eq!(ce.backward().unwrap(), gradient);
    };
    same(
        ce.forward(logits.view(), array![2_u8, 0, 1, 2].view())
            .unwrap(),
        &ce,
    );
    same(
        ce.forward(logits.view(), array![2_u16, 0, 1, 2].view())
            .unwrap(),
        &ce,
    );
    same(
        ce.forward(logits.view(), array![2_u32, 0, 1, 2].view())
            .unwrap(),
        &ce,
    );
    same(
        ce.forward(logits.view(), array![2_u64, 0, 1, 2].view())
            .unwrap(),
        &ce,
    );
    same(
        ce.forward(logits.view(), array![2_i64, 0, 1, 2].view())
            .unwrap(),
        &ce,
    );
    same(
        ce.forward(logits.view(), array![2, 0, 1, 2].view())
            .unwrap(),
        &ce,
    );

    // One-hot probabilities: the same loss; the gradient p - t, equal up to
    // the rounding the index path avoids (it writes -Σ_{j≠t} p_j).
    let one_hot = array![
        [0.0, 0.0, 1.0],
        [1.0, 0.0, 0.0],
        [0.0, 1.0, 0.0],
        [0.0, 0.0, 1.0]
    ];
    let soft_value = ce.forward(logits.view(), one_hot.view()).unwrap();
    assert!(
        (soft_value - value).abs() <= 4.0 * f64::EPSILON * value,
        "{soft_value} vs {value}"
    );
    for (a, b) in ce.backward().unwrap().iter().zip(&gradient) {
        assert!((a - b).abs() <= 4.0 * f64::EPSILON, "{a} vs {b}");
    }

    // Soft targets (label smoothing 0.1 of the labels above), against finite
    // differences of the loss computed through &self.
    let soft = one_hot.mapv(|t| t * 0.9 + 0.1 / 3.0);
    ce.forward(logits.view(), soft.view()).unwrap();
    let gradient = ce.backward().unwrap();
    let h = 1e-6;
    for ((b, j), &analytic) in gradient.indexed_iter() {
        let mut plus = logits.clone();
        plus[[b, j]] += h;
        let mut minus = logits.clone();
        minus[[b, j]] -= h;
        let numeric = (ce.loss(plus.view(), soft.view()).unwrap()
            - ce.loss(minus.view(), soft.view()).unwrap())
            / (2.0 * h);
        assert!(
            (numeric - analytic).abs() < 1e-8,
            "[{b}, {j}]: {numeric} vs {analytic}"
        );
    }
}

/// Reference values: PyTorch 2.15, `F.cross_entropy(logits, target)` in
/// float64, by `tests/reference/cross_entropy.py` (its output is pasted here).
#[test]
fn probability_targets_match_pytorch() {
    let logits = array![[1.5, -0.5, 0.25], [-2.0, 3.0, 0.5]];
    let target = array![[0.7, 0.2, 0.1], [0.0, 0.25, 0.75]];
    let mut ce = SoftmaxCrossEntropy::<f64>::new();
    let value = ce.forward(logits.view(), target.view()).unwrap();
    // Printed by the script: torch 2.15.0.
    let pytorch_value = 1.4185245550835557;
    let pytorch_grad = array![
        [
            0.0016569880108869449,
            -0.05240840192541252,
            0.05075141391452545
        ],
        [
            0.0030941426364000193,
            0.3342114833821017,
            -0.33730562601850167
        ]
    ];
    assert!(
        (value - pytorch_value).abs() <= 2.0 * f64::EPSILON,
        "{value}"
    );
    for (a, b) in ce.backward().unwrap().iter().zip(&pytorch_grad) {
        assert!((a - b).abs() <= 4.0 * f64::EPSILON, "{a} vs {b}");
    }
}

#[test]
fn bad_class_targets_are_errors() {
    let logits = Array2::<f32>::zeros((2, 3));
    let mut ce = SoftmaxCrossEntropy::new();
    assert_eq!(
        ce.forward(logits.view(), array![0_i64, -1].view())
            .unwrap_err(),
        LayerError::LabelOutOfRange {
            layer: "SoftmaxCrossEntropy",
            index: 1,
            label: -1,
            classes: 3
        }
    );
    assert_eq!(
        ce.forward(logits.view(), array![u64::MAX, 0].view())
            .unwrap_err()
            .to_string(),
        "SoftmaxCrossEntropy: label 18446744073709551615 at batch index 0 is out of range for 3 classes"
    );
    let err = ce
        .forward(
            logits.view(),
            array![[1.0, 0.0, 0.0], [0.5, f32::NAN, 0.5]].view(),
        )
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "SoftmaxCrossEntropy: invalid target probability = NaN at [1, 1]: must be finite and non-negative"
    );
    let err = ce
        .forward(logits.view(), array![[1.0, 0.0, 0.0]].view())
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("target probabilities has shape [1, 3], expected [2, 3]"),
        "{err}"
    );
    assert!(
        ce.forward(
            logits.view(),
            array![[1.0, -0.5, 0.5], [1.0, 0.0, 0.0]].view()
        )
        .is_err()
    );
    assert!(ce.backward_view().is_err(), "no successful forward yet");
}

/// Issue "From layers to networks", point 3: column-major weights (the
/// transpose of PyTorch's (outputs, inputs) array) train to the same weights
/// as row-major ones, because the layer stores them row-major.
#[test]
fn column_major_weights_train_to_the_same_weights() {
    let pytorch_layout = uniform((3, 5), -0.5, 0.5, 19); // (outputs, inputs)
    let column_major = pytorch_layout.clone().reversed_axes(); // (inputs, outputs), column-major
    assert!(!column_major.is_standard_layout());
    let row_major = column_major.as_standard_layout().into_owned();
    let bias = array![0.1, -0.2, 0.3];
    let mut a = Dense::from_parameters(column_major, bias.clone()).unwrap();
    let mut b = Dense::from_parameters(row_major, bias).unwrap();
    assert!(a.weight().is_standard_layout(), "stored row-major");
    let (mut sgd_a, mut sgd_b) = (
        Sgd::new(0.1).unwrap().with_momentum(0.9).unwrap(),
        Sgd::new(0.1).unwrap().with_momentum(0.9).unwrap(),
    );
    let x = uniform((8, 5), -1.0, 1.0, 20);
    let g = uniform((8, 3), -1.0, 1.0, 21);
    for _ in 0..20 {
        for (layer, sgd) in [(&mut a, &mut sgd_a), (&mut b, &mut sgd_b)] {
            layer.forward_view(x.view()).unwrap();
            layer.backward_view(g.view()).unwrap();
            sgd.step(&mut [layer]).unwrap();
        }
    }
    assert_eq!(a.weight(), b.weight());
    assert_eq!(a.bias(), b.bias());
}

#[test]
fn uniform_normal_and_closure_initialisation() {
    let mut rng = StdRng::seed_from_u64(22);
    let layer = Dense::<f64>::new(200, 100, Init::Uniform(0.05), &mut rng).unwrap();
    assert!(layer.weight().iter().all(|w| w.abs() < 0.05));
    assert!(
        layer.weight().iter().any(|w| w.abs() > 0.049),
        "fills the range"
    );
    assert!(layer.bias().iter().all(|&b| b == 0.0));
    let layer = Dense::<f64>::new(200, 100, Init::Normal(0.2), &mut rng).unwrap();
    let std = layer.weight().mapv(|w| w * w).mean().unwrap().sqrt();
    // 20 000 samples: the sample deviation is within 2% of σ with overwhelming probability.
    assert!((std / 0.2 - 1.0).abs() < 0.02, "{std}");
    for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        for init in [Init::Uniform(bad), Init::Normal(bad)] {
            let err = Dense::<f32>::new(2, 2, init, &mut rng).unwrap_err();
            assert!(
                err.to_string().contains("initial weight scale"),
                "{init:?}: {err}"
            );
        }
    }
    let layer = Dense::<f32>::from_fn(2, 3, |i, j| (10 * i + j) as f32).unwrap();
    assert_eq!(layer.weight(), array![[0.0, 1.0, 2.0], [10.0, 11.0, 12.0]]);
    assert!(Dense::<f32>::from_fn(0, 3, |_, _| 0.0).is_err());
    let err = Dense::<f32>::from_fn(1, 2, |_, j| if j == 1 { f32::NAN } else { 0.0 }).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Dense: invalid weight = NaN at [0, 1]: must be finite"
    );
}

#[test]
fn parameters_are_assigned_in_place_and_buffers_are_kept() {
    let mut layer = dense(4, 3, 23);
    let x = uniform((6, 4), -1.0, 1.0, 24);
    let output = layer.forward_view(x.view()).unwrap().as_ptr();
    let weight = layer.weight().as_ptr();
    let new_weight = uniform((3, 4), -1.0, 1.0, 25);
    layer.set_weight(new_weight.t()).unwrap();
    layer.set_bias(array![1.0, 2.0, 3.0].view()).unwrap();
    assert_eq!(layer.weight(), new_weight.t());
    assert_eq!(
        layer.weight().as_ptr(),
        weight,
        "the weight is overwritten, not replaced"
    );
    let y = layer.forward_view(x.view()).unwrap();
    assert_eq!(y.as_ptr(), output, "the output buffer is kept");
    assert_eq!(y, x.dot(&new_weight.t()) + array![1.0, 2.0, 3.0]);

    let mut prelu = Prelu::<f64>::new(3).unwrap();
    prelu.set_weight(array![0.1, 0.2, 0.3].view()).unwrap();
    assert_eq!(prelu.weight(), array![0.1, 0.2, 0.3]);
    assert!(prelu.set_weight(array![0.1, f64::NAN, 0.3].view()).is_err());
    assert!(prelu.set_weight(array![0.1].view()).is_err());
    assert_eq!(prelu.weight(), array![0.1, 0.2, 0.3]);

    let before = (layer.weight().to_owned(), layer.bias().to_owned());
    assert!(
        layer
            .set_bias(array![1.0, f64::INFINITY, 0.0].view())
            .is_err()
    );
    assert!(
        layer
            .set_weight(Array2::from_elem((4, 3), f64::NAN).view())
            .is_err()
    );
    assert!(layer.set_bias(Array1::zeros(4).view()).is_err());
    assert_eq!(
        (layer.weight().to_owned(), layer.bias().to_owned()),
        before,
        "errors change nothing"
    );
}

#[test]
fn buffers_grow_to_the_largest_batch_and_serve_smaller_ones() {
    let mut net = network();
    let big = uniform((8, 5), -1.0, 1.0, 26);
    let first = net.forward_view(big.view()).unwrap().as_ptr();
    for batch in [3, 1, 8, 5] {
        let x = big.slice(s![..batch, ..]);
        let y = net.forward_view(x).unwrap();
        assert_eq!(y.as_ptr(), first, "batch {batch} reuses the batch-8 buffer");
        assert_eq!(
            y.to_owned(),
            network().forward(x).unwrap(),
            "batch {batch} gives fresh-layer results"
        );
        let g = Array2::ones((batch, 4));
        assert_eq!(net.backward(g.view()).unwrap(), {
            let mut fresh = network();
            fresh.forward(x).unwrap();
            fresh.backward(g.view()).unwrap()
        });
    }
}

/// Training code generic over the loss, through the `Loss` trait.
fn step<T, L: Loss<f64, Ix2, T>>(
    net: &mut Sequential<f64>,
    loss: &mut L,
    x: &Array2<f64>,
    target: T,
    sgd: &mut Sgd<f64>,
) -> f64 {
    let prediction = net.forward_view(x.view()).unwrap();
    let value = loss.forward(prediction, target).unwrap();
    net.backward_parameters(loss.backward_view().unwrap())
        .unwrap();
    sgd.step(&mut [net]).unwrap();
    value
}

#[test]
fn the_loss_trait_drives_generic_training_code() {
    let x = uniform((6, 5), -1.0, 1.0, 27);
    let labels = array![0_u8, 1, 2, 3, 0, 1];
    let targets = uniform((6, 4), 0.0, 1.0, 28);
    let mut sgd = Sgd::new(0.1).unwrap();
    let (mut net, mut ce) = (network(), SoftmaxCrossEntropy::new());
    let first = step(&mut net, &mut ce, &x, labels.view(), &mut sgd);
    let mut last = first;
    for _ in 0..50 {
        last = step(&mut net, &mut ce, &x, labels.view(), &mut sgd);
    }
    assert!(last < first, "cross-entropy {first} → {last}");
    let (mut net, mut mse) = (network(), Mse::new());
    let first = step(&mut net, &mut mse, &x, targets.view(), &mut sgd);
    for _ in 0..50 {
        last = step(&mut net, &mut mse, &x, targets.view(), &mut sgd);
    }
    assert!(last < first, "mse {first} → {last}");
}

//! Dense, the losses and SGD: gradients (through a whole network too), values, errors.

use crate::common;

use common::{TwoParameters, uniform};
use ndlayers::gradcheck::GradCheck;
use ndlayers::ndarray::{Array1, Array2, ArrayView2, Ix2, array};
use ndlayers::prelude::*;
use ndlayers::state::{Entry, EntryMut, Name};
use rand::SeedableRng;
use rand::rngs::StdRng;

fn dense(inputs: usize, outputs: usize, init: Init, seed: u64) -> Dense<f64> {
    Dense::new(inputs, outputs, init, &mut StdRng::seed_from_u64(seed)).unwrap()
}

#[test]
fn dense_gradients_match_finite_differences() {
    for (i, init) in [
        Init::GlorotUniform,
        Init::GlorotNormal,
        Init::HeUniform,
        Init::HeNormal,
    ]
    .into_iter()
    .enumerate()
    {
        let mut layer = dense(4, 3, init, i as u64);
        // Non-zero biases, so the check covers them in the forward pass as well.
        let biased =
            Dense::from_parameters(layer.weight().to_owned(), array![0.3, -0.2, 0.1]).unwrap();
        for layer in [&mut layer, &mut biased.clone()] {
            let x = uniform((5, 4), -2.0, 2.0, 10 + i as u64);
            let report = GradCheck::default()
                .check_layer(layer, x.view())
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(
                report.checked,
                5 * 4 + 4 * 3 + 3,
                "input, weight and bias elements"
            );
        }
    }
}

#[test]
fn dense_computes_x_w_plus_b() {
    let mut layer = Dense::from_parameters(
        array![[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]],
        array![0.5, -0.5],
    )
    .unwrap();
    let y = layer
        .forward(array![[1.0, 0.0, -1.0], [2.0, 1.0, 0.0]].view())
        .unwrap();
    assert_eq!(y, array![[-3.5, -4.5], [5.5, 7.5]]);
    let dx = layer
        .backward(array![[1.0, 1.0], [0.0, 2.0]].view())
        .unwrap();
    assert_eq!(dx, array![[3.0, 7.0, 11.0], [4.0, 8.0, 12.0]]); // g Wᵀ
    assert_eq!(
        layer.grad_weight(),
        array![[1.0, 5.0], [0.0, 2.0], [-1.0, -1.0]]
    ); // xᵀ g
    assert_eq!(layer.grad_bias(), array![1.0, 3.0]); // batch sum
}

/// Every product of `Dense` against ndarray's `dot`, on batches either side of
/// the output count (where `backward_view` changes how it computes dL/dx) and
/// of the 32-element transposition tiles, on four layouts of the input and
/// the gradient. Small integers, so both sides are exact and must agree bit
/// for bit.
#[test]
fn dense_products_are_exact_for_every_batch_and_layout() {
    use ndlayers::ndarray::s;
    let (inputs, outputs) = (37, 40);
    let weight = Array2::from_shape_fn((inputs, outputs), |(i, j)| {
        ((i * 5 + j * 3) % 9) as f64 - 4.0
    });
    let bias = Array1::from_shape_fn(outputs, |j| (j % 3) as f64);
    let mut layer = Dense::from_parameters(weight.clone(), bias.clone()).unwrap();
    for batch in [1, 2, 31, 33, 39, 40, 41, 70] {
        let x = Array2::from_shape_fn((batch, inputs), |(i, j)| ((i * 7 + j) % 5) as f64 - 2.0);
        let g = Array2::from_shape_fn((batch, outputs), |(i, j)| ((i + j * 11) % 7) as f64 - 3.0);
        let column_major = |a: &Array2<f64>| a.t().as_standard_layout().reversed_axes().to_owned();
        let stepped = |a: &Array2<f64>| {
            let mut wide = Array2::zeros((a.nrows(), 2 * a.ncols()));
            wide.slice_mut(s![.., ..;2]).assign(a);
            wide
        };
        let (x_f, g_f) = (column_major(&x), column_major(&g));
        let (x_wide, g_wide) = (stepped(&x), stepped(&g));
        let (x_rev, g_rev) = (
            x.slice(s![..;-1, ..]).to_owned(),
            g.slice(s![..;-1, ..]).to_owned(),
        );
        let layouts = [
            ("row-major", x.view(), g.view()),
            ("column-major", x_f.view(), g_f.view()),
            (
                "stepped",
                x_wide.slice(s![.., ..;2]),
                g_wide.slice(s![.., ..;2]),
            ),
            (
                "reversed",
                x_rev.slice(s![..;-1, ..]),
                g_rev.slice(s![..;-1, ..]),
            ),
        ];
        for (layout, x_view, g_view) in layouts {
            let context = format!("batch {batch}, {layout}");
            let y = layer.forward_view(x_view).unwrap().to_owned();
            assert_eq!(y, x.dot(&weight) + &bias, "forward, {context}");
            let dx = layer.backward_view(g_view).unwrap();
            assert_eq!(dx, g.dot(&weight.t()), "dL/dx, {context}");
            assert!(dx.is_standard_layout(), "dL/dx is row-major, {context}");
            assert_eq!(layer.grad_weight(), x.t().dot(&g), "dL/dW, {context}");
            assert_eq!(
                layer.grad_bias(),
                g.sum_axis(ndlayers::ndarray::Axis(0)),
                "dL/db, {context}"
            );
        }
    }
}

#[test]
fn dense_errors_name_the_shapes() {
    let mut layer = dense(64, 10, Init::HeNormal, 0);
    let err = layer.forward(Array2::zeros((8, 63)).view()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Dense: input has shape [8, 63], expected (batch, 64): one sample per row, \
         the layer's 64 input features along each row",
    );
    assert!(matches!(
        dense(3, 2, Init::HeNormal, 0).backward(Array2::zeros((1, 2)).view()),
        Err(LayerError::BackwardBeforeForward { layer: "Dense" })
    ));
    layer.forward(Array2::zeros((8, 64)).view()).unwrap();
    let err = layer.backward(Array2::zeros((8, 9)).view()).unwrap_err();
    assert!(
        err.to_string()
            .contains("grad_output has shape [8, 9], expected [8, 10]"),
        "{err}"
    );
    let err = Dense::from_parameters(Array2::<f32>::zeros((3, 2)), Array1::zeros(4)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Dense: bias has shape [4], expected [2] (one per output: the weight's 2 columns)"
    );
    let err = Dense::<f32>::new(0, 2, Init::HeNormal, &mut StdRng::seed_from_u64(0)).unwrap_err();
    assert!(err.to_string().contains("inputs = 0"), "{err}");
}

/// Issue "From layers to networks", point 4: each shape error blames the
/// argument that is wrong and says what its axes mean.
#[test]
fn shape_errors_blame_the_transposed_argument() {
    // Weights stored (outputs, inputs), as PyTorch's nn.Linear: the weight
    // is wrong, not the bias.
    let err =
        Dense::from_parameters(Array2::<f32>::zeros((512, 64)), Array1::zeros(512)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Dense: weight has shape [512, 64], expected [64, 512] (inputs, outputs): it is \
         (outputs, inputs), as PyTorch's nn.Linear stores it; pass its transpose \
         (`.t()` or `.reversed_axes()`)"
    );
    // A transposed batch: the expected shape does not repeat the wrong batch size.
    let mut layer = dense(64, 10, Init::HeNormal, 0);
    let err = layer.forward(Array2::zeros((64, 250)).view()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Dense: input has shape [64, 250], expected (batch, 64): one sample per row, the \
         layer's 64 input features along each row (its rows have that length: is it transposed?)"
    );
    // set_weight checks the same way and changes nothing on error.
    let before = layer.weight().to_owned();
    let err = layer
        .set_weight(Array2::zeros((10, 64)).view())
        .unwrap_err();
    assert!(err.to_string().contains("it is (outputs, inputs)"), "{err}");
    assert_eq!(layer.weight(), before);
    // Transposed logits: the logits are blamed, not the labels.
    let err = SoftmaxCrossEntropy::<f32>::new()
        .forward(
            Array2::zeros((10, 250)).view(),
            Array1::<u8>::zeros(250).view(),
        )
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "SoftmaxCrossEntropy: logits has shape [10, 250], expected (250, classes): one row \
         per label (is it transposed?)"
    );
    let err = SoftmaxCrossEntropy::<f32>::new()
        .forward(Array2::zeros((4, 3)).view(), Array1::<u8>::zeros(5).view())
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "SoftmaxCrossEntropy: labels has shape [5], expected [4]: one class index per row of the logits"
    );
}

#[test]
fn initialisation_is_seeded_and_has_the_documented_scale() {
    let a = dense(300, 200, Init::HeNormal, 42);
    assert_eq!(
        a.weight(),
        dense(300, 200, Init::HeNormal, 42).weight(),
        "same seed, same weights"
    );
    assert_ne!(a.weight(), dense(300, 200, Init::HeNormal, 43).weight());
    let std = |w: ArrayView2<'_, f64>| (w.mapv(|v| v * v).mean().unwrap()).sqrt();
    // 60 000 samples: the sample standard deviation is within 1% of σ with overwhelming probability.
    let he = (2.0f64 / 300.0).sqrt();
    assert!(
        (std(a.weight()) / he - 1.0).abs() < 0.02,
        "He normal std {} vs {he}",
        std(a.weight())
    );
    let glorot = dense(300, 200, Init::GlorotUniform, 1);
    let bound = (6.0f64 / 500.0).sqrt();
    assert!(glorot.weight().iter().all(|w| w.abs() <= bound));
    // U(-a, a) has standard deviation a/√3.
    assert!((std(glorot.weight()) / (bound / 3f64.sqrt()) - 1.0).abs() < 0.02);
    assert!(a.bias().iter().all(|&b| b == 0.0));
}

/// Reference values: mpmath, `log(exp(1)+exp(2)+exp(3)) - x[label]`, and
/// `exp(x)/sum(exp(x))` for the gradient.
#[test]
fn cross_entropy_matches_reference_values() {
    let mut ce = SoftmaxCrossEntropy::<f64>::new();
    let loss = ce
        .forward(
            array![[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]].view(),
            array![0, 2].view(),
        )
        .unwrap();
    let want = (2.40760596444438 + 0.4076059644443803) / 2.0;
    approx::assert_relative_eq!(loss, want, max_relative = 4.0 * f64::EPSILON);
    let probs = [0.09003057317038046, 0.24472847105479764, 0.6652409557748219];
    let grad = ce.backward().unwrap();
    let want = array![
        [probs[0] - 1.0, probs[1], probs[2]],
        [probs[0], probs[1], probs[2] - 1.0]
    ] / 2.0;
    for (g, w) in grad.iter().zip(&want) {
        approx::assert_abs_diff_eq!(g, w, epsilon = 1e-16);
    }
}

#[test]
fn cross_entropy_keeps_tiny_losses_and_probabilities() {
    // mpmath, 50 digits: (1/2) Σ_rows [log(Σ exp(x)) - x[label]], and the
    // gradient (exp(x)/Σ exp(x) - onehot) / 2.
    let mut ce = SoftmaxCrossEntropy::<f64>::new();
    let x = array![[20.0, 0.0, -3.0], [0.5, -40.25, 1.0]];
    let loss = ce.forward(x.view(), array![0, 1].view()).unwrap();
    approx::assert_relative_eq!(
        loss,
        20.86203849317194,
        max_relative = 4.0 * f64::EPSILON,
        epsilon = 0.0
    );
    let want = array![
        [
            -1.0818862070368328e-09,
            1.0305768089893452e-09,
            5.130939804748759e-11
        ],
        [0.18877033439907273, -0.5, 0.3112296656009273]
    ];
    // Every entry to a few ulp, the true class's too: it is computed as
    // -Σ of the other probabilities, where p - 1 would cancel to an ulp of 1.
    for (g, w) in ce.backward().unwrap().iter().zip(&want) {
        approx::assert_relative_eq!(g, w, max_relative = 4.0 * f64::EPSILON, epsilon = 0.0);
    }
    // A confident right answer: the loss ln(1 + e^-20) = 2.06e-9 is below an
    // ulp of 1, so ln(Σ e^(x - max)) would round it to 0.
    let mut ce = SoftmaxCrossEntropy::<f32>::new();
    let loss = ce
        .forward(array![[20.0, 0.0]].view(), array![0].view())
        .unwrap();
    approx::assert_relative_eq!(
        loss,
        2.0611537e-9, // 2.061153620314381e-9 rounded to f32
        max_relative = 4.0 * f32::EPSILON,
        epsilon = 0.0
    );
    // Its gradient, ±p_1 = ±1/(1 + e^20) = ±2.0611536181902037e-9 (mpmath):
    // p_0 - 1 would be 0 in f32, since p_0 rounds to 1.
    let p1 = 2.0611536e-9_f32;
    for (g, w) in ce.backward().unwrap().iter().zip([-p1, p1]) {
        approx::assert_relative_eq!(*g, w, max_relative = 4.0 * f32::EPSILON, epsilon = 0.0);
    }
    // The same in a long row (200 classes, the compensated sum): logits 30
    // then 199 zeros; mpmath: t = 199·e^-30, p_0 - 1 = -t/(1 + t), p_j = e^-30/(1 + t).
    let mut ce = SoftmaxCrossEntropy::<f64>::new();
    let mut x = Array2::zeros((1, 200));
    x[[0, 0]] = 30.0;
    ce.forward(x.view(), array![0].view()).unwrap();
    let grad = ce.backward().unwrap();
    let (true_class, other) = (-1.8621669707645182e-11, 9.35762296866592e-14);
    approx::assert_relative_eq!(
        grad[[0, 0]],
        true_class,
        max_relative = 4.0 * f64::EPSILON,
        epsilon = 0.0
    );
    approx::assert_relative_eq!(
        grad[[0, 1]],
        other,
        max_relative = 4.0 * f64::EPSILON,
        epsilon = 0.0
    );
}

#[test]
fn cross_entropy_of_uniform_logits_is_ln_classes() {
    for classes in [2, 10, 1000] {
        let mut ce = SoftmaxCrossEntropy::<f32>::new();
        let loss = ce
            .forward(
                Array2::from_elem((4, classes), 3.5).view(),
                Array1::<usize>::zeros(4).view(),
            )
            .unwrap();
        assert!(
            (loss - (classes as f32).ln()).abs() <= 2.0 * f32::EPSILON * loss,
            "{classes}: {loss}"
        );
    }
}

#[test]
fn cross_entropy_is_stable_for_huge_logits() {
    let mut ce = SoftmaxCrossEntropy::<f32>::new();
    let loss = ce
        .forward(array![[1e4, -1e4], [1e4, -1e4]].view(), array![1, 0].view())
        .unwrap();
    assert_eq!(loss, 1e4); // (2e4 + 0) / 2
    let grad = ce.backward().unwrap();
    assert_eq!(grad, array![[0.5, -0.5], [0.0, 0.0]]);
    let loss = ce
        .forward(array![[-3e38, 3e38, 0.0]].view(), array![2].view())
        .unwrap();
    assert_eq!(loss, 3e38);
}

#[test]
fn cross_entropy_gradient_matches_finite_differences() {
    let x = uniform((6, 5), -4.0, 4.0, 30);
    let labels = array![0, 4, 2, 2, 1, 3];
    let mut ce = SoftmaxCrossEntropy::new();
    ce.forward(x.view(), labels.view()).unwrap();
    let analytic = ce.backward().unwrap();
    GradCheck::default()
        .check_function("logits", x.view(), analytic.view(), |x| {
            ce.forward(x, labels.view())
        })
        .unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn cross_entropy_errors() {
    let mut ce = SoftmaxCrossEntropy::<f64>::new();
    assert!(matches!(
        ce.backward(),
        Err(LayerError::BackwardBeforeForward { .. })
    ));
    let err = ce
        .forward(Array2::zeros((2, 3)).view(), array![0, 3].view())
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "SoftmaxCrossEntropy: label 3 at batch index 1 is out of range for 3 classes"
    );
    let err = ce
        .forward(Array2::zeros((2, 3)).view(), array![0].view())
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("labels has shape [1], expected [2]"),
        "{err}"
    );
    let err = ce
        .forward(
            Array2::zeros((0, 3)).view(),
            Array1::<usize>::zeros(0).view(),
        )
        .unwrap_err();
    assert!(matches!(err, LayerError::Empty { .. }), "{err}");
}

#[test]
fn mse_values_gradient_and_errors() {
    let mut mse = Mse::<f64>::new();
    assert!(mse.backward().is_err());
    assert_eq!(
        mse.forward(
            array![[1.0, 2.0], [3.0, 4.0]].view(),
            array![[1.0, 0.0], [0.0, 4.0]].view()
        )
        .unwrap(),
        13.0 / 4.0
    );
    let p = uniform((3, 4), -2.0, 2.0, 31);
    let t = uniform((3, 4), -2.0, 2.0, 32);
    mse.forward(p.view(), t.view()).unwrap();
    let analytic = mse.backward().unwrap();
    GradCheck::default()
        .check_function("prediction", p.view(), analytic.view(), |p| {
            mse.forward(p, t.view())
        })
        .unwrap_or_else(|e| panic!("{e}"));
    let err = mse
        .forward(Array2::zeros((2, 2)).view(), Array2::zeros((2, 3)).view())
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("target has shape [2, 3], expected [2, 2]"),
        "{err}"
    );
    assert!(
        mse.forward(Array2::zeros((0, 2)).view(), Array2::zeros((0, 2)).view())
            .is_err()
    );
    // Any dimension works.
    let mut mse1 = Mse::<f32, ndlayers::ndarray::Ix1>::new();
    assert_eq!(
        mse1.forward(array![2.0].view(), array![0.0].view())
            .unwrap(),
        4.0
    );
}

#[test]
fn sgd_steps_follow_the_formulas() {
    let mut layer = Dense::from_parameters(array![[1.0_f64]], array![0.0]).unwrap();
    layer.forward(array![[2.0]].view()).unwrap();
    layer.backward(array![[1.0]].view()).unwrap(); // dW = 2, db = 1
    let mut sgd = Sgd::new(0.1).unwrap();
    sgd.step(&mut [&mut layer]).unwrap();
    assert_eq!((layer.weight()[[0, 0]], layer.bias()[0]), (1.0 - 0.2, -0.1));

    let mut layer = Dense::from_parameters(array![[1.0_f64]], array![0.0]).unwrap();
    let mut sgd = Sgd::new(0.5).unwrap().with_momentum(0.5).unwrap();
    layer.forward(array![[1.0]].view()).unwrap();
    layer.backward(array![[1.0]].view()).unwrap(); // dW = 1 on both steps
    sgd.step(&mut [&mut layer]).unwrap(); // v = 1, w = 0.5
    sgd.step(&mut [&mut layer]).unwrap(); // v = 1.5, w = -0.25
    assert_eq!(layer.weight()[[0, 0]], -0.25);
}

#[test]
fn sgd_rejects_bad_hyperparameters() {
    for lr in [-1.0, -f64::MIN_POSITIVE, f64::NAN, f64::INFINITY] {
        assert!(Sgd::new(lr).is_err(), "lr {lr}");
    }
    // Zero is a learning rate, as in PyTorch: where a schedule may end.
    assert_eq!(Sgd::new(0.0).unwrap().learning_rate(), 0.0);
    for mu in [-0.1, 1.0, f64::NAN] {
        assert!(
            Sgd::new(0.1).unwrap().with_momentum(mu).is_err(),
            "momentum {mu}"
        );
    }
    let err = Sgd::<f32>::new(-1.0).unwrap_err().to_string();
    assert_eq!(
        err,
        "Sgd: invalid learning_rate = -1: must be non-negative and finite"
    );
}

/// `Dense → Tanh → Dense → softmax cross-entropy`, as one layer whose output
/// is the `(1, 1)` loss, so the public checker sees every gradient at once.
/// Written by hand on the trait's view path: each view feeds the next layer.
#[derive(Clone)]
struct Network {
    first: Dense<f64>,
    tanh: Tanh<f64, Ix2>,
    second: Dense<f64>,
    loss: SoftmaxCrossEntropy<f64>,
    labels: Array1<usize>,
    /// The `(1, 1)` loss, and `g · dL/dlogits`.
    out: Array2<f64>,
    dlogits: Array2<f64>,
}

impl Layer<f64, Ix2> for Network {
    fn forward_view(&mut self, x: ArrayView2<'_, f64>) -> Result<ArrayView2<'_, f64>, LayerError> {
        let h = self.first.forward_view(x)?;
        let a = self.tanh.forward_view(h)?;
        let logits = self.second.forward_view(a)?;
        self.out[[0, 0]] = self.loss.forward(logits, self.labels.view())?;
        Ok(self.out.view())
    }

    fn backward_view(&mut self, g: ArrayView2<'_, f64>) -> Result<ArrayView2<'_, f64>, LayerError> {
        let dlogits = self.loss.backward_view()?;
        self.dlogits = &dlogits * g[[0, 0]];
        let da = self.second.backward_view(self.dlogits.view())?;
        let dh = self.tanh.backward_view(da)?;
        self.first.backward_view(dh)
    }

    fn infer(&self, x: ArrayView2<'_, f64>) -> Result<Array2<f64>, LayerError> {
        let logits = self
            .second
            .infer(self.tanh.infer(self.first.infer(x)?.view())?.view())?;
        Ok(array![[self
            .loss
            .loss(logits.view(), self.labels.view())?]])
    }
}

impl StateDict<f64> for Network {
    fn visit_state(&self, prefix: &Name<'_>, visit: &mut dyn FnMut(&Name<'_>, Entry<'_, f64>)) {
        self.first.visit_state(&prefix.field("first"), visit);
        self.second.visit_state(&prefix.field("second"), visit);
    }

    fn visit_state_mut(
        &mut self,
        prefix: &Name<'_>,
        visit: &mut dyn FnMut(&Name<'_>, EntryMut<'_, f64>),
    ) {
        self.first.visit_state_mut(&prefix.field("first"), visit);
        self.second.visit_state_mut(&prefix.field("second"), visit);
    }
}

#[test]
fn a_whole_two_layer_network_passes_the_gradient_check() {
    let mut net = Network {
        first: dense(5, 7, Init::GlorotUniform, 3),
        tanh: Tanh::new(),
        second: dense(7, 4, Init::GlorotUniform, 4),
        loss: SoftmaxCrossEntropy::new(),
        labels: array![0, 3, 1],
        out: Array2::zeros((1, 1)),
        dlogits: Array2::zeros((0, 0)),
    };
    let x = uniform((3, 5), -1.5, 1.5, 33);
    let report = GradCheck::default()
        .check_layer(&mut net, x.view())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report.checked, 3 * 5 + 5 * 7 + 7 + 7 * 4 + 4);
    println!("worst element: {}", report.worst.unwrap());
}

#[test]
fn a_wrong_parameter_gradient_is_caught_and_named() {
    /// A Dense whose reported bias gradient is doubled.
    struct Broken(Dense<f64>);
    impl Layer<f64, Ix2> for Broken {
        fn forward_view(
            &mut self,
            x: ArrayView2<'_, f64>,
        ) -> Result<ArrayView2<'_, f64>, LayerError> {
            self.0.forward_view(x)
        }
        fn backward_view(
            &mut self,
            g: ArrayView2<'_, f64>,
        ) -> Result<ArrayView2<'_, f64>, LayerError> {
            self.0.backward_view(g)
        }
        fn infer(&self, x: ArrayView2<'_, f64>) -> Result<Array2<f64>, LayerError> {
            self.0.infer(x)
        }
    }
    impl StateDict<f64> for Broken {
        fn visit_state(&self, prefix: &Name<'_>, visit: &mut dyn FnMut(&Name<'_>, Entry<'_, f64>)) {
            let doubled = self.0.grad_bias().to_owned() * 2.0;
            self.0.visit_state(prefix, &mut |name, entry| match entry {
                Entry::Parameter { value, .. } if name.is("bias") => {
                    let grad = doubled.view().into_dyn();
                    visit(name, Entry::Parameter { value, grad })
                }
                entry => visit(name, entry),
            });
        }

        fn visit_state_mut(
            &mut self,
            prefix: &Name<'_>,
            visit: &mut dyn FnMut(&Name<'_>, EntryMut<'_, f64>),
        ) {
            self.0.visit_state_mut(prefix, visit)
        }
    }
    let mut broken = Broken(dense(2, 2, Init::HeNormal, 5));
    let err = GradCheck::default()
        .check_parameters(&mut broken, array![[1.0, 2.0]].view())
        .unwrap_err();
    assert!(err.to_string().contains("worst: bias at ["), "{err}");
}

#[test]
fn momentum_sgd_reports_a_bad_gradient_and_updates_nothing() {
    use ndlayers::ndarray::ArrayD;
    let mut layer = TwoParameters {
        a: ArrayD::ones(vec![2]),
        a_grad: ArrayD::ones(vec![3]),
        b: ArrayD::ones(vec![2]),
        b_grad: ArrayD::ones(vec![2]),
    };
    let mut sgd = Sgd::new(0.5).unwrap().with_momentum(0.5).unwrap();
    for step in 0..3 {
        // Used to panic ("index out of bounds") on the first step, then to
        // update `b` and count the step (issue 27).
        let err = sgd.step(&mut [&mut layer]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Sgd: state of `a`: its gradient has shape [3], the parameter [2]"
        );
        assert_eq!(layer.a, ArrayD::<f64>::ones(vec![2]), "step {step}");
        assert_eq!(layer.b, ArrayD::<f64>::ones(vec![2]), "step {step}");
        assert_eq!((sgd.steps(), sgd.state().parameters.len()), (0, 0));
    }
    // Once the gradient fits, the step goes through: v = 1, b = 1 - 0.5.
    layer.a_grad = ArrayD::ones(vec![2]);
    sgd.step(&mut [&mut layer]).unwrap();
    assert_eq!(layer.b, ArrayD::from_elem(vec![2], 0.5));
}

#[test]
fn gradcheck_settings_are_validated_and_named() {
    let x = array![[0.5, -1.0]];
    let cases = [
        (
            GradCheck {
                step: 0.0,
                ..GradCheck::default()
            },
            "step",
        ),
        (
            GradCheck {
                step: f64::NAN,
                ..GradCheck::default()
            },
            "step",
        ),
        (
            GradCheck {
                step: f64::INFINITY,
                ..GradCheck::default()
            },
            "step",
        ),
        (
            GradCheck {
                step: 1e300,
                ..GradCheck::default()
            },
            "step",
        ),
        (
            GradCheck {
                step: 10.0,
                ..GradCheck::default()
            },
            "step",
        ),
        (
            GradCheck {
                atol: -1.0,
                ..GradCheck::default()
            },
            "atol",
        ),
        (
            GradCheck {
                atol: f64::INFINITY,
                ..GradCheck::default()
            },
            "atol",
        ),
        (
            GradCheck {
                rtol: -1e-3,
                ..GradCheck::default()
            },
            "rtol",
        ),
        (
            GradCheck {
                atol: 0.0,
                rtol: 0.0,
                ..GradCheck::default()
            },
            "atol",
        ),
    ];
    for (settings, name) in cases {
        let err = settings
            .check_input(&mut Tanh::<f64, Ix2>::new(), x.view())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&format!("GradCheck: invalid {name}")),
            "{settings:?}: {err}"
        );
        let err = settings
            .check_function("x", x.view(), x.view(), |v| Ok(v.sum()))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&format!("invalid {name}")),
            "{settings:?}: {err}"
        );
    }
    // A wrong gradient no longer passes through a negative tolerance.
    let lax = GradCheck {
        atol: -1.0,
        rtol: -1.0,
        ..GradCheck::default()
    };
    assert!(
        lax.check_function("x", x.view(), (&x * 0.0).view(), |v| Ok(v.sum()))
            .is_err()
    );
    assert!(GradCheck::default().validate().is_ok());
}

#[test]
fn dense_sizes_that_overflow_or_cannot_be_allocated_are_errors() {
    let mut rng = StdRng::seed_from_u64(0);
    // Used to panic ("Shape too large") and to abort the process.
    for (inputs, outputs, why) in [
        (usize::MAX, 2, "overflows"),
        (1 << 62, 1, "overflows"),
        (1 << 40, 1, "does not fit in memory"),
    ] {
        let err = Dense::<f64>::new(inputs, outputs, Init::HeNormal, &mut rng)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("Dense: invalid size") && err.contains(why),
            "{inputs} x {outputs}: {err}"
        );
    }
}

#[test]
fn dense_from_parameters_rejects_what_new_rejects() {
    let cases = [
        (
            Array2::<f64>::zeros((0, 3)),
            Array1::zeros(3),
            "invalid weight = shape [0, 3]",
        ),
        (
            array![[1.0, f64::NAN]],
            array![0.0, 0.0],
            "invalid weight = NaN at [0, 1]",
        ),
        (
            array![[1.0, 2.0]],
            array![0.0, f64::INFINITY],
            "invalid bias = inf at [1]",
        ),
    ];
    for (weight, bias, message) in cases {
        let err = Dense::from_parameters(weight, bias)
            .unwrap_err()
            .to_string();
        assert!(err.contains(message), "{err}");
    }
}

#[test]
fn cross_entropy_mean_of_huge_losses_does_not_overflow_when_it_fits() {
    // Row losses of 1.75e38 (the wrong class's logit minus the right one's):
    // their sum overflows f32, their mean does not (it used to be inf).
    let logits = array![[1e38_f32, -0.75e38], [-0.75e38, 1e38]];
    let mut ce = SoftmaxCrossEntropy::new();
    let loss = ce.forward(logits.view(), array![1usize, 0].view()).unwrap();
    assert!(loss.is_finite(), "{loss}");
    assert_eq!(loss, 1e38_f32 - -0.75e38_f32);
}

#[test]
fn layer_types_default_to_batches_and_the_rand_the_crate_needs_is_reexported() {
    // `Sigmoid<f32>` as a field used to need the dimension (E0107).
    struct Net {
        hidden: Sigmoid<f32>,
        slope: ndlayers::Prelu<f32>,
        probs: Softmax<f32>,
        dense: Dense<f32>,
    }
    // The generator of the rand version Dense::new takes, named through the crate.
    use ndlayers::rand::{SeedableRng as _, rngs::StdRng as ReexportedStdRng};
    let mut rng = ReexportedStdRng::seed_from_u64(3);
    let mut net = Net {
        hidden: Sigmoid::new(),
        slope: ndlayers::Prelu::new(2).unwrap(),
        probs: Softmax::new(),
        dense: Dense::new(2, 2, Init::HeNormal, &mut rng).unwrap(),
    };
    let x: ndlayers::ndarray::Array<f32, Ix2> = array![[0.5, -1.0]];
    let h = net
        .hidden
        .forward(net.dense.forward(x.view()).unwrap().view())
        .unwrap();
    let y = net
        .probs
        .forward(net.slope.forward(h.view()).unwrap().view())
        .unwrap();
    assert!((y.sum() - 1.0).abs() < 1e-6);
    use ndlayers::ndarray_rand::RandomExt;
    let noise = ndlayers::ndarray::Array2::<f64>::random_using(
        (2, 3),
        ndlayers::ndarray_rand::rand_distr::StandardNormal,
        &mut rng,
    );
    assert_eq!(noise.dim(), (2, 3));
}

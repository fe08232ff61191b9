//! Hostile inputs to every public entry point: nothing panics.
//!
//! proptest generates arrays (empty, one element, wide; NaN, ±∞, huge,
//! subnormal; contiguous, transposed, stepped, reversed) and sequences of
//! calls in any order (backward before forward, shapes that change between
//! calls, wrong shapes, absurd sizes and hyperparameters), and drives every
//! layer, `Sequential`, both losses, `Sgd` and `GradCheck` with them. Each
//! call must return (`Ok` or `Err`), never panic; where it returns `Ok`,
//! the result's shape is checked.

use crate::common;

use common::any_value;
use ndlayers::activation::{
    Celu, Elu, Gelu, HardSigmoid, HardSwish, HardTanh, LeakyRelu, LogSigmoid, Mish, Relu6, Selu,
    Silu, Softplus, Softsign,
};
use ndlayers::gradcheck::GradCheck;
use ndlayers::ndarray::{Array1, Array2, ArrayView2, Axis, Ix2, s};
use ndlayers::prelu::Prelu;
use ndlayers::prelude::*;
use ndlayers::rand::SeedableRng;
use ndlayers::rand::rngs::StdRng;
use proptest::prelude::*;

/// How a generated matrix is presented to the call.
#[derive(Debug, Clone, Copy)]
enum Layout {
    Standard,
    Transposed,
    Stepped,
    Reversed,
}

fn present(a: &Array2<f64>, layout: Layout) -> ArrayView2<'_, f64> {
    match layout {
        Layout::Standard => a.view(),
        Layout::Transposed => a.t(),
        Layout::Stepped => a.slice(s![..;2, ..]),
        Layout::Reversed => a.slice(s![..;-1, ..;-1]),
    }
}

/// A matrix of 0 to 7 rows and 0 to 9 columns, and a layout.
fn any_matrix() -> impl Strategy<Value = (Array2<f64>, Layout)> {
    let layout = prop::sample::select(vec![
        Layout::Standard,
        Layout::Transposed,
        Layout::Stepped,
        Layout::Reversed,
    ]);
    ((0usize..8, 0usize..10), layout).prop_flat_map(|((r, c), layout)| {
        (
            prop::collection::vec(any_value(), r * c)
                .prop_map(move |v| Array2::from_shape_vec((r, c), v).expect("r * c values")),
            Just(layout),
        )
    })
}

/// One call on a layer.
#[derive(Debug, Clone)]
enum Call {
    Forward(Array2<f64>, Layout),
    ForwardView(Array2<f64>, Layout),
    Backward(Array2<f64>, Layout),
    BackwardView(Array2<f64>, Layout),
    BackwardParameters(Array2<f64>, Layout),
    Infer(Array2<f64>, Layout),
    Step(f64),
    Training(bool),
    /// Forward, then backward with a gradient of the output's shape (which
    /// random shapes rarely hit), then an optimiser step.
    Round(Array2<f64>, Layout),
}

fn any_call() -> impl Strategy<Value = Call> {
    prop_oneof![
        any_matrix().prop_map(|(a, l)| Call::Forward(a, l)),
        any_matrix().prop_map(|(a, l)| Call::ForwardView(a, l)),
        any_matrix().prop_map(|(a, l)| Call::Backward(a, l)),
        any_matrix().prop_map(|(a, l)| Call::BackwardView(a, l)),
        any_matrix().prop_map(|(a, l)| Call::BackwardParameters(a, l)),
        any_matrix().prop_map(|(a, l)| Call::Infer(a, l)),
        any_value().prop_map(Call::Step),
        any::<bool>().prop_map(Call::Training),
        any_matrix().prop_map(|(a, l)| Call::Round(a, l)),
    ]
}

/// A layer and the name a failure reports.
type Named = (&'static str, Box<dyn Layer<f64, Ix2>>);

/// Every layer type, built by its default constructor (and a few others).
fn every_layer() -> Vec<Named> {
    let mut rng = StdRng::seed_from_u64(0);
    vec![
        ("Sigmoid", Box::new(Sigmoid::new())),
        ("Tanh", Box::new(Tanh::new())),
        ("Relu", Box::new(Relu::new())),
        ("LeakyRelu", Box::new(LeakyRelu::new())),
        ("Elu", Box::new(Elu::new())),
        ("Selu", Box::new(Selu::new())),
        ("Celu", Box::new(Celu::new())),
        ("Gelu", Box::new(Gelu::new())),
        ("Gelu tanh", Box::new(Gelu::tanh_approximation())),
        ("Silu", Box::new(Silu::new())),
        ("Mish", Box::new(Mish::new())),
        ("Softplus", Box::new(Softplus::new())),
        ("Softsign", Box::new(Softsign::new())),
        ("HardTanh", Box::new(HardTanh::new())),
        ("Relu6", Box::new(Relu6::new())),
        ("HardSigmoid", Box::new(HardSigmoid::new())),
        ("HardSwish", Box::new(HardSwish::new())),
        ("LogSigmoid", Box::new(LogSigmoid::new())),
        ("Softmax", Box::new(Softmax::new())),
        ("Softmax axis 0", Box::new(Softmax::along(Axis(0)))),
        ("Softmax axis 5", Box::new(Softmax::along(Axis(5)))),
        ("LogSoftmax", Box::new(LogSoftmax::new())),
        ("Softmin", Box::new(Softmin::along(Axis(0)))),
        ("Prelu shared", Box::new(Prelu::new(1).unwrap())),
        ("Dropout", Box::new(Dropout::new(0.5, 0).unwrap())),
        ("Dropout all", Box::new(Dropout::new(1.0, 0).unwrap())),
        ("LayerNorm 4", Box::new(LayerNorm::new(4).unwrap())),
        ("Prelu 4", Box::new(Prelu::new(4).unwrap())),
        (
            "Dense 4x3",
            Box::new(Dense::new(4, 3, Init::HeNormal, &mut rng).unwrap()),
        ),
        ("Sequential empty", Box::new(Sequential::new())),
        (
            "Sequential",
            Box::new(
                Sequential::new()
                    .with(Dense::new(4, 5, Init::GlorotUniform, &mut rng).unwrap())
                    .with(Tanh::new())
                    .with(Prelu::new(5).unwrap())
                    .with(Softmax::new()),
            ),
        ),
    ]
}

/// The shape a layer's output must have for `input`, where it is known.
fn output_shape(name: &str, input: &ArrayView2<'_, f64>) -> Vec<usize> {
    match name {
        "Dense 4x3" => vec![input.nrows(), 3],
        "Sequential" => vec![input.nrows(), 5],
        _ => input.shape().to_vec(),
    }
}

fn run(
    name: &str,
    layer: &mut dyn Layer<f64, Ix2>,
    sgd: &mut dyn Optimizer<f64>,
    call: &Call,
) -> Result<(), TestCaseError> {
    match call {
        Call::Forward(a, l) | Call::ForwardView(a, l) | Call::Infer(a, l) => {
            let x = present(a, *l);
            let y = match call {
                Call::Forward(..) => layer.forward(x).map(|y| y.shape().to_vec()),
                Call::ForwardView(..) => layer.forward_view(x).map(|y| y.shape().to_vec()),
                _ => layer.infer(x).map(|y| y.shape().to_vec()),
            };
            if let Ok(shape) = y {
                prop_assert_eq!(shape, output_shape(name, &x), "{} {:?}", name, call);
            }
        }
        Call::Backward(a, l) => {
            let _ = layer.backward(present(a, *l));
        }
        Call::BackwardView(a, l) => {
            let _ = layer.backward_view(present(a, *l));
        }
        Call::BackwardParameters(a, l) => {
            let _ = layer.backward_parameters(present(a, *l));
        }
        Call::Round(a, l) => {
            if let Ok(y) = layer.forward(present(a, *l)) {
                let g = y.mapv(|v| if v.is_nan() { 1.0 } else { v * 0.5 });
                if let Ok(dx) = layer.backward(g.view()) {
                    let input_shape = present(a, *l).shape().to_vec();
                    prop_assert_eq!(dx.shape(), &input_shape[..], "{} {:?}", name, call);
                }
                let _ = layer.backward_parameters(g.view());
                let _ = sgd.step(&mut [layer]);
            }
        }
        Call::Training(training) => layer.set_training(*training),
        Call::Step(learning_rate) => {
            let _ = sgd.set_learning_rate(*learning_rate);
            let _ = sgd.step(&mut [layer]);
        }
    }
    Ok(())
}

/// Builds a fresh optimiser.
type MakeOptimizer = fn() -> Box<dyn Optimizer<f64>>;

/// Class labels, some out of range, some negative.
fn any_labels() -> impl Strategy<Value = Vec<i64>> {
    prop::collection::vec(prop_oneof![4 => 0i64..10, 1 => any::<i64>()], 0..8)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_call_sequence_on_any_layer_returns(calls in prop::collection::vec(any_call(), 1..10)) {
        let optimizers: [MakeOptimizer; 2] = [
            || Box::new(Sgd::new(0.1).unwrap().with_momentum(0.5).unwrap()),
            || Box::new(AdamW::new(0.1).unwrap()),
        ];
        for make in optimizers {
            for (name, mut layer) in every_layer() {
                let mut optimizer = make();
                for call in &calls {
                    run(name, &mut *layer, &mut *optimizer, call)?;
                }
            }
        }
    }

    #[test]
    fn the_losses_return_on_anything(
        (logits, layout) in any_matrix(),
        labels in any_labels(),
        (probabilities, p_layout) in any_matrix(),
        (target, t_layout) in any_matrix(),
    ) {
        let logits = present(&logits, layout);
        let mut ce = SoftmaxCrossEntropy::new();
        let _ = ce.backward_view();
        let labels = Array1::from(labels);
        let unsigned = labels.mapv(|l| l as u8);
        for result in [
            ce.forward(logits, labels.view()),
            ce.loss(logits, labels.view()),
            ce.forward(logits, unsigned.view()),
            ce.forward(logits, present(&probabilities, p_layout)),
            ce.loss(logits, present(&probabilities, p_layout)),
        ] {
            if result.is_ok() {
                prop_assert_eq!(ce.backward_view().unwrap().shape().to_vec(), logits.shape().to_vec());
            }
        }
        let _ = ce.probabilities(logits);
        let mut mse = Mse::new();
        let _ = mse.backward();
        let target = present(&target, t_layout);
        if mse.forward(logits, target).is_ok() {
            prop_assert_eq!(mse.backward_view().unwrap().shape().to_vec(), logits.shape().to_vec());
        }
        let _ = mse.loss(logits, target);
    }

    #[test]
    fn constructors_and_setters_return_on_anything(
        inputs in prop_oneof![0usize..5, Just(usize::MAX), Just(1usize << 40), Just(1usize << 62)],
        outputs in prop_oneof![0usize..5, Just(usize::MAX), Just(1usize << 40)],
        scale in any_value(),
        hyper in prop::collection::vec(any_value(), 4),
        (weight, w_layout) in any_matrix(),
        (bias, b_layout) in any_matrix(),
    ) {
        let mut rng = StdRng::seed_from_u64(1);
        for init in [Init::GlorotUniform, Init::HeNormal, Init::Uniform(scale), Init::Normal(scale)] {
            if let Ok(layer) = Dense::<f32>::new(inputs, outputs, init, &mut rng) {
                prop_assert_eq!(layer.weight().dim(), (inputs, outputs));
            }
        }
        let _ = Dense::<f32>::from_fn(inputs.min(1 << 40), outputs, |i, j| (i + j) as f32);
        let _ = Prelu::<f32>::new(inputs);
        let bias_row: Array1<f64> = present(&bias, b_layout).iter().copied().collect();
        let _ = Prelu::<f64>::with_weight(bias_row.clone());
        let weight = present(&weight, w_layout).to_owned();
        if let Ok(mut layer) = Dense::from_parameters(weight.clone(), bias_row.clone()) {
            let _ = layer.set_weight(weight.t());
            let _ = layer.set_weight(weight.view());
            let _ = layer.set_bias(bias_row.view());
            let _ = layer.set_bias(bias_row.slice(s![..;-1]));
        }
        let _ = Sgd::new(hyper[0]).and_then(|s| s.with_momentum(hyper[1]));
        let _ = Adam::new(hyper[0]).and_then(|a| a.with_betas(hyper[1], hyper[2])).and_then(|a| a.with_eps(hyper[3]));
        let _ = AdamW::new(hyper[3]).and_then(|a| a.with_weight_decay(hyper[0]));
        let _ = Dropout::<f64>::new(hyper[0], 0);
        let _ = LayerNorm::<f64>::new(inputs).and_then(|n| n.with_eps(hyper[1]));
        let _ = LeakyRelu::<f64>::with_slope(hyper[0]);
        let _ = Elu::<f64>::with_alpha(hyper[1]);
        let _ = Celu::<f64>::with_alpha(hyper[2]);
        let _ = Softplus::<f64>::with_beta_threshold(hyper[0], hyper[3]);
        let _ = HardTanh::<f64>::with_range(hyper[1], hyper[2]);
        let check = GradCheck { step: hyper[0], atol: hyper[1], rtol: hyper[2], ..GradCheck::default() };
        if check.validate().is_ok() {
            let _ = check.check_input(&mut Tanh::new(), weight.view());
        } else {
            prop_assert!(check.check_input(&mut Tanh::new(), weight.view()).is_err());
        }
    }
}

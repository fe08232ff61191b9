//! Property tests: no input makes a layer panic, and backward always matches
//! finite differences, on random shapes and values.

use crate::common;

use common::any_value;
use ndlayers::gradcheck::GradCheck;
use ndlayers::ndarray::{Array2, ArrayD, IxDyn};
use ndlayers::prelude::*;
use proptest::prelude::*;

/// A random array of 0 to 4 dimensions with 0 to 5 elements along each.
fn any_array(values: impl Strategy<Value = f64> + Clone) -> impl Strategy<Value = ArrayD<f64>> {
    prop::collection::vec(0usize..5, 0..5).prop_flat_map(move |shape| {
        let len = shape.iter().product::<usize>();
        prop::collection::vec(values.clone(), len).prop_map(move |data| {
            ArrayD::from_shape_vec(IxDyn(&shape), data).expect("length matches shape")
        })
    })
}

fn any_matrix(values: impl Strategy<Value = f64> + Clone) -> impl Strategy<Value = Array2<f64>> {
    (0usize..6, 0usize..9).prop_flat_map(move |(r, c)| {
        prop::collection::vec(values.clone(), r * c).prop_map(move |data| {
            Array2::from_shape_vec((r, c), data).expect("length matches shape")
        })
    })
}

/// Runs forward and backward on `x` (and on its reversed-axes view) and checks
/// the calls return arrays of the right shape, and that a wrong-shaped
/// gradient is an error, not a panic.
fn exercise<L: Layer<f64, IxDyn>>(mut layer: L, x: &ArrayD<f64>) -> Result<(), TestCaseError> {
    for view in [x.view(), x.view().reversed_axes()] {
        let y = layer
            .forward(view.view())
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(y.shape(), view.shape());
        let dx = layer
            .backward(y.view())
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(dx.shape(), view.shape());
        let mut wrong = view.shape().to_vec();
        wrong.push(2);
        prop_assert!(layer.backward(ArrayD::zeros(wrong).view()).is_err());
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn elementwise_layers_never_panic(x in any_array(any_value())) {
        exercise(Sigmoid::new(), &x)?;
        exercise(Tanh::new(), &x)?;
        exercise(Relu::new(), &x)?;
        // Outputs are in range, or NaN exactly where the input is NaN.
        let y = Sigmoid::new().forward(x.view()).unwrap();
        for (&xi, &yi) in x.iter().zip(&y) {
            prop_assert!(if xi.is_nan() { yi.is_nan() } else { (0.0..=1.0).contains(&yi) }, "σ({}) = {}", xi, yi);
        }
        let y = Tanh::new().forward(x.view()).unwrap();
        for (&xi, &yi) in x.iter().zip(&y) {
            prop_assert!(if xi.is_nan() { yi.is_nan() } else { (-1.0..=1.0).contains(&yi) }, "tanh({}) = {}", xi, yi);
        }
    }

    #[test]
    fn softmax_never_panics_and_rows_are_distributions(x in any_matrix(any_value())) {
        let mut softmax = Softmax::new();
        let y = softmax.forward(x.view()).unwrap();
        prop_assert_eq!(y.dim(), x.dim());
        prop_assert_eq!(softmax.backward(y.view()).unwrap().dim(), x.dim());
        prop_assert_eq!(softmax.jacobian().unwrap().dim(), (x.nrows(), x.ncols(), x.ncols()));
        prop_assert!(softmax.backward(Array2::zeros((x.nrows() + 1, x.ncols())).view()).is_err());
        for (xr, yr) in x.rows().into_iter().zip(y.rows()) {
            if xr.iter().all(|v| v.is_finite()) && !xr.is_empty() {
                let total: f64 = yr.sum();
                prop_assert!((total - 1.0).abs() < 1e-14, "row {} sums to {}", xr, total);
            }
        }
    }

    #[test]
    fn elementwise_backward_matches_finite_differences(x in any_array(-4.0..4.0f64)) {
        let check = GradCheck::default();
        check.check_input(&mut Sigmoid::new(), x.view()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        check.check_input(&mut Tanh::new(), x.view()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        // ReLU's derivative jumps at 0: keep the inputs away from it.
        let away = x.mapv(|v| if v.abs() < 1e-3 { 0.5 } else { v });
        check.check_input(&mut Relu::new(), away.view()).map_err(|e| TestCaseError::fail(e.to_string()))?;
    }

    #[test]
    fn softmax_backward_matches_finite_differences(x in any_matrix(-8.0..8.0f64)) {
        GradCheck::default()
            .check_input(&mut Softmax::new(), x.view())
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
    }
}

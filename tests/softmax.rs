//! Softmax: gradients, Jacobian, stability, edge cases, layouts, errors.

use crate::common;

use common::{assert_same, ulps_f32, ulps_f64, uniform};
use ndlayers::gradcheck::GradCheck;
use ndlayers::ndarray::Ix2;
use ndlayers::ndarray::{Array2, Array3, ArrayView1, ArrayView2, Axis, ShapeBuilder, array, s};
use ndlayers::prelude::*;
use ndlayers::softmax::{LogSoftmax, Softmin};

#[test]
fn gradient_matches_finite_differences_on_several_shapes() {
    for (i, shape) in [(1, 1), (1, 5), (4, 7), (3, 50), (9, 2)]
        .into_iter()
        .enumerate()
    {
        let x = uniform(shape, -5.0, 5.0, 100 + i as u64);
        let report = GradCheck::default()
            .check_input(&mut Softmax::new(), x.view())
            .unwrap_or_else(|e| panic!("{shape:?}: {e}"));
        assert_eq!(report.checked, shape.0 * shape.1);
    }
}

#[test]
fn jacobian_has_the_textbook_entries_and_contracts_to_backward() {
    let x = uniform((4, 6), -3.0, 3.0, 7);
    let g = uniform((4, 6), -1.0, 1.0, 8);
    let mut softmax = Softmax::new();
    let y = softmax.forward(x.view()).unwrap();
    let jacobian: Array3<f64> = softmax.jacobian().unwrap();
    assert_eq!(jacobian.dim(), (4, 6, 6));
    let dx = softmax.backward(g.view()).unwrap();
    for b in 0..4 {
        for i in 0..6 {
            let yi = y[[b, i]];
            assert!((jacobian[[b, i, i]] - yi * (1.0 - yi)).abs() < 1e-16);
            for j in (0..6).filter(|&j| j != i) {
                assert_eq!(jacobian[[b, i, j]], -yi * y[[b, j]]);
                assert_eq!(jacobian[[b, i, j]], jacobian[[b, j, i]], "symmetric");
            }
        }
        // dL/dx_j = Σ_i g_i J[i, j]
        let from_jacobian = g.row(b).dot(&jacobian.index_axis(Axis(0), b));
        for j in 0..6 {
            assert!(
                (from_jacobian[j] - dx[[b, j]]).abs() < 1e-15,
                "row {b}, col {j}"
            );
        }
    }
}

#[test]
fn huge_logits_do_not_overflow() {
    let mut softmax = Softmax::new();
    let y = softmax
        .forward(array![[1000.0_f32, 1000.0], [-1000.0, 0.0], [3e38, 3e38]].view())
        .unwrap();
    assert_eq!(y, array![[0.5, 0.5], [0.0, 1.0], [0.5, 0.5]]);
}

#[test]
fn rows_sum_to_one_within_a_few_ulps() {
    for (cols, seed) in [(2, 1), (10, 2), (1000, 3), (32768, 4)] {
        let x = uniform((3, cols), -20.0, 20.0, seed).mapv(|v| v as f32);
        let y = Softmax::new().forward(x.view()).unwrap();
        for row in y.rows() {
            // Summed in f64, so the test measures the layer, not its own rounding.
            let total: f64 = row.iter().map(|&v| v as f64).sum();
            // Each y_i carries ≤ 2 ulp relative error, and the shared divisor one
            // more; their sum is off from 1 by at most a few ulps of 1.
            assert!(
                (total - 1.0).abs() <= 4.0 * f32::EPSILON as f64,
                "{cols} classes: sum {total}"
            );
        }
    }
}

#[test]
fn every_row_length_matches_an_f64_reference() {
    // 1 to 140 classes: every short-row width (rows held as two overlapping
    // halves of 1, 2, 4, 8, 16, 32 or 64 lanes), the switch to long rows at
    // 128, and long rows with a tail (every tail length 0 to 15 of the long
    // rows' padded last vector, and rows past one 256-element stage block).
    // Reference: the textbook formulas in f64 on the same f32 inputs (exact
    // widening), so the error measured is the layer's.
    for cols in (1..=143).chain([255, 256, 257, 271, 1000, 1007]) {
        let x = uniform((5, cols), -20.0, 20.0, cols as u64).mapv(|v| v as f32);
        let g = uniform((5, cols), -1.0, 1.0, 100 + cols as u64).mapv(|v| v as f32);
        let mut layer = Softmax::new();
        let y = layer.forward(x.view()).unwrap();
        let dx = layer.backward(g.view()).unwrap();
        for r in 0..5 {
            let x = x.row(r).mapv(f64::from);
            let g = g.row(r).mapv(f64::from);
            let max = x.fold(f64::NEG_INFINITY, |m, &v| m.max(v));
            let e = x.mapv(|v| (v - max).exp());
            let want = &e / e.sum();
            let gy = (&g * &want).sum();
            for j in 0..cols {
                // e^(x - max) ≤ 1 ulp (the subtraction's rounding is carried
                // into exp), the sum ≤ 0.5 ulp a level of its tree (≤ 7
                // levels), the division 0.5 ulp; measured at most 5.5 over
                // 10^6 random rows each of 3 to 127 classes.
                let ulps = ulps_f32(y[[r, j]], want[j]);
                assert!(ulps <= 6.0, "{cols} classes, [{r}, {j}]: {ulps} ulp");
                // dx = y (g - g·y): each factor within a few ulp of its scale,
                // and g - g·y may cancel, so the bound is absolute in that scale.
                let scale = want[j] * (g[j].abs() + (&g * &want).mapv(f64::abs).sum());
                let err = (f64::from(dx[[r, j]]) - want[j] * (g[j] - gy)).abs();
                assert!(
                    err <= 8.0 * f64::from(f32::EPSILON) * scale,
                    "{cols} classes, [{r}, {j}]: backward off by {err}, scale {scale}"
                );
            }
        }
    }
}

#[test]
fn terms_far_below_the_maximum_keep_full_precision() {
    // x - max rounds by up to half an ulp of |x - max|, and e^(x - max) turns
    // that into a relative error of up to |x - max|·2^-53: 260 ulp at -700
    // unless the rounding is carried into exp, as the layer does.
    // mpmath, 60 digits: [float(mp.exp(v) / sum(mp.exp(u) for u in row)) for v in row]
    // (2.6234567891 has bits below the ulp of the others, so every x - max rounds.)
    let row = [
        0.1,
        -3.3,
        -20.7,
        -75.9,
        -400.25,
        -700.1,
        2.6234567891,
        -33.3,
    ];
    let want = [
        0.07404660928356095,
        0.002471177481267067,
        6.857723216866952e-11,
        7.296667418622474e-35,
        9.993309689888768e-176,
        5.977353594630695e-306,
        0.9234822131665945,
        2.312434715878538e-16,
    ];
    // As a short row, and in a long one padded with -1000 (e^-1002.5 is 0 in f64).
    for cols in [8, 40] {
        let mut x = Array2::from_elem((1, cols), -1000.0);
        x.slice_mut(s![0, ..8]).assign(&ArrayView1::from(&row));
        let y = Softmax::new().forward(x.view()).unwrap();
        for (j, &want) in want.iter().enumerate() {
            let ulps = ulps_f64(y[[0, j]], want);
            assert!(ulps <= 4.0, "{cols} classes, x = {}: {ulps} ulp", row[j]);
        }
        assert!(y.slice(s![0, 8..]).iter().all(|&v| v == 0.0));
    }
}

#[test]
fn matches_a_reference_row() {
    // mpmath, 50 digits: [float(mp.exp(v)/sum(mp.exp(u) for u in row)) for v in row], row = [1, 2, 3, 4]
    let want = [
        0.03205860328008499,
        0.08714431874203257,
        0.23688281808991013,
        0.6439142598879724,
    ];
    let y = Softmax::new()
        .forward(array![[1.0_f64, 2.0, 3.0, 4.0]].view())
        .unwrap();
    for (got, want) in y.iter().zip(want) {
        assert!(
            (got - want).abs() <= 2.0 * f64::EPSILON * want,
            "{got} vs {want}"
        );
    }
}

#[test]
fn special_values_follow_the_documented_table() {
    let inf = f64::INFINITY;
    let x = array![
        [f64::NAN, 0.0, 1.0],
        [inf, 0.0, 1.0],
        [-inf, -inf, -inf],
        [-inf, 0.0, 0.0],
    ];
    let y = Softmax::new().forward(x.view()).unwrap();
    assert!(y.row(0).iter().all(|v| v.is_nan()), "NaN row: {}", y.row(0));
    assert!(
        y.row(1).iter().all(|v| v.is_nan()),
        "+inf row: {}",
        y.row(1)
    );
    assert!(
        y.row(2).iter().all(|v| v.is_nan()),
        "all -inf row: {}",
        y.row(2)
    );
    assert_eq!(y.row(3), array![0.0, 0.5, 0.5]);
}

#[test]
fn empty_batches_and_zero_classes() {
    for shape in [(0, 4), (3, 0), (0, 0)] {
        let mut softmax = Softmax::new();
        let y = softmax.forward(Array2::<f32>::zeros(shape).view()).unwrap();
        assert_eq!(y.dim(), shape);
        assert_eq!(
            softmax.backward(Array2::zeros(shape).view()).unwrap().dim(),
            shape
        );
        assert_eq!(
            softmax.jacobian().unwrap().dim(),
            (shape.0, shape.1, shape.1)
        );
    }
}

#[test]
fn errors_name_the_problem() {
    let mut softmax = Softmax::<f64>::new();
    assert_eq!(
        softmax.backward(Array2::zeros((1, 2)).view()).unwrap_err(),
        LayerError::BackwardBeforeForward { layer: "Softmax" }
    );
    assert!(softmax.jacobian().is_err());
    softmax.forward(Array2::zeros((2, 5)).view()).unwrap();
    let message = softmax
        .backward(Array2::zeros((5, 2)).view())
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("[5, 2]") && message.contains("[2, 5]"),
        "{message}"
    );
}

#[test]
fn every_layout_gives_the_same_numbers_as_a_contiguous_copy() {
    let base = uniform((6, 8), -4.0, 4.0, 20);
    let gbase = uniform((6, 8), -1.0, 1.0, 21);
    let mut fortran = Array2::zeros((6, 8).f());
    fortran.assign(&base);
    let views: [(&str, ArrayView2<'_, f64>, ArrayView2<'_, f64>); 4] = [
        ("transposed", base.t(), gbase.t()),
        (
            "stepped",
            base.slice(s![..;2, 1..;3]),
            gbase.slice(s![1..;2, ..;3]),
        ),
        (
            "reversed",
            base.slice(s![..;-1, ..;-2]),
            gbase.slice(s![..;-1, ..;-2]),
        ),
        ("column-major", fortran.view(), gbase.view()),
    ];
    for (name, x, g) in views {
        let mut a = Softmax::new();
        let mut b = Softmax::new();
        let x_copy = x.as_standard_layout().into_owned();
        let g_copy = g.as_standard_layout().into_owned();
        assert_same(
            &a.forward(x).unwrap(),
            &b.forward(x_copy.view()).unwrap(),
            name,
        );
        assert_same(
            &a.backward(g).unwrap(),
            &b.backward(g_copy.view()).unwrap(),
            name,
        );
        let mut out = Array2::zeros((x.ncols(), x.nrows()).f());
        let mut out_t = out.view_mut().reversed_axes();
        a.backward_into(g, out_t.view_mut()).unwrap();
        assert_same(
            &out_t.to_owned(),
            &b.backward(g_copy.view()).unwrap(),
            "backward_into a column-major out",
        );
    }
}

#[test]
fn view_api_agrees_with_owned_api() {
    let x = uniform((7, 13), -5.0, 5.0, 22);
    let g = uniform((7, 13), -1.0, 1.0, 23);
    let mut owned = Softmax::new();
    let mut viewing = Softmax::new();
    let y = owned.forward(x.view()).unwrap();
    assert_same(
        &viewing.forward_view(x.view()).unwrap().to_owned(),
        &y,
        "forward_view",
    );
    let dx = owned.backward(g.view()).unwrap();
    assert_same(
        &viewing.backward_view(g.view()).unwrap().to_owned(),
        &dx,
        "backward_view",
    );
}

#[test]
fn large_batches_match_row_by_row_evaluation() {
    // Above the parallel threshold (with `rayon`: split across threads by whole
    // rows), for short rows and long rows; each row alone is far below it.
    for (shape, seed) in [((4000, 10), 50), ((3, 20000), 51), ((700, 64), 52)] {
        let x = uniform(shape, -10.0, 10.0, seed);
        let g = uniform(shape, -1.0, 1.0, seed + 100);
        rows_are_independent(&Softmax::new(), &x, &g);
    }
}

/// Each row of `layer` on `x` equals `layer` on that row alone, forward and backward.
fn rows_are_independent<L: Layer<f64, Ix2> + Clone>(layer: &L, x: &Array2<f64>, g: &Array2<f64>) {
    let mut whole = layer.clone();
    let y = whole.forward(x.view()).unwrap();
    let dx = whole.backward(g.view()).unwrap();
    for r in 0..x.nrows() {
        let mut single = layer.clone();
        let yr = single.forward(x.slice(s![r..r + 1, ..])).unwrap();
        let dr = single.backward(g.slice(s![r..r + 1, ..])).unwrap();
        assert_same(&yr.row(0).to_owned(), &y.row(r).to_owned(), "forward");
        assert_same(&dr.row(0).to_owned(), &dx.row(r).to_owned(), "backward");
    }
}

#[test]
fn neighbouring_rows_never_leak_into_each_other() {
    // Long rows are reduced while the previous row is still being written; a
    // row's max and dot must come from that row alone, whatever its neighbours hold.
    // Short rows go in blocks of rows through shared loops. 131 classes: long
    // rows, eight 16-lane blocks and a tail; the rest: short rows of each kind.
    for cols in [3, 10, 16, 25, 40, 67, 100, 131] {
        let mut x = uniform((6, cols), -3.0, 3.0, 60);
        x.row_mut(0).mapv_inplace(|v| v + 1000.0);
        x.row_mut(1).mapv_inplace(|v| v - 1000.0);
        x[[2, cols / 2]] = f64::NAN;
        x.row_mut(3).fill(f64::NEG_INFINITY);
        x[[4, cols - 1]] = f64::INFINITY;
        let g = uniform((6, cols), -1.0, 1.0, 61);
        rows_are_independent(&Softmax::new(), &x, &g);
        rows_are_independent(&Softmin::new(), &x, &g);
        let y = Softmax::new().forward(x.view()).unwrap();
        assert!(
            (y.row(1).sum() - 1.0).abs() < 1e-12,
            "{cols} classes: a row at -1000 is still a distribution"
        );
        assert!(
            y.row(2).iter().all(|v| v.is_nan()),
            "{cols} classes: NaN row"
        );
        assert!(
            y.row(4).iter().all(|v| v.is_nan()),
            "{cols} classes: +inf row"
        );
        rows_are_independent(&LogSoftmax::new(), &x, &g);
        let y = LogSoftmax::new().forward(x.view()).unwrap();
        for (row, what) in [(2, "NaN"), (3, "all -inf"), (4, "+inf")] {
            let nan = y.row(row).iter().all(|v| v.is_nan());
            assert!(nan, "{cols} classes: log-softmax of a {what} row");
        }
    }
}

#[test]
fn jacobian_past_its_documented_size_is_an_error_not_an_abort() {
    // One row of 100,000 classes: 10^10 elements, 80 GB of f64 (used to abort).
    let mut softmax = Softmax::<f64>::new();
    softmax.forward(Array2::zeros((1, 100_000)).view()).unwrap();
    let err = softmax.jacobian().unwrap_err().to_string();
    assert!(
        err.contains("Softmax: invalid jacobian size = 1 rows x 100000² classes"),
        "{err}"
    );
    // The largest allowed one is still built: 2 rows of 8192 classes.
    let mut softmax = Softmax::<f32>::new();
    softmax.forward(Array2::zeros((2, 8192)).view()).unwrap();
    assert_eq!(
        2 * 8192 * 8192,
        Softmax::<f32>::JACOBIAN_MAX_ELEMENTS,
        "the limit is 2^27"
    );
    assert_eq!(softmax.jacobian().unwrap().dim(), (2, 8192, 8192));
}

/// The owned forward computes blocks into the cache and copies each to the
/// result (`kernels::teed`), and the owned backward writes memory never
/// cleared first: both must give the view path's bits, on rows shorter than
/// a block, rows that span several blocks with a partial last one, rows
/// longer than a block, and the short-row kernel; and `backward` after the
/// owned `forward` must see the cache that forward wrote.
#[test]
fn owned_forward_and_backward_give_the_view_paths_bits() {
    fn check<K: ndlayers::softmax::Normalization>(cols: usize, rows: usize, axis: Axis) {
        let (x, g) = if axis == Axis(1) {
            (
                uniform((rows, cols), -30.0, 30.0, 1).mapv(|v| v as f32),
                uniform((rows, cols), -1.0, 1.0, 2).mapv(|v| v as f32),
            )
        } else {
            (
                uniform((cols, rows), -30.0, 30.0, 1).mapv(|v| v as f32),
                uniform((cols, rows), -1.0, 1.0, 2).mapv(|v| v as f32),
            )
        };
        let what = format!("{} {rows}x{cols} along {axis:?}", K::NAME);
        let mut by_view = ndlayers::softmax::Normalize::<K, f32>::along(axis);
        let want_y = by_view.forward_view(x.view()).unwrap().to_owned();
        let want_dx = by_view.backward_view(g.view()).unwrap().to_owned();
        let mut owned = ndlayers::softmax::Normalize::<K, f32>::along(axis);
        // A larger call first, so that the cache is reused, not fresh.
        owned
            .forward(
                uniform((rows + 3, cols + 5), -1.0, 1.0, 3)
                    .mapv(|v| v as f32)
                    .view(),
            )
            .unwrap();
        assert_same(
            &owned.forward(x.view()).unwrap(),
            &want_y,
            &format!("{what}: forward"),
        );
        assert_same(
            &owned.backward(g.view()).unwrap(),
            &want_dx,
            &format!("{what}: backward"),
        );
    }
    for (cols, rows) in [(1000, 37), (5000, 3), (10, 4099), (300, 1), (0, 5), (7, 0)] {
        check::<ndlayers::softmax::SoftmaxKind>(cols, rows, Axis(1));
        check::<ndlayers::softmax::SoftminKind>(cols, rows, Axis(1));
        check::<ndlayers::softmax::LogSoftmaxKind>(cols, rows, Axis(1));
    }
    check::<ndlayers::softmax::SoftmaxKind>(1000, 37, Axis(0));
    check::<ndlayers::softmax::LogSoftmaxKind>(10, 300, Axis(0));
}

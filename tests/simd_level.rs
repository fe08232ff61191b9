//! `NDLAYERS_SIMD` holds the kernels to a lower SIMD level: this test runs
//! its own binary once per level (the level is read once per process) and
//! checks that each child ran at the level asked for and computed sigmoid,
//! tanh, GELU and softmax within the documented bounds of the exact values,
//! and ReLU's gradient (through its one-bit cache, whose packing is written
//! per target) exactly, and BatchNorm2d to the same bits at every level.

use std::process::Command;

use ndlayers::activation::Gelu;
use ndlayers::ndarray::Array2;
use ndlayers::prelude::*;

/// Inputs across the range: tails, the middle, near zero.
fn inputs() -> Array2<f32> {
    Array2::from_shape_fn((16, 64), |(i, j)| ((i * 64 + j) as f32 - 512.0) / 24.0)
}

/// Run by the parent in a child process: prints the level and the results' bits.
#[test]
#[ignore = "run by levels_compute_within_bounds in a child process"]
fn print_kernels() {
    let x = inputs();
    let outputs = [
        Sigmoid::new().infer(x.view()).unwrap(),
        Tanh::new().infer(x.view()).unwrap(),
        Gelu::new().infer(x.view()).unwrap(),
        Softmax::new().infer(x.view()).unwrap(),
        relu_gradient(&x),
    ];
    let batch_norm = batch_norm(&x);
    let outputs = outputs.iter().chain(&batch_norm);
    println!("level {:?}", ndlayers::simd_level());
    for output in outputs {
        let bits: Vec<String> = output
            .iter()
            .map(|v| format!("{:08x}", v.to_bits()))
            .collect();
        println!("bits {}", bits.join(" "));
    }
}

/// ReLU's `dL/dx` for `x` and `g = 1 + index`: `g` where `x > 0`, else 0.
fn relu_gradient(x: &Array2<f32>) -> Array2<f32> {
    let mut relu = Relu::new();
    relu.forward(x.view()).unwrap();
    let g = Array2::from_shape_fn(x.dim(), |(i, j)| (i * 64 + j + 1) as f32);
    relu.backward(g.view()).unwrap()
}

/// BatchNorm2d in training mode on the inputs as `(4, 4, 8, 8)` images and
/// the gradient `1 + index`: `y` and `dL/dx` flattened to rows, made by
/// its `f64` sums (lanes in a fixed order) and unfused arithmetic.
fn batch_norm(x: &Array2<f32>) -> [Array2<f32>; 2] {
    let images = x.to_shape((4, 4, 8, 8)).unwrap().to_owned();
    let mut norm = BatchNorm2d::<f32>::new(4).unwrap();
    let y = norm.forward(images.view()).unwrap();
    let g = y.mapv(|_| 1.0) + &images.mapv(|v| v * 0.5);
    let dx = norm.backward(g.view()).unwrap();
    [y, dx].map(|a| a.into_shape_with_order((16, 64)).unwrap())
}

/// `(level line, seven arrays of results)` printed by a child at `level`.
fn run_at(level: &str) -> (String, Vec<Vec<f32>>) {
    let output = Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "print_kernels",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("NDLAYERS_SIMD", level)
        .output()
        .expect("the test binary runs");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let level_line = text
        .lines()
        .find_map(|l| l.find("level ").map(|at| l[at..].to_string()))
        .unwrap_or_else(|| panic!("no level line in: {text}"));
    let arrays = text
        .lines()
        .filter_map(|l| l.find("bits ").map(|at| &l[at + 5..]))
        .map(|l| {
            l.split(' ')
                .map(|b| f32::from_bits(u32::from_str_radix(b, 16).unwrap()))
                .collect()
        })
        .collect();
    (level_line, arrays)
}

/// Distance in f32 ulps between `got` and the f64 `want`.
fn ulps(got: f32, want: f64) -> f64 {
    let spacing = (want.abs() as f32).max(f32::MIN_POSITIVE);
    let ulp = (f32::from_bits(spacing.to_bits() + 1) - spacing) as f64;
    (got as f64 - want).abs() / ulp
}

#[test]
fn levels_compute_within_bounds() {
    let x = inputs();
    let exact_sigmoid = |v: f64| 1.0 / (1.0 + (-v).exp());
    let mut results = Vec::new();
    for (level, expected) in [("best", "Best"), ("avx2", "Avx2"), ("baseline", "Baseline")] {
        let (line, arrays) = run_at(level);
        assert_eq!(line, format!("level {expected}"), "NDLAYERS_SIMD={level}");
        assert_eq!(arrays.len(), 7);
        for (i, (&v, &dx)) in x.iter().zip(&arrays[4]).enumerate() {
            let want = if v > 0.0 { (i + 1) as f32 } else { 0.0 };
            assert_eq!(dx, want, "{level}: ReLU gradient at x = {v}");
        }
        for ((&v, &s), &t) in x.iter().zip(&arrays[0]).zip(&arrays[1]) {
            let v = v as f64;
            assert!(
                ulps(s, exact_sigmoid(v)) <= 4.0,
                "{level}: sigmoid({v}) = {s}"
            );
            assert!(ulps(t, v.tanh()) <= 4.0, "{level}: tanh({v}) = {t}");
        }
        for (row, probabilities) in x.rows().into_iter().zip(arrays[3].chunks(64)) {
            let max = row.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64));
            let total: f64 = row.iter().map(|&v| (v as f64 - max).exp()).sum();
            for (&v, &p) in row.iter().zip(probabilities) {
                let want = (v as f64 - max).exp() / total;
                if want > 1e-30 {
                    assert!(ulps(p, want) <= 8.0, "{level}: softmax {p} vs {want}");
                }
            }
        }
        results.push(arrays);
    }
    // BatchNorm's sums run on the same lanes in the same order at every
    // level, and nothing in it fuses: the same bits everywhere.
    for (level, arrays) in ["avx2", "baseline"].iter().zip(&results[1..]) {
        assert!(arrays[5] == results[0][5], "{level}: BatchNorm y");
        assert!(arrays[6] == results[0][6], "{level}: BatchNorm dx");
    }
    // AVX2 and AVX-512 both fuse multiply-adds; report whether their bits agree.
    println!(
        "best and avx2 bit for bit equal: {}",
        results[0] == results[1]
    );
}

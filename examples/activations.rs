//! Runs each activation forward and backward on a small batch and prints what it did.
//!
//! `cargo run --release --example activations`

use ndlayers::ndarray::{Array2, array};
use ndlayers::prelude::*;

fn show<L: Layer<f64, ndlayers::ndarray::Ix2>>(
    name: &str,
    mut layer: L,
    x: &Array2<f64>,
    g: &Array2<f64>,
) -> Result<(), LayerError> {
    let y = layer.forward(x.view())?;
    let dx = layer.backward(g.view())?;
    println!("{name}\n  y     = {y:.4}\n  dL/dx = {dx:.4}\n");
    Ok(())
}

fn main() -> Result<(), LayerError> {
    let x = array![
        [-3.0, -0.5, 0.0, 0.5, 3.0],
        [1000.0, 1000.0, -1000.0, 0.0, 1e-10]
    ];
    let g = Array2::ones(x.dim());
    println!("x = {x}\ndL/dy = 1 everywhere\n");
    show(
        "Sigmoid: y = 1/(1+e^-x), dL/dx = g*y*(1-y)",
        Sigmoid::new(),
        &x,
        &g,
    )?;
    show("Tanh: y = tanh x, dL/dx = g*(1-y^2)", Tanh::new(), &x, &g)?;
    show(
        "ReLU: y = max(x, 0), dL/dx = g*[x > 0]",
        Relu::new(),
        &x,
        &g,
    )?;

    let mut softmax = Softmax::new();
    let y = softmax.forward(x.view())?;
    let one_hot = array![[0.0, 0.0, 0.0, 0.0, 1.0], [1.0, 0.0, 0.0, 0.0, 0.0]];
    let dx = softmax.backward(one_hot.view())?;
    println!("Softmax (row-wise): y = e^x / sum(e^x), dL/dx = y*(g - g.y)");
    println!(
        "  y         = {y:.4}\n  row sums  = {:.4}",
        y.sum_axis(ndlayers::ndarray::Axis(1))
    );
    println!("  g one-hot = {one_hot}\n  dL/dx     = {dx:.4}");
    let jacobian = softmax.jacobian()?;
    println!(
        "  Jacobian of row 0 (y_i(δ_ij - y_j)):\n{:.4}",
        jacobian.index_axis(ndlayers::ndarray::Axis(0), 0)
    );
    Ok(())
}

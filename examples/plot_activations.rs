//! Draws every activation and its derivative, computed by the layers' own
//! `forward` and `backward`, into `images/<name>.png`, plus a picture of a
//! 3-class softmax along a line of logits.
//!
//! `cargo run --release --example plot_activations`

#[path = "support/plot.rs"]
mod plot;

use std::error::Error;
use std::path::PathBuf;

use ndlayers::activation::{
    Celu, Elu, Gelu, HardSigmoid, HardSwish, HardTanh, LeakyRelu, LogSigmoid, Mish, Relu6, Selu,
    Silu, Softplus, Softsign,
};
use ndlayers::ndarray::{Array1, Array2, Ix1};
use ndlayers::prelude::*;
use plot::{Series, line_chart};
use plotters::chart::SeriesLabelPosition;

/// A layer of any kind over 1-D arrays.
type BoxedLayer = Box<dyn Layer<f64, Ix1>>;

const POINTS: usize = 801;
const RANGE: f64 = 5.0;

fn main() -> Result<(), Box<dyn Error>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("images");
    std::fs::create_dir_all(&dir)?;
    let x = Array1::linspace(-RANGE, RANGE, POINTS);

    let layers: Vec<(&str, &str, BoxedLayer)> = vec![
        ("sigmoid", "Sigmoid", Box::new(Sigmoid::new())),
        ("tanh", "Tanh", Box::new(Tanh::new())),
        ("relu", "ReLU", Box::new(Relu::new())),
        (
            "leaky_relu",
            "LeakyReLU (slope 0.1)",
            Box::new(LeakyRelu::with_slope(0.1)?),
        ),
        ("elu", "ELU (α = 1)", Box::new(Elu::new())),
        ("selu", "SELU", Box::new(Selu::new())),
        ("celu", "CELU (α = 1)", Box::new(Celu::new())),
        ("gelu", "GELU (exact)", Box::new(Gelu::new())),
        (
            "gelu_tanh",
            "GELU (tanh approximation)",
            Box::new(Gelu::tanh_approximation()),
        ),
        ("silu", "SiLU", Box::new(Silu::new())),
        ("mish", "Mish", Box::new(Mish::new())),
        ("softplus", "Softplus (β = 1)", Box::new(Softplus::new())),
        ("softsign", "Softsign", Box::new(Softsign::new())),
        ("hardtanh", "HardTanh", Box::new(HardTanh::new())),
        ("relu6", "ReLU6", Box::new(Relu6::new())),
        ("hardsigmoid", "HardSigmoid", Box::new(HardSigmoid::new())),
        ("hardswish", "HardSwish", Box::new(HardSwish::new())),
        ("logsigmoid", "LogSigmoid", Box::new(LogSigmoid::new())),
    ];
    for (file, title, mut layer) in layers {
        let y = layer.forward(x.view())?;
        // With dL/dy = 1, backward returns dy/dx itself.
        let dy = layer.backward(Array1::ones(POINTS).view())?;
        let path = dir.join(format!("{file}.png"));
        line_chart(
            &path,
            title,
            ("x", "y"),
            SeriesLabelPosition::UpperLeft,
            &[
                Series {
                    label: "f(x)  (forward)",
                    points: x.iter().copied().zip(y.iter().copied()).collect(),
                },
                Series {
                    label: "f'(x)  (backward)",
                    points: x.iter().copied().zip(dy.iter().copied()).collect(),
                },
            ],
        )?;
        println!("wrote {}", path.display());
    }

    // Softmax of the logits (t, 0, -t/2) as t runs along the line.
    let logits = Array2::from_shape_fn((POINTS, 3), |(i, j)| [x[i], 0.0, -x[i] / 2.0][j]);
    let p = Softmax::new().forward(logits.view())?;
    let series: Vec<Series<'_>> = [
        "class 0: logit t",
        "class 1: logit 0",
        "class 2: logit -t/2",
    ]
    .iter()
    .enumerate()
    .map(|(j, label)| Series {
        label,
        points: x.iter().copied().zip(p.column(j).iter().copied()).collect(),
    })
    .collect();
    let path = dir.join("softmax.png");
    line_chart(
        &path,
        "Softmax of 3 classes along a line of logits",
        ("t", "probability"),
        SeriesLabelPosition::MiddleRight,
        &series,
    )?;
    println!("wrote {}", path.display());
    Ok(())
}

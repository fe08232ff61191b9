//! Loads a CNN with BatchNorm trained in PyTorch on the digits
//! (`tests/reference/pytorch_cnn.safetensors`, written with
//! `safetensors.torch.save_file(model.state_dict(), …)` by
//! `tests/reference/pytorch_cnn.py`), reproduces the logits PyTorch printed
//! in evaluation mode, in `f32` and `f64`, and exports the model back.
//!
//! `cargo run --release --example pytorch_cnn`

use std::error::Error;

use ndlayers::checkpoint;
use ndlayers::ndarray::{Array2, Ix2, Ix4};
use ndlayers::prelude::*;

const REFERENCE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/reference/");

/// The `[rows cols] values…` array printed on the line starting with `label`.
fn printed(text: &str, label: &str) -> Result<Array2<f64>, Box<dyn Error>> {
    let line = text
        .lines()
        .find(|l| l.starts_with(&format!("{label} [")))
        .ok_or(format!("no `{label}` line"))?;
    let (shape, values) = line[label.len() + 2..]
        .split_once("] ")
        .ok_or("expected [shape] values")?;
    let dims: Vec<usize> = shape.split(' ').map(str::parse).collect::<Result<_, _>>()?;
    let values: Vec<f64> = values
        .split(' ')
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    Ok(Array2::from_shape_vec((dims[0], dims[1]), values)?)
}

/// PyTorch's `nn.Sequential` of `pytorch_cnn.py`, position for position, so
/// the state_dict names match (`0.weight`, `1.running_mean`, `9.bias`, …).
/// The weights are placeholders until the checkpoint is loaded.
fn network<F: Real>() -> Result<Cnn<F>, LayerError> {
    let mut rng = <ndlayers::rand::rngs::StdRng as ndlayers::rand::SeedableRng>::seed_from_u64(0);
    Ok(Sequential::new()
        .with(Conv2d::new(1, 16, (3, 3), Init::FanInUniform, &mut rng)?.with_padding((1, 1))?)
        .with(BatchNorm2d::new(16)?)
        .with(Relu::new())
        .with(MaxPool2d::new((2, 2))?)
        .with(Conv2d::new(16, 32, (3, 3), Init::FanInUniform, &mut rng)?.with_padding((1, 1))?)
        .with(BatchNorm2d::new(32)?)
        .with(Relu::new())
        .with(MaxPool2d::new((2, 2))?)
        .with(Flatten::new())
        .with(Dense::new(128, 10, Init::FanInUniform, &mut rng)?))
}

/// The digits CNN: images in, logits out.
type Cnn<F> = Sequential<F, Ix4, Ix2>;

/// Loads `file` into a fresh network in evaluation mode and returns the
/// largest difference from PyTorch's `label` logits, relative to the largest.
fn reproduce<F: Real>(
    file: &str,
    text: &str,
    label: &str,
) -> Result<(Cnn<F>, f64), Box<dyn Error>> {
    let mut net = network::<F>()?;
    checkpoint::load(format!("{REFERENCE}{file}"), &mut net, None)?;
    net.set_training(false);
    let inputs = printed(text, "inputs")?.mapv(F::lit);
    let images = inputs.to_shape((inputs.nrows(), 1, 8, 8))?;
    let expected = printed(text, label)?;
    let logits = net.infer(images.view())?;
    let largest = expected.iter().fold(0.0_f64, |m, v| m.max(v.abs()));
    let difference = logits.iter().zip(&expected).fold(0.0_f64, |m, (g, w)| {
        m.max((g.to_f64().unwrap_or(f64::NAN) - w).abs())
    });
    Ok((net, difference / largest))
}

fn main() -> Result<(), Box<dyn Error>> {
    let text = std::fs::read_to_string(format!("{REFERENCE}pytorch_cnn.txt"))?;
    let (net, f32_worst) = reproduce::<f32>("pytorch_cnn.safetensors", &text, "logits_f32")?;
    let (_, f64_worst) = reproduce::<f64>("pytorch_cnn_f64.safetensors", &text, "logits_f64")?;
    println!(
        "PyTorch CNN loaded (Conv-BatchNorm-ReLU-MaxPool x2, Flatten, Linear; BatchNorm in evaluation mode): \
         largest difference from PyTorch's logits, relative to the largest logit: {f32_worst:.1e} in f32, {f64_worst:.1e} in f64"
    );
    if !(f32_worst <= 1e-5 && f64_worst <= 1e-12) {
        return Err(format!(
            "logits differ from PyTorch's: {f32_worst:e} (f32), {f64_worst:e} (f64)"
        )
        .into());
    }
    let export = std::env::temp_dir().join("ndlayers_cnn_export.safetensors");
    checkpoint::save(&export, &net, None)?;
    println!(
        "exported to {}: check it in PyTorch with `python tests/reference/pytorch_cnn.py --check {}`",
        export.display(),
        export.display()
    );
    Ok(())
}

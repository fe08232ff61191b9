//! Loads a model trained in PyTorch (`tests/reference/pytorch_model.safetensors`,
//! written with `safetensors.torch.save_file(model.state_dict(), …)` by
//! `tests/reference/pytorch_model.py`), reproduces the outputs PyTorch printed,
//! and exports the weights back in the format PyTorch loads.
//!
//! `cargo run --release --example pytorch_import`

use std::error::Error;

use ndlayers::checkpoint;
use ndlayers::ndarray::Array2;
use ndlayers::prelude::*;

const REFERENCE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/reference/");

/// The `[rows cols] values…` array printed on the line starting with `label`.
fn printed(text: &str, label: &str) -> Result<Array2<f32>, Box<dyn Error>> {
    let line = text
        .lines()
        .find(|l| l.starts_with(&format!("{label} [")))
        .ok_or(format!("no `{label}` line"))?;
    let (shape, values) = line[label.len() + 2..]
        .split_once("] ")
        .ok_or("expected [shape] values")?;
    let dims: Vec<usize> = shape.split(' ').map(str::parse).collect::<Result<_, _>>()?;
    let values: Vec<f32> = values
        .split(' ')
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    Ok(Array2::from_shape_vec((dims[0], dims[1]), values)?)
}

fn main() -> Result<(), Box<dyn Error>> {
    // nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10)), the same
    // positions, so the same state_dict names (0.weight, 0.bias, 2.weight, 2.bias).
    let mut net = Sequential::new()
        .with(Dense::<f32>::from_fn(64, 32, |_, _| 0.0)?)
        .with(Relu::new())
        .with(Dense::from_fn(32, 10, |_, _| 0.0)?);
    checkpoint::load(
        format!("{REFERENCE}pytorch_model.safetensors"),
        &mut net,
        None,
    )?;

    let text = std::fs::read_to_string(format!("{REFERENCE}pytorch_model.txt"))?;
    let (inputs, expected) = (printed(&text, "inputs")?, printed(&text, "logits_f32")?);
    let logits = net.infer(inputs.view())?;
    let largest = expected.iter().fold(0.0_f32, |m, v| m.max(v.abs()));
    let difference = (&logits - &expected)
        .iter()
        .fold(0.0_f32, |m, d| m.max(d.abs()));
    println!(
        "PyTorch model loaded: {} test images, largest difference from PyTorch's logits {difference:.2e} ({:.1e} of the largest logit, {largest:.2})",
        inputs.nrows(),
        difference / largest
    );

    let export = std::env::temp_dir().join("ndlayers_export.safetensors");
    checkpoint::save(&export, &net, None)?;
    println!(
        "exported to {}: load it in PyTorch with model.load_state_dict(safetensors.torch.load_file(path)), \
         or check it with tests/reference/check_export.py",
        export.display()
    );
    Ok(())
}

//! Learns XOR with a 2-4-1 network: Dense → Tanh → Dense → Sigmoid, mean squared error, SGD.
//!
//! `cargo run --release --example xor`

use ndlayers::ndarray::{Array2, ArrayView2, Ix2, array};
use ndlayers::prelude::*;
use rand::SeedableRng;
use rand::rngs::StdRng;

const SEED: u64 = 3;
const HIDDEN: usize = 4;
const EPOCHS: usize = 2000;

/// The network: each layer caches what its backward needs.
struct Net {
    hidden: Dense<f64>,
    tanh: Tanh<f64, Ix2>,
    output: Dense<f64>,
    sigmoid: Sigmoid<f64, Ix2>,
}

impl Net {
    fn forward(&mut self, x: ArrayView2<'_, f64>) -> Result<Array2<f64>, LayerError> {
        let h = self.tanh.forward(self.hidden.forward(x)?.view())?;
        self.sigmoid.forward(self.output.forward(h.view())?.view())
    }

    /// Backward in reverse order; the input gradient of the first layer is not needed.
    fn backward(&mut self, dprediction: ArrayView2<'_, f64>) -> Result<(), LayerError> {
        let dz = self.sigmoid.backward(dprediction)?;
        let dh = self
            .tanh
            .backward(self.output.backward(dz.view())?.view())?;
        self.hidden.backward_parameters(dh.view())
    }
}

fn main() -> Result<(), LayerError> {
    let x = array![[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]];
    let target = array![[0.0], [1.0], [1.0], [0.0]];

    let mut rng = StdRng::seed_from_u64(SEED);
    let mut net = Net {
        hidden: Dense::new(2, HIDDEN, Init::GlorotUniform, &mut rng)?,
        tanh: Tanh::new(),
        output: Dense::new(HIDDEN, 1, Init::GlorotUniform, &mut rng)?,
        sigmoid: Sigmoid::new(),
    };
    let mut mse = Mse::new();
    let mut sgd = Sgd::new(0.5)?.with_momentum(0.9)?;

    for epoch in 0..=EPOCHS {
        let prediction = net.forward(x.view())?;
        let loss = mse.forward(prediction.view(), target.view())?;
        if epoch % 200 == 0 {
            println!("epoch {epoch:4}: mse {loss:.6}");
        }
        net.backward(mse.backward()?.view())?;
        sgd.step(&mut [&mut net.hidden, &mut net.output])?;
    }

    let prediction = net.forward(x.view())?;
    println!("\n  a  b | a xor b | prediction");
    let mut correct = 0;
    for ((row, t), p) in x.rows().into_iter().zip(&target).zip(&prediction) {
        correct += usize::from((*p > 0.5) == (*t > 0.5));
        println!("  {}  {} |    {}    | {p:.4}", row[0], row[1], t);
    }
    println!("\n{correct}/4 correct");
    Ok(())
}

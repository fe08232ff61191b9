//! The layers around the activations: one file each, re-exported at the
//! crate root (`ndlayers::dense`, `ndlayers::sequential`, …).

pub mod batch_norm;
pub mod conv2d;
pub mod dense;
pub mod dropout;
pub mod flatten;
pub mod layer_norm;
pub mod pool;
pub mod prelu;
pub mod sequential;

//! The layers around the activations: one file each, re-exported at the
//! crate root (`ndlayers::dense`, `ndlayers::sequential`, …).

pub mod dense;
pub mod dropout;
pub mod layer_norm;
pub mod prelu;
pub mod sequential;

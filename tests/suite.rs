//! Every integration test that needs no process of its own, in one binary:
//! each of the test files would otherwise be its own crate, compiling and
//! linking the generic kernels again (17 binaries took 7 of CI's 14 minutes).
//! `cargo test --test suite softmax::` runs one file's tests.
//!
//! Separate targets (see Cargo.toml): `allocations` (it installs a counting
//! global allocator), `simd_level` (it runs its own binary under each
//! `NDLAYERS_SIMD`) and `exhaustive_f32` (release build, run on its own).

mod common;

#[path = "accumulate.rs"]
mod accumulate;
#[path = "activations.rs"]
mod activations;
#[path = "axis.rs"]
mod axis;
#[path = "checkpoint.rs"]
mod checkpoint;
#[path = "clip.rs"]
mod clip;
#[path = "cnn.rs"]
mod cnn;
#[path = "data.rs"]
mod data;
#[path = "digits.rs"]
mod digits;
#[path = "family.rs"]
mod family;
#[path = "frictions.rs"]
mod frictions;
#[path = "hostile.rs"]
mod hostile;
#[path = "layers.rs"]
mod layers;
#[path = "lr_scheduler.rs"]
mod lr_scheduler;
#[path = "metrics.rs"]
mod metrics;
#[path = "networks.rs"]
mod networks;
#[path = "optimizers.rs"]
mod optimizers;
#[path = "properties.rs"]
mod properties;
#[path = "pytorch.rs"]
mod pytorch;
#[path = "reductions.rs"]
mod reductions;
#[path = "softmax.rs"]
mod softmax;
#[path = "state.rs"]
mod state;
#[path = "training.rs"]
mod training;

//! Data helpers for a training loop over `ndarray` arrays of any dimension
//! (rows of features, or images): [`Batches`] (seeded, shuffled mini-batches
//! copied into a reused buffer), [`shuffled_split`] and
//! [`stratified_split`] (train/test indices), [`one_hot`], and
//! [`Standardizer`] (fitted on the training set).
//!
//! ```
//! use ndlayers::data::{Batches, Standardizer, stratified_split};
//! use ndlayers::ndarray::{Array1, Array2, Axis};
//!
//! let x = Array2::from_shape_fn((100, 3), |(i, j)| (i * 3 + j) as f32);
//! let y: Array1<usize> = (0..100).map(|i| i % 4).collect();
//! let (train, test) = stratified_split(y.view(), 0.2, 7)?;
//! assert_eq!((train.len(), test.len()), (80, 20));
//! let (x_train, y_train) = (x.select(Axis(0), &train), y.select(Axis(0), &train));
//! let scale = Standardizer::fit(x_train.view())?;
//! let x_train = scale.transform(x_train.view())?;
//! let mut batches = Batches::new(x_train.view(), y_train.view(), 32)?.with_shuffle(7);
//! for epoch in 0..2 {
//!     batches.set_epoch(epoch);
//!     while let Some((x, y)) = batches.next_batch() {
//!         assert_eq!(x.nrows(), y.len());
//!         // ... forward, loss, backward, step ...
//!     }
//! }
//! # Ok::<(), ndlayers::LayerError>(())
//! ```

mod batches;
mod one_hot;
mod split;
mod standardize;

pub use batches::Batches;
pub use one_hot::one_hot;
pub use split::{shuffled_split, stratified_split};
pub use standardize::Standardizer;

//! [`Batches`]: mini-batches of inputs and targets, in a seeded order.

use ndarray::{Array, ArrayView, Axis, Dimension, RemoveAxis, Slice};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use crate::error::{LayerError, require};

/// Mini-batches of `inputs` and `targets` (the same number of samples along
/// axis 0; any dimensions, any element types), an epoch at a time, as
/// PyTorch's `DataLoader(dataset, batch_size, shuffle, drop_last)`.
///
/// Without shuffling, each batch is a view of the data itself (nothing is
/// copied). With [`with_shuffle`](Self::with_shuffle)`(seed)`, epoch `e`
/// visits the samples in an order drawn from `seed` and `e` alone (so a run
/// resumed at epoch `e` sees the batches it would have), and each batch is
/// copied into a buffer of the batch's size that is reused for every batch:
/// no allocation after the first. The last batch of an epoch holds the
/// remaining samples, fewer than `batch_size` when they do not divide, or
/// is skipped with [`with_drop_last`](Self::with_drop_last)`(true)` (every
/// batch the same shape, as `drop_last=True`).
///
/// `next_batch` lends the batch until the next call, so it is a
/// `while let` loop rather than an `Iterator`; see the [module](super) example.
#[derive(Debug)]
pub struct Batches<'a, F, D: Dimension, T, E: Dimension> {
    inputs: ArrayView<'a, F, D>,
    targets: ArrayView<'a, T, E>,
    batch_size: usize,
    drop_last: bool,
    seed: Option<u64>,
    epoch: u64,
    order: Vec<usize>,
    /// The next sample's position in `order`.
    position: usize,
    /// The shuffled batches' buffers, made at the first.
    buffers: Option<(Array<F, D>, Array<T, E>)>,
}

const BATCHES: &str = "Batches";

impl<'a, F: Clone, D: RemoveAxis, T: Clone, E: RemoveAxis> Batches<'a, F, D, T, E> {
    /// Batches of `batch_size` (positive) samples of `inputs` and `targets`
    /// in their order, the last one possibly smaller; both need an axis 0
    /// of the same length.
    pub fn new(
        inputs: ArrayView<'a, F, D>,
        targets: ArrayView<'a, T, E>,
        batch_size: usize,
    ) -> Result<Self, LayerError> {
        require(
            BATCHES,
            "batch_size",
            batch_size,
            batch_size > 0,
            "must be positive",
        )?;
        let samples = |shape: &[usize]| shape.first().copied();
        match (samples(inputs.shape()), samples(targets.shape())) {
            (Some(n), Some(m)) if n == m => {}
            (Some(n), _) => {
                let expected = format!("({n}, …): one target per sample (axis 0) of the inputs");
                return Err(LayerError::shape_described(
                    BATCHES,
                    "targets",
                    expected,
                    targets.shape(),
                ));
            }
            (None, _) => {
                let expected = "(samples, …): at least one axis".to_string();
                return Err(LayerError::shape_described(
                    BATCHES,
                    "inputs",
                    expected,
                    inputs.shape(),
                ));
            }
        }
        let samples = inputs.len_of(Axis(0));
        Ok(Batches {
            inputs,
            targets,
            batch_size,
            drop_last: false,
            seed: None,
            epoch: 0,
            order: (0..samples).collect(),
            position: 0,
            buffers: None,
        })
    }

    /// Visits the samples in a new order every epoch, drawn from `seed` and
    /// the epoch's number.
    pub fn with_shuffle(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self.set_epoch(self.epoch);
        self
    }

    /// Whether to skip an epoch's last batch when it is smaller than the others.
    pub fn with_drop_last(mut self, drop_last: bool) -> Self {
        self.drop_last = drop_last;
        self
    }

    /// The number of batches an epoch has.
    pub fn len(&self) -> usize {
        let samples = self.order.len();
        if self.drop_last {
            samples / self.batch_size
        } else {
            samples.div_ceil(self.batch_size)
        }
    }

    /// Whether an epoch has no batch at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The epoch being visited.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Starts epoch `epoch` from its first batch (in its own order, when shuffling).
    pub fn set_epoch(&mut self, epoch: u64) {
        self.epoch = epoch;
        self.position = 0;
        if let Some(seed) = self.seed {
            // One generator per epoch, from the seed and the epoch alone.
            let mixed = seed ^ epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15);
            self.order.sort_unstable();
            self.order.shuffle(&mut StdRng::seed_from_u64(mixed));
        }
    }

    /// The next batch of this epoch, or `None` once it has been visited (then
    /// [`set_epoch`](Self::set_epoch) starts another).
    pub fn next_batch(&mut self) -> Option<(ArrayView<'_, F, D>, ArrayView<'_, T, E>)> {
        let remaining = self.order.len() - self.position;
        let size = remaining.min(self.batch_size);
        if size == 0 || (self.drop_last && size < self.batch_size) {
            return None;
        }
        let start = self.position;
        self.position += size;
        if self.seed.is_none() {
            let rows = Slice::from(start..start + size);
            return Some((
                self.inputs.slice_axis(Axis(0), rows),
                self.targets.slice_axis(Axis(0), rows),
            ));
        }
        let indices = &self.order[start..start + size];
        let (inputs, targets) = self.buffers.get_or_insert_with(|| {
            // Room for a whole batch, filled with copies of the first sample:
            // every row is overwritten before it is lent.
            let fill = vec![indices[0]; self.batch_size.min(self.order.len())];
            (
                self.inputs.select(Axis(0), &fill),
                self.targets.select(Axis(0), &fill),
            )
        });
        for (row, &sample) in indices.iter().enumerate() {
            inputs
                .index_axis_mut(Axis(0), row)
                .assign(&self.inputs.index_axis(Axis(0), sample));
            targets
                .index_axis_mut(Axis(0), row)
                .assign(&self.targets.index_axis(Axis(0), sample));
        }
        let rows = Slice::from(0..size);
        Some((
            inputs.slice_axis(Axis(0), rows),
            targets.slice_axis(Axis(0), rows),
        ))
    }
}

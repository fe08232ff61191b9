//! Gradient accumulation: summing parameter gradients over several
//! backwards, for per-sample loops and for batches larger than memory.

use ndarray::ArrayD;

use crate::error::LayerError;
use crate::real::Real;
use crate::state::{Entry, EntryMut, Name, StateDict};

/// Sums the parameter gradients of a network over several backwards, as
/// PyTorch's gradients accumulate until `zero_grad`.
///
/// A layer's `backward` overwrites its gradients (the fast default: no
/// read-modify-write of every gradient on every batch). To step once for
/// several backwards, [`add`](Self::add) after each, then
/// [`store_sum`](Self::store_sum) or [`store_mean`](Self::store_mean)
/// writes the total into the network's gradients for the optimiser, and
/// [`clear`](Self::clear) starts the next total (PyTorch's `zero_grad`).
///
/// ```text
/// after add(g₁) … add(g_k):   store_sum: g = Σ gᵢ     store_mean: g = (Σ gᵢ) / k
/// ```
/// With a loss that sums ([`Reduction::Sum`](crate::Reduction)), `store_sum`
/// over k batches gives the gradient of one backward over the k batches
/// concatenated; with the default mean over batches of one size,
/// `store_mean` does (up to the order of the additions: `tests/accumulate.rs`).
///
/// The sums are kept under each parameter's name, in its shape; after the
/// first `add` nothing is allocated. A network whose parameters changed
/// names or shapes since the first `add` is an error, and nothing changes.
///
/// # Example
/// Eight samples one at a time, one step for all of them:
/// ```
/// use ndlayers::optim::{GradAccumulator, Sgd};
/// use ndlayers::prelude::*;
/// use ndlayers::ndarray::array;
///
/// let mut net = Dense::<f64>::from_fn(2, 1, |_, _| 0.0)?;
/// let mut sgd = Sgd::new(0.1)?;
/// let mut sum = GradAccumulator::new();
/// for sample in [[1.0, 0.0], [0.0, 1.0]] {
///     net.forward(array![sample].view())?;
///     net.backward(array![[1.0]].view())?;
///     sum.add(&net)?;
/// }
/// sum.store_sum(&mut net)?;
/// assert_eq!(net.grad_weight(), array![[1.0], [1.0]]); // both samples, not the last
/// sgd.step(&mut [&mut net])?;
/// sum.clear();
/// # Ok::<(), LayerError>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct GradAccumulator<F> {
    sums: Vec<(String, ArrayD<F>)>,
    count: usize,
}

const ACCUMULATE: &str = "GradAccumulator";

impl<F: Real> GradAccumulator<F> {
    /// An empty accumulator.
    pub fn new() -> Self {
        GradAccumulator {
            sums: Vec::new(),
            count: 0,
        }
    }

    /// How many gradients were added since the last [`clear`](Self::clear).
    pub fn count(&self) -> usize {
        self.count
    }

    /// The sums, by parameter name, in PyTorch's orientation.
    pub fn sums(&self) -> impl Iterator<Item = (&str, &ArrayD<F>)> {
        self.sums.iter().map(|(name, sum)| (name.as_str(), sum))
    }

    /// Adds the gradients `net`'s last backward stored to the sums.
    pub fn add(&mut self, net: &dyn StateDict<F>) -> Result<(), LayerError> {
        if self.sums.is_empty() {
            net.visit_state(&Name::ROOT, &mut |name, entry| {
                if let Entry::Parameter { grad, .. } = entry {
                    self.sums
                        .push((name.to_string(), ArrayD::zeros(grad.shape())));
                }
            });
        } else {
            self.check(net)?;
        }
        let mut position = 0;
        net.visit_state(&Name::ROOT, &mut |_, entry| {
            if let Entry::Parameter { grad, .. } = entry {
                self.sums[position].1.zip_mut_with(&grad, |s, &g| *s += g);
                position += 1;
            }
        });
        self.count += 1;
        Ok(())
    }

    /// Writes the sums into `net`'s parameter gradients.
    pub fn store_sum(&self, net: &mut dyn StateDict<F>) -> Result<(), LayerError> {
        self.store(net, None)
    }

    /// Writes the sums divided by [`count`](Self::count) into `net`'s
    /// parameter gradients; with nothing added, an error.
    pub fn store_mean(&self, net: &mut dyn StateDict<F>) -> Result<(), LayerError> {
        if self.count == 0 {
            let reason =
                "nothing was added since the last clear: a mean of no gradients is undefined";
            return Err(LayerError::state(ACCUMULATE, "", reason));
        }
        self.store(net, F::from_usize(self.count))
    }

    /// Sets the sums to zero (keeping their memory) and the count to 0.
    pub fn clear(&mut self) {
        for (_, sum) in &mut self.sums {
            sum.fill(F::zero());
        }
        self.count = 0;
    }

    fn store(&self, net: &mut dyn StateDict<F>, divisor: Option<F>) -> Result<(), LayerError> {
        if self.sums.is_empty() {
            let reason = "nothing was ever added: call add after each backward";
            return Err(LayerError::state(ACCUMULATE, "", reason));
        }
        self.check(net)?;
        let mut position = 0;
        net.visit_state_mut(&Name::ROOT, &mut |_, entry| {
            if let EntryMut::Parameter { mut grad, .. } = entry {
                let sum = &self.sums[position].1;
                match divisor {
                    Some(k) => grad.zip_mut_with(sum, |g, &s| *g = s / k),
                    None => grad.assign(sum),
                }
                position += 1;
            }
        });
        Ok(())
    }

    /// That `net`'s parameters are those of the sums, by name and shape, in order.
    fn check(&self, net: &dyn StateDict<F>) -> Result<(), LayerError> {
        let mut position = 0;
        let mut problem = None;
        net.visit_state(&Name::ROOT, &mut |name, entry| {
            if let Entry::Parameter { grad, .. } = entry {
                if problem.is_none() {
                    problem = match self.sums.get(position) {
                        None => Some(format!(
                            "the sums are for {} parameters only",
                            self.sums.len()
                        )),
                        Some((saved, _)) if !name.is(saved) => Some(format!(
                            "parameter {position} is `{name}`, the sums are for `{saved}`"
                        )),
                        Some((_, sum)) if sum.shape() != grad.shape() => Some(format!(
                            "its gradient has shape {:?}, its sum {:?}",
                            grad.shape(),
                            sum.shape()
                        )),
                        _ => None,
                    }
                    .map(|reason| LayerError::state(ACCUMULATE, name, reason));
                }
                position += 1;
            }
        });
        if let Some(problem) = problem {
            return Err(problem);
        }
        if position != self.sums.len() {
            let reason = format!(
                "the network has {position} parameters, the sums {}",
                self.sums.len()
            );
            return Err(LayerError::state(ACCUMULATE, "", reason));
        }
        Ok(())
    }
}

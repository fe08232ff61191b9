//! What every optimiser does around its update rule: walking the parameters
//! of the parts it is given, checking all of them before changing any, and
//! keeping `N` buffers per parameter under the parameter's name.

use std::collections::HashSet;

use ndarray::{ArrayD, ArrayViewD, ArrayViewMutD, ShapeBuilder};

use super::OptimizerState;
use crate::buffer::is_fortran;
use crate::error::{LayerError, first_where};
use crate::kernels::chunked;
use crate::real::Real;
use crate::state::{Entry, EntryMut, Name, StateDict};

/// An optimiser's buffers: for each parameter, in walking order, its full
/// name and `N` arrays of its shape, in its gradient's memory order (so
/// updates zip arrays of one layout). Empty before the first step.
#[derive(Debug, Clone)]
pub(crate) struct Slots<F, const N: usize>(Vec<(String, [ArrayD<F>; N])>);

impl<F, const N: usize> Default for Slots<F, N> {
    fn default() -> Self {
        Slots(Vec::new())
    }
}

/// Calls `visit` with each part of `layers` and the prefix its names get:
/// none for a single part, its position for several.
fn for_each_part<L: ?Sized>(layers: &mut [&mut L], mut visit: impl FnMut(&Name<'_>, &mut L)) {
    let single = layers.len() == 1;
    for (position, layer) in layers.iter_mut().enumerate() {
        let numbered = Name::ROOT.index(position);
        visit(if single { &Name::ROOT } else { &numbered }, &mut **layer);
    }
}

/// Every parameter of `layers`, read-only, with its full name.
fn read_parameters<F>(
    layers: &mut [&mut dyn StateDict<F>],
    mut visit: impl FnMut(&Name<'_>, ArrayViewD<'_, F>, ArrayViewD<'_, F>),
) {
    for_each_part(layers, |prefix, layer| {
        layer.visit_state(prefix, &mut |name, entry| {
            if let Entry::Parameter { value, grad } = entry {
                visit(name, value, grad);
            }
        })
    });
}

/// Every parameter of `layers`, mutably, with its position in walking order
/// and its full name.
fn update_parameters<F>(
    layers: &mut [&mut dyn StateDict<F>],
    mut visit: impl FnMut(usize, &Name<'_>, ArrayViewMutD<'_, F>, ArrayViewD<'_, F>),
) {
    let mut position = 0;
    for_each_part(layers, |prefix, layer| {
        layer.visit_state_mut(prefix, &mut |name, entry| {
            if let EntryMut::Parameter { value, grad } = entry {
                visit(position, name, value, grad.view());
                position += 1;
            }
        })
    });
}

impl<F: Real, const N: usize> Slots<F, N> {
    /// Runs one step: checks every gradient (and, with `stateful`, that the
    /// buffers are for exactly these parameters, by name and shape) before
    /// anything changes, creates zero buffers at the first stateful step,
    /// then calls `update` with each parameter's full name, the parameter,
    /// its gradient and its buffers (none when not `stateful`).
    pub(crate) fn step(
        &mut self,
        owner: &'static str,
        layers: &mut [&mut dyn StateDict<F>],
        stateful: bool,
        mut update: impl FnMut(&Name<'_>, ArrayViewMutD<'_, F>, ArrayViewD<'_, F>, &mut [ArrayD<F>]),
    ) -> Result<(), LayerError> {
        let fresh = stateful && self.0.is_empty();
        let mut problem = None;
        let mut count = 0;
        let mut names = HashSet::new();
        let mut created = Vec::new();
        read_parameters(layers, |name, value, grad| {
            let position = count;
            count += 1;
            if problem.is_some() {
                return;
            }
            problem = if value.shape() != grad.shape() {
                let reason = format!(
                    "its gradient has shape {:?}, the parameter {:?}",
                    grad.shape(),
                    value.shape()
                );
                Some(LayerError::state(owner, name, reason))
            } else if fresh {
                let name = name.to_string();
                if names.contains(&name) {
                    Some(LayerError::DuplicateName { name })
                } else {
                    let layout = grad.raw_dim().set_f(is_fortran(&grad));
                    created.push((
                        name.clone(),
                        std::array::from_fn(|_| ArrayD::zeros(layout.clone())),
                    ));
                    names.insert(name);
                    None
                }
            } else if stateful {
                self.mismatch(owner, position, name, value.shape())
            } else {
                None
            };
        });
        if let Some(problem) = problem {
            return Err(problem);
        }
        if stateful && !fresh && count != self.0.len() {
            let reason = format!(
                "the optimiser has state for {} parameters, the network has {count}: pass the same layers every step",
                self.0.len()
            );
            return Err(LayerError::state(owner, "", reason));
        }
        if fresh {
            self.0 = created;
        }
        let slots = &mut self.0;
        update_parameters(layers, |position, name, value, grad| {
            match slots.get_mut(position) {
                Some((_, buffers)) if stateful => update(name, value, grad, buffers),
                _ => update(name, value, grad, &mut []),
            }
        });
        Ok(())
    }

    /// Why the buffers at `position` do not fit the parameter `name` of `shape`, if they do not.
    fn mismatch(
        &self,
        owner: &'static str,
        position: usize,
        name: &Name<'_>,
        shape: &[usize],
    ) -> Option<LayerError> {
        let reason = match self.0.get(position) {
            None => format!(
                "the optimiser has state for {} parameters only",
                self.0.len()
            ),
            Some((saved, _)) if !name.is(saved) => format!(
                "parameter {position} is `{name}`, the optimiser's state is for `{saved}`: pass the same layers in the same order every step"
            ),
            Some((_, buffers)) if buffers.iter().any(|b| b.shape() != shape) => format!(
                "the parameter has shape {shape:?}, its optimiser state {:?} (it changed since the last step)",
                buffers
                    .iter()
                    .map(|b| b.shape())
                    .find(|&s| s != shape)
                    .unwrap_or_default()
            ),
            Some(_) => return None,
        };
        Some(LayerError::state(owner, name, reason))
    }

    /// The buffers as an [`OptimizerState`] (copies).
    pub(crate) fn to_state(
        &self,
        optimizer: &'static str,
        step: u64,
        kinds: &'static [&'static str],
    ) -> OptimizerState<F> {
        OptimizerState {
            optimizer,
            step,
            kinds,
            parameters: self
                .0
                .iter()
                .map(|(name, buffers)| (name.clone(), buffers.to_vec()))
                .collect(),
        }
    }

    /// The buffers of `state` and its step count, once `state` is one the
    /// optimiser `optimizer` keeping `kinds` (a prefix of `N` names, empty
    /// for none) could have written; `violation` gives, for a kind's
    /// position and a value, the requirement the value breaks, if any.
    pub(crate) fn from_state(
        optimizer: &'static str,
        kinds: &'static [&'static str],
        state: OptimizerState<F>,
        violation: impl Fn(usize, F) -> Option<&'static str>,
    ) -> Result<(u64, Self), LayerError> {
        let fail = |name: &str, reason: String| Err(LayerError::state(optimizer, name, reason));
        if state.optimizer != optimizer || state.kinds != kinds {
            return fail(
                "",
                format!(
                    "it is {}'s with buffers {:?}; this {optimizer} keeps {kinds:?}",
                    state.optimizer, state.kinds
                ),
            );
        }
        if i64::try_from(state.step).is_err() {
            return fail(
                "step",
                format!("{} steps do not fit a checkpoint's I64", state.step),
            );
        }
        match (state.step, state.parameters.is_empty(), kinds.is_empty()) {
            (0, false, _) => return fail("step", "there are buffers before the first step".into()),
            (step @ 1.., true, false) => {
                return fail(
                    "step",
                    format!("at step {step} there are no buffers {kinds:?}"),
                );
            }
            (_, false, true) => {
                return fail(
                    &state.parameters[0].0,
                    format!("{optimizer} as configured keeps no buffers"),
                );
            }
            _ => {}
        }
        let mut names = HashSet::new();
        let mut slots = Vec::with_capacity(state.parameters.len());
        for (name, buffers) in state.parameters {
            if !names.insert(name.clone()) {
                return Err(LayerError::DuplicateName { name });
            }
            if buffers.len() != kinds.len() {
                return fail(
                    &name,
                    format!("{} buffers for the kinds {kinds:?}", buffers.len()),
                );
            }
            for (k, buffer) in buffers.iter().enumerate() {
                if buffer.shape() != buffers[0].shape() {
                    let reason = format!(
                        "{} has shape {:?}, {} {:?}",
                        kinds[k],
                        buffer.shape(),
                        kinds[0],
                        buffers[0].shape()
                    );
                    return fail(&name, reason);
                }
                if let Some((index, value)) =
                    first_where(&buffer.view(), |v| violation(k, v).is_some())
                {
                    let requirement = violation(k, value).unwrap_or_default();
                    return fail(
                        &name,
                        format!("{} holds {value} at {index:?}; it {requirement}", kinds[k]),
                    );
                }
            }
            let buffers: [ArrayD<F>; N] = match buffers.try_into() {
                Ok(buffers) => buffers,
                Err(_) => return fail(&name, format!("expected {N} buffers")),
            };
            slots.push((name, buffers));
        }
        Ok((state.step, Slots(slots)))
    }
}

/// `w = f(w, x)` for every element `w` of `value` and the matching `x` of
/// `input` (same shape). Arrays sharing one contiguous memory order (as
/// `Dense`'s parameters, their gradients and the state buffers do) are
/// updated as slices, split across threads with the `rayon` feature; the
/// others through `Zip`. The same operations either way, so the same bits.
pub(crate) fn update_with<F: Real>(
    value: &mut ArrayViewMutD<'_, F>,
    input: &ArrayViewD<'_, F>,
    f: impl Fn(F, F) -> F + Sync,
) {
    if value.strides() == input.strides()
        && let (Some(w), Some(x)) = (
            value.as_slice_memory_order_mut(),
            input.as_slice_memory_order(),
        )
    {
        // Equal strides: the same memory offset is the same element in both.
        chunked([x], w, 1, |[x], w| {
            for (w, &x) in w.iter_mut().zip(x) {
                *w = f(*w, x);
            }
        });
        return;
    }
    value.zip_mut_with(input, |w, &x| *w = f(*w, x));
}

//! A learning-rate schedule's state in a checkpoint: `scheduler/kind/<name>`
//! (which schedule, an empty `I64`) and `scheduler/<value>` (its numbers,
//! `F64`, exact).

use std::collections::BTreeMap;

use safetensors::tensor::{Dtype, TensorView};

use super::CheckpointError;
use super::format::{Encoded, encode_float, encode_int};
use crate::optim::lr_scheduler::ScheduleState;

/// Where a schedule's state goes: names with a `/`, which PyTorch's
/// `state_dict` keys never contain.
pub(super) const SCHEDULER: &str = "scheduler/";
/// `scheduler/kind/<name>`: which schedule wrote the state.
const KIND: &str = "scheduler/kind/";

/// The tensors of `state`.
pub(super) fn encode(state: &ScheduleState) -> Vec<(String, Encoded)> {
    let mut tensors = vec![(
        format!("{KIND}{}", state.scheduler),
        encode_int(std::iter::empty(), &[0]),
    )];
    for (name, values) in &state.values {
        tensors.push((
            format!("{SCHEDULER}{name}"),
            encode_float(values.iter().copied(), &[values.len()]),
        ));
    }
    tensors
}

/// The schedule state held by `tensors` (those named `scheduler/…`, the
/// prefix removed): exactly one `kind/` entry, every value a 1-D `F64`.
pub(super) fn decode(
    tensors: &BTreeMap<&str, &TensorView<'_>>,
) -> Result<ScheduleState, CheckpointError> {
    let fail = |reason: String| Err(CheckpointError::Schedule(reason));
    let kinds: Vec<&str> = tensors
        .keys()
        .filter_map(|name| name.strip_prefix("kind/"))
        .collect();
    let scheduler = match kinds.as_slice() {
        [one] => one.to_string(),
        [] => return fail("the file has no schedule state (saved without a schedule)".into()),
        several => {
            return fail(format!(
                "the file has several schedules' state: {several:?}"
            ));
        }
    };
    let mut values = Vec::new();
    for (&name, tensor) in tensors {
        if name.starts_with("kind/") {
            continue;
        }
        let [length] = tensor.shape() else {
            return fail(format!("`{SCHEDULER}{name}` must be one-dimensional"));
        };
        if tensor.dtype() != Dtype::F64 || tensor.data().len() != 8 * length {
            return fail(format!("`{SCHEDULER}{name}` must be F64"));
        }
        let numbers = tensor
            .data()
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes(b.try_into().expect("chunks of 8")))
            .collect();
        values.push((name.to_string(), numbers));
    }
    Ok(ScheduleState { scheduler, values })
}

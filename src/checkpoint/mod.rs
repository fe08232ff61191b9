//! Checkpoints in [safetensors](https://huggingface.co/docs/safetensors):
//! a network's state and, optionally, its optimiser's, in the format
//! PyTorch reads and writes.
//!
//! The network's entries are stored under their [state](crate::state)
//! names, which are PyTorch's `state_dict` keys: `0.weight`, `0.bias`, …
//! for a [`Sequential`](crate::Sequential), each [`Dense`](crate::Dense)
//! weight as `(outputs, inputs)`, buffers included (integer ones as `I64`).
//! So a file saved here loads into the same network in PyTorch
//! (`model.load_state_dict(safetensors.torch.load_file(path))`), and one
//! saved there with `safetensors.torch.save_file(model.state_dict(), path)`
//! loads here. Float tensors of `F16`, `BF16`, `F32` or `F64` are converted
//! to the network's float type (rounded to nearest where it is narrower).
//!
//! The optimiser's state goes under names PyTorch's `state_dict` keys
//! (dotted identifiers) never have: `optimizer/step/Adam` (the step count,
//! an `I64`, and which optimiser wrote it) and `optimizer/<buffer>/<parameter>`,
//! e.g. `optimizer/exp_avg/0.weight`, with the parameter's shape. Resuming
//! continues bit for bit as if training had not stopped, and PyTorch tools
//! still read the file. The same network and state always give the same bytes.
//!
//! # Loading is checked as a whole
//! Nothing is assigned until the whole file has been checked, and a
//! [`CheckpointError`] names what was wrong:
//!
//! - the file: truncated, corrupt, a tensor name listed twice;
//! - the network's entries: each must be in the file with its shape and
//!   type, floats finite and within the network's float range; no other
//!   tensor may be in the file ([`from_bytes_with`] with `strict = false`
//!   loads what matches and returns the rest, as PyTorch's
//!   `load_state_dict(strict=False)`);
//! - with an optimiser given: the file holds state of exactly one optimiser,
//!   that one; every `optimizer/` entry is a buffer that optimiser keeps for a
//!   parameter of the network, with its shape; after the first step every
//!   parameter has all its buffers, before it none; values are in their
//!   domain (finite; `exp_avg_sq` non-negative). Without an optimiser,
//!   `optimizer/` entries are skipped.
//!
//! Saving writes a temporary file beside the target, flushes it to disk and
//! renames it over the target, so a failed save leaves the previous file.
//!
//! # Example
//! ```
//! use ndlayers::checkpoint;
//! use ndlayers::prelude::*;
//!
//! let net = Sequential::new()
//!     .with(Dense::<f32>::from_fn(3, 2, |i, j| (i + j) as f32)?)
//!     .with(Relu::new());
//! let bytes = checkpoint::to_bytes(&net, None)?;
//!
//! let mut fresh = Sequential::new()
//!     .with(Dense::<f32>::from_fn(3, 2, |_, _| 0.0)?)
//!     .with(Relu::new());
//! checkpoint::from_bytes(&bytes, &mut fresh, None)?;
//! assert_eq!(fresh.infer(ndlayers::ndarray::array![[1.0, 1.0, 1.0]].view())?,
//!            net.infer(ndlayers::ndarray::array![[1.0, 1.0, 1.0]].view())?);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod file;
mod format;
mod schedule;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use ndarray::{ArrayD, IxDyn};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use thiserror::Error;

use crate::error::LayerError;
use crate::optim::lr_scheduler::{Schedule, set_rates};
use crate::optim::{Optimizer, OptimizerState};
use crate::real::Real;
use crate::state::{Entry, EntryMut, Kind, Name, StateDict};
use format::{Encoded, decode_float, decode_int, encode_float, encode_int, listed, repeated_name};

/// What went wrong reading or writing a checkpoint. Every variant names the
/// file or tensor; none leaves a network or optimiser half-loaded.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum CheckpointError {
    /// The file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The bytes are not a valid safetensors file (truncated, corrupt header,
    /// offsets that do not fit, a tensor listed twice).
    #[error("not a valid safetensors file: {0}")]
    Format(String),
    /// An entry of the network is not in the file.
    #[error("tensor `{name}` is missing from the file (it has {available})")]
    Missing {
        /// The entry's name.
        name: String,
        /// The first few tensors the file does have.
        available: String,
    },
    /// The file has tensors that neither the network nor the optimiser given claims.
    #[error("the file has tensors the network does not: {}", listed(names))]
    Unexpected {
        /// Their names, sorted.
        names: Vec<String>,
    },
    /// A tensor's shape differs from its entry's.
    #[error("tensor `{name}` has shape {found:?}, the network's entry {expected:?}")]
    Shape {
        /// The tensor's name.
        name: String,
        /// The entry's shape.
        expected: Vec<usize>,
        /// The tensor's shape.
        found: Vec<usize>,
    },
    /// A tensor's element type is not one its entry takes.
    #[error("tensor `{name}` has dtype {dtype}; expected {expected}")]
    Dtype {
        /// The tensor's name.
        name: String,
        /// Its dtype.
        dtype: String,
        /// The dtypes that would do.
        expected: &'static str,
    },
    /// A float tensor holds NaN or an infinity.
    #[error("tensor `{name}` holds {value} at {index:?}; state must be finite")]
    NonFinite {
        /// The tensor's name.
        name: String,
        /// Where, in the tensor's own shape.
        index: Vec<usize>,
        /// The value, formatted.
        value: String,
    },
    /// A finite value too large for the network's float type (an `f64`
    /// beyond `f32::MAX` loaded into an `f32` network).
    #[error("tensor `{name}` holds {value:e} at {index:?}, outside the range of f{float}")]
    OutOfRange {
        /// The tensor's name.
        name: String,
        /// Where, in the tensor's own shape.
        index: Vec<usize>,
        /// The value in the file.
        value: f64,
        /// The network's float width in bits.
        float: usize,
    },
    /// The network's own state is not one that can be saved or loaded: two
    /// entries with one name, or walks that disagree.
    #[error("network state: {0}")]
    State(#[from] LayerError),
    /// The optimiser's state (in the file, or the one given) does not fit
    /// the optimiser or the network.
    #[error("optimizer state: {0}")]
    Optimizer(String),
    /// The learning-rate schedule's state (in the file, or the one given)
    /// does not fit the schedule or the optimiser.
    #[error("schedule state: {0}")]
    Schedule(String),
}

/// Where the optimiser's state goes: names with a `/`, which PyTorch's
/// `state_dict` keys (dotted Python identifiers) never contain.
const OPTIMIZER: &str = "optimizer/";
/// `optimizer/step/<name>`: the step count, and which optimiser wrote it.
const STEP: &str = "optimizer/step/";

/// The safetensors bytes of `net`'s state (its `state_dict`) and, if
/// given, `optimizer`'s state.
///
/// The optimiser's state must be for `net`'s parameters (the names and
/// shapes its last step saw), and no two entries may share a name.
pub fn to_bytes<F: Real>(
    net: &dyn StateDict<F>,
    optimizer: Option<&dyn Optimizer<F>>,
) -> Result<Vec<u8>, CheckpointError> {
    encode(net, optimizer, None)
}

/// The safetensors bytes of a training run: `net`'s state, `optimizer`'s
/// and `schedule`'s (under `scheduler/`), for [`from_bytes_training`] to
/// resume bit for bit.
pub fn to_bytes_training<F: Real>(
    net: &dyn StateDict<F>,
    optimizer: &dyn Optimizer<F>,
    schedule: &dyn Schedule,
) -> Result<Vec<u8>, CheckpointError> {
    encode(net, Some(optimizer), Some(schedule))
}

/// Writes [`to_bytes_training`] to `path`, atomically.
pub fn save_training<F: Real>(
    path: impl AsRef<Path>,
    net: &dyn StateDict<F>,
    optimizer: &dyn Optimizer<F>,
    schedule: &dyn Schedule,
) -> Result<(), CheckpointError> {
    write(path.as_ref(), &to_bytes_training(net, optimizer, schedule)?)
}

/// Loads a training run saved by [`to_bytes_training`]: the network, the
/// optimiser's state, the schedule's state, and the learning rates the
/// schedule set last (into the optimiser's groups); all or nothing, and
/// strict (every tensor claimed, none missing).
pub fn from_bytes_training<F: Real>(
    bytes: &[u8],
    net: &mut dyn StateDict<F>,
    optimizer: &mut dyn Optimizer<F>,
    schedule: &mut dyn Schedule,
) -> Result<(), CheckpointError> {
    decode(bytes, net, Some(optimizer), Some(schedule), true).map(drop)
}

/// Reads `path` and loads it with [`from_bytes_training`].
pub fn load_training<F: Real>(
    path: impl AsRef<Path>,
    net: &mut dyn StateDict<F>,
    optimizer: &mut dyn Optimizer<F>,
    schedule: &mut dyn Schedule,
) -> Result<(), CheckpointError> {
    from_bytes_training(&read(path.as_ref())?, net, optimizer, schedule)
}

fn read(path: &Path) -> Result<Vec<u8>, CheckpointError> {
    std::fs::read(path).map_err(|source| CheckpointError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), CheckpointError> {
    file::write_atomically(path, bytes).map_err(|source| CheckpointError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn encode<F: Real>(
    net: &dyn StateDict<F>,
    optimizer: Option<&dyn Optimizer<F>>,
    schedule: Option<&dyn Schedule>,
) -> Result<Vec<u8>, CheckpointError> {
    let mut tensors: BTreeMap<String, Encoded> = BTreeMap::new();
    let mut parameters: HashMap<String, Vec<usize>> = HashMap::new();
    let mut repeated = None;
    net.visit_state(&Name::ROOT, &mut |name, entry| {
        let name = name.to_string();
        let encoded = match &entry {
            Entry::Parameter { value, .. } | Entry::Buffer(value) => {
                encode_float(value.iter().copied(), value.shape())
            }
            Entry::IntBuffer(value) => encode_int(value.iter().copied(), value.shape()),
        };
        if entry.kind() == Kind::Parameter {
            parameters.insert(name.clone(), entry.shape().to_vec());
        }
        if tensors.insert(name.clone(), encoded).is_some() {
            repeated.get_or_insert(name);
        }
    });
    if let Some(name) = repeated {
        return Err(LayerError::DuplicateName { name }.into());
    }
    if let Some(optimizer) = optimizer {
        let state = optimizer.state();
        let step = i64::try_from(state.step).map_err(|_| {
            CheckpointError::Optimizer(format!("{} steps do not fit an I64", state.step))
        })?;
        tensors.insert(
            format!("{STEP}{}", state.optimizer),
            encode_int(std::iter::once(step), &[1]),
        );
        for (name, buffers) in &state.parameters {
            let fits = |b: &ArrayD<F>| parameters.get(name).is_some_and(|s| s == b.shape());
            if !buffers.iter().all(fits) {
                return Err(CheckpointError::Optimizer(format!(
                    "{} has state for `{name}`, which is not a parameter of this network with that shape: save the structure the optimizer steps",
                    state.optimizer
                )));
            }
            for (kind, buffer) in state.kinds.iter().zip(buffers) {
                tensors.insert(
                    format!("{OPTIMIZER}{kind}/{name}"),
                    encode_float(buffer.iter().copied(), buffer.shape()),
                );
            }
        }
    }
    if let Some(schedule) = schedule {
        tensors.extend(schedule::encode(&schedule.state()));
    }
    // One metadata entry, as PyTorch writes: more would be serialised in a
    // random order, and equal checkpoints would differ in their bytes.
    let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
    safetensors::serialize(tensors.iter().map(|(k, v)| (k.as_str(), v)), Some(metadata))
        .map_err(|e| CheckpointError::Format(e.to_string()))
}

/// Writes [`to_bytes`] to `path`, atomically: a failed save leaves the
/// previous file as it was.
pub fn save<F: Real>(
    path: impl AsRef<Path>,
    net: &dyn StateDict<F>,
    optimizer: Option<&dyn Optimizer<F>>,
) -> Result<(), CheckpointError> {
    write(path.as_ref(), &to_bytes(net, optimizer)?)
}

/// What a non-strict load ([`from_bytes_with`] with `strict = false`) left
/// out, as PyTorch's `_IncompatibleKeys`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IncompatibleKeys {
    /// Entries of the network the file lacks; they keep their values.
    pub missing_keys: Vec<String>,
    /// Tensors of the file the network and optimiser do not claim; ignored.
    pub unexpected_keys: Vec<String>,
}

/// Loads the state in `bytes` into `net` and, if given, the optimiser
/// state into `optimizer`; all or nothing, every rule of the
/// [module](self) checked first.
pub fn from_bytes<F: Real>(
    bytes: &[u8],
    net: &mut dyn StateDict<F>,
    optimizer: Option<&mut dyn Optimizer<F>>,
) -> Result<(), CheckpointError> {
    from_bytes_with(bytes, net, optimizer, true).map(drop)
}

/// Reads `path` and loads it with [`from_bytes`].
pub fn load<F: Real>(
    path: impl AsRef<Path>,
    net: &mut dyn StateDict<F>,
    optimizer: Option<&mut dyn Optimizer<F>>,
) -> Result<(), CheckpointError> {
    load_with(path, net, optimizer, true).map(drop)
}

/// Reads `path` and loads it with [`from_bytes_with`].
pub fn load_with<F: Real>(
    path: impl AsRef<Path>,
    net: &mut dyn StateDict<F>,
    optimizer: Option<&mut dyn Optimizer<F>>,
    strict: bool,
) -> Result<IncompatibleKeys, CheckpointError> {
    from_bytes_with(&read(path.as_ref())?, net, optimizer, strict)
}

/// [`from_bytes`], or with `strict = false` as PyTorch's
/// `load_state_dict(strict=False)`: entries of the network missing from the
/// file keep their values and tensors nothing claims are ignored, both
/// returned. Everything else is checked as in strict mode: shapes, types
/// and values of what is loaded, and the optimiser's state as a whole.
pub fn from_bytes_with<F: Real>(
    bytes: &[u8],
    net: &mut dyn StateDict<F>,
    optimizer: Option<&mut dyn Optimizer<F>>,
    strict: bool,
) -> Result<IncompatibleKeys, CheckpointError> {
    decode(bytes, net, optimizer, None, strict)
}

fn decode<F: Real>(
    bytes: &[u8],
    net: &mut dyn StateDict<F>,
    optimizer: Option<&mut dyn Optimizer<F>>,
    schedule: Option<&mut dyn Schedule>,
    strict: bool,
) -> Result<IncompatibleKeys, CheckpointError> {
    let file =
        SafeTensors::deserialize(bytes).map_err(|e| CheckpointError::Format(e.to_string()))?;
    if let Some(name) = repeated_name(bytes) {
        return Err(CheckpointError::Format(format!(
            "the header lists tensor `{name}` twice"
        )));
    }
    let tensors: BTreeMap<String, TensorView<'_>> = file.tensors().into_iter().collect();
    let entries = walked(net)?;

    // The network's entries.
    let mut values: HashMap<&str, Decoded<F>> = HashMap::new();
    let mut missing = Vec::new();
    for (name, kind, shape) in &entries {
        let Some(tensor) = tensors.get(name) else {
            missing.push(name.clone());
            continue;
        };
        check_shape(name, shape, tensor.shape())?;
        let decoded = match kind {
            Kind::IntBuffer => Decoded::Int(decode_int(name, tensor.dtype(), tensor.data())?),
            _ => Decoded::Float(decode_float(name, tensor.dtype(), shape, tensor.data())?),
        };
        values.insert(name, decoded);
    }
    if strict && let Some(name) = missing.first() {
        let names: Vec<&String> = tensors.keys().collect();
        return Err(CheckpointError::Missing {
            name: name.clone(),
            available: listed(&names),
        });
    }

    // Everything else: the optimiser's, the schedule's, or nobody's.
    let mut claims = Claims::default();
    let mut scheduled = BTreeMap::new();
    let mut unexpected = Vec::new();
    for (name, tensor) in &tensors {
        if values.contains_key(name.as_str()) {
            continue;
        }
        if let Some(rest) = name.strip_prefix(schedule::SCHEDULER) {
            scheduled.insert(rest, tensor);
            continue; // taken below if a schedule is given, else skipped
        }
        match (name.strip_prefix(OPTIMIZER), &optimizer) {
            (Some(_), None) => {} // state without an optimiser to take it
            (Some(rest), Some(optimizer)) => {
                claims.claim(name, rest, tensor, &**optimizer, &entries)
            }
            (None, _) => unexpected.push(name.clone()),
        }
    }
    if strict && !unexpected.is_empty() {
        return Err(CheckpointError::Unexpected { names: unexpected });
    }
    let state = match &optimizer {
        Some(optimizer) => Some(claims.into_state(&**optimizer, &entries)?),
        None => None,
    };
    let schedule_state = match &schedule {
        Some(_) => Some(schedule::decode(&scheduled)?),
        None => None,
    };

    // A walk that drifts from the one checked is an error before anything changes.
    let mut position = 0;
    let mut drift = None;
    net.visit_state_mut(&Name::ROOT, &mut |name, entry| {
        let fits = entries.get(position).is_some_and(|(n, kind, shape)| {
            name.is(n) && *kind == entry.kind() && shape.as_slice() == entry.shape()
        });
        if !fits && drift.is_none() {
            drift = Some(name.to_string());
        }
        position += 1;
    });
    if drift.is_some() || position != entries.len() {
        let reason = "the mutable walk does not visit the entries of the shared one (see state::check_walks)";
        return Err(LayerError::state("state walk", drift.unwrap_or_default(), reason).into());
    }

    // Everything fits: assign, the schedule and the optimiser first (they
    // check their own rules; the schedule is put back if the optimiser refuses).
    let schedule_error = |e: LayerError| CheckpointError::Schedule(e.to_string());
    let previous = match (schedule, schedule_state) {
        (Some(schedule), Some(state)) => {
            let previous = schedule.state();
            schedule.set_state(&state).map_err(schedule_error)?;
            Some((schedule, previous))
        }
        _ => None,
    };
    if let (Some(optimizer), Some(state)) = (optimizer, state) {
        let refused = match &previous {
            Some((schedule, _)) if schedule.last_lrs().len() != optimizer.group_count() => {
                Some(format!(
                    "the schedule has {} groups, the optimizer {}",
                    schedule.last_lrs().len(),
                    optimizer.group_count()
                ))
            }
            _ => optimizer.set_state(state).err().map(|e| e.to_string()),
        };
        if let Some(reason) = refused {
            if let Some((schedule, previous)) = previous {
                schedule.set_state(&previous).map_err(schedule_error)?;
            }
            return Err(CheckpointError::Optimizer(reason));
        }
        if let Some((schedule, _)) = &previous {
            set_rates("schedule", optimizer, schedule.last_lrs()).map_err(schedule_error)?;
        }
    }
    net.visit_state_mut(&Name::ROOT, &mut |name, entry| {
        match (entry, values.remove(name.to_string().as_str())) {
            (
                EntryMut::Parameter { value, .. } | EntryMut::Buffer(value),
                Some(Decoded::Float(v)),
            ) => value.into_iter().zip(v).for_each(|(dst, src)| *dst = src),
            (EntryMut::IntBuffer(value), Some(Decoded::Int(v))) => {
                value.into_iter().zip(v).for_each(|(dst, src)| *dst = src)
            }
            _ => {} // missing, in a non-strict load
        }
    });
    Ok(IncompatibleKeys {
        missing_keys: missing,
        unexpected_keys: unexpected,
    })
}

/// A checked tensor's values.
enum Decoded<F> {
    Float(Vec<F>),
    Int(Vec<i64>),
}

/// Each entry of `net`: name, kind and shape, in walking order; a name used
/// twice is an error.
fn walked<F>(net: &dyn StateDict<F>) -> Result<Vec<(String, Kind, Vec<usize>)>, CheckpointError> {
    let mut entries = Vec::new();
    let mut names = std::collections::HashSet::new();
    let mut repeated = None;
    net.visit_state(&Name::ROOT, &mut |name, entry| {
        let name = name.to_string();
        if !names.insert(name.clone()) {
            repeated.get_or_insert(name.clone());
        }
        entries.push((name, entry.kind(), entry.shape().to_vec()));
    });
    match repeated {
        Some(name) => Err(LayerError::DuplicateName { name }.into()),
        None => Ok(entries),
    }
}

fn check_shape(name: &str, expected: &[usize], found: &[usize]) -> Result<(), CheckpointError> {
    if expected == found {
        Ok(())
    } else {
        Err(CheckpointError::Shape {
            name: name.to_string(),
            expected: expected.to_vec(),
            found: found.to_vec(),
        })
    }
}

/// The `optimizer/` tensors of a file, sorted out for the optimiser given.
#[derive(Default)]
struct Claims<'t, 'f> {
    /// `optimizer/step/<name>` entries: the name and the tensor.
    steps: Vec<(&'t str, &'t TensorView<'f>)>,
    /// `optimizer/<kind>/<parameter>`, by parameter and kind's position.
    buffers: HashMap<(&'t str, usize), (&'t str, &'t TensorView<'f>)>,
    /// Why the first entry the optimiser cannot take was refused.
    refused: Option<String>,
}

impl<'t, 'f> Claims<'t, 'f> {
    /// Takes the tensor `name` (`optimizer/` + `rest`), or records why the
    /// optimiser given cannot (reported once the step entries have said
    /// whose state the file holds).
    fn claim<F>(
        &mut self,
        name: &'t str,
        rest: &'t str,
        tensor: &'t TensorView<'f>,
        optimizer: &dyn Optimizer<F>,
        entries: &[(String, Kind, Vec<usize>)],
    ) {
        if let Some(kind) = name.strip_prefix(STEP) {
            self.steps.push((kind, tensor));
            return;
        }
        let kinds = optimizer.kinds();
        let (kind, parameter) = rest.split_once('/').unwrap_or((rest, ""));
        let is_parameter = entries
            .iter()
            .any(|(n, kind, _)| n == parameter && *kind == Kind::Parameter);
        let refusal = match kinds.iter().position(|&known| known == kind) {
            None => format!(
                "`{name}` is not state {} keeps (its buffers: {kinds:?})",
                optimizer.name()
            ),
            Some(k) if is_parameter => {
                self.buffers.insert((parameter, k), (name, tensor));
                return;
            }
            Some(_) => format!(
                "`{name}` is state for `{parameter}`, which is not a parameter of the network"
            ),
        };
        self.refused.get_or_insert(refusal);
    }

    /// The optimiser's state, once the file holds exactly one optimiser's,
    /// that one's, with a step count that fits and all or none of its
    /// buffers for every parameter.
    fn into_state<F: Real>(
        mut self,
        optimizer: &dyn Optimizer<F>,
        entries: &'t [(String, Kind, Vec<usize>)],
    ) -> Result<OptimizerState<F>, CheckpointError> {
        let fail = |reason: String| Err(CheckpointError::Optimizer(reason));
        let (saved, count) = match self.steps.as_slice() {
            [] => {
                return fail("the file has no optimizer state (saved without an optimizer)".into());
            }
            [one] => *one,
            several => {
                let names: Vec<&str> = several.iter().map(|(n, _)| *n).collect();
                return fail(format!(
                    "the file has the state of several optimizers: {}",
                    listed(&names)
                ));
            }
        };
        if saved != optimizer.name() {
            return fail(format!(
                "the file has {saved}'s state, the optimizer given is {}",
                optimizer.name()
            ));
        }
        let step = match (count.dtype(), count.shape(), count.data()) {
            (Dtype::I64, [] | [1], &[a, b, c, d, e, f, g, h]) => {
                u64::try_from(i64::from_le_bytes([a, b, c, d, e, f, g, h])).ok()
            }
            _ => None,
        }
        .ok_or_else(|| {
            CheckpointError::Optimizer(format!("`{STEP}{saved}` must be one non-negative I64"))
        })?;
        if let Some(refusal) = self.refused.take() {
            return fail(refusal);
        }
        let kinds = optimizer.kinds();
        let mut parameters = Vec::new();
        let mut lacking = None;
        for (name, _, shape) in entries
            .iter()
            .filter(|(_, kind, _)| *kind == Kind::Parameter)
        {
            let found: Vec<_> = (0..kinds.len())
                .map(|k| self.buffers.remove(&(name.as_str(), k)))
                .collect();
            if found.iter().all(Option::is_none) {
                lacking.get_or_insert(format!(
                    "{OPTIMIZER}{}/{name}",
                    kinds.first().unwrap_or(&"")
                ));
                continue;
            }
            let mut arrays = Vec::with_capacity(kinds.len());
            for (kind, tensor) in kinds.iter().zip(found) {
                let Some((key, tensor)) = tensor else {
                    return fail(format!(
                        "`{OPTIMIZER}{kind}/{name}` is missing from the file"
                    ));
                };
                check_shape(key, shape, tensor.shape())?;
                let values = decode_float(key, tensor.dtype(), shape, tensor.data())?;
                arrays.push(ArrayD::from_shape_vec(IxDyn(shape), values).expect("shape checked"));
            }
            parameters.push((name.clone(), arrays));
        }
        if let Some(key) = lacking.filter(|_| !parameters.is_empty()) {
            return fail(format!("`{key}` is missing from the file"));
        }
        Ok(OptimizerState {
            optimizer: optimizer.name(),
            step,
            kinds,
            parameters,
        })
    }
}

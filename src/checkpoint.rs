//! Checkpoints in [safetensors](https://huggingface.co/docs/safetensors):
//! a network's parameters, optionally with its optimiser's state, in the
//! format PyTorch reads and writes.
//!
//! The parameters are stored under their [named](Parameters::visit_named_parameters)
//! form, which is PyTorch's `state_dict`: `0.weight`, `0.bias`, … for a
//! [`Sequential`](crate::Sequential), each [`Dense`](crate::Dense) weight as
//! `(outputs, inputs)`. So a file saved here loads into the same network in
//! PyTorch (`model.load_state_dict(safetensors.torch.load_file(path))`), and
//! one saved there with `safetensors.torch.save_file(model.state_dict(), path)`
//! loads here. Tensors of `F16`, `BF16`, `F32` or `F64` are converted to the
//! network's float type (rounded to nearest where it is narrower).
//!
//! The optimiser's state (its step count and moment buffers) goes under
//! names PyTorch parameters never have (`optimizer/step/Adam`, an `I64`;
//! `optimizer/exp_avg/0.weight`), so resuming continues bit for bit as if
//! training had not stopped, and PyTorch tools still read the file. The
//! same network and state always give the same bytes.
//!
//! A file is validated completely before anything is assigned: a missing,
//! unexpected, wrongly shaped or typed or non-finite tensor, or a truncated
//! or corrupt file, is a [`CheckpointError`] naming it, and leaves the
//! network and the optimiser as they were.
//!
//! # Example
//! ```
//! use ndlayers::checkpoint;
//! use ndlayers::prelude::*;
//!
//! let mut net = Sequential::new()
//!     .with(Dense::<f32>::from_fn(3, 2, |i, j| (i + j) as f32)?)
//!     .with(Relu::new());
//! let bytes = checkpoint::to_bytes(&mut net, None)?;
//!
//! let mut fresh = Sequential::new()
//!     .with(Dense::<f32>::from_fn(3, 2, |_, _| 0.0)?)
//!     .with(Relu::new());
//! checkpoint::from_bytes(&bytes, &mut fresh, None)?;
//! assert_eq!(fresh.infer(ndlayers::ndarray::array![[1.0, 1.0, 1.0]].view())?,
//!            net.infer(ndlayers::ndarray::array![[1.0, 1.0, 1.0]].view())?);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use ndarray::{ArrayD, IxDyn};
use safetensors::tensor::{Dtype, SafeTensors, View};
use thiserror::Error;

use crate::optim::{Optimizer, OptimizerState, Parameters};
use crate::real::Real;

/// What went wrong reading or writing a checkpoint. Every variant names the
/// file or tensor; none leaves a network half-loaded.
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
    /// offsets that do not fit).
    #[error("not a valid safetensors file: {0}")]
    Format(String),
    /// A parameter of the network is not in the file.
    #[error("tensor `{name}` is missing from the file (it has {available})")]
    Missing {
        /// The parameter's name.
        name: String,
        /// The tensors the file does have, listed.
        available: String,
    },
    /// The file has tensors the network has no parameter for.
    #[error("the file has tensors the network does not: {}", names.join(", "))]
    Unexpected {
        /// Their names.
        names: Vec<String>,
    },
    /// A tensor's shape differs from its parameter's.
    #[error("tensor `{name}` has shape {found:?}, the network's parameter {expected:?}")]
    Shape {
        /// The tensor's name.
        name: String,
        /// The parameter's shape.
        expected: Vec<usize>,
        /// The tensor's shape.
        found: Vec<usize>,
    },
    /// A tensor's element type is not a float the crate converts.
    #[error("tensor `{name}` has dtype {dtype}; expected F16, BF16, F32 or F64")]
    Dtype {
        /// The tensor's name.
        name: String,
        /// Its dtype.
        dtype: String,
    },
    /// A tensor holds NaN or an infinity.
    #[error("tensor `{name}` holds {value} at {index:?}; parameters must be finite")]
    NonFinite {
        /// The tensor's name.
        name: String,
        /// Where, in the tensor's own shape.
        index: Vec<usize>,
        /// The value, formatted.
        value: String,
    },
    /// The optimiser's state in the file does not fit the optimiser given.
    #[error("optimizer state: {0}")]
    Optimizer(String),
}

/// Where the optimiser's state goes: names with a `/`, which PyTorch's
/// `state_dict` keys (dotted Python identifiers) never contain.
const OPTIMIZER: &str = "optimizer";
/// `optimizer/step/<name>`: the step count, and which optimiser wrote it.
const STEP: &str = "optimizer/step/";

/// An owned tensor for the writer.
struct Owned {
    dtype: Dtype,
    shape: Vec<usize>,
    data: Vec<u8>,
}

impl View for &Owned {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.data)
    }
    fn data_len(&self) -> usize {
        self.data.len()
    }
}

/// `F32` for `f32`, `F64` for `f64`.
fn dtype_of<F: Real>() -> Dtype {
    if size_of::<F>() == 4 {
        Dtype::F32
    } else {
        Dtype::F64
    }
}

/// The values in logical (row-major) order, little-endian in `F`'s format.
fn encode<F: Real>(values: impl Iterator<Item = F>, shape: &[usize]) -> Owned {
    let mut data = Vec::with_capacity(shape.iter().product::<usize>() * size_of::<F>());
    for v in values {
        let v = v.to_f64().unwrap_or(f64::NAN);
        if size_of::<F>() == 4 {
            // Exact: v came from an f32.
            data.extend((v as f32).to_le_bytes());
        } else {
            data.extend(v.to_le_bytes());
        }
    }
    Owned {
        dtype: dtype_of::<F>(),
        shape: shape.to_vec(),
        data,
    }
}

/// The tensor's values converted to `F` (rounded to nearest where `F` is narrower).
fn decode<F: Real>(name: &str, dtype: Dtype, bytes: &[u8]) -> Result<Vec<F>, CheckpointError> {
    let values: Vec<f64> = match dtype {
        Dtype::F64 => bytes
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes")))
            .collect(),
        Dtype::F32 => bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")) as f64)
            .collect(),
        Dtype::F16 => bytes
            .chunks_exact(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f64())
            .collect(),
        Dtype::BF16 => bytes
            .chunks_exact(2)
            .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f64())
            .collect(),
        other => {
            return Err(CheckpointError::Dtype {
                name: name.to_string(),
                dtype: format!("{other:?}"),
            });
        }
    };
    // f64 → F rounds once (f16, bf16 and f32 values are exact in f64).
    Ok(values.into_iter().map(F::lit).collect())
}

/// The safetensors bytes of `net`'s parameters (its `state_dict`) and, if
/// given, `optimizer`'s state.
pub fn to_bytes<F: Real>(
    net: &mut dyn Parameters<F>,
    optimizer: Option<&dyn Optimizer<F>>,
) -> Result<Vec<u8>, CheckpointError> {
    let mut tensors: BTreeMap<String, Owned> = BTreeMap::new();
    let mut names = Vec::new();
    net.visit_named_parameters("", &mut |name, value| {
        tensors.insert(
            name.to_string(),
            encode(value.iter().copied(), value.shape()),
        );
        names.push(name.to_string());
    });
    // One metadata entry, as PyTorch writes: more would be serialised in a
    // random order, and equal checkpoints would differ in their bytes.
    let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
    if let Some(optimizer) = optimizer {
        let state = optimizer.state();
        tensors.insert(
            format!("{STEP}{}", state.optimizer),
            Owned {
                dtype: Dtype::I64,
                shape: vec![1],
                data: (state.step as i64).to_le_bytes().to_vec(),
            },
        );
        for (kind, buffers) in &state.buffers {
            for (name, buffer) in names.iter().zip(buffers) {
                tensors.insert(
                    format!("{OPTIMIZER}/{kind}/{name}"),
                    encode(buffer.iter().copied(), buffer.shape()),
                );
            }
        }
    }
    safetensors::serialize(tensors.iter().map(|(k, v)| (k.as_str(), v)), Some(metadata))
        .map_err(|e| CheckpointError::Format(e.to_string()))
}

/// Writes [`to_bytes`] to `path`.
pub fn save<F: Real>(
    path: impl AsRef<Path>,
    net: &mut dyn Parameters<F>,
    optimizer: Option<&dyn Optimizer<F>>,
) -> Result<(), CheckpointError> {
    let bytes = to_bytes(net, optimizer)?;
    std::fs::write(path.as_ref(), bytes).map_err(|source| CheckpointError::Io {
        path: path.as_ref().to_path_buf(),
        source,
    })
}

/// Loads the parameters in `bytes` into `net` and, if given, the optimiser
/// state into `optimizer`; all or nothing.
///
/// Every parameter of `net` must be in the file with its shape, and every
/// tensor of the file must be a parameter of `net` (or, when `optimizer` is
/// given, its state; without one, saved state is ignored).
pub fn from_bytes<F: Real>(
    bytes: &[u8],
    net: &mut dyn Parameters<F>,
    optimizer: Option<&mut dyn Optimizer<F>>,
) -> Result<(), CheckpointError> {
    let file =
        SafeTensors::deserialize(bytes).map_err(|e| CheckpointError::Format(e.to_string()))?;
    // The network's names and shapes (PyTorch orientation), and the shapes
    // its optimiser sees, both in visiting order.
    let mut expected: Vec<(String, Vec<usize>)> = Vec::new();
    net.visit_named_parameters("", &mut |name, value| {
        expected.push((name.to_string(), value.shape().to_vec()));
    });
    let mut optimizer_shapes = Vec::new();
    net.visit_parameters(&mut |p| optimizer_shapes.push(p.value.shape().to_vec()));

    let mut values: Vec<Vec<F>> = Vec::with_capacity(expected.len());
    for (name, shape) in &expected {
        let tensor = file.tensor(name).map_err(|_| CheckpointError::Missing {
            name: name.clone(),
            available: available(&file),
        })?;
        values.push(checked_values(
            name,
            shape,
            tensor.dtype(),
            tensor.shape(),
            tensor.data(),
        )?);
    }
    let known: std::collections::HashSet<&str> = expected.iter().map(|(n, _)| n.as_str()).collect();
    let unexpected: Vec<String> = file
        .names()
        .into_iter()
        .filter(|n| !known.contains(n) && !n.starts_with("optimizer/"))
        .map(str::to_string)
        .collect();
    if !unexpected.is_empty() {
        let mut names = unexpected;
        names.sort();
        return Err(CheckpointError::Unexpected { names });
    }

    if let Some(optimizer) = optimizer {
        let state = optimizer_state(&file, &expected, &optimizer_shapes, &optimizer.state())?;
        // Validated above; set_state checks only the kind, which matched.
        optimizer
            .set_state(state)
            .map_err(|e| CheckpointError::Optimizer(e.to_string()))?;
    }
    // Everything fits: assign.
    let mut next = values.into_iter();
    net.visit_named_parameters("", &mut |_, mut value| {
        let v = next.next().expect("one array per visited parameter");
        for (dst, src) in value.iter_mut().zip(v) {
            *dst = src;
        }
    });
    Ok(())
}

/// Reads `path` and loads it with [`from_bytes`].
pub fn load<F: Real>(
    path: impl AsRef<Path>,
    net: &mut dyn Parameters<F>,
    optimizer: Option<&mut dyn Optimizer<F>>,
) -> Result<(), CheckpointError> {
    let bytes = std::fs::read(path.as_ref()).map_err(|source| CheckpointError::Io {
        path: path.as_ref().to_path_buf(),
        source,
    })?;
    from_bytes(&bytes, net, optimizer)
}

/// The file's tensor names, for an error message.
fn available(file: &SafeTensors<'_>) -> String {
    let mut names = file.names();
    names.sort();
    if names.is_empty() {
        "no tensors".to_string()
    } else {
        names.join(", ")
    }
}

/// A tensor's values, once its shape is `shape` and every value is finite.
fn checked_values<F: Real>(
    name: &str,
    shape: &[usize],
    dtype: Dtype,
    found: &[usize],
    data: &[u8],
) -> Result<Vec<F>, CheckpointError> {
    if found != shape {
        return Err(CheckpointError::Shape {
            name: name.to_string(),
            expected: shape.to_vec(),
            found: found.to_vec(),
        });
    }
    let values = decode::<F>(name, dtype, data)?;
    if let Some(at) = values.iter().position(|v| !v.is_finite()) {
        let array = ArrayD::from_shape_vec(IxDyn(shape), values.clone()).expect("shape checked");
        let index = array
            .indexed_iter()
            .nth(at)
            .map(|(i, _)| ndarray::Dimension::slice(&i).to_vec())
            .unwrap_or_default();
        return Err(CheckpointError::NonFinite {
            name: name.to_string(),
            index,
            value: values[at].to_string(),
        });
    }
    Ok(values)
}

/// The optimiser state stored in `file`, checked against the optimiser's kind
/// (`current`) and the parameters' shapes.
fn optimizer_state<F: Real>(
    file: &SafeTensors<'_>,
    parameters: &[(String, Vec<usize>)],
    shapes: &[Vec<usize>],
    current: &OptimizerState<F>,
) -> Result<OptimizerState<F>, CheckpointError> {
    let (key, saved) = file
        .names()
        .into_iter()
        .find_map(|n| Some((n, n.strip_prefix(STEP)?)))
        .ok_or_else(|| {
            CheckpointError::Optimizer(
                "the file has no optimizer state (saved without an optimizer)".into(),
            )
        })?;
    if saved != current.optimizer {
        return Err(CheckpointError::Optimizer(format!(
            "the file has {saved}'s state, the optimizer given is {}",
            current.optimizer
        )));
    }
    let count = file
        .tensor(key)
        .map_err(|e| CheckpointError::Format(e.to_string()))?;
    let step = match (count.dtype(), count.data()) {
        (Dtype::I64, &[a, b, c, d, e, f, g, h]) => {
            u64::try_from(i64::from_le_bytes([a, b, c, d, e, f, g, h])).ok()
        }
        _ => None,
    }
    .ok_or_else(|| CheckpointError::Optimizer(format!("`{key}` must be one non-negative I64")))?;
    let mut buffers = Vec::new();
    for (kind, _) in &current.buffers {
        let mut arrays = Vec::new();
        for ((name, _), shape) in parameters.iter().zip(shapes) {
            let key = format!("{OPTIMIZER}/{kind}/{name}");
            match file.tensor(&key) {
                Ok(t) => {
                    let v = checked_values::<F>(&key, shape, t.dtype(), t.shape(), t.data())?;
                    arrays.push(ArrayD::from_shape_vec(IxDyn(shape), v).expect("shape checked"));
                }
                // None at all is the state before the first step; some
                // but not all is a damaged file.
                Err(_)
                    if arrays.is_empty()
                        && !file
                            .names()
                            .iter()
                            .any(|n| n.starts_with(&format!("{OPTIMIZER}/{kind}/"))) =>
                {
                    break;
                }
                Err(_) => {
                    return Err(CheckpointError::Missing {
                        name: key,
                        available: available(file),
                    });
                }
            }
        }
        buffers.push((*kind, arrays));
    }
    Ok(OptimizerState {
        optimizer: current.optimizer,
        step,
        buffers,
    })
}

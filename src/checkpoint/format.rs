//! Tensors in and out of safetensors bytes: element types, conversion with
//! range checks, and the header checks the `safetensors` crate leaves out.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;

use safetensors::tensor::{Dtype, View};

use super::CheckpointError;
use crate::real::Real;

/// An owned tensor for the writer.
pub(super) struct Encoded {
    dtype: Dtype,
    shape: Vec<usize>,
    data: Vec<u8>,
}

impl View for &Encoded {
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

/// Float values in logical (row-major) order, little-endian in `F`'s own
/// format (`F32` or `F64`).
pub(super) fn encode_float<F: Real>(values: impl Iterator<Item = F>, shape: &[usize]) -> Encoded {
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
    let dtype = if size_of::<F>() == 4 {
        Dtype::F32
    } else {
        Dtype::F64
    };
    Encoded {
        dtype,
        shape: shape.to_vec(),
        data,
    }
}

/// Integer values in logical order, as `I64`.
pub(super) fn encode_int(values: impl Iterator<Item = i64>, shape: &[usize]) -> Encoded {
    Encoded {
        dtype: Dtype::I64,
        shape: shape.to_vec(),
        data: values.flat_map(i64::to_le_bytes).collect(),
    }
}

/// A float tensor's values converted to `F`, rounded to nearest where `F` is
/// narrower; a finite value beyond `F`'s range is an error, not an infinity.
pub(super) fn decode_float<F: Real>(
    name: &str,
    dtype: Dtype,
    shape: &[usize],
    bytes: &[u8],
) -> Result<Vec<F>, CheckpointError> {
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
                expected: "F16, BF16, F32 or F64",
            });
        }
    };
    let mut converted = Vec::with_capacity(values.len());
    for (at, v) in values.into_iter().enumerate() {
        // f64 → F rounds once (f16, bf16 and f32 values are exact in f64).
        let c = F::lit(v);
        if !v.is_finite() || c.is_infinite() {
            let index = unravel(at, shape);
            let name = name.to_string();
            return Err(if v.is_finite() {
                CheckpointError::OutOfRange {
                    name,
                    index,
                    value: v,
                    float: size_of::<F>() * 8,
                }
            } else {
                CheckpointError::NonFinite {
                    name,
                    index,
                    value: v.to_string(),
                }
            });
        }
        converted.push(c);
    }
    Ok(converted)
}

/// An `I64` tensor's values.
pub(super) fn decode_int(
    name: &str,
    dtype: Dtype,
    bytes: &[u8],
) -> Result<Vec<i64>, CheckpointError> {
    if dtype != Dtype::I64 {
        return Err(CheckpointError::Dtype {
            name: name.to_string(),
            dtype: format!("{dtype:?}"),
            expected: "I64",
        });
    }
    Ok(bytes
        .chunks_exact(8)
        .map(|b| i64::from_le_bytes(b.try_into().expect("8 bytes")))
        .collect())
}

/// The multi-index of flat position `i` in a row-major array of `shape`.
fn unravel(mut i: usize, shape: &[usize]) -> Vec<usize> {
    let mut index = vec![0; shape.len()];
    for (slot, &n) in index.iter_mut().zip(shape).rev() {
        *slot = i % n.max(1);
        i /= n.max(1);
    }
    index
}

/// The first tensor name the header of a (valid) safetensors file `bytes`
/// lists twice, if any. The `safetensors` crate reads the header into a map,
/// where a later entry silently replaces an earlier one of the same name.
pub(super) fn repeated_name(bytes: &[u8]) -> Option<String> {
    let size = u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?);
    let end = usize::try_from(size).ok()?.checked_add(8)?;
    let header = bytes.get(8..end)?;
    let keys: Keys = serde_json::from_slice(header).ok()?;
    keys.0
}

/// The first key a JSON object repeats.
struct Keys(Option<String>);

impl<'de> serde::Deserialize<'de> for Keys {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Keys;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Keys, A::Error> {
                let mut seen = HashSet::new();
                let mut repeated = None;
                while let Some(key) = map.next_key::<String>()? {
                    map.next_value::<serde::de::IgnoredAny>()?;
                    if repeated.is_none() && !seen.insert(key.clone()) {
                        repeated = Some(key);
                    }
                }
                Ok(Keys(repeated))
            }
        }
        deserializer.deserialize_map(Visitor)
    }
}

/// Names for an error message: the first few, quoted, then how many more.
/// A file may hold hundreds of thousands of tensors; the message stays short.
pub(super) fn listed<S: AsRef<str>>(names: &[S]) -> String {
    const SHOWN: usize = 5;
    if names.is_empty() {
        return "none".to_string();
    }
    let mut text = names
        .iter()
        .take(SHOWN)
        .map(|n| format!("`{}`", n.as_ref()))
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > SHOWN {
        text += &format!(" and {} more", names.len() - SHOWN);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_stay_short() {
        let names: Vec<String> = (0..300_000).map(|i| format!("layer{i}.weight")).collect();
        let text = listed(&names);
        assert!(text.len() < 200, "{text}");
        assert!(text.ends_with("and 299995 more"), "{text}");
        assert_eq!(listed(&[""]), "``");
        assert_eq!(listed::<&str>(&[]), "none");
    }

    #[test]
    fn a_repeated_header_name_is_found() {
        let header = br#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#;
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(header);
        bytes.extend_from_slice(&[0; 4]);
        assert_eq!(repeated_name(&bytes), Some("a".to_string()));
        assert_eq!(repeated_name(&bytes[..10]), None);
    }
}

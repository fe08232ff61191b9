//! The state interface: what a network holds besides its code, named as
//! PyTorch's `state_dict` names it.
//!
//! A layer lists its entries once, through [`StateDict`]: each has a name,
//! values in PyTorch's orientation and layout, and a kind:
//!
//! | kind | what | example | optimisers | checkpoints |
//! |---|---|---|---|---|
//! | [`Entry::Parameter`] | learned, with the gradient of the last `backward` | `Dense`'s `weight` `(outputs, inputs)` | update it | save it |
//! | [`Entry::Buffer`] | a float array with no gradient | BatchNorm's `running_mean` | skip it | save it |
//! | [`Entry::IntBuffer`] | an `i64` array with no gradient | BatchNorm's `num_batches_tracked` | skip it | save it (`I64`) |
//!
//! Everything that reads a network's state reads this one interface:
//! optimisers ([`Optimizer`](crate::Optimizer)), checkpoints
//! ([`checkpoint`](crate::checkpoint)), the gradient checker, and your own
//! code through [`named_parameters`] and [`named_buffers`]. Two walks exist
//! because Rust lends an array either shared or mutable:
//! [`visit_state`](StateDict::visit_state) (`&self`, for saving and
//! reading) and [`visit_state_mut`](StateDict::visit_state_mut) (`&mut
//! self`, for updating and loading). They must visit the same names, kinds
//! and shapes in the same order; [`check_walks`] proves it for a value, and
//! every reader pairs entries by name, so a walk that drifts is an error,
//! never a silent mix-up.
//!
//! # A layer of your own, with a parameter and a buffer
//! ```
//! use ndlayers::ndarray::{Array0, Array1, ArrayView2, Axis};
//! use ndlayers::state::{self, Entry, EntryMut, Name, StateDict};
//!
//! /// `y = x · scale` per column, counting the batches it has seen.
//! struct Scale {
//!     scale: Array1<f32>,
//!     grad_scale: Array1<f32>,
//!     batches: Array0<i64>,
//! }
//!
//! impl StateDict<f32> for Scale {
//!     fn visit_state(&self, prefix: &Name<'_>, visit: &mut dyn FnMut(&Name<'_>, Entry<'_, f32>)) {
//!         visit(&prefix.field("scale"), Entry::parameter(self.scale.view(), self.grad_scale.view()));
//!         visit(&prefix.field("batches"), Entry::IntBuffer(self.batches.view().into_dyn()));
//!     }
//!
//!     fn visit_state_mut(
//!         &mut self,
//!         prefix: &Name<'_>,
//!         visit: &mut dyn FnMut(&Name<'_>, EntryMut<'_, f32>),
//!     ) {
//!         let (scale, grad) = (self.scale.view_mut(), self.grad_scale.view_mut());
//!         visit(&prefix.field("scale"), EntryMut::parameter(scale, grad));
//!         visit(&prefix.field("batches"), EntryMut::IntBuffer(self.batches.view_mut().into_dyn()));
//!     }
//! }
//!
//! let mut layer = Scale {
//!     scale: Array1::ones(3),
//!     grad_scale: Array1::zeros(3),
//!     batches: Array0::zeros(()),
//! };
//! state::check_walks(&mut layer)?;
//! let names: Vec<String> = state::named_parameters(&layer).into_iter().map(|(n, _)| n).collect();
//! assert_eq!(names, ["scale"]);
//! assert_eq!(state::named_buffers(&layer)[0].0, "batches");
//! # Ok::<(), ndlayers::LayerError>(())
//! ```
//!
//! A struct of layers names its parts and passes the prefix on (or wraps
//! them in [`Named`] where a `&mut` borrow is at hand):
//! ```
//! use ndlayers::prelude::*;
//! use ndlayers::state::{Entry, EntryMut, Name, StateDict};
//!
//! struct Net { hidden: Dense<f32>, output: Dense<f32> }
//!
//! impl StateDict<f32> for Net {
//!     fn visit_state(&self, prefix: &Name<'_>, visit: &mut dyn FnMut(&Name<'_>, Entry<'_, f32>)) {
//!         self.hidden.visit_state(&prefix.field("hidden"), visit);
//!         self.output.visit_state(&prefix.field("output"), visit);
//!     }
//!     fn visit_state_mut(&mut self, prefix: &Name<'_>, visit: &mut dyn FnMut(&Name<'_>, EntryMut<'_, f32>)) {
//!         self.hidden.visit_state_mut(&prefix.field("hidden"), visit);
//!         self.output.visit_state_mut(&prefix.field("output"), visit);
//!     }
//! }
//!
//! let net = Net { hidden: Dense::from_fn(4, 3, |_, _| 0.5)?, output: Dense::from_fn(3, 2, |_, _| 0.5)? };
//! let names: Vec<String> = ndlayers::state::named_parameters(&net).into_iter().map(|(n, _)| n).collect();
//! assert_eq!(names, ["hidden.weight", "hidden.bias", "output.weight", "output.bias"]);
//! # Ok::<(), LayerError>(())
//! ```

use std::collections::HashSet;
use std::fmt;

use ndarray::{ArrayD, ArrayView, ArrayViewD, ArrayViewMut, ArrayViewMutD, Dimension};

use crate::error::LayerError;

/// An entry's full name, `hidden.weight`, built as the walk descends
/// without allocating: each level borrows its parent.
///
/// Empty fields are skipped, so a part named `""` adds no level.
#[derive(Clone, Copy)]
pub struct Name<'a> {
    parent: Option<&'a Name<'a>>,
    part: Part<'a>,
}

#[derive(Clone, Copy)]
enum Part<'a> {
    Root,
    Field(&'a str),
    Index(usize),
}

impl Name<'static> {
    /// The empty name every walk starts from.
    pub const ROOT: Name<'static> = Name {
        parent: None,
        part: Part::Root,
    };
}

impl<'a> Name<'a> {
    /// `self.field`, for a named part or entry.
    pub fn field(&'a self, field: &'a str) -> Name<'a> {
        Name {
            parent: Some(self),
            part: Part::Field(field),
        }
    }

    /// `self.index`, for a numbered part, as `nn.Sequential` numbers its layers.
    pub fn index(&'a self, index: usize) -> Name<'a> {
        Name {
            parent: Some(self),
            part: Part::Index(index),
        }
    }

    /// Whether the name, written out, is `text`; allocates nothing.
    pub fn is(&self, text: &str) -> bool {
        let mut rest = Rest(Some(text));
        fmt::write(&mut rest, format_args!("{self}")).is_ok() && rest.0 == Some("")
    }

    /// The last field of the name, `bias` for `0.bias`: what the entry is
    /// called in its own layer. `None` for the root and for a name that
    /// ends in an index.
    pub fn leaf(&self) -> Option<&'a str> {
        match self.part {
            Part::Field("") => self.parent.and_then(|parent| parent.leaf()),
            Part::Field(field) => Some(field),
            Part::Root | Part::Index(_) => None,
        }
    }

    /// Writes the name, returning whether anything was written.
    fn write(&self, f: &mut fmt::Formatter<'_>) -> Result<bool, fmt::Error> {
        let wrote = match self.parent {
            Some(parent) => parent.write(f)?,
            None => false,
        };
        let dot = if wrote { "." } else { "" };
        match self.part {
            Part::Root | Part::Field("") => Ok(wrote),
            Part::Field(field) => write!(f, "{dot}{field}").map(|()| true),
            Part::Index(index) => write!(f, "{dot}{index}").map(|()| true),
        }
    }
}

/// The part of a name not yet matched by [`Name::is`]; `None` after a mismatch.
struct Rest<'t>(Option<&'t str>);

impl fmt::Write for Rest<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0 = self.0.and_then(|rest| rest.strip_prefix(s));
        Ok(())
    }
}

impl fmt::Display for Name<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write(f).map(drop)
    }
}

impl fmt::Debug for Name<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Name({:?})", self.to_string())
    }
}

/// What kind of state an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Learned, with a gradient.
    Parameter,
    /// A float array with no gradient.
    Buffer,
    /// An `i64` array with no gradient.
    IntBuffer,
}

/// One entry of a layer's state, read-only; see the [module](self) table.
#[derive(Debug)]
pub enum Entry<'a, F> {
    /// A learned array and `dL/dvalue` from the last `backward` (same shape).
    Parameter {
        /// The values.
        value: ArrayViewD<'a, F>,
        /// Their gradient.
        grad: ArrayViewD<'a, F>,
    },
    /// A float array that is state but not learned.
    Buffer(ArrayViewD<'a, F>),
    /// An integer array that is state but not learned.
    IntBuffer(ArrayViewD<'a, i64>),
}

/// One entry of a layer's state, to be updated; see the [module](self) table.
#[derive(Debug)]
pub enum EntryMut<'a, F> {
    /// A learned array and `dL/dvalue` from the last `backward` (same shape).
    Parameter {
        /// The values.
        value: ArrayViewMutD<'a, F>,
        /// Their gradient (mutable for clipping and clearing).
        grad: ArrayViewMutD<'a, F>,
    },
    /// A float array that is state but not learned.
    Buffer(ArrayViewMutD<'a, F>),
    /// An integer array that is state but not learned.
    IntBuffer(ArrayViewMutD<'a, i64>),
}

impl<'a, F> Entry<'a, F> {
    /// A parameter of any dimension.
    pub fn parameter<D: Dimension>(value: ArrayView<'a, F, D>, grad: ArrayView<'a, F, D>) -> Self {
        Entry::Parameter {
            value: value.into_dyn(),
            grad: grad.into_dyn(),
        }
    }

    /// The entry's kind.
    pub fn kind(&self) -> Kind {
        match self {
            Entry::Parameter { .. } => Kind::Parameter,
            Entry::Buffer(_) => Kind::Buffer,
            Entry::IntBuffer(_) => Kind::IntBuffer,
        }
    }

    /// The values' shape.
    pub fn shape(&self) -> &[usize] {
        match self {
            Entry::Parameter { value, .. } | Entry::Buffer(value) => value.shape(),
            Entry::IntBuffer(value) => value.shape(),
        }
    }
}

impl<'a, F> EntryMut<'a, F> {
    /// A parameter of any dimension.
    pub fn parameter<D: Dimension>(
        value: ArrayViewMut<'a, F, D>,
        grad: ArrayViewMut<'a, F, D>,
    ) -> Self {
        EntryMut::Parameter {
            value: value.into_dyn(),
            grad: grad.into_dyn(),
        }
    }

    /// The entry's kind.
    pub fn kind(&self) -> Kind {
        match self {
            EntryMut::Parameter { .. } => Kind::Parameter,
            EntryMut::Buffer(_) => Kind::Buffer,
            EntryMut::IntBuffer(_) => Kind::IntBuffer,
        }
    }

    /// The values' shape.
    pub fn shape(&self) -> &[usize] {
        match self {
            EntryMut::Parameter { value, .. } | EntryMut::Buffer(value) => value.shape(),
            EntryMut::IntBuffer(value) => value.shape(),
        }
    }
}

/// Something with state: a layer, a network, a struct of layers.
///
/// Both walks call `visit` once per entry with its full name (`prefix`
/// extended by the entry's own), in one fixed order, the same for both.
/// The defaults visit nothing: a layer without state needs only
/// `impl<F> StateDict<F> for MyLayer {}`. Every [`Layer`](crate::Layer) is
/// `StateDict`. Names must be unique within what is saved or stepped
/// together; readers report a repeated one as [`LayerError::DuplicateName`].
pub trait StateDict<F> {
    /// Visits every entry read-only.
    fn visit_state(&self, _prefix: &Name<'_>, _visit: &mut dyn FnMut(&Name<'_>, Entry<'_, F>)) {}

    /// Visits every entry mutably, in the order of [`visit_state`](Self::visit_state).
    fn visit_state_mut(
        &mut self,
        _prefix: &Name<'_>,
        _visit: &mut dyn FnMut(&Name<'_>, EntryMut<'_, F>),
    ) {
    }
}

impl<F, S: StateDict<F> + ?Sized> StateDict<F> for Box<S> {
    fn visit_state(&self, prefix: &Name<'_>, visit: &mut dyn FnMut(&Name<'_>, Entry<'_, F>)) {
        (**self).visit_state(prefix, visit)
    }

    fn visit_state_mut(
        &mut self,
        prefix: &Name<'_>,
        visit: &mut dyn FnMut(&Name<'_>, EntryMut<'_, F>),
    ) {
        (**self).visit_state_mut(prefix, visit)
    }
}

/// Visits each `(field, entry)` as `prefix.field`, in order: a layer's
/// [`visit_state`](StateDict::visit_state) in one call.
pub fn visit_fields<F, const N: usize>(
    prefix: &Name<'_>,
    visit: &mut dyn FnMut(&Name<'_>, Entry<'_, F>),
    fields: [(&str, Entry<'_, F>); N],
) {
    for (field, entry) in fields {
        visit(&prefix.field(field), entry);
    }
}

/// Visits each `(field, entry)` as `prefix.field`, in order: a layer's
/// [`visit_state_mut`](StateDict::visit_state_mut) in one call.
pub fn visit_fields_mut<F, const N: usize>(
    prefix: &Name<'_>,
    visit: &mut dyn FnMut(&Name<'_>, EntryMut<'_, F>),
    fields: [(&str, EntryMut<'_, F>); N],
) {
    for (field, entry) in fields {
        visit(&prefix.field(field), entry);
    }
}

/// Several parts of a hand-written network under names of your choosing,
/// as one [`StateDict`]: `Named(vec![("fc1", &mut net.fc1), ("fc2", &mut net.fc2)])`
/// names the entries `fc1.weight`, `fc1.bias`, `fc2.weight`, ….
pub struct Named<'a, F>(pub Vec<(&'a str, &'a mut dyn StateDict<F>)>);

impl<F> StateDict<F> for Named<'_, F> {
    fn visit_state(&self, prefix: &Name<'_>, visit: &mut dyn FnMut(&Name<'_>, Entry<'_, F>)) {
        for (name, part) in &self.0 {
            part.visit_state(&prefix.field(name), visit);
        }
    }

    fn visit_state_mut(
        &mut self,
        prefix: &Name<'_>,
        visit: &mut dyn FnMut(&Name<'_>, EntryMut<'_, F>),
    ) {
        for (name, part) in &mut self.0 {
            part.visit_state_mut(&prefix.field(name), visit);
        }
    }
}

/// An owned copy of an entry's values.
#[derive(Debug, Clone, PartialEq)]
pub enum Tensor<F> {
    /// Float values.
    Float(ArrayD<F>),
    /// Integer values.
    Int(ArrayD<i64>),
}

/// Every parameter's name and a copy of its values, in walking order, as
/// PyTorch's `named_parameters()`.
pub fn named_parameters<F: Clone>(
    state: &(impl StateDict<F> + ?Sized),
) -> Vec<(String, ArrayD<F>)> {
    let mut found = Vec::new();
    state.visit_state(&Name::ROOT, &mut |name, entry| {
        if let Entry::Parameter { value, .. } = entry {
            found.push((name.to_string(), value.to_owned()));
        }
    });
    found
}

/// Every buffer's name and a copy of its values, in walking order, as
/// PyTorch's `named_buffers()`.
pub fn named_buffers<F: Clone>(state: &(impl StateDict<F> + ?Sized)) -> Vec<(String, Tensor<F>)> {
    let mut found = Vec::new();
    state.visit_state(&Name::ROOT, &mut |name, entry| match entry {
        Entry::Parameter { .. } => {}
        Entry::Buffer(value) => found.push((name.to_string(), Tensor::Float(value.to_owned()))),
        Entry::IntBuffer(value) => found.push((name.to_string(), Tensor::Int(value.to_owned()))),
    });
    found
}

/// Checks that both walks of `state` visit the same names, kinds and shapes
/// in the same order, that no name repeats, and that each parameter's
/// gradient has its value's shape. Run it in a test of every layer you write.
pub fn check_walks<F>(state: &mut (impl StateDict<F> + ?Sized)) -> Result<(), LayerError> {
    const OWNER: &str = "state walk";
    let mut shared = Vec::new();
    let mut seen = HashSet::new();
    let mut problem = None;
    state.visit_state(&Name::ROOT, &mut |name, entry| {
        let name = name.to_string();
        if let Entry::Parameter { value, grad } = &entry
            && value.shape() != grad.shape()
            && problem.is_none()
        {
            let reason = format!("gradient {:?}, value {:?}", grad.shape(), value.shape());
            problem = Some(LayerError::state(OWNER, &name, reason));
        }
        if !seen.insert(name.clone()) && problem.is_none() {
            problem = Some(LayerError::DuplicateName { name: name.clone() });
        }
        shared.push((name, entry.kind(), entry.shape().to_vec()));
    });
    if let Some(problem) = problem {
        return Err(problem);
    }
    let mut position = 0;
    state.visit_state_mut(&Name::ROOT, &mut |name, entry| {
        let found = (entry.kind(), entry.shape());
        let matches = shared
            .get(position)
            .is_some_and(|(n, kind, shape)| name.is(n) && (*kind, shape.as_slice()) == found);
        if !matches && problem.is_none() {
            let reason = format!(
                "entry {position} of the mutable walk is {found:?}, the shared walk's is {:?}",
                shared.get(position)
            );
            problem = Some(LayerError::state(OWNER, name, reason));
        }
        position += 1;
    });
    match problem {
        Some(problem) => Err(problem),
        None if position != shared.len() => Err(LayerError::state(
            OWNER,
            "",
            format!(
                "the mutable walk visits {position} entries, the shared one {}",
                shared.len()
            ),
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_join_with_dots_and_skip_empty_fields() {
        let root = Name::ROOT;
        let seq = root.index(0);
        let empty = seq.field("");
        let weight = empty.field("weight");
        assert_eq!(weight.to_string(), "0.weight");
        assert!(weight.is("0.weight"));
        assert!(!weight.is("0.weigh"));
        assert!(!weight.is("0.weights"));
        assert!(!weight.is("1.weight"));
        assert_eq!(Name::ROOT.to_string(), "");
        assert!(Name::ROOT.is(""));
        let top = root.field("bias");
        assert_eq!(top.to_string(), "bias");
    }
}

//! Parameter groups: a learning rate and a weight decay per set of
//! parameters, as PyTorch's `param_groups`.

use super::check_learning_rate;
use crate::error::{LayerError, require};
use crate::real::Real;
use crate::state::Name;

/// Which parameters a [`ParamGroup`] holds: a test of a parameter's full
/// name and shape. A plain function (or a closure that captures nothing),
/// so an optimiser stays `Clone`, `Send` and `Sync`.
pub type Select = fn(&Name<'_>, &[usize]) -> bool;

/// A set of parameters with their own options, as one of PyTorch's
/// `param_groups`: every parameter `select` accepts is updated with this
/// group's learning rate and weight decay instead of the optimiser's.
///
/// Groups are added to an optimiser with `with_group`; a parameter belongs
/// to the first group that selects it, or else to the optimiser's own
/// options (group 0). An option the group does not set is the optimiser's
/// at the time `with_group` is called, as in PyTorch.
///
/// # Example
/// The usual AdamW recipe: no weight decay on biases and normalisation
/// weights (the parameters with at most one axis).
/// ```
/// use ndlayers::optim::{AdamW, Optimizer, ParamGroup};
///
/// let adamw = AdamW::<f32>::new(1e-3)?
///     .with_weight_decay(0.05)?
///     .with_group(ParamGroup::one_dimensional().with_weight_decay(0.0)?);
/// assert_eq!(adamw.group_count(), 2);
/// // Selected by name instead: every parameter called `bias`.
/// let by_name = ParamGroup::<f32>::new(|name, _| name.leaf() == Some("bias"));
/// # Ok::<(), ndlayers::LayerError>(())
/// ```
#[derive(Clone, Copy)]
pub struct ParamGroup<F> {
    select: Select,
    learning_rate: Option<F>,
    weight_decay: Option<F>,
}

impl<F: std::fmt::Debug> std::fmt::Debug for ParamGroup<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParamGroup")
            .field("learning_rate", &self.learning_rate)
            .field("weight_decay", &self.weight_decay)
            .finish_non_exhaustive()
    }
}

const GROUP: &str = "ParamGroup";

impl<F: Real> ParamGroup<F> {
    /// The parameters `select` accepts, with the optimiser's options until
    /// `with_learning_rate` or `with_weight_decay` says otherwise.
    pub fn new(select: Select) -> Self {
        ParamGroup {
            select,
            learning_rate: None,
            weight_decay: None,
        }
    }

    /// The parameters with at most one axis: biases, and the weights of
    /// `LayerNorm`, `BatchNorm` and `PReLU`.
    pub fn one_dimensional() -> Self {
        Self::new(|_, shape| shape.len() <= 1)
    }

    /// This group's learning rate: non-negative and finite.
    pub fn with_learning_rate(mut self, learning_rate: F) -> Result<Self, LayerError> {
        self.learning_rate = Some(check_learning_rate(GROUP, learning_rate)?);
        Ok(self)
    }

    /// This group's weight decay: non-negative and finite.
    pub fn with_weight_decay(mut self, weight_decay: F) -> Result<Self, LayerError> {
        self.weight_decay = Some(check_weight_decay(GROUP, weight_decay)?);
        Ok(self)
    }
}

/// Checks a weight decay: non-negative and finite.
pub(crate) fn check_weight_decay<F: Real>(
    owner: &'static str,
    weight_decay: F,
) -> Result<F, LayerError> {
    let valid = weight_decay >= F::zero() && weight_decay.is_finite();
    require(
        owner,
        "weight_decay",
        weight_decay,
        valid,
        "must be non-negative and finite",
    )
}

/// The options a parameter is updated with.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Options<F> {
    pub(crate) learning_rate: F,
    pub(crate) weight_decay: F,
}

/// An optimiser's groups: its own options (group 0) and those added, each
/// with its selection.
#[derive(Clone)]
pub(crate) struct Groups<F> {
    default: Options<F>,
    added: Vec<(Select, Options<F>)>,
}

impl<F: std::fmt::Debug> std::fmt::Debug for Groups<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let added = self.added.iter().map(|(_, options)| options);
        f.debug_list().entry(&self.default).entries(added).finish()
    }
}

impl<F: Real> Groups<F> {
    pub(crate) fn new(learning_rate: F, weight_decay: F) -> Self {
        Groups {
            default: Options {
                learning_rate,
                weight_decay,
            },
            added: Vec::new(),
        }
    }

    /// Group 0's options: what a parameter no group selects gets.
    pub(crate) fn own(&self) -> &Options<F> {
        &self.default
    }

    /// Group 0's options, to configure.
    pub(crate) fn own_mut(&mut self) -> &mut Options<F> {
        &mut self.default
    }

    /// Adds `group`, its unset options taken from group 0.
    pub(crate) fn add(&mut self, group: ParamGroup<F>) {
        let options = Options {
            learning_rate: group.learning_rate.unwrap_or(self.default.learning_rate),
            weight_decay: group.weight_decay.unwrap_or(self.default.weight_decay),
        };
        self.added.push((group.select, options));
    }

    /// How many groups, group 0 included.
    pub(crate) fn count(&self) -> usize {
        1 + self.added.len()
    }

    /// The options of group `group`, if there is one.
    pub(crate) fn get(&self, group: usize) -> Option<&Options<F>> {
        match group {
            0 => Some(&self.default),
            _ => self.added.get(group - 1).map(|(_, options)| options),
        }
    }

    /// Sets group `group`'s learning rate; an invalid value or group is an
    /// error and changes nothing.
    pub(crate) fn set_learning_rate(
        &mut self,
        owner: &'static str,
        group: usize,
        learning_rate: F,
    ) -> Result<(), LayerError> {
        let learning_rate = check_learning_rate(owner, learning_rate)?;
        let options = match group {
            0 => &mut self.default,
            _ => match self.added.get_mut(group - 1) {
                Some((_, options)) => options,
                None => {
                    let requirement = "is not one of the optimiser's groups (0 is its own)";
                    return Err(LayerError::invalid(owner, "group", group, requirement));
                }
            },
        };
        options.learning_rate = learning_rate;
        Ok(())
    }

    /// Sets every group's learning rate.
    pub(crate) fn set_all_learning_rates(
        &mut self,
        owner: &'static str,
        learning_rate: F,
    ) -> Result<(), LayerError> {
        let learning_rate = check_learning_rate(owner, learning_rate)?;
        self.default.learning_rate = learning_rate;
        for (_, options) in &mut self.added {
            options.learning_rate = learning_rate;
        }
        Ok(())
    }

    /// The options of the parameter `name` of `shape`: its group's.
    pub(crate) fn options(&self, name: &Name<'_>, shape: &[usize]) -> Options<F> {
        self.added
            .iter()
            .find(|(select, _)| select(name, shape))
            .map_or(self.default, |(_, options)| *options)
    }
}

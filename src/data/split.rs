//! Train/test splits as indices: [`shuffled_split`] and [`stratified_split`].

use ndarray::ArrayView1;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use crate::error::{LayerError, require};
use crate::loss::ClassIndex;

/// Checks a fraction of samples to hold out: in `[0, 1]`.
fn check_fraction(owner: &'static str, test_fraction: f64) -> Result<f64, LayerError> {
    let valid = (0.0..=1.0).contains(&test_fraction);
    require(
        owner,
        "test_fraction",
        test_fraction,
        valid,
        "must be in [0, 1]",
    )
}

/// The `(train, test)` indices of `samples` samples, shuffled by `seed`:
/// `round(samples · test_fraction)` held out, as scikit-learn's
/// `train_test_split(shuffle=True)`. Select the rows with `ndarray`'s
/// `select(Axis(0), &train)`.
pub fn shuffled_split(
    samples: usize,
    test_fraction: f64,
    seed: u64,
) -> Result<(Vec<usize>, Vec<usize>), LayerError> {
    let test_fraction = check_fraction("shuffled_split", test_fraction)?;
    let mut order: Vec<usize> = (0..samples).collect();
    order.shuffle(&mut StdRng::seed_from_u64(seed));
    let test = (samples as f64 * test_fraction).round() as usize;
    let test_indices = order.split_off(samples - test);
    Ok((order, test_indices))
}

/// The `(train, test)` indices of the samples labelled `labels`, holding
/// out `round(n_c · test_fraction)` of each class's `n_c` samples, so both
/// sides keep the classes' proportions (to within one sample per class),
/// as scikit-learn's `train_test_split(stratify=labels)`. Each side is
/// shuffled by `seed`.
///
/// ```
/// use ndlayers::data::stratified_split;
/// use ndlayers::ndarray::array;
///
/// let labels = array![0, 0, 0, 0, 0, 1, 1, 1, 1, 1];
/// let (train, test) = stratified_split(labels.view(), 0.4, 1)?;
/// let ones = test.iter().filter(|&&i| labels[i] == 1).count();
/// assert_eq!((train.len(), test.len(), ones), (6, 4, 2));
/// # Ok::<(), ndlayers::LayerError>(())
/// ```
pub fn stratified_split<U: ClassIndex>(
    labels: ArrayView1<'_, U>,
    test_fraction: f64,
    seed: u64,
) -> Result<(Vec<usize>, Vec<usize>), LayerError> {
    let test_fraction = check_fraction("stratified_split", test_fraction)?;
    let mut by_class: Vec<Vec<usize>> = Vec::new();
    for (index, &label) in labels.iter().enumerate() {
        let Some(class) = label.to_index() else {
            return Err(LayerError::LabelOutOfRange {
                layer: "stratified_split",
                index,
                label: label.value(),
                classes: by_class.len(),
            });
        };
        if class >= by_class.len() {
            by_class.resize_with(class + 1, Vec::new);
        }
        by_class[class].push(index);
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut train, mut test) = (Vec::new(), Vec::new());
    for mut members in by_class {
        members.shuffle(&mut rng);
        let held = (members.len() as f64 * test_fraction).round() as usize;
        test.extend(members.drain(members.len() - held..));
        train.extend(members);
    }
    train.shuffle(&mut rng);
    test.shuffle(&mut rng);
    Ok((train, test))
}

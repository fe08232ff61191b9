//! The data helpers (issue 29): batches, splits, one-hot, standardisation.

use ndlayers::LayerError;
use ndlayers::data::{Batches, Standardizer, one_hot, shuffled_split, stratified_split};
use ndlayers::ndarray::{Array1, Array2, Array4, Axis, array, s};

#[test]
fn unshuffled_batches_are_views_in_order() {
    let x = Array2::from_shape_fn((10, 2), |(i, j)| (i * 2 + j) as f64);
    let y: Array1<usize> = (0..10).collect();
    let mut batches = Batches::new(x.view(), y.view(), 4).unwrap();
    assert_eq!(batches.len(), 3);
    let mut seen = Vec::new();
    while let Some((xb, yb)) = batches.next_batch() {
        assert_eq!(xb, x.slice(s![yb[0]..yb[0] + yb.len(), ..]));
        assert_eq!(xb.as_ptr(), x.row(yb[0]).as_ptr(), "a view, not a copy");
        seen.push(yb.len());
    }
    assert_eq!(seen, [4, 4, 2], "the last batch keeps the rest");
    let mut dropping = Batches::new(x.view(), y.view(), 4)
        .unwrap()
        .with_drop_last(true);
    assert_eq!(dropping.len(), 2);
    let mut count = 0;
    while let Some((xb, _)) = dropping.next_batch() {
        assert_eq!(xb.nrows(), 4);
        count += 1;
    }
    assert_eq!(count, 2);
}

#[test]
fn shuffled_epochs_visit_every_sample_once_in_a_reproducible_order() {
    // Images and labels: any dimensions.
    let x = Array4::from_shape_fn((23, 1, 2, 2), |(i, _, h, w)| (i * 4 + h * 2 + w) as f32);
    let y: Array1<u8> = (0..23u8).collect();
    let mut batches = Batches::new(x.view(), y.view(), 5)
        .unwrap()
        .with_shuffle(42);
    let order = |batches: &mut Batches<'_, f32, _, u8, _>, epoch| {
        batches.set_epoch(epoch);
        let mut order = Vec::new();
        let mut pointer = None;
        while let Some((xb, yb)) = batches.next_batch() {
            for (image, &label) in xb.outer_iter().zip(yb) {
                assert_eq!(
                    image,
                    x.index_axis(Axis(0), usize::from(label)),
                    "rows travel together"
                );
                order.push(label);
            }
            // One buffer, reused for every batch.
            assert_eq!(*pointer.get_or_insert(xb.as_ptr()), xb.as_ptr());
        }
        order
    };
    let first = order(&mut batches, 0);
    let mut sorted = first.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (0..23).collect::<Vec<u8>>(), "a permutation");
    assert_ne!(first, sorted, "shuffled");
    let second = order(&mut batches, 1);
    assert_ne!(first, second, "a new order each epoch");
    // A run resumed at epoch 1 sees the batches it would have.
    let mut resumed = Batches::new(x.view(), y.view(), 5)
        .unwrap()
        .with_shuffle(42);
    assert_eq!(order(&mut resumed, 1), second);
    assert_eq!(order(&mut resumed, 0), first);
    // drop_last with shuffling: 4 full batches of 5.
    let mut dropping = Batches::new(x.view(), y.view(), 5)
        .unwrap()
        .with_shuffle(42)
        .with_drop_last(true);
    assert_eq!(order(&mut dropping, 0), first[..20]);
}

#[test]
fn batches_of_mismatched_or_empty_data() {
    let x = Array2::<f64>::zeros((4, 2));
    let err = Batches::new(x.view(), Array1::<usize>::zeros(3).view(), 2).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Batches: targets has shape [3], expected (4, …): one target per sample (axis 0) of the inputs"
    );
    let err = Batches::new(x.view(), Array1::<usize>::zeros(4).view(), 0).unwrap_err();
    assert!(matches!(err, LayerError::InvalidParameter { .. }), "{err}");
    let empty = Array2::<f64>::zeros((0, 2));
    let labels = Array1::<usize>::zeros(0);
    let mut batches = Batches::new(empty.view(), labels.view(), 3)
        .unwrap()
        .with_shuffle(1);
    assert!(batches.is_empty());
    assert!(batches.next_batch().is_none());
    // Non-contiguous, negatively strided inputs.
    let mut flipped = Array2::from_shape_fn((6, 3), |(i, j)| (i * 3 + j) as f64);
    flipped.invert_axis(Axis(0));
    let columns = flipped.slice(s![.., ..;2]);
    let ids: Array1<usize> = (0..6).collect();
    let mut batches = Batches::new(columns, ids.view(), 4)
        .unwrap()
        .with_shuffle(3);
    while let Some((xb, yb)) = batches.next_batch() {
        for (row, &i) in xb.outer_iter().zip(yb) {
            assert_eq!(row, columns.row(i));
        }
    }
}

#[test]
fn splits_keep_every_sample_once_and_the_class_proportions() {
    let labels: Array1<usize> = (0..1000).map(|i| if i % 10 == 0 { 1 } else { 0 }).collect();
    let (train, test) = stratified_split(labels.view(), 0.25, 9).unwrap();
    assert_eq!((train.len(), test.len()), (750, 250));
    let rare = |side: &[usize]| side.iter().filter(|&&i| labels[i] == 1).count();
    assert_eq!((rare(&train), rare(&test)), (75, 25));
    let mut all: Vec<usize> = train.iter().chain(&test).copied().collect();
    all.sort_unstable();
    assert_eq!(all, (0..1000).collect::<Vec<_>>());
    assert_eq!(
        stratified_split(labels.view(), 0.25, 9).unwrap(),
        (train, test)
    );

    let (train, test) = shuffled_split(1797, 0.2, 2024).unwrap();
    assert_eq!((train.len(), test.len()), (1438, 359));
    assert!(shuffled_split(10, 1.5, 0).is_err());
    let err = stratified_split(array![0i64, -3].view(), 0.5, 0).unwrap_err();
    assert!(
        matches!(
            err,
            LayerError::LabelOutOfRange {
                label: -3,
                index: 1,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn one_hot_encodes_and_checks_labels() {
    let encoded = one_hot::<f64, _>(array![1usize, 0, 2].view(), 3).unwrap();
    assert_eq!(
        encoded,
        array![[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]
    );
    let err = one_hot::<f32, _>(array![0, 5].view(), 3).unwrap_err();
    assert_eq!(
        err.to_string(),
        "one_hot: label 5 at batch index 1 is out of range for 3 classes"
    );
}

#[test]
fn standardizer_fits_the_training_set_only() {
    let train: Array2<f64> = array![[1.0, 10.0, 4.0], [3.0, 30.0, 4.0], [5.0, 20.0, 4.0]];
    let scale = Standardizer::fit(train.view()).unwrap();
    let z = scale.transform(train.view()).unwrap();
    for column in z.columns().into_iter().take(2) {
        let mean = column.mean().unwrap();
        let var = column.mapv(|v| (v - mean) * (v - mean)).mean().unwrap();
        assert!(
            mean.abs() < 1e-15 && (var - 1.0).abs() < 1e-15,
            "{mean} {var}"
        );
    }
    assert_eq!(
        z.column(2),
        array![0.0, 0.0, 0.0],
        "a constant feature is only centred"
    );
    assert_eq!(scale.scale()[[2]], 1.0);
    // Test data uses the training statistics.
    let test = scale.transform(array![[3.0, 20.0, 5.0]].view()).unwrap();
    assert_eq!(test, array![[0.0, 0.0, 1.0]]);
    // Images: one statistic per pixel; a negatively strided view works.
    let mut images = Array4::from_shape_fn((4, 1, 2, 2), |(i, _, h, w)| (i + h * w) as f32);
    images.invert_axis(Axis(0));
    let scale = Standardizer::fit(images.view()).unwrap();
    assert_eq!(scale.mean().shape(), [1, 2, 2]);
    let z = scale.transform(images.view()).unwrap();
    assert!(z.sum_axis(Axis(0)).iter().all(|s| s.abs() < 1e-6));
    // Errors.
    assert!(
        scale
            .transform(Array2::<f32>::zeros((2, 4)).view())
            .is_err()
    );
    assert!(Standardizer::fit(Array2::<f64>::zeros((0, 3)).view()).is_err());
    let err = Standardizer::fit(array![[1.0, f64::NAN]].view()).unwrap_err();
    assert!(err.to_string().contains("must be finite"), "{err}");
}

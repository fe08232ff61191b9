//! Classification metrics (issue 29): argmax, accuracy, top-k, confusion
//! matrix with precision, recall and F1. Expected values are counted by hand
//! from the small inputs below (the F1 formula as scikit-learn's).

use ndlayers::LayerError;
use ndlayers::metrics::{ConfusionMatrix, accuracy, argmax_rows, top_k_accuracy};
use ndlayers::ndarray::{Array2, array};

#[test]
fn argmax_takes_the_first_maximum_and_nan_wins() {
    let logits = array![
        [1.0_f64, 3.0, 3.0],
        [f64::NAN, 9.0, f64::NAN],
        [-1.0, f64::NAN, 5.0],
        [0.0, 0.0, 0.0]
    ];
    assert_eq!(argmax_rows(logits.view()).unwrap().to_vec(), [1, 0, 1, 0]);
    assert!(argmax_rows(Array2::<f32>::zeros((2, 0)).view()).is_err());
    assert_eq!(
        argmax_rows(Array2::<f32>::zeros((0, 3)).view())
            .unwrap()
            .len(),
        0
    );
    // Transposed logits are read as they are laid out logically.
    let t = array![[0.0_f32, 5.0], [2.0, 1.0]];
    assert_eq!(argmax_rows(t.t()).unwrap().to_vec(), [1, 0]);
}

#[test]
fn accuracy_and_top_k() {
    assert_eq!(
        accuracy(array![0, 1, 2].view(), array![0, 2, 2].view()).unwrap(),
        2.0 / 3.0
    );
    let err = accuracy(array![0, 1].view(), array![0, 2, 2].view()).unwrap_err();
    assert!(matches!(err, LayerError::ShapeMismatch { .. }), "{err}");
    assert!(matches!(
        accuracy(array![].view(), array![].view()),
        Err(LayerError::Empty { .. })
    ));
    let logits = array![[0.5_f32, 0.2, 0.3], [0.1, 0.1, 0.8], [0.3, 0.3, 0.4]];
    // Row 0: label 2 is second; row 1: label 1 ties with column 0 and ranks
    // after it and after 0.8 (third); row 2: label 1 ties with column 0,
    // after it and after 0.4 (third).
    let labels = array![2, 1, 1];
    assert_eq!(
        top_k_accuracy(logits.view(), labels.view(), 1).unwrap(),
        0.0
    );
    assert_eq!(
        top_k_accuracy(logits.view(), labels.view(), 2).unwrap(),
        1.0 / 3.0
    );
    assert_eq!(
        top_k_accuracy(logits.view(), labels.view(), 3).unwrap(),
        1.0
    );
    assert!(top_k_accuracy(logits.view(), labels.view(), 0).is_err());
    assert!(matches!(
        top_k_accuracy(logits.view(), array![0, 3, 0].view(), 1),
        Err(LayerError::LabelOutOfRange { .. })
    ));
}

#[test]
fn confusion_matrix_counts_scores_and_prints() {
    // True:      0 0 0 1 1 2 2 2
    // Predicted: 0 0 1 1 2 2 2 0
    let labels = array![0, 0, 0, 1, 1, 2, 2, 2];
    let predicted = array![0, 0, 1, 1, 2, 2, 2, 0];
    let m = ConfusionMatrix::new(predicted.view(), labels.view(), 3).unwrap();
    assert_eq!(m.counts(), array![[2, 1, 0], [0, 1, 1], [1, 0, 2]]);
    assert_eq!(m.precision(0), 2.0 / 3.0); // column 0: 2 of 3
    assert_eq!(m.recall(0), 2.0 / 3.0); // row 0: 2 of 3
    assert_eq!(m.precision(1), 0.5);
    assert_eq!(m.recall(1), 0.5);
    assert!((m.f1(2) - 2.0 * (2.0 / 3.0) * (2.0 / 3.0) / (4.0 / 3.0)).abs() < 1e-15);
    assert_eq!(m.accuracy(), 5.0 / 8.0);
    let table = m.to_string();
    assert!(table.contains("     0 |  2  1  0"), "{table}");
    assert!(table.contains("precision"), "{table}");
    assert!(table.ends_with("accuracy 0.6250 of 8"), "{table}");
    // A class nobody predicted has precision 0, not NaN.
    let m = ConfusionMatrix::new(array![0, 0].view(), array![0, 1].view(), 3).unwrap();
    assert_eq!((m.precision(2), m.recall(2), m.f1(2)), (0.0, 0.0, 0.0));
    assert!(matches!(
        ConfusionMatrix::new(array![0, 5].view(), array![0, 1].view(), 3),
        Err(LayerError::LabelOutOfRange {
            index: 1,
            label: 5,
            ..
        })
    ));
}

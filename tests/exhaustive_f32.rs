//! Sigmoid and tanh forward on every one of the 2^32 `f32` bit patterns,
//! through the layers' vectorised path, against an `f64` reference.
//!
//! The reference is the textbook formula evaluated in `f64` with `std`
//! (glibc's `exp`/`tanh`, < 1 `f64` ulp): its own error is about 2^-29 of an
//! `f32` ulp, far below what is measured here.
//!
//! Takes about a minute in release mode on 2 cores, so it is ignored by a plain
//! `cargo test`; `.ci/run` runs it with
//! `cargo test --release --test exhaustive_f32 -- --ignored --nocapture`.

use ndlayers::ndarray::{Array1, Ix1};
use ndlayers::prelude::*;

/// Bit patterns per batch handed to the layer.
const BATCH: u64 = 1 << 16;

/// Error of `got` in units of the last place of `reference` rounded to `f32`
/// (subnormal spacing below the normal range).
fn ulp_error(got: f32, reference: f64) -> f64 {
    if reference.is_nan() {
        return if got.is_nan() { 0.0 } else { f64::INFINITY };
    }
    if got as f64 == reference {
        return 0.0;
    }
    let exponent = reference.abs().log2().floor().clamp(-126.0, 127.0);
    (got as f64 - reference).abs() / 2f64.powi(exponent as i32 - 23)
}

fn sigmoid_reference(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Worst {
    ulps: f64,
    x: f32,
    got: f32,
    reference: f64,
}

impl Worst {
    fn update(&mut self, x: f32, got: f32, reference: f64) {
        let ulps = ulp_error(got, reference);
        if ulps > self.ulps {
            *self = Worst {
                ulps,
                x,
                got,
                reference,
            };
        }
    }
}

/// Runs both functions over bit patterns `[start, end)`.
fn scan(start: u64, end: u64) -> (Worst, Worst) {
    let mut sigmoid = Sigmoid::<f32, Ix1>::new();
    let mut tanh = Tanh::<f32, Ix1>::new();
    let (mut ws, mut wt) = (Worst::default(), Worst::default());
    let mut lo = start;
    while lo < end {
        let hi = (lo + BATCH).min(end);
        let x = Array1::from_iter((lo..hi).map(|b| f32::from_bits(b as u32)));
        let ys = sigmoid.forward_view(x.view()).unwrap().to_owned();
        let yt = tanh.forward_view(x.view()).unwrap();
        for ((&x, &s), &t) in x.iter().zip(&ys).zip(yt) {
            let x64 = x as f64;
            ws.update(x, s, sigmoid_reference(x64));
            wt.update(x, t, x64.tanh());
        }
        lo = hi;
    }
    (ws, wt)
}

#[test]
#[ignore = "4.3e9 evaluations: run in release with --ignored (.ci/run does)"]
fn sigmoid_and_tanh_on_every_f32_bit_pattern() {
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get()) as u64;
    let total = 1u64 << 32;
    let per = total.div_ceil(threads * 64);
    let next = std::sync::atomic::AtomicU64::new(0);
    let results: Vec<(Worst, Worst)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut acc = (Worst::default(), Worst::default());
                    loop {
                        let start = next.fetch_add(per, std::sync::atomic::Ordering::Relaxed);
                        if start >= total {
                            return acc;
                        }
                        let (ws, wt) = scan(start, (start + per).min(total));
                        if ws.ulps > acc.0.ulps {
                            acc.0 = ws;
                        }
                        if wt.ulps > acc.1.ulps {
                            acc.1 = wt;
                        }
                    }
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let worst = |pick: fn(&(Worst, Worst)) -> Worst| {
        results
            .iter()
            .map(pick)
            .fold(Worst::default(), |a, b| if b.ulps > a.ulps { b } else { a })
    };
    let (ws, wt) = (worst(|r| r.0), worst(|r| r.1));
    for (name, w) in [("sigmoid", ws), ("tanh", wt)] {
        println!(
            "{name}: max error {:.3} ulp over all 2^32 f32 inputs (at x = {:e}: got {:e}, reference {:e})",
            w.ulps, w.x, w.got, w.reference
        );
    }
    assert!(ws.ulps <= 3.0, "sigmoid max error {ws:?}");
    assert!(wt.ulps <= 3.0, "tanh max error {wt:?}");
}

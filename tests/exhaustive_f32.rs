//! Sigmoid and tanh forward on every one of the 2^32 `f32` bit patterns,
//! through the layers' vectorised path, against an `f64` reference; and the
//! same for the math's other multiply-add flavour ([`Unfused`], which the
//! kernels run on CPUs without FMA), so both flavours are proven, whichever
//! the test machine dispatches to.
//!
//! The reference is the textbook formula evaluated in `f64` with `std`
//! (glibc's `exp`/`tanh`, < 1 `f64` ulp): its own error is about 2^-29 of an
//! `f32` ulp, far below what is measured here.
//!
//! Also `ln_1p` (log-softmax's `ln Σ`), in both flavours, on every 8th bit
//! pattern: all of them would add a minute to CI. (Run once on all 2^32:
//! 1.571 ulp in both flavours, at x = 0.41758808, whose bits are 3 mod 8.)
//!
//! Takes about a minute and a half in release mode on 2 cores, so it is ignored by a plain
//! `cargo test`; `.ci/run` runs it with
//! `cargo test --release --test exhaustive_f32 -- --ignored --nocapture`.

use ndlayers::math::{Fused, MulAdd, Unfused};
use ndlayers::ndarray::{Array1, Ix1, Zip, s};
use ndlayers::prelude::*;

/// Bit patterns per batch handed to the layer.
const BATCH: u64 = 1 << 16;

/// The spacing of `f32` values around `reference` (subnormal spacing below
/// the normal range), read from the exponent bits of the (always normal) `f64`.
fn f32_ulp_at(reference: f64) -> f64 {
    let exponent = ((reference.to_bits() >> 52) & 0x7ff) as i64 - 1023;
    let exponent = exponent.clamp(-126, 127);
    f64::from_bits(((exponent - 23 + 1023) as u64) << 52)
}

/// Error of `got` in units of `ulp`, the `f32` spacing at `reference`.
fn ulp_error(got: f32, reference: f64, ulp: f64) -> f64 {
    if reference.is_nan() {
        return if got.is_nan() { 0.0 } else { f64::INFINITY };
    }
    if got as f64 == reference {
        return 0.0;
    }
    (got as f64 - reference).abs() / ulp
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
    fn update(&mut self, x: f32, got: f32, reference: f64, ulp: f64) {
        let ulps = ulp_error(got, reference, ulp);
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

/// Worst errors of sigmoid and tanh, through the layers and through [`Unfused`].
#[derive(Debug, Clone, Copy, Default)]
struct Scan {
    sigmoid: Worst,
    tanh: Worst,
    unfused_sigmoid: Worst,
    unfused_tanh: Worst,
}

impl Scan {
    fn merge(mut self, mut other: Scan) -> Scan {
        for (mine, theirs) in self.fields().into_iter().zip(other.fields()) {
            if theirs.ulps > mine.ulps {
                *mine = *theirs;
            }
        }
        self
    }

    fn fields(&mut self) -> [&mut Worst; 4] {
        [
            &mut self.sigmoid,
            &mut self.tanh,
            &mut self.unfused_sigmoid,
            &mut self.unfused_tanh,
        ]
    }
}

/// Runs all four over bit patterns `[start, end)`.
fn scan(start: u64, end: u64) -> Scan {
    let mut sigmoid = Sigmoid::<f32, Ix1>::new();
    let mut tanh = Tanh::<f32, Ix1>::new();
    let mut worst = Scan::default();
    let len = BATCH as usize;
    let (mut x, mut ys, mut us, mut ut) = (
        Array1::zeros(len),
        Array1::zeros(len),
        Array1::zeros(len),
        Array1::zeros(len),
    );
    let mut lo = start;
    while lo < end {
        let hi = (lo + BATCH).min(end);
        let n = (hi - lo) as usize;
        x.iter_mut()
            .zip(lo..hi)
            .for_each(|(x, b)| *x = f32::from_bits(b as u32));
        let x = x.slice(s![..n]);
        ys.slice_mut(s![..n])
            .assign(&sigmoid.forward_view(x).unwrap());
        let yt = tanh.forward_view(x).unwrap();
        Zip::from(us.slice_mut(s![..n]))
            .and(ut.slice_mut(s![..n]))
            .and(x)
            .for_each(|us, ut, &x| {
                *us = Unfused::sigmoid(x);
                *ut = Unfused::tanh(x);
            });
        for (i, &x) in x.iter().enumerate() {
            let x64 = x as f64;
            let (s, t) = (sigmoid_reference(x64), x64.tanh());
            let (s_ulp, t_ulp) = (f32_ulp_at(s), f32_ulp_at(t));
            worst.sigmoid.update(x, ys[i], s, s_ulp);
            worst.tanh.update(x, yt[i], t, t_ulp);
            worst.unfused_sigmoid.update(x, us[i], s, s_ulp);
            worst.unfused_tanh.update(x, ut[i], t, t_ulp);
        }
        lo = hi;
    }
    worst
}

/// Runs `scan` over all 2^32 bit patterns in pieces, on every core, and merges the results.
fn on_every_core<T: Copy + Send + Sync>(
    scan: impl Fn(u64, u64) -> T + Sync,
    merge: impl Fn(T, T) -> T + Sync,
    empty: T,
) -> T {
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get()) as u64;
    let total = 1u64 << 32;
    let per = total.div_ceil(threads * 64);
    let next = std::sync::atomic::AtomicU64::new(0);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut acc = empty;
                    loop {
                        let start = next.fetch_add(per, std::sync::atomic::Ordering::Relaxed);
                        if start >= total {
                            return acc;
                        }
                        acc = merge(acc, scan(start, (start + per).min(total)));
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .fold(empty, &merge)
    })
}

#[test]
#[ignore = "4.3e9 evaluations: run in release with --ignored (.ci/run does)"]
fn sigmoid_and_tanh_on_every_f32_bit_pattern() {
    let worst = on_every_core(scan, Scan::merge, Scan::default());
    let report = [
        ("sigmoid", worst.sigmoid),
        ("tanh", worst.tanh),
        ("sigmoid (unfused)", worst.unfused_sigmoid),
        ("tanh (unfused)", worst.unfused_tanh),
    ];
    for (name, w) in report {
        println!(
            "{name}: max error {:.3} ulp over all 2^32 f32 inputs (at x = {:e}: got {:e}, reference {:e})",
            w.ulps, w.x, w.got, w.reference
        );
    }
    for (name, w) in report {
        assert!(w.ulps < 1.0, "{name} is not faithfully rounded: {w:?}");
    }
}

/// Bit patterns apart in the `ln_1p` scan.
const LN_1P_STRIDE: u64 = 8;

#[test]
#[ignore = "5.4e8 evaluations: run in release with --ignored (.ci/run does)"]
fn ln_1p_on_every_8th_f32_bit_pattern() {
    let scan = |start: u64, end: u64| {
        let mut worst = [Worst::default(); 2];
        for bits in (start.next_multiple_of(LN_1P_STRIDE)..end).step_by(LN_1P_STRIDE as usize) {
            let x = f32::from_bits(bits as u32);
            let reference = (x as f64).ln_1p();
            let ulp = f32_ulp_at(reference);
            worst[0].update(x, Fused::ln_1p(x), reference, ulp);
            worst[1].update(x, Unfused::ln_1p(x), reference, ulp);
        }
        worst
    };
    let merge = |a: [Worst; 2], b: [Worst; 2]| {
        [0, 1].map(|i| if b[i].ulps > a[i].ulps { b[i] } else { a[i] })
    };
    let worst = on_every_core(scan, merge, [Worst::default(); 2]);
    for (name, w) in [("ln_1p", worst[0]), ("ln_1p (unfused)", worst[1])] {
        println!(
            "{name}: max error {:.3} ulp over every {LN_1P_STRIDE}th f32 bit pattern (at x = {:e}: got {:e}, reference {:e})",
            w.ulps, w.x, w.got, w.reference
        );
        assert!(w.ulps <= 2.0, "{name} max error {w:?}");
    }
}

//! Rows shorter than [`SHORT_ROW`] elements, held as two overlapping
//! fixed-width vectors ([`Ends`]), so that a row's reductions are vector
//! operations whatever its length.

use crate::real::Real;

use super::Slot;
use super::reduce::pairwise;

/// Rows shorter than this take the short-row path: with fewer than eight
/// vectors of 16 lanes, the long-row loops are mostly remainder (softmax
/// forward, ns an element on L1-resident rows, long path → short path: rows
/// of 32: 2.6 → 0.88, of 40: 2.2 → 1.1, of 100: 1.25 → 0.92; backward on rows
/// of 100: 0.46 → 0.22).
pub(crate) const SHORT_ROW: usize = 128;

/// A row of `W..=2W` elements held as its first `W` and its last `W`
/// elements, which overlap in the middle (entirely when the row has `W`).
///
/// Why: whatever the row length, each per-row step is then a fixed-width
/// operation that LLVM emits as one or two vector instructions, and a
/// reduction is a shuffle tree of depth `log2 W`. A scalar fold over a row of
/// 10 would be 10 dependent operations, a chain that sets the pace of the
/// whole row. Elements in the overlap are computed
/// twice from the same inputs, so both stores write the same bits.
#[derive(Clone, Copy)]
pub(super) struct Ends<F, const W: usize> {
    first: [F; W],
    last: [F; W],
}

impl<F: Real, const W: usize> Ends<F, W> {
    #[inline(always)]
    pub(super) fn load(row: &[F]) -> Self {
        let split = row.len() - W;
        let (first, last) = (&row[..W], &row[split..]);
        Self {
            first: first.try_into().expect("W elements"),
            last: last.try_into().expect("W elements"),
        }
    }

    #[inline(always)]
    pub(super) fn splat(value: F) -> Self {
        Self {
            first: [value; W],
            last: [value; W],
        }
    }

    #[inline(always)]
    pub(super) fn store<O: Slot<F>>(self, row: &mut [O]) {
        let split = row.len() - W;
        for (o, &v) in row[split..].iter_mut().zip(&self.last) {
            o.set(v);
        }
        for (o, &v) in row[..W].iter_mut().zip(&self.first) {
            o.set(v);
        }
    }

    #[inline(always)]
    pub(super) fn map(mut self, f: impl Fn(F) -> F) -> Self {
        for v in &mut self.first {
            *v = f(*v);
        }
        for v in &mut self.last {
            *v = f(*v);
        }
        self
    }

    #[inline(always)]
    pub(super) fn zip_map(mut self, other: Self, f: impl Fn(F, F) -> F) -> Self {
        for (v, &w) in self.first.iter_mut().zip(&other.first) {
            *v = f(*v, w);
        }
        for (v, &w) in self.last.iter_mut().zip(&other.last) {
            *v = f(*v, w);
        }
        self
    }

    /// The largest element. A NaN anywhere may or may not win, which is
    /// harmless: the softmax of a row holding a NaN is NaN throughout either way.
    #[inline(always)]
    pub(super) fn max(self) -> F {
        let larger = |a: F, b: F| if b > a { b } else { a };
        let mut lanes = self.first;
        for (a, &b) in lanes.iter_mut().zip(&self.last) {
            *a = larger(*a, b);
        }
        pairwise(lanes, larger)
    }

    /// The sum of the row's elements: the lanes of `last` that `first`
    /// already holds (`fresh[i] == false`) are left out.
    #[inline(always)]
    pub(super) fn sum(self, fresh: &[bool; W]) -> F {
        let mut lanes = self.first;
        for ((a, &b), &fresh) in lanes.iter_mut().zip(&self.last).zip(fresh) {
            *a += if fresh { b } else { F::zero() };
        }
        pairwise(lanes, |a, b| a + b)
    }

    /// For [`Ends::sum`] on rows of `cols` elements: lane `i` of `last` holds
    /// element `cols - W + i`, which `first` also holds when it is below `W`.
    #[inline(always)]
    pub(super) fn fresh_lanes(cols: usize) -> [bool; W] {
        std::array::from_fn(|i| cols - W + i >= W)
    }
}

/// Calls `$body` with `$w` bound to the [`Ends`] width for rows of `$cols`
/// elements, `1 ≤ $cols < SHORT_ROW`: the power of two with
/// `$w < $cols ≤ 2·$w` (1 for one column), so the halves overlap as little as
/// they can: rows of 16 are two disjoint halves of 8, not one of 16 twice.
macro_rules! with_ends_width {
    ($cols:expr, |$w:ident| $body:expr) => {
        with_ends_width!(@arms $cols, |$w| $body, 65 => 64, 33 => 32, 17 => 16, 9 => 8, 5 => 4, 3 => 2, 0 => 1)
    };
    (@arms $cols:expr, |$w:ident| $body:expr, $($from:literal => $width:literal),*) => {
        match $cols {
            $($from.. => {
                const $w: usize = $width;
                $body
            })*
        }
    };
}
pub(super) use with_ends_width;

/// The widest [`Ends`], `with_ends_width!`'s first arm: rows of up to
/// `2 · MAX_ENDS_WIDTH` elements fit, and every short row must.
pub(super) const MAX_ENDS_WIDTH: usize = 64;
const _: () = assert!(
    SHORT_ROW - 1 <= 2 * MAX_ENDS_WIDTH,
    "every row shorter than SHORT_ROW needs an Ends width"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_short_row_length_gets_the_narrowest_ends_that_holds_it() {
        for cols in 1..SHORT_ROW {
            let w = with_ends_width!(cols, |W| W);
            assert!(
                w.is_power_of_two() && w <= MAX_ENDS_WIDTH,
                "cols {cols}: W = {w}"
            );
            assert!(
                cols <= 2 * w,
                "cols {cols}: two halves of {w} do not cover the row"
            );
            assert!(
                w < cols || cols == 1,
                "cols {cols}: W = {w} is wider than the row"
            );
        }
        assert_eq!(with_ends_width!(SHORT_ROW - 1, |W| W), MAX_ENDS_WIDTH);
        // The fresh lanes count every element once.
        for cols in 1..SHORT_ROW {
            with_ends_width!(cols, |W| {
                let fresh = Ends::<f64, W>::fresh_lanes(cols)
                    .iter()
                    .filter(|&&f| f)
                    .count();
                assert_eq!(W + fresh, cols.max(W), "cols {cols}");
            });
        }
    }
}

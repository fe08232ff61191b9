//! Arrays a layer keeps between calls, so that a training loop whose shapes
//! do not change allocates nothing after its first step.

use std::mem::MaybeUninit;

use ndarray::{Array, ArrayView, ArrayViewMut, Dimension, ShapeBuilder};
use num_traits::Zero;

use crate::error::LayerError;
use crate::real::Real;

/// An empty vector with room for `len` elements, or an error naming the
/// layer and the size where `len` elements overflow the address space or
/// cannot be allocated (where `Vec::with_capacity` panics or aborts).
pub(crate) fn try_vec<F>(
    len: usize,
    layer: &'static str,
    size: String,
) -> Result<Vec<F>, LayerError> {
    let too_large = |requirement| LayerError::invalid(layer, "size", &size, requirement);
    if len
        .checked_mul(std::mem::size_of::<F>())
        .is_none_or(|bytes| bytes > isize::MAX as usize)
    {
        return Err(too_large("overflows the address space"));
    }
    let mut v = Vec::new();
    v.try_reserve_exact(len)
        .map_err(|_| too_large("does not fit in memory"))?;
    Ok(v)
}

/// The array a layer cached in its last forward, once `grad_output` has its
/// shape: the check every elementwise-shaped backward starts with.
pub(crate) fn cached_for<'a, F, D: Dimension>(
    cache: &'a Option<Array<F, D>>,
    layer: &'static str,
    grad_output: &ArrayView<'_, F, D>,
) -> Result<&'a Array<F, D>, LayerError> {
    let cache = cache
        .as_ref()
        .ok_or(LayerError::BackwardBeforeForward { layer })?;
    LayerError::check_shape(layer, "grad_output", cache.shape(), grad_output.shape())?;
    Ok(cache)
}

/// `true` for an array that is contiguous in column-major order only.
pub(crate) fn is_fortran<F, D: Dimension>(a: &ArrayView<'_, F, D>) -> bool {
    !a.is_standard_layout() && a.t().is_standard_layout()
}

/// Fresh arrays of at least this many bytes ask the kernel for transparent
/// huge pages (Linux), numpy's threshold. Two costs shrink with them: a fresh
/// array's first write faults once per 4 KiB page, and every later pass over
/// a layer's buffer walks the page tables once per 4 KiB (the CHANGELOG has
/// the measurements). Where the block
/// is recycled heap memory already mapped, the advice is one system call
/// that changes nothing.
const HUGE_PAGE_MIN_BYTES: usize = 4 << 20;

/// The huge page size `madvise` aligns to on x86-64 and aarch64 Linux.
#[cfg(target_os = "linux")]
const HUGE_PAGE: usize = 2 << 20;

/// Asks Linux to back the whole huge pages inside `v`'s memory with
/// transparent huge pages (`MADV_HUGEPAGE`): effective where the system's
/// policy is `madvise` (the common default) or `always`, ignored with `never`.
/// Must run before the memory is first touched to take effect (it is only
/// advice: correctness never depends on it).
/// Returns whether the kernel accepted the advice (or there was no whole
/// huge page to advise).
#[cfg(target_os = "linux")]
fn advise_huge_pages<F>(v: &mut [F]) -> bool {
    let start = v.as_mut_ptr() as usize;
    let end = start + std::mem::size_of_val(v);
    let (first, last) = (
        start.next_multiple_of(HUGE_PAGE),
        end / HUGE_PAGE * HUGE_PAGE,
    );
    if last > first {
        // SAFETY: [first, last) lies inside `v`'s allocation, which we hold
        // exclusively (`&mut`), and is page-aligned as madvise requires;
        // MADV_HUGEPAGE changes how the kernel backs those pages, never their
        // contents or their validity. A failure (EINVAL without THP support)
        // leaves the memory as it was.
        unsafe {
            libc::madvise(
                first as *mut libc::c_void,
                last - first,
                libc::MADV_HUGEPAGE,
            ) == 0
        }
    } else {
        true
    }
}

#[cfg(not(target_os = "linux"))]
fn advise_huge_pages<F>(_: &mut [F]) -> bool {
    true
}

/// A new zeroed array of shape `dim` (column-major if `fortran`), backed by
/// huge pages where it is large (see [`HUGE_PAGE_MIN_BYTES`]). Public as [`crate::zeros`].
///
/// Large zeroed blocks come from the OS (calloc → mmap) untouched and
/// already zero, so the advice lands before the first write.
pub(crate) fn fresh<F: Clone + Zero, D: Dimension>(dim: D, fortran: bool) -> Array<F, D> {
    advised(Array::zeros(dim.set_f(fortran)))
}

/// `a`, just allocated and not yet touched, with its memory advised to huge
/// pages if it is large.
pub(crate) fn advised<F, D: Dimension>(mut a: Array<F, D>) -> Array<F, D> {
    if let Some(memory) = a.as_slice_memory_order_mut()
        && std::mem::size_of_val(memory) >= HUGE_PAGE_MIN_BYTES
    {
        // Only advice: the array is the same without it.
        let _ = advise_huge_pages(memory);
    }
    a
}

/// A new array of shape `dim` (column-major if `fortran`) whose elements
/// `fill` writes, with no clearing first: a fresh owned result costs one
/// write of its memory, not two (a recycled heap block would be zeroed by
/// [`fresh`] and then overwritten). Large arrays are advised to huge pages,
/// as in [`fresh`], before `fill` touches them.
///
/// # Safety
/// `fill` must write every element of the view it is given.
pub(crate) unsafe fn filled<F: Real, D: Dimension>(
    dim: D,
    fortran: bool,
    fill: impl FnOnce(ArrayViewMut<'_, MaybeUninit<F>, D>),
) -> Array<F, D> {
    let mut a = uninit(dim.set_f(fortran));
    fill(a.view_mut());
    // SAFETY: the caller guarantees that `fill` wrote every element.
    unsafe { a.assume_init() }
}

/// [`filled`] with `like`'s shape and memory order (row-major for non-contiguous `like`).
///
/// # Safety
/// As [`filled`]: `fill` must write every element.
pub(crate) unsafe fn filled_like<F: Real, D: Dimension>(
    like: &ArrayView<'_, F, D>,
    fill: impl FnOnce(ArrayViewMut<'_, MaybeUninit<F>, D>),
) -> Array<F, D> {
    // SAFETY: passed on to our caller.
    unsafe { filled(like.raw_dim(), is_fortran(like), fill) }
}

/// An owned copy of `view`, in its memory order (row-major if it has none).
///
/// Row- and column-major views are copied by [`crate::kernels::copy_into`] into a [`filled`]
/// array: not zeroed first, advised to huge pages when large, and written with
/// vector stores (a C library's `memcpy`, behind `to_owned`, may copy with
/// `rep movsb`, slower for these sizes on some CPUs; a zeroed [`fresh`] array
/// pays for clearing recycled memory first). Other layouts are `to_owned`.
///
/// The owned forwards of contiguous input do not come here: they write the
/// result and the cache in one pass (`kernels::teed`); ReLU caches bits
/// (`activation::steps::Steps`).
pub(crate) fn owned_copy<F: Real, D: Dimension>(view: ArrayView<'_, F, D>) -> Array<F, D> {
    let fortran = is_fortran(&view);
    let Some(from) = view
        .as_slice_memory_order()
        .filter(|_| fortran || view.is_standard_layout())
    else {
        return view.to_owned();
    };
    // SAFETY: the loop writes every element: `from` has as many, and a fresh
    // array of `view`'s shape and memory order is contiguous.
    unsafe {
        filled(view.raw_dim(), fortran, |mut out| {
            let out = out
                .as_slice_memory_order_mut()
                .expect("a fresh array is contiguous");
            crate::kernels::copy_into(from, out);
        })
    }
}

/// The array in `slot`, reshaped to `dim` in the requested memory order.
///
/// Its memory is reused whenever it is large enough, so a layer's buffers
/// grow to the largest batch seen and serve every smaller one (an evaluation
/// batch after training batches costs no allocation, nor does the training
/// batch after it). Only a larger shape allocates, zeroed (zeroed memory
/// comes from the OS untouched, so this costs no more than an uninitialised
/// allocation). The contents are unspecified: callers overwrite every element.
pub(crate) fn reuse<F: Real, D: Dimension>(
    slot: &mut Option<Array<F, D>>,
    dim: D,
    fortran: bool,
) -> &mut Array<F, D> {
    let fits = slot
        .as_ref()
        .is_some_and(|a| a.raw_dim() == dim && is_fortran(&a.view()) == fortran);
    if !fits {
        let len = dim.size();
        let memory = slot
            .take()
            .map(Array::into_raw_vec_and_offset)
            .filter(|(v, offset)| v.capacity() >= len && offset.unwrap_or(0) == 0)
            .map(|(mut v, _)| {
                // Within the capacity: shortens, or extends without allocating.
                v.resize(len, F::zero());
                v
            });
        *slot = Some(match memory {
            Some(v) => Array::from_shape_vec(dim.set_f(fortran), v)
                .expect("a vector of exactly dim.size() elements"),
            None => fresh(dim, fortran),
        });
    }
    slot.as_mut().expect("filled above")
}

/// [`reuse`] for a shape that follows from hyperparameters rather than from
/// an array that exists (a convolution's padded output): a size that
/// overflows or cannot be allocated is an error naming `layer` and the
/// shape, where `reuse` would abort.
pub(crate) fn try_reuse<'a, F: Real, D: Dimension>(
    slot: &'a mut Option<Array<F, D>>,
    dim: D,
    fortran: bool,
    layer: &'static str,
) -> Result<&'a mut Array<F, D>, LayerError> {
    let len = dim.size_checked().ok_or_else(|| {
        LayerError::invalid(
            layer,
            "size",
            format_args!("{:?}", dim.slice()),
            "overflows the address space",
        )
    })?;
    if slot.as_ref().is_none_or(|a| a.len() < len) {
        let mut v = try_vec(len, layer, format!("{:?}", dim.slice()))?;
        v.resize(len, F::zero());
        *slot = Some(
            Array::from_shape_vec(dim.clone().set_f(fortran), v)
                .expect("a vector of exactly dim.size() elements"),
        );
    }
    Ok(reuse(slot, dim, fortran))
}

/// [`reuse`] with `like`'s shape and memory order (row-major for non-contiguous `like`).
pub(crate) fn reuse_like<'a, F: Real, D: Dimension>(
    slot: &'a mut Option<Array<F, D>>,
    like: &ArrayView<'_, F, D>,
) -> &'a mut Array<F, D> {
    reuse(slot, like.raw_dim(), is_fortran(like))
}

/// A zeroed array, as [`Array::zeros`](ndarray::Array::zeros), whose memory
/// Linux backs with transparent huge pages when it is 4 MiB or more (numpy's
/// rule; elsewhere it is just `Array::zeros`).
///
/// Every layer allocates its buffers this way. Allocate large input batches
/// this way too when they are reused: a pass over memory in 4 KiB pages walks
/// the page tables once per page, and the first write to each page faults.
///
/// ```
/// let mut x = ndlayers::zeros::<f32, _, _>((2048, 1024));
/// x.fill(0.5);
/// assert_eq!(x.dim(), (2048, 1024));
/// ```
pub fn zeros<A, Sh, D>(shape: Sh) -> ndarray::Array<A, D>
where
    A: Clone + num_traits::Zero,
    Sh: ndarray::ShapeBuilder<Dim = D>,
    D: ndarray::Dimension,
{
    advised(ndarray::Array::zeros(shape))
}

/// An uninitialised array, as [`Array::uninit`](ndarray::Array::uninit),
/// whose memory Linux backs with transparent huge pages when it is 4 MiB or
/// more, as [`zeros`]: for an array whose every element is written before it
/// is read, with no clearing first (the layers' owned results are made so).
///
/// ```
/// use std::mem::MaybeUninit;
///
/// let mut y = ndlayers::uninit::<f32, _, _>((2048, 1024));
/// y.fill(MaybeUninit::new(0.5));
/// // SAFETY: `fill` wrote every element.
/// let y = unsafe { y.assume_init() };
/// assert!(y.iter().all(|&v| v == 0.5));
/// ```
pub fn uninit<A, Sh, D>(shape: Sh) -> ndarray::Array<std::mem::MaybeUninit<A>, D>
where
    Sh: ndarray::ShapeBuilder<Dim = D>,
    D: ndarray::Dimension,
{
    advised(ndarray::Array::uninit(shape))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array2, Ix2};

    /// The advice is exercised on a block of 17 huge pages and does not
    /// change the array: zeros before, whatever was written after.
    /// The public constructor: advised from 4 MiB (here 5 MiB, column-major).
    #[test]
    fn public_zeros_are_zeroed_writable_and_shaped() {
        use ndarray::ShapeBuilder;
        let mut a = super::zeros::<f32, _, _>((1280, 1024).f());
        assert!(a.t().is_standard_layout());
        assert!(a.iter().all(|&v| v == 0.0));
        a.iter_mut().enumerate().for_each(|(i, v)| *v = i as f32);
        assert!(a.iter().enumerate().all(|(i, &v)| v == i as f32));
        assert_eq!(super::zeros::<f64, _, _>(0).len(), 0);
    }

    #[test]
    fn fresh_large_arrays_are_zeroed_and_writable() {
        let (rows, cols) = (4096, 2176); // 34 MiB of f32: past HUGE_PAGE_MIN_BYTES
        for fortran in [false, true] {
            let mut a: Array2<f32> = fresh(Ix2(rows, cols), fortran);
            assert_eq!(is_fortran(&a.view()), fortran);
            assert!(a.iter().all(|&v| v == 0.0));
            a.iter_mut().enumerate().for_each(|(i, v)| *v = i as f32);
            assert!(a.iter().enumerate().all(|(i, &v)| v == i as f32));
        }
        let mut v = vec![0u8; 17 << 21];
        assert!(
            advise_huge_pages(&mut v)
                || !std::path::Path::new("/sys/kernel/mm/transparent_hugepage").exists()
        );
    }

    #[test]
    fn owned_copies_keep_values_and_order() {
        let big = Array2::from_shape_fn((2048, 4096).f(), |(i, j)| (i * 7 + j) as f32);
        let copy = owned_copy(big.view());
        assert_eq!(copy, big);
        assert!(is_fortran(&copy.view()));
        let small = big.slice(ndarray::s![..3, ..5]).to_owned();
        assert_eq!(owned_copy(small.view()), small);
        // Contiguous but neither row- nor column-major: the `to_owned` route.
        let cube =
            ndarray::Array3::from_shape_fn((3, 4, 5), |(i, j, k)| (i * 20 + j * 5 + k) as f64);
        let permuted = cube.view().permuted_axes([1, 0, 2]);
        assert_eq!(owned_copy(permuted), permuted);
        let empty = Array2::<f32>::zeros((0, 7));
        assert_eq!(owned_copy(empty.view()), empty);
    }
}

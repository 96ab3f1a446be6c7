//! Sums of per-item contributions that do not depend on thread scheduling.
//!
//! rayon's `fold`/`reduce` split work by stealing, so the order in which float partial sums
//! meet changes from run to run; a resumed training run must reproduce an uninterrupted one
//! bit for bit. Here the items are cut into a fixed number of contiguous partitions (not tied
//! to the thread count, so `--threads` does not change results either), each summed in item
//! order, and the partitions are added in partition order.

use super::storage::num_like::NumLike;
use rayon::prelude::*;

/// Most partitions a sum is split into: enough to keep several cores busy.
const PARTITIONS: usize = 8;

/// `Σ_items f(item)` into a vector of `len`, where `f(item, acc)` adds one item's share to `acc`.
pub fn ordered_sum<T, E, F>(items: usize, len: usize, f: F) -> Result<Vec<T>, E>
where
    T: NumLike,
    E: Send,
    F: Fn(usize, &mut [T]) -> Result<(), E> + Sync,
{
    ordered_sum_with(items, len, || (), |item, _, acc| f(item, acc))
}

/// [`ordered_sum`] with a working state made once per partition by `init` (scratch buffers).
pub fn ordered_sum_with<T, S, E, I, F>(items: usize, len: usize, init: I, f: F) -> Result<Vec<T>, E>
where
    T: NumLike,
    E: Send,
    I: Fn() -> S + Sync,
    F: Fn(usize, &mut S, &mut [T]) -> Result<(), E> + Sync,
{
    let parts = items.clamp(1, PARTITIONS);
    let partials: Vec<Vec<T>> = (0..parts)
        .into_par_iter()
        .map(|p| {
            let mut acc = vec![T::ZERO; len];
            let mut state = init();
            for item in p * items / parts..(p + 1) * items / parts {
                f(item, &mut state, &mut acc)?;
            }
            Ok(acc)
        })
        .collect::<Result<_, E>>()?;
    let mut it = partials.into_iter();
    let mut total = it.next().unwrap_or_else(|| vec![T::ZERO; len]);
    for part in it {
        for (t, v) in total.iter_mut().zip(&part) {
            *t = *t + *v;
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_result_as_a_sequential_sum_of_partitions_and_repeatable() {
        let f = |i: usize, acc: &mut [f32]| -> Result<(), ()> {
            for (k, a) in acc.iter_mut().enumerate() {
                *a = *a + ((i * 31 + k) as f32).sin() * 1e-3;
            }
            Ok(())
        };
        let a = ordered_sum(100, 7, f).unwrap();
        for _ in 0..5 {
            assert_eq!(ordered_sum(100, 7, f).unwrap(), a);
        }
        let seq: Vec<f32> = (0..7).map(|k| (0..100).map(|i| ((i * 31 + k) as f32).sin() * 1e-3).sum()).collect();
        for (x, y) in a.iter().zip(&seq) {
            assert!((x - y).abs() < 1e-5);
        }
        assert_eq!(ordered_sum(0, 3, f).unwrap(), vec![0.0; 3]);
    }
}

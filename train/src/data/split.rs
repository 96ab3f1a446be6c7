//! The seed's train/validation split, reproduced bit for bit.
//!
//! The seed does `np.random.seed(42); np.random.shuffle(indices)` on `list(range(50000))` and
//! takes the first 5,000 shuffled indices as validation, the other 45,000 as training. numpy's
//! legacy `RandomState` is MT19937 seeded with `init_genrand`, and its `shuffle` is a
//! Fisher–Yates walk from the end that draws `j` in `[0, i]` with `random_interval` (mask to the
//! smallest covering power of two, reject above `i`). Both are small, so they are implemented
//! here exactly: the split equals numpy's (checked against numpy 2.4 output in the tests).

use super::{DataError, Result};

/// The seed's `np.random.seed(42)`.
pub const DEFAULT_SPLIT_SEED: u32 = 42;
/// `val_size = 0.10` of the 50,000 training records.
pub const VAL_SIZE: usize = 5_000;

/// Indices into the training records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Split {
    pub train: Vec<u32>,
    pub val: Vec<u32>,
}

/// Shuffles `0..records` as numpy does for `seed` and cuts off the first `val` as validation.
/// numpy seeds accept 0..2³², hence the `u32`.
pub fn split_train_val(records: usize, val: usize, seed: u32) -> Result<Split> {
    if val > records || records > u32::MAX as usize {
        return Err(DataError::Config(format!(
            "cannot take {val} validation records out of {records}; expected at most as many \
             as there are training records"
        )));
    }
    let mut indices: Vec<u32> = (0..records as u32).collect();
    numpy_shuffle(&mut indices, &mut Mt19937::new(seed));
    let train = indices.split_off(val);
    Ok(Split { train, val: indices })
}

/// `RandomState.shuffle` of numpy (legacy, unchanged since numpy 1.x).
pub fn numpy_shuffle<T>(items: &mut [T], rng: &mut Mt19937) {
    for i in (1..items.len()).rev() {
        let j = random_interval(rng, i as u64) as usize;
        items.swap(i, j);
    }
}

/// numpy's `random_interval`: uniform in `[0, max]` by masked rejection.
fn random_interval(rng: &mut Mt19937, max: u64) -> u64 {
    if max == 0 {
        return 0;
    }
    let mut mask = max;
    for shift in [1, 2, 4, 8, 16, 32] {
        mask |= mask >> shift;
    }
    if max <= u32::MAX as u64 {
        loop {
            let value = rng.next_u32() as u64 & mask;
            if value <= max {
                return value;
            }
        }
    }
    loop {
        // numpy's next_uint64 for MT19937: two draws, the first in the high half.
        let value = ((rng.next_u32() as u64) << 32 | rng.next_u32() as u64) & mask;
        if value <= max {
            return value;
        }
    }
}

/// The 32-bit Mersenne Twister (MT19937), seeded as numpy's `np.random.seed(int)`.
#[derive(Clone)]
pub struct Mt19937 {
    state: [u32; N],
    pos: usize,
}

const N: usize = 624;
const M: usize = 397;

impl Mt19937 {
    pub fn new(seed: u32) -> Self {
        let mut state = [0u32; N];
        state[0] = seed;
        for i in 1..N {
            let prev = state[i - 1];
            state[i] = 1_812_433_253u32.wrapping_mul(prev ^ (prev >> 30)).wrapping_add(i as u32);
        }
        Mt19937 { state, pos: N }
    }

    pub fn next_u32(&mut self) -> u32 {
        if self.pos >= N {
            self.twist();
        }
        let mut y = self.state[self.pos];
        self.pos += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }

    fn twist(&mut self) {
        for i in 0..N {
            let y = (self.state[i] & 0x8000_0000) | (self.state[(i + 1) % N] & 0x7fff_ffff);
            let mag = if y & 1 == 0 { 0 } else { 0x9908_b0df };
            self.state[i] = self.state[(i + M) % N] ^ (y >> 1) ^ mag;
        }
        self.pos = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mt19937_matches_numpy_first_draws() {
        // np.random.seed(42); np.random.randint(0, 2**32, size=3, dtype=np.uint64)
        let mut rng = Mt19937::new(42);
        let draws: Vec<u32> = (0..3).map(|_| rng.next_u32()).collect();
        assert_eq!(draws, [1_608_637_542, 3_421_126_067, 4_083_286_876]);
    }

    #[test]
    fn shuffle_matches_numpy_small() {
        // np.random.seed(7); a = np.arange(10); np.random.shuffle(a)
        let mut a: Vec<u32> = (0..10).collect();
        numpy_shuffle(&mut a, &mut Mt19937::new(7));
        assert_eq!(a, [8, 5, 0, 2, 1, 9, 7, 3, 6, 4]);
    }

    #[test]
    fn seed_split_matches_numpy() {
        // np.random.seed(42); idx = list(range(50000)); np.random.shuffle(idx)
        let split = split_train_val(50_000, VAL_SIZE, DEFAULT_SPLIT_SEED).unwrap();
        assert_eq!(split.val.len(), 5_000);
        assert_eq!(split.train.len(), 45_000);
        assert_eq!(
            split.val[..10],
            [33553, 9427, 199, 12447, 39489, 42724, 10822, 49498, 4144, 36958]
        );
        assert_eq!(split.val[4995..], [39885, 17566, 16062, 48445, 20382]);
        assert_eq!(split.train[..5], [40877, 18057, 19066, 20525, 5847]);
        assert_eq!(split.train[44_995..], [11284, 44732, 38158, 860, 15795]);
        assert_eq!(split.val.iter().map(|&i| i as u64).sum::<u64>(), 125_486_163);
    }

    #[test]
    fn split_is_a_partition_and_deterministic() {
        let a = split_train_val(50_000, VAL_SIZE, 42).unwrap();
        assert_eq!(a, split_train_val(50_000, VAL_SIZE, 42).unwrap());
        assert_ne!(a, split_train_val(50_000, VAL_SIZE, 43).unwrap());
        let mut all: Vec<u32> = a.train.iter().chain(&a.val).copied().collect();
        all.sort_unstable();
        assert!(all.iter().enumerate().all(|(i, &v)| i as u32 == v));
    }

    #[test]
    fn split_rejects_more_val_than_records() {
        assert!(matches!(split_train_val(10, 11, 42), Err(DataError::Config(_))));
        assert_eq!(split_train_val(0, 0, 42).unwrap(), Split { train: vec![], val: vec![] });
    }
}

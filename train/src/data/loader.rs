//! Epochs of NCHW `f32` batches, prepared ahead by worker threads.
//!
//! Everything random about an epoch is a function of `(seed, epoch)`, and every sample's
//! augmentation a function of `(seed, epoch, position in the epoch)`: batches are the same for
//! any worker count and any scheduling, and an epoch resumed at batch `k` continues exactly as
//! the uninterrupted run would have. (The streams are ChaCha8 from `rand_chacha` 0.3 and the
//! shuffle is `rand` 0.8's, both value-stable within those versions; bumping either changes
//! which batches a seed gives, so do it between runs, not across a resume.)

use super::augment::{Augment, Normalizer, PAD};
use super::cifar::{Records, IMAGE_BYTES};
use super::{DataError, Result};
use crate::recipe::FlipMode;
use rand::seq::SliceRandom;
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;

/// Keeps the augmentation stream apart from the shuffle stream of the same seed.
const AUGMENT_DOMAIN: u64 = 0x6175_676d_656e_7421;
/// ChaCha words one sample's [`Augment`] consumes (two `u64`).
const WORDS_PER_SAMPLE: u128 = 4;
/// Keeps the alternating flips' first-epoch coin apart from the other streams.
const FLIP_DOMAIN: u64 = 0x666c_6970_7321_2121;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoaderConfig {
    pub batch_size: usize,
    /// Reshuffle the order every epoch (training); otherwise keep the given order.
    pub shuffle: bool,
    /// Random flip + crop (training); otherwise normalise only.
    pub augment: bool,
    /// How the augmentation flips: a coin per sample and epoch, or alternating per image.
    pub flip: FlipMode,
    /// Zero padding of the random crop (0 to `PAD`; the seed's is `PAD`).
    pub crop_padding: usize,
    pub seed: u64,
    /// Background threads; 0 prepares each batch on the caller's thread when it is asked for.
    pub workers: usize,
    /// Batches each worker may have ready ahead of the consumer.
    pub prefetch: usize,
}

impl LoaderConfig {
    /// The seed's training loader: batch 128, shuffled, augmented, 2 workers.
    pub fn train(seed: u64) -> Self {
        LoaderConfig {
            batch_size: 128,
            shuffle: true,
            augment: true,
            flip: FlipMode::Random,
            crop_padding: PAD,
            seed,
            workers: 2,
            prefetch: 2,
        }
    }

    /// Validation/test: batch 128, in order, normalise only.
    pub fn eval() -> Self {
        LoaderConfig { shuffle: false, augment: false, ..Self::train(0) }
    }
}

/// One batch: `images` is `[len, 3, 32, 32]` row-major (NCHW), `labels` has `len` entries.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    /// Position of the batch within its epoch.
    pub index: usize,
    pub len: usize,
    pub images: Vec<f32>,
    pub labels: Vec<u8>,
}

impl Batch {
    pub fn shape(&self) -> [usize; 4] {
        [self.len, 3, 32, 32]
    }
}

/// A subset of records (e.g. the 45k training split) served as batches, epoch after epoch.
#[derive(Clone)]
pub struct Loader {
    inner: Arc<Inner>,
}

struct Inner {
    records: Arc<Records>,
    indices: Vec<u32>,
    config: LoaderConfig,
    norm: Normalizer,
}

impl Loader {
    /// `indices` select the records to serve (all of them for the test set).
    pub fn new(records: Arc<Records>, indices: Vec<u32>, config: LoaderConfig) -> Result<Self> {
        if config.batch_size == 0 {
            return Err(DataError::Config("batch size 0; expected at least 1".into()));
        }
        if let Some(&bad) = indices.iter().find(|&&i| i as usize >= records.len()) {
            return Err(DataError::Config(format!(
                "record index {bad} out of range; expected below {}",
                records.len()
            )));
        }
        let norm = Normalizer::default();
        Ok(Loader { inner: Arc::new(Inner { records, indices, config, norm }) })
    }

    pub fn config(&self) -> &LoaderConfig {
        &self.inner.config
    }

    /// Samples per epoch.
    pub fn len(&self) -> usize {
        self.inner.indices.len()
    }

    pub fn is_empty(&self) -> bool {
        self.inner.indices.is_empty()
    }

    /// Batches per epoch, the last partial one included.
    pub fn batches(&self) -> usize {
        self.len().div_ceil(self.inner.config.batch_size)
    }

    /// The record indices of `epoch` in the order they are served.
    pub fn order(&self, epoch: u64) -> Vec<u32> {
        let mut order = self.inner.indices.clone();
        if self.inner.config.shuffle {
            let mut rng = ChaCha8Rng::seed_from_u64(self.inner.config.seed);
            rng.set_stream(epoch);
            order.shuffle(&mut rng);
        }
        order
    }

    /// All batches of `epoch`.
    pub fn epoch(&self, epoch: u64) -> Epoch {
        self.epoch_from(epoch, 0)
    }

    /// The batches of `epoch` from batch `start` on: what a run resumed mid-epoch sees, equal
    /// to the full epoch with its first `start` batches skipped (but without preparing them),
    /// provided the seed, batch size and indices are those of the interrupted run.
    pub fn epoch_from(&self, epoch: u64, start: usize) -> Epoch {
        let order = Arc::new(self.order(epoch));
        let end = self.batches();
        let start = start.min(end);
        let workers = self.inner.config.workers;
        let mut channels = Vec::with_capacity(workers);
        let mut handles = Vec::with_capacity(workers);
        for w in 0..workers {
            // One channel per worker, worker w taking batches start+w, start+w+workers, …: the
            // consumer reads them round-robin, so batches arrive in order without a reorder
            // buffer, and the bound caps memory at workers × prefetch batches.
            let (tx, rx) = sync_channel(self.inner.config.prefetch.max(1));
            let inner = Arc::clone(&self.inner);
            let order = Arc::clone(&order);
            let handle =
                std::thread::Builder::new().name(format!("cifar-loader-{w}")).spawn(move || {
                    for b in (start + w..end).step_by(workers) {
                        if tx.send(inner.batch(&order, epoch, b)).is_err() {
                            return; // the epoch was dropped early
                        }
                    }
                });
            match handle {
                Ok(handle) => {
                    channels.push(rx);
                    handles.push(Some(handle));
                }
                Err(_) => {
                    // The stride assumes every worker runs: without all of them, make the
                    // batches on the consumer's thread instead.
                    channels.clear();
                    handles.drain(..).flatten().for_each(|h| drop(h.join()));
                    break;
                }
            }
        }
        Epoch { loader: self.clone(), order, epoch, start, next: start, end, channels, handles }
    }
}

/// Which records a batch holds and how each is augmented ([`Augment::NONE`] when the loader
/// does not augment): the host loader turns a plan into floats, the trainer's device-resident
/// data does the same on the accelerator, so both give the same batches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchPlan {
    pub index: usize,
    pub ids: Vec<u32>,
    pub augments: Vec<Augment>,
}

impl Loader {
    /// The records this loader serves from.
    pub fn records(&self) -> &Arc<Records> {
        &self.inner.records
    }

    /// The byte-to-float transform of its batches.
    pub fn normalizer(&self) -> &Normalizer {
        &self.inner.norm
    }

    /// The plans of `epoch` from batch `start` on, without preparing any pixels.
    pub fn plans_from(&self, epoch: u64, start: usize) -> impl ExactSizeIterator<Item = BatchPlan> + '_ {
        let order = self.order(epoch);
        let end = self.batches();
        (start.min(end)..end).map(move |b| self.inner.plan(&order, epoch, b))
    }
}

impl Inner {
    fn plan(&self, order: &[u32], epoch: u64, index: usize) -> BatchPlan {
        let size = self.config.batch_size;
        let first = index * size;
        let ids = order[first..(first + size).min(order.len())].to_vec();
        let augments = if self.config.augment {
            let mut rng = ChaCha8Rng::seed_from_u64(self.config.seed ^ AUGMENT_DOMAIN);
            rng.set_stream(epoch);
            rng.set_word_pos(first as u128 * WORDS_PER_SAMPLE);
            let flip = |id: u32, coin: bool| match self.config.flip {
                FlipMode::Random => coin,
                FlipMode::Alternating => first_epoch_flip(self.config.seed, id) ^ (epoch % 2 == 1),
            };
            ids.iter()
                .map(|&id| {
                    let aug = Augment::from_words(rng.next_u64(), rng.next_u64(), self.config.crop_padding);
                    Augment { flip: flip(id, aug.flip), ..aug }
                })
                .collect()
        } else {
            vec![Augment::NONE; ids.len()]
        };
        BatchPlan { index, ids, augments }
    }

    fn batch(&self, order: &[u32], epoch: u64, index: usize) -> Batch {
        let plan = self.plan(order, epoch, index);
        let mut images = vec![0f32; plan.ids.len() * IMAGE_BYTES];
        let mut labels = Vec::with_capacity(plan.ids.len());
        for ((&id, &aug), dst) in plan.ids.iter().zip(&plan.augments).zip(images.chunks_exact_mut(IMAGE_BYTES)) {
            labels.push(self.records.label(id as usize));
            self.norm.augment(self.records.image(id as usize), dst, aug);
        }
        Batch { index, len: plan.ids.len(), images, labels }
    }
}

/// Whether image `id` is mirrored in the first epoch of alternating flips: a fair coin per
/// image from `seed` (splitmix64's finaliser), independent of where the image falls.
fn first_epoch_flip(seed: u64, id: u32) -> bool {
    let mut z = (seed ^ FLIP_DOMAIN).wrapping_add((id as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (z ^ (z >> 31)) >> 63 == 1
}

/// The batches of one epoch, in order. Dropping it early stops its workers.
pub struct Epoch {
    loader: Loader,
    order: Arc<Vec<u32>>,
    epoch: u64,
    start: usize,
    next: usize,
    end: usize,
    channels: Vec<Receiver<Batch>>,
    handles: Vec<Option<JoinHandle<()>>>,
}

impl Epoch {
    pub fn epoch(&self) -> u64 {
        self.epoch
    }
}

impl Iterator for Epoch {
    type Item = Batch;

    fn next(&mut self) -> Option<Batch> {
        if self.next >= self.end {
            return None;
        }
        let index = self.next;
        self.next += 1;
        if !self.channels.is_empty() {
            let w = (index - self.start) % self.channels.len();
            match self.channels[w].recv() {
                Ok(batch) => return Some(batch),
                // A worker only hangs up early by panicking: surface that, never a short epoch.
                Err(_) => {
                    if let Some(Err(panic)) = self.handles[w].take().map(JoinHandle::join) {
                        std::panic::resume_unwind(panic);
                    }
                }
            }
        }
        Some(self.loader.inner.batch(&self.order, self.epoch, index))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.end - self.next;
        (left, Some(left))
    }
}

impl ExactSizeIterator for Epoch {}

impl Drop for Epoch {
    fn drop(&mut self) {
        // Hanging up first wakes any worker blocked on a full channel, so the joins return.
        self.channels.clear();
        for handle in self.handles.drain(..).flatten() {
            let _ = handle.join();
        }
    }
}

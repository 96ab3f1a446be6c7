//! Dynamic batching: one queue and one OS thread per model.
//!
//! Requests put their images on the model's queue and wait for their own logits. The thread
//! runs whatever is queued as soon as it is free, up to `max_batch` images: an idle model
//! answers a lone request at the runtime's own latency, and requests that arrive while a batch
//! runs form the next one, so batches grow with load instead of with waiting (the policy of
//! text-embeddings-inference and vLLM). A non-zero `max_delay` adds an optional wait for a
//! partly filled batch, for users who trade latency for larger batches. A request's images
//! travel as one unit and are never split across batches unless they exceed `max_batch`. A
//! dedicated thread rather than an async task because the ONNX Runtime call blocks.
//!
//! Backpressure counts images admitted and not yet handed to ONNX Runtime (queued or being
//! gathered): a request whose images do not all fit under `max_queue` is refused whole, at
//! once, so the caller can answer 429 instead of letting latency grow without bound.

use crate::backend::{Backend, BackendError};
use crate::device::Device;
use crate::metrics::ModelMetrics;
use crate::stats::{BatchTimes, ModelStats};
use crate::IMAGE_LEN;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, TryRecvError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// The engine shared by the batcher thread and anyone who needs it directly (the latency
/// benchmark): the lock is held for one ONNX Runtime call at a time.
pub type SharedBackend = Arc<Mutex<Box<dyn Backend>>>;

/// What users choose about batching (`serve --max-batch --max-queue-delay-us --max-queue`).
#[derive(Clone, Debug)]
pub struct BatchPolicy {
    pub max_batch: usize,
    /// Extra wait for a partly filled batch, counted from its oldest request's arrival; zero
    /// (the default) runs what is queued at once.
    pub max_delay: Duration,
    /// Images admitted and not yet running, per model.
    pub max_queue: usize,
}

/// How a batch's input is shaped for the runtime: decided from the device the model really
/// runs on, not by users.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Padding {
    /// Exactly the images that run: on the CPU padding only wastes work.
    Exact,
    /// Zeros up to the next bucket size (see [`buckets`]): worth it where the runtime tunes
    /// kernels per input shape (cuDNN on CUDA), so that it sees a handful of shapes only.
    ToBuckets,
}

impl Padding {
    pub fn for_device(device: Device) -> Self {
        if device == Device::Cpu {
            Padding::Exact
        } else {
            Padding::ToBuckets
        }
    }
}

/// Batch sizes a model is warmed up with (and padded to on CUDA): powers of two below
/// `max_batch`, then `max_batch`.
pub fn buckets(max_batch: usize) -> Vec<usize> {
    let max_batch = max_batch.max(1);
    let mut sizes: Vec<usize> = std::iter::successors(Some(1usize), |s| s.checked_mul(2)).take_while(|&s| s < max_batch).collect();
    sizes.push(max_batch);
    sizes
}

fn bucket_for(n: usize, max_batch: usize) -> usize {
    buckets(max_batch).into_iter().find(|&b| b >= n).unwrap_or(n)
}

/// Runs every bucket size once so that first requests do not pay for arena growth or kernel
/// selection.
pub fn warm_up(backend: &mut dyn Backend, max_batch: usize) -> Result<(), BackendError> {
    for n in buckets(max_batch) {
        backend.run(&vec![0f32; n * IMAGE_LEN], n)?;
    }
    Ok(())
}

#[derive(Clone, Debug, thiserror::Error)]
pub enum BatchError {
    #[error("inference failed: {0}")]
    Inference(String),
    #[error("the model's queue stopped before this image ran (the server is shutting down)")]
    Stopped,
}

#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("the model's queue is full ({depth} of {capacity} images waiting); retry shortly")]
    QueueFull { depth: usize, capacity: usize },
    #[error("{n} images in one request, more than the queue holds ({capacity}, --max-queue); send fewer per request")]
    TooMany { n: usize, capacity: usize },
    #[error("no images to classify")]
    NoImages,
    #[error("the input holds {0} floats, not a whole number of 3×32×32 = {IMAGE_LEN} images")]
    BadImage(usize),
    #[error("the server is shutting down and accepts no new work")]
    Closed,
}

/// Logits of one job's images, concatenated (`images · classes` floats).
type Reply = Result<Vec<f32>, BatchError>;

/// One request's images (or one `max_batch` slice of a larger request): they run in one batch.
struct Job {
    /// `images` inputs, contiguous NCHW.
    input: Vec<f32>,
    images: usize,
    enqueued: Instant,
    reply: oneshot::Sender<Reply>,
}

enum Msg {
    Job(Job),
    Stop,
}

pub struct Batcher {
    tx: mpsc::Sender<Msg>,
    depth: Arc<AtomicUsize>,
    capacity: usize,
    max_batch: usize,
    /// Logits per image, to cut a job's answer into rows.
    classes: usize,
    closed: AtomicBool,
    metrics: ModelMetrics,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// Logits of a submitted request, one vector per image, in order.
pub struct Pending {
    jobs: Vec<oneshot::Receiver<Reply>>,
    classes: usize,
}

impl Pending {
    pub async fn wait(self) -> Result<Vec<Vec<f32>>, BatchError> {
        let mut out = Vec::new();
        for rx in self.jobs {
            let logits = rx.await.map_err(|_| BatchError::Stopped)??;
            out.extend(logits.chunks_exact(self.classes.max(1)).map(<[f32]>::to_vec));
        }
        Ok(out)
    }
}

impl Batcher {
    /// Starts the model's batching thread.
    pub fn start(name: &str, backend: SharedBackend, policy: BatchPolicy, padding: Padding, metrics: ModelMetrics) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel();
        let depth = Arc::new(AtomicUsize::new(0));
        let (capacity, max_batch) = (policy.max_queue, policy.max_batch.max(1));
        let classes = backend.lock().unwrap_or_else(PoisonError::into_inner).classes();
        let worker = Worker { rx, backend, policy, padding, depth: depth.clone(), metrics: metrics.clone(), input: Vec::new() };
        let thread = std::thread::Builder::new().name(format!("batch-{name}")).spawn(move || worker.run())?;
        Ok(Self { tx, depth, capacity, max_batch, classes, closed: AtomicBool::new(false), metrics, thread: Mutex::new(Some(thread)) })
    }

    /// Queues the images of one request (`n`·3·32·32 floats, normalised), all or none.
    pub fn submit(&self, input: Vec<f32>) -> Result<Pending, SubmitError> {
        if self.closed.load(Ordering::Acquire) {
            self.metrics.stats.refused();
            return Err(SubmitError::Closed);
        }
        if input.is_empty() {
            return Err(SubmitError::NoImages);
        }
        if input.len() % IMAGE_LEN != 0 {
            return Err(SubmitError::BadImage(input.len()));
        }
        let n = input.len() / IMAGE_LEN;
        if n > self.capacity {
            self.metrics.stats.refused();
            return Err(SubmitError::TooMany { n, capacity: self.capacity });
        }
        self.depth
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |d| (d + n <= self.capacity).then_some(d + n))
            .map_err(|depth| {
                self.metrics.stats.refused();
                SubmitError::QueueFull { depth, capacity: self.capacity }
            })?;
        self.metrics.queue_depth.add(n as i64);
        let enqueued = Instant::now();
        let jobs = split(input, self.max_batch)
            .into_iter()
            .map(|input| {
                let (reply, rx) = oneshot::channel();
                let images = input.len() / IMAGE_LEN;
                // A send fails only once the thread is gone; the dropped reply then reads as Stopped.
                let _ = self.tx.send(Msg::Job(Job { input, images, enqueued, reply }));
                rx
            })
            .collect();
        Ok(Pending { jobs, classes: self.classes })
    }

    /// Whether `n` more images would be admitted now; callers check before costly work (image
    /// decoding), and a refusal counts as a failed request in the statistics.
    pub fn check_room(&self, n: usize) -> Result<(), SubmitError> {
        let depth = self.depth();
        let refusal = if n > self.capacity {
            SubmitError::TooMany { n, capacity: self.capacity }
        } else if depth + n > self.capacity {
            SubmitError::QueueFull { depth, capacity: self.capacity }
        } else {
            return Ok(());
        };
        self.metrics.stats.refused();
        Err(refusal)
    }

    /// Most images in one ONNX Runtime call (`--max-batch`).
    pub fn max_batch(&self) -> usize {
        self.max_batch
    }

    /// Images admitted and not yet running.
    pub fn depth(&self) -> usize {
        self.depth.load(Ordering::Acquire)
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The model's inference statistics (Triton's statistics extension).
    pub fn stats(&self) -> &ModelStats {
        &self.metrics.stats
    }

    /// Refuses new work; what is already queued still runs, then the thread ends.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        let _ = self.tx.send(Msg::Stop);
    }

    /// Waits for the thread to end (after [`Self::close`]).
    pub fn join(&self) {
        let handle = self.thread.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(handle) = handle {
            let _ = handle.join();
        }
    }
}

impl Drop for Batcher {
    fn drop(&mut self) {
        self.close();
    }
}

/// A request's input in slices of at most `max_batch` images; the common case (it fits) moves
/// the vector without copying.
fn split(mut input: Vec<f32>, max_batch: usize) -> Vec<Vec<f32>> {
    let slice = max_batch * IMAGE_LEN;
    let mut parts = Vec::with_capacity(input.len().div_ceil(slice));
    while input.len() > slice {
        let rest = input.split_off(slice);
        parts.push(std::mem::replace(&mut input, rest));
    }
    parts.push(input);
    parts
}

/// What gathering a batch found beyond it.
enum Beyond {
    /// Nothing: the queue is empty (or the delay is spent).
    Nothing,
    /// A job that did not fit: it opens the next batch.
    Held(Job),
    /// The batcher was closed: everything admitted before has been taken.
    Stop,
}

struct Worker {
    rx: mpsc::Receiver<Msg>,
    backend: SharedBackend,
    policy: BatchPolicy,
    padding: Padding,
    depth: Arc<AtomicUsize>,
    metrics: ModelMetrics,
    /// The batch's input, reused: a fresh multi-megabyte buffer per batch would cost page
    /// faults on every call.
    input: Vec<f32>,
}

impl Worker {
    fn run(mut self) {
        let mut held = None;
        loop {
            let first = match held.take() {
                Some(job) => job,
                None => match self.rx.recv() {
                    Ok(Msg::Job(job)) => job,
                    Ok(Msg::Stop) | Err(_) => return,
                },
            };
            let (batch, beyond) = self.gather(first);
            self.run_batch(batch);
            match beyond {
                Beyond::Nothing => {}
                Beyond::Held(job) => held = Some(job),
                Beyond::Stop => return,
            }
        }
    }

    /// `first`, then every job already queued that fits, in arrival order; with a non-zero
    /// `max_delay`, also jobs that arrive until the batch is full or `first` has waited that
    /// long.
    fn gather(&self, first: Job) -> (Vec<Job>, Beyond) {
        let deadline = first.enqueued + self.policy.max_delay;
        let mut images = first.images;
        let mut batch = vec![first];
        while images < self.policy.max_batch {
            let msg = match self.rx.try_recv() {
                Ok(msg) => msg,
                Err(TryRecvError::Disconnected) => break,
                Err(TryRecvError::Empty) => match deadline.checked_duration_since(Instant::now()) {
                    Some(wait) if !wait.is_zero() => match self.rx.recv_timeout(wait) {
                        Ok(msg) => msg,
                        Err(_) => break,
                    },
                    _ => break,
                },
            };
            match msg {
                Msg::Stop => return (batch, Beyond::Stop),
                Msg::Job(job) if images + job.images > self.policy.max_batch => return (batch, Beyond::Held(job)),
                Msg::Job(job) => {
                    images += job.images;
                    batch.push(job);
                }
            }
        }
        (batch, Beyond::Nothing)
    }

    fn run_batch(&mut self, mut batch: Vec<Job>) {
        let admitted: usize = batch.iter().map(|j| j.images).sum();
        self.depth.fetch_sub(admitted, Ordering::AcqRel);
        self.metrics.queue_depth.sub(admitted as i64);
        let start = Instant::now();
        for job in &batch {
            let waited = start.duration_since(job.enqueued);
            (0..job.images).for_each(|_| self.metrics.queue_seconds.observe(waited.as_secs_f64()));
            self.metrics.stats.queued(waited);
        }
        // Clients that went away (timeout, closed connection) need no answer.
        batch.retain(|job| !job.reply.is_closed());
        if batch.is_empty() {
            return;
        }
        let n: usize = batch.iter().map(|j| j.images).sum();
        let padded = match self.padding {
            Padding::Exact => n,
            Padding::ToBuckets => bucket_for(n, self.policy.max_batch),
        };
        let (result, mut times) = self.infer(&batch, n, padded);
        self.metrics.inference_seconds.observe(start.elapsed().as_secs_f64());
        self.metrics.batch_size.observe(n as f64);
        let answering = Instant::now();
        let replies = match result {
            Ok(logits) => rows_of(&batch, &logits, padded),
            Err(err) => {
                tracing::error!("{err}");
                batch.iter().map(|_| Err(err.clone())).collect()
            }
        };
        times.output = answering.elapsed();
        // Statistics before answers: a client that reads them right after its answer must
        // find its own request counted.
        self.metrics.stats.executed(n, batch.len(), times);
        for (job, reply) in batch.into_iter().zip(replies) {
            self.metrics.stats.answered(reply.is_ok(), job.enqueued.elapsed());
            // A client that went away meanwhile needs no answer.
            let _ = job.reply.send(reply);
        }
    }

    /// One runtime call on the batch's images (zero-padded to `padded`); a lone unpadded job
    /// runs from its own buffer, without a copy.
    fn infer(&mut self, batch: &[Job], n: usize, padded: usize) -> (Result<Vec<f32>, BatchError>, BatchTimes) {
        let gathering = Instant::now();
        let input: &[f32] = match batch {
            [job] if padded == n => &job.input,
            _ => {
                self.input.clear();
                batch.iter().for_each(|job| self.input.extend_from_slice(&job.input));
                self.input.resize(padded * IMAGE_LEN, 0.0);
                &self.input
            }
        };
        let running = Instant::now();
        let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
            let mut backend = self.backend.lock().unwrap_or_else(PoisonError::into_inner);
            backend.run(input, padded)
        }));
        let times = BatchTimes { input: running - gathering, infer: running.elapsed(), output: Duration::ZERO };
        let result = match result {
            Ok(Ok(logits)) => Ok(logits),
            Ok(Err(e)) => Err(BatchError::Inference(e.to_string())),
            Err(_) => Err(BatchError::Inference("the runtime panicked".into())),
        };
        (result, times)
    }
}

/// Each job's own rows of the batch's logits.
fn rows_of(batch: &[Job], logits: &[f32], padded: usize) -> Vec<Reply> {
    let classes = logits.len() / padded.max(1);
    let mut rows = logits.chunks_exact(classes.max(1));
    batch.iter().map(|job| Ok(rows.by_ref().take(job.images).flatten().copied().collect())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;

    /// Logits of image j = [sum of its inputs, that + 1]; records batch sizes. With a gate, each
    /// call first waits until the gate is opened (its sender dropped).
    struct Fake {
        sizes: Arc<Mutex<Vec<usize>>>,
        gate: Option<mpsc::Receiver<()>>,
    }

    impl Backend for Fake {
        fn run(&mut self, input: &[f32], n: usize) -> Result<Vec<f32>, BackendError> {
            if let Some(gate) = &self.gate {
                let _ = gate.recv();
            }
            self.sizes.lock().unwrap().push(n);
            Ok(input.chunks(IMAGE_LEN).flat_map(|img| {
                let s: f32 = img.iter().sum();
                [s, s + 1.0]
            }).collect())
        }
        fn classes(&self) -> usize {
            2
        }
        fn device(&self) -> Device {
            Device::Cpu
        }
        fn threads(&self) -> usize {
            1
        }
    }

    fn policy(max_batch: usize, max_delay: Duration) -> BatchPolicy {
        BatchPolicy { max_batch, max_delay, max_queue: 64 }
    }

    fn start_gated(policy: BatchPolicy, padding: Padding, gate: Option<mpsc::Receiver<()>>) -> (Batcher, Arc<Mutex<Vec<usize>>>) {
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let backend: SharedBackend = Arc::new(Mutex::new(Box::new(Fake { sizes: sizes.clone(), gate })));
        let metrics = Metrics::new().unwrap().for_model("fake");
        (Batcher::start("fake", backend, policy, padding, metrics).unwrap(), sizes)
    }

    fn start(policy: BatchPolicy) -> (Batcher, Arc<Mutex<Vec<usize>>>) {
        start_gated(policy, Padding::Exact, None)
    }

    /// `values.len()` images, image i's first pixel = values[i], the rest 0.
    fn images(values: &[f32]) -> Vec<f32> {
        let mut x = vec![0f32; values.len() * IMAGE_LEN];
        values.iter().enumerate().for_each(|(i, &v)| x[i * IMAGE_LEN] = v);
        x
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
    }

    /// Until the thread has taken everything admitted (its batch is running).
    fn wait_until_running(b: &Batcher) {
        while b.depth() > 0 {
            std::thread::yield_now();
        }
    }

    #[test]
    fn buckets_are_powers_of_two_then_the_maximum() {
        assert_eq!(buckets(64), [1, 2, 4, 8, 16, 32, 64]);
        assert_eq!(buckets(48), [1, 2, 4, 8, 16, 32, 48]);
        assert_eq!(buckets(1), [1]);
        assert_eq!(bucket_for(33, 48), 48);
        assert_eq!(bucket_for(3, 48), 4);
        assert_eq!(Padding::for_device(Device::Cpu), Padding::Exact);
        assert_eq!(Padding::for_device(Device::Cuda(0)), Padding::ToBuckets);
    }

    #[test]
    fn a_lone_request_runs_without_waiting_for_company() {
        // With the default delay of zero an idle thread runs a request as soon as it is queued:
        // no batch waits for a second request that never comes.
        let (b, sizes) = start(policy(64, Duration::ZERO));
        assert_eq!(block_on(b.submit(images(&[3.0])).unwrap().wait()).unwrap(), vec![vec![3.0, 4.0]]);
        assert_eq!(block_on(b.submit(images(&[5.0])).unwrap().wait()).unwrap(), vec![vec![5.0, 6.0]]);
        assert_eq!(*sizes.lock().unwrap(), [1, 1], "each lone request ran at once, alone");
    }

    #[test]
    fn requests_sent_while_a_batch_runs_share_the_next_and_get_their_own_answers() {
        let (open, gate) = mpsc::channel();
        let (b, sizes) = start_gated(policy(64, Duration::ZERO), Padding::Exact, Some(gate));
        let first = b.submit(images(&[9.0])).unwrap();
        wait_until_running(&b);
        let later: Vec<Pending> = [&[0.0][..], &[1.0, 2.0], &[3.0]].iter().map(|v| b.submit(images(v)).unwrap()).collect();
        drop(open);
        assert_eq!(block_on(first.wait()).unwrap(), vec![vec![9.0, 10.0]]);
        let answers: Vec<Vec<Vec<f32>>> = later.into_iter().map(|p| block_on(p.wait()).unwrap()).collect();
        assert_eq!(answers, [vec![vec![0.0, 1.0]], vec![vec![1.0, 2.0], vec![2.0, 3.0]], vec![vec![3.0, 4.0]]]);
        assert_eq!(*sizes.lock().unwrap(), [1, 4], "the three requests queued behind the first ran together");
    }

    #[test]
    fn a_non_zero_delay_still_gathers() {
        let (b, sizes) = start(policy(8, Duration::from_secs(2)));
        let pending: Vec<Pending> = (0..5).map(|i| b.submit(images(&[i as f32])).unwrap()).collect();
        for (i, p) in pending.into_iter().enumerate() {
            assert_eq!(block_on(p.wait()).unwrap(), vec![vec![i as f32, i as f32 + 1.0]]);
        }
        assert_eq!(*sizes.lock().unwrap(), [5], "five requests within the delay run as one batch");
    }

    #[test]
    fn a_request_is_never_split_unless_it_exceeds_max_batch() {
        let (open, gate) = mpsc::channel();
        let (b, sizes) = start_gated(policy(4, Duration::ZERO), Padding::Exact, Some(gate));
        let first = b.submit(images(&[0.0])).unwrap();
        wait_until_running(&b);
        // 3 + 2 images do not fit a batch of 4: the pair waits for the next batch, whole.
        let three = b.submit(images(&[1.0, 2.0, 3.0])).unwrap();
        let two = b.submit(images(&[4.0, 5.0])).unwrap();
        let one = b.submit(images(&[6.0])).unwrap();
        drop(open);
        for p in [first, three, two, one] {
            block_on(p.wait()).unwrap();
        }
        assert_eq!(*sizes.lock().unwrap(), [1, 3, 3]);
    }

    #[test]
    fn padding_fills_the_bucket_and_max_batch_splits() {
        let (b, sizes) = start_gated(policy(4, Duration::ZERO), Padding::ToBuckets, None);
        let values: Vec<f32> = (0..7).map(|i| i as f32).collect();
        let out = block_on(b.submit(images(&values)).unwrap().wait()).unwrap();
        assert_eq!(out.iter().map(|r| r[0]).collect::<Vec<_>>(), values);
        assert_eq!(*sizes.lock().unwrap(), [4, 4], "7 images at max-batch 4: 4, then 3 padded to 4");
    }

    #[test]
    fn a_full_queue_refuses_whole_requests() {
        let (open, gate) = mpsc::channel();
        let (b, _) = start_gated(BatchPolicy { max_batch: 64, max_delay: Duration::ZERO, max_queue: 3 }, Padding::Exact, Some(gate));
        let running = b.submit(images(&[0.0])).unwrap();
        wait_until_running(&b);
        let first = b.submit(images(&[1.0, 2.0])).unwrap();
        assert!(matches!(b.submit(images(&[3.0, 4.0])), Err(SubmitError::QueueFull { depth: 2, capacity: 3 })));
        assert!(matches!(b.submit(images(&[0.0; 4])), Err(SubmitError::TooMany { .. })));
        assert!(matches!(b.submit(vec![1.0; 5]), Err(SubmitError::BadImage(5))));
        assert!(matches!(b.submit(Vec::new()), Err(SubmitError::NoImages)));
        let third = b.submit(images(&[5.0])).unwrap();
        drop(open);
        block_on(running.wait()).unwrap();
        assert_eq!(block_on(first.wait()).unwrap().len(), 2);
        assert_eq!(block_on(third.wait()).unwrap(), vec![vec![5.0, 6.0]]);
        assert_eq!(b.depth(), 0);
    }

    #[test]
    fn close_runs_what_is_queued_then_refuses() {
        let (open, gate) = mpsc::channel();
        let (b, sizes) = start_gated(policy(2, Duration::ZERO), Padding::Exact, Some(gate));
        let p = b.submit(images(&[0.0, 1.0, 2.0, 3.0, 4.0])).unwrap();
        b.close();
        assert!(matches!(b.submit(images(&[0.0])), Err(SubmitError::Closed)));
        drop(open);
        assert_eq!(block_on(p.wait()).unwrap().len(), 5);
        b.join();
        assert_eq!(*sizes.lock().unwrap(), [2, 2, 1]);
    }
}

//! Dynamic batching: one queue and one OS thread per model.
//!
//! Requests put their images on the model's queue and wait for their own logits. The thread
//! takes the oldest image and gathers more until `max_batch` images or until that oldest image
//! has waited `max_delay`, runs them as one ONNX Runtime call and answers each image on its own
//! channel. A dedicated thread rather than an async task because the ONNX Runtime call blocks.
//!
//! Backpressure counts images admitted and not yet handed to ONNX Runtime (queued or being
//! gathered): a request whose images do not all fit under `max_queue` is refused whole, at
//! once, so the caller can answer 429 instead of letting latency grow without bound.

use crate::backend::{Backend, BackendError};
use crate::metrics::ModelMetrics;
use crate::IMAGE_LEN;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// The engine shared by the batcher thread and anyone who needs it directly (the latency
/// benchmark): the lock is held for one ONNX Runtime call at a time.
pub type SharedBackend = Arc<Mutex<Box<dyn Backend>>>;

#[derive(Clone, Debug)]
pub struct BatchPolicy {
    pub max_batch: usize,
    pub max_delay: Duration,
    /// Images admitted and not yet running, per model.
    pub max_queue: usize,
    /// Pad each batch with zeros up to the next bucket size (see [`buckets`]). Worth it where
    /// the runtime tunes kernels per input shape (cuDNN on CUDA); on the CPU it only wastes work.
    pub pad_to_buckets: bool,
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
    #[error("an input image holds {0} floats, expected 3×32×32 = {IMAGE_LEN}")]
    BadImage(usize),
    #[error("the server is shutting down and accepts no new work")]
    Closed,
}

struct Job {
    input: Vec<f32>,
    enqueued: Instant,
    reply: oneshot::Sender<Result<Vec<f32>, BatchError>>,
}

enum Msg {
    Job(Job),
    Stop,
}

pub struct Batcher {
    tx: mpsc::Sender<Msg>,
    depth: Arc<AtomicUsize>,
    capacity: usize,
    closed: AtomicBool,
    metrics: ModelMetrics,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// Logits of a submitted request, one vector per image, in order.
pub struct Pending(Vec<oneshot::Receiver<Result<Vec<f32>, BatchError>>>);

impl Pending {
    pub async fn wait(self) -> Result<Vec<Vec<f32>>, BatchError> {
        let mut out = Vec::with_capacity(self.0.len());
        for rx in self.0 {
            out.push(rx.await.map_err(|_| BatchError::Stopped)??);
        }
        Ok(out)
    }
}

impl Batcher {
    /// Starts the model's batching thread.
    pub fn start(name: &str, backend: SharedBackend, policy: BatchPolicy, metrics: ModelMetrics) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel();
        let depth = Arc::new(AtomicUsize::new(0));
        let worker = Worker { rx, backend, policy: policy.clone(), depth: depth.clone(), metrics: metrics.clone() };
        let thread = std::thread::Builder::new().name(format!("batch-{name}")).spawn(move || worker.run())?;
        Ok(Self { tx, depth, capacity: policy.max_queue, closed: AtomicBool::new(false), metrics, thread: Mutex::new(Some(thread)) })
    }

    /// Queues the images of one request, all or none.
    pub fn submit(&self, images: Vec<Vec<f32>>) -> Result<Pending, SubmitError> {
        let n = images.len();
        if self.closed.load(Ordering::Acquire) {
            return Err(SubmitError::Closed);
        }
        if n == 0 {
            return Err(SubmitError::NoImages);
        }
        if let Some(bad) = images.iter().find(|i| i.len() != IMAGE_LEN) {
            return Err(SubmitError::BadImage(bad.len()));
        }
        if n > self.capacity {
            return Err(SubmitError::TooMany { n, capacity: self.capacity });
        }
        self.depth
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |d| (d + n <= self.capacity).then_some(d + n))
            .map_err(|depth| SubmitError::QueueFull { depth, capacity: self.capacity })?;
        self.metrics.queue_depth.add(n as i64);
        let enqueued = Instant::now();
        let mut replies = Vec::with_capacity(n);
        for input in images {
            let (reply, rx) = oneshot::channel();
            // A send fails only once the thread is gone; the dropped reply then reads as Stopped.
            let _ = self.tx.send(Msg::Job(Job { input, enqueued, reply }));
            replies.push(rx);
        }
        Ok(Pending(replies))
    }

    /// Images admitted and not yet running.
    pub fn depth(&self) -> usize {
        self.depth.load(Ordering::Acquire)
    }

    pub fn capacity(&self) -> usize {
        self.capacity
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

struct Worker {
    rx: mpsc::Receiver<Msg>,
    backend: SharedBackend,
    policy: BatchPolicy,
    depth: Arc<AtomicUsize>,
    metrics: ModelMetrics,
}

impl Worker {
    fn run(self) {
        loop {
            let first = match self.rx.recv() {
                Ok(Msg::Job(job)) => job,
                Ok(Msg::Stop) | Err(_) => return,
            };
            let (batch, stop) = self.gather(first);
            self.run_batch(batch);
            if stop {
                return;
            }
        }
    }

    /// More images until the batch is full or the oldest one's delay is spent; images already
    /// waiting are always taken, even past the deadline, since they cost no extra wait.
    fn gather(&self, first: Job) -> (Vec<Job>, bool) {
        let deadline = first.enqueued + self.policy.max_delay;
        let mut batch = vec![first];
        while batch.len() < self.policy.max_batch {
            let now = Instant::now();
            let msg = if now >= deadline {
                match self.rx.try_recv() {
                    Ok(msg) => msg,
                    Err(_) => break,
                }
            } else {
                match self.rx.recv_timeout(deadline - now) {
                    Ok(msg) => msg,
                    Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
                }
            };
            match msg {
                Msg::Job(job) => batch.push(job),
                Msg::Stop => return (batch, true),
            }
        }
        (batch, false)
    }

    fn run_batch(&self, mut batch: Vec<Job>) {
        self.depth.fetch_sub(batch.len(), Ordering::AcqRel);
        self.metrics.queue_depth.sub(batch.len() as i64);
        let start = Instant::now();
        for job in &batch {
            self.metrics.queue_seconds.observe(start.duration_since(job.enqueued).as_secs_f64());
        }
        // Clients that went away (timeout, closed connection) need no answer.
        batch.retain(|job| !job.reply.is_closed());
        if batch.is_empty() {
            return;
        }
        let n = batch.len();
        let padded = if self.policy.pad_to_buckets { bucket_for(n, self.policy.max_batch) } else { n };
        let mut input = Vec::with_capacity(padded * IMAGE_LEN);
        for job in &batch {
            input.extend_from_slice(&job.input);
        }
        input.resize(padded * IMAGE_LEN, 0.0);
        let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
            let mut backend = self.backend.lock().unwrap_or_else(PoisonError::into_inner);
            backend.run(&input, padded)
        }));
        self.metrics.inference_seconds.observe(start.elapsed().as_secs_f64());
        self.metrics.batch_size.observe(n as f64);
        let logits = match result {
            Ok(Ok(logits)) => logits,
            Ok(Err(e)) => return answer_all(batch, BatchError::Inference(e.to_string())),
            Err(_) => return answer_all(batch, BatchError::Inference("the runtime panicked".into())),
        };
        let classes = logits.len() / padded;
        for (job, row) in batch.into_iter().zip(logits.chunks_exact(classes.max(1))) {
            let _ = job.reply.send(Ok(row.to_vec()));
        }
    }
}

fn answer_all(batch: Vec<Job>, err: BatchError) {
    tracing::error!("{err}");
    for job in batch {
        let _ = job.reply.send(Err(err.clone()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::Device;
    use crate::metrics::Metrics;

    /// Logit i of image j = sum of its inputs + i; records batch sizes.
    struct Fake {
        sizes: Arc<Mutex<Vec<usize>>>,
        delay: Duration,
    }

    impl Backend for Fake {
        fn run(&mut self, input: &[f32], n: usize) -> Result<Vec<f32>, BackendError> {
            std::thread::sleep(self.delay);
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

    fn start(policy: BatchPolicy, delay: Duration) -> (Batcher, Arc<Mutex<Vec<usize>>>) {
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let backend: SharedBackend = Arc::new(Mutex::new(Box::new(Fake { sizes: sizes.clone(), delay })));
        let metrics = Metrics::new().unwrap().for_model("fake");
        (Batcher::start("fake", backend, policy, metrics).unwrap(), sizes)
    }

    fn image(v: f32) -> Vec<f32> {
        let mut x = vec![0f32; IMAGE_LEN];
        x[0] = v;
        x
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
    }

    #[test]
    fn buckets_are_powers_of_two_then_the_maximum() {
        assert_eq!(buckets(64), [1, 2, 4, 8, 16, 32, 64]);
        assert_eq!(buckets(48), [1, 2, 4, 8, 16, 32, 48]);
        assert_eq!(buckets(1), [1]);
        assert_eq!(bucket_for(33, 48), 48);
        assert_eq!(bucket_for(3, 48), 4);
    }

    #[test]
    fn concurrent_images_share_a_batch_and_get_their_own_answers() {
        let policy = BatchPolicy { max_batch: 8, max_delay: Duration::from_millis(200), max_queue: 64, pad_to_buckets: false };
        let (b, sizes) = start(policy, Duration::ZERO);
        let pending: Vec<Pending> = (0..5).map(|i| b.submit(vec![image(i as f32)]).unwrap()).collect();
        for (i, p) in pending.into_iter().enumerate() {
            let out = block_on(p.wait()).unwrap();
            assert_eq!(out, vec![vec![i as f32, i as f32 + 1.0]]);
        }
        assert_eq!(*sizes.lock().unwrap(), [5], "five images submitted together run as one batch");
    }

    #[test]
    fn a_full_queue_refuses_whole_requests() {
        let policy = BatchPolicy { max_batch: 64, max_delay: Duration::from_millis(300), max_queue: 3, pad_to_buckets: false };
        let (b, _) = start(policy, Duration::ZERO);
        let first = b.submit(vec![image(1.0), image(2.0)]).unwrap();
        assert!(matches!(b.submit(vec![image(3.0), image(4.0)]), Err(SubmitError::QueueFull { depth: 2, capacity: 3 })));
        assert!(matches!(b.submit(vec![image(0.0); 4]), Err(SubmitError::TooMany { .. })));
        assert!(matches!(b.submit(vec![vec![1.0; 5]]), Err(SubmitError::BadImage(5))));
        let third = b.submit(vec![image(5.0)]).unwrap();
        assert_eq!(block_on(first.wait()).unwrap().len(), 2);
        assert_eq!(block_on(third.wait()).unwrap(), vec![vec![5.0, 6.0]]);
        assert_eq!(b.depth(), 0);
    }

    #[test]
    fn padding_fills_the_bucket_and_max_batch_splits() {
        let policy = BatchPolicy { max_batch: 4, max_delay: Duration::from_millis(100), max_queue: 64, pad_to_buckets: true };
        let (b, sizes) = start(policy, Duration::ZERO);
        let p = b.submit((0..7).map(|i| image(i as f32)).collect()).unwrap();
        let out = block_on(p.wait()).unwrap();
        assert_eq!(out.iter().map(|r| r[0]).collect::<Vec<_>>(), [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        assert_eq!(*sizes.lock().unwrap(), [4, 4], "7 images at max-batch 4: 4, then 3 padded to 4");
    }

    #[test]
    fn close_runs_what_is_queued_then_refuses() {
        let policy = BatchPolicy { max_batch: 2, max_delay: Duration::ZERO, max_queue: 64, pad_to_buckets: false };
        let (b, _) = start(policy, Duration::from_millis(20));
        let p = b.submit((0..5).map(|i| image(i as f32)).collect()).unwrap();
        b.close();
        assert!(matches!(b.submit(vec![image(0.0)]), Err(SubmitError::Closed)));
        assert_eq!(block_on(p.wait()).unwrap().len(), 5);
        b.join();
    }
}

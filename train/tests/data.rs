//! The data pipeline end to end on synthetic files: reading, every documented bad-file error,
//! archive verify/extract, the download's failure and success paths (on loopback), the loader.

use cifar_models::seed::CLASSES;
use cifar_train::data::*;
use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;

const SMALL: SyntheticSpec = SyntheticSpec { records_per_file: 200, seed: 7, noise: 30 };

fn small_set(dir: &Path) -> Layout {
    write_synthetic(dir, &SMALL).unwrap();
    SMALL.layout()
}

fn load(dir: &Path) -> Result<Cifar10, DataError> {
    Cifar10::load_with(dir, SMALL.layout())
}

fn quiet(url: &str, md5: &str) -> DownloadOptions {
    DownloadOptions { url: url.into(), md5: md5.into(), progress: false, layout: SMALL.layout() }
}

/// Names in `dir`, sorted, to check that failures leave nothing behind.
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn synthetic_files_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = small_set(tmp.path());
    let data = Cifar10::load_with(tmp.path(), layout).unwrap();
    assert_eq!(data.train.len(), 1_000);
    assert_eq!(data.test.len(), 200);
    assert_eq!(data.classes, CLASSES);
    // The reader's records re-serialise to exactly the bytes on disk.
    let raw = std::fs::read(tmp.path().join(TRAIN_FILES[1])).unwrap();
    for (i, record) in raw.chunks_exact(RECORD_BYTES).enumerate() {
        assert_eq!(record[0], data.train.label(200 + i));
        assert_eq!(&record[1..], data.train.image(200 + i));
    }
    // Balanced classes, as the generator promises.
    let mut counts = [0; 10];
    data.test.labels().iter().for_each(|&l| counts[l as usize] += 1);
    assert_eq!(counts, [20; 10]);
    // Same spec, same bytes.
    let again = tempfile::tempdir().unwrap();
    small_set(again.path());
    assert_eq!(raw, std::fs::read(again.path().join(TRAIN_FILES[1])).unwrap());
}

#[test]
fn synthetic_classes_differ_in_colour() {
    let records = synthetic_records(500, 1, 40);
    let mut means = [[0f64; 3]; 10];
    for class in 0..10u8 {
        let ids: Vec<u32> = (0..500u32).filter(|&i| records.label(i as usize) == class).collect();
        means[class as usize] = channel_mean(&records, &ids);
    }
    for a in 0..10 {
        for b in a + 1..10 {
            let d: f64 = (0..3).map(|c| (means[a][c] - means[b][c]).abs()).sum();
            assert!(d > 0.05, "classes {a} and {b} look alike: {:?} {:?}", means[a], means[b]);
        }
    }
}

#[test]
fn reads_the_archive_and_the_extracted_subfolder() {
    let tmp = tempfile::tempdir().unwrap();
    let from_dir = {
        let staging = tmp.path().join("staging");
        small_set(&staging);
        load(&staging).unwrap()
    };
    let archive = write_synthetic_archive(tmp.path(), &SMALL).unwrap();
    assert_eq!(locate(tmp.path()).unwrap(), Source::Archive(archive.clone()));
    let from_archive = load(tmp.path()).unwrap();
    assert_eq!(from_archive.train, from_dir.train);
    assert_eq!(from_archive.test, from_dir.test);
    assert_eq!(load(&archive).unwrap().train, from_dir.train);

    let target = extract(&archive, tmp.path(), SMALL.layout()).unwrap();
    assert_eq!(target, tmp.path().join(EXTRACTED_DIR));
    // The unpacked folder now wins over the archive.
    assert_eq!(locate(tmp.path()).unwrap(), Source::Dir(target.clone()));
    assert_eq!(load(tmp.path()).unwrap().train, from_dir.train);
    assert!(!listing(tmp.path()).iter().any(|n| n.starts_with(".cifar")));
    // A second extraction refuses to overwrite.
    let again = extract(&archive, tmp.path(), SMALL.layout()).unwrap_err();
    assert!(matches!(again, DataError::TargetExists { .. }), "{again}");
}

#[test]
fn the_official_layout_is_strict_about_record_counts() {
    let tmp = tempfile::tempdir().unwrap();
    small_set(tmp.path());
    let err = Cifar10::load(tmp.path()).unwrap_err();
    assert!(
        matches!(&err, DataError::RecordCount { file, records: 200, expected: 10_000 }
            if file.ends_with("data_batch_1.bin")),
        "{err}"
    );
}

#[test]
fn empty_dir_says_how_to_get_data() {
    let tmp = tempfile::tempdir().unwrap();
    let err = Cifar10::load(tmp.path()).unwrap_err();
    assert!(matches!(err, DataError::NotFound { .. }));
    let msg = err.to_string();
    for part in
        ["no CIFAR-10 found in", "data_batch_1.bin", ARCHIVE_NAME, "--data-dir", "--download"]
    {
        assert!(msg.contains(part), "{msg}");
    }
}

#[test]
fn missing_file_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    small_set(tmp.path());
    std::fs::remove_file(tmp.path().join("data_batch_3.bin")).unwrap();
    let err = load(tmp.path()).unwrap_err();
    assert!(
        matches!(&err, DataError::MissingFile { file, .. } if file == "data_batch_3.bin"),
        "{err}"
    );
    assert!(err.to_string().contains("data_batch_3.bin is missing"));

    small_set(tmp.path());
    std::fs::remove_file(tmp.path().join(META_FILE)).unwrap();
    let err = load(tmp.path()).unwrap_err();
    assert!(matches!(&err, DataError::MissingFile { file, .. } if file == META_FILE), "{err}");
}

/// Rewrites one file of a fresh small set, then loads it.
fn load_with_changed(name: &str, change: impl FnOnce(&mut Vec<u8>)) -> DataError {
    let tmp = tempfile::tempdir().unwrap();
    small_set(tmp.path());
    let path = tmp.path().join(name);
    let mut bytes = std::fs::read(&path).unwrap();
    change(&mut bytes);
    std::fs::write(&path, bytes).unwrap();
    let err = load(tmp.path()).unwrap_err();
    assert!(err.to_string().contains(name), "the error names the file: {err}");
    assert!(err.to_string().contains("expected"), "the error says what was expected: {err}");
    err
}

#[test]
fn truncated_file() {
    let err = load_with_changed("data_batch_2.bin", |b| b.truncate(b.len() - 100));
    assert!(
        matches!(err, DataError::Truncated { bytes, .. } if bytes == 200 * 3073 - 100),
        "{err}"
    );
    let err = load_with_changed("test_batch.bin", Vec::clear);
    assert!(matches!(err, DataError::Truncated { bytes: 0, .. }), "{err}");
}

#[test]
fn wrong_record_count() {
    let err = load_with_changed("data_batch_4.bin", |b| b.truncate(b.len() - RECORD_BYTES));
    assert!(matches!(err, DataError::RecordCount { records: 199, expected: 200, .. }), "{err}");
}

#[test]
fn label_out_of_range() {
    let err = load_with_changed("data_batch_5.bin", |b| b[5 * RECORD_BYTES] = 10);
    assert!(matches!(err, DataError::BadLabel { record: 5, label: 10, .. }), "{err}");
}

#[test]
fn foreign_files() {
    let page = b"<!DOCTYPE html><html><body>503 Service Unavailable</body></html>".to_vec();
    let err = load_with_changed("data_batch_1.bin", |b| *b = page);
    assert!(
        matches!(&err, DataError::Foreign { looks_like, .. } if looks_like.contains("HTML")),
        "{err}"
    );
    // The python version of CIFAR-10 stores pickles under similar names.
    let err = load_with_changed("test_batch.bin", |b| b[..2].copy_from_slice(&[0x80, 0x02]));
    assert!(
        matches!(&err, DataError::Foreign { looks_like, .. } if looks_like.contains("pickle")),
        "{err}"
    );
    let err = load_with_changed("test_batch.bin", |b| b[0] = 200);
    assert!(matches!(err, DataError::Foreign { .. }), "{err}");
}

#[test]
fn bad_class_list() {
    let err = load_with_changed(META_FILE, |b| *b = b"airplane\nautomobile\n".to_vec());
    assert!(matches!(err, DataError::BadMeta { found: 2, .. }), "{err}");
}

#[test]
fn bad_archives() {
    let tmp = tempfile::tempdir().unwrap();
    let archive = tmp.path().join(ARCHIVE_NAME);
    std::fs::write(&archive, b"not an archive at all").unwrap();
    let err = load(tmp.path()).unwrap_err();
    assert!(matches!(err, DataError::BadArchive { .. }), "{err}");
    assert!(err.to_string().contains(ARCHIVE_NAME));

    // A cut-off download: valid gzip header, stream ends early.
    let good = write_synthetic_archive(tmp.path(), &SMALL).unwrap();
    let bytes = std::fs::read(&good).unwrap();
    std::fs::write(&archive, &bytes[..bytes.len() / 2]).unwrap();
    let err = load(tmp.path()).unwrap_err();
    assert!(matches!(err, DataError::BadArchive { .. }), "{err}");
    let err = extract(&archive, tmp.path(), SMALL.layout()).unwrap_err();
    assert!(matches!(err, DataError::BadArchive { .. }), "{err}");
    assert_eq!(listing(tmp.path()), [ARCHIVE_NAME], "a failed extraction leaves nothing");
}

#[test]
fn archive_member_errors_name_the_member() {
    let tmp = tempfile::tempdir().unwrap();
    let staging = tmp.path().join("staging");
    small_set(&staging);
    std::fs::remove_file(staging.join(TEST_FILE)).unwrap();
    let archive = tmp.path().join(ARCHIVE_NAME);
    write_archive(&staging, &archive).unwrap();
    let err = load(&archive).unwrap_err();
    assert!(
        matches!(&err, DataError::MissingFile { file, .. } if file.ends_with(TEST_FILE)),
        "{err}"
    );

    small_set(&staging);
    let path = staging.join(TRAIN_FILES[0]);
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 1]).unwrap();
    write_archive(&staging, &archive).unwrap();
    let err = load(&archive).unwrap_err();
    assert!(
        matches!(&err, DataError::Truncated { file, .. } if file.contains(TRAIN_FILES[0])),
        "{err}"
    );
    let err = extract(&archive, tmp.path(), SMALL.layout()).unwrap_err();
    assert!(matches!(err, DataError::Truncated { .. }), "{err}");
    assert!(!tmp.path().join(EXTRACTED_DIR).exists());
}

#[test]
fn md5_verify() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("hello.txt");
    std::fs::write(&path, b"hello\n").unwrap();
    // md5sum of "hello\n"
    assert_eq!(md5_hex(&path).unwrap(), "b1946ac92492d2347c6235b4d2611184");
    verify_md5(&path, "B1946AC92492D2347C6235B4D2611184").unwrap();
    let err = verify_md5(&path, CIFAR10_MD5).unwrap_err();
    assert!(matches!(&err, DataError::Md5Mismatch { found, .. } if found.starts_with("b1946ac9")));
    assert!(err.to_string().contains(CIFAR10_MD5));
}

#[test]
fn failed_download_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    // Port 9 (discard) has no listener here: the connection is refused at once.
    let options = quiet("http://127.0.0.1:9/cifar-10-binary.tar.gz", CIFAR10_MD5);
    let err = download(tmp.path(), &options).unwrap_err();
    assert!(
        matches!(&err, DataError::Download { url, .. } if url.contains("127.0.0.1:9")),
        "{err}"
    );
    assert!(err.to_string().contains("download of http://127.0.0.1:9/"));
    assert!(listing(tmp.path()).is_empty(), "{:?}", listing(tmp.path()));
    // Without --download the same folder just reports that nothing is there.
    assert!(matches!(ensure(tmp.path(), None), Err(DataError::NotFound { .. })));
}

/// Serves `body` once over HTTP/1.1 on loopback; returns the URL.
fn serve_once(body: Vec<u8>) -> (String, std::thread::JoinHandle<()>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/cifar-10-binary.tar.gz", listener.local_addr().unwrap());
    let handle = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut request = Vec::new();
        let mut byte = [0u8; 1];
        while !request.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap() == 1 {
            request.push(byte[0]);
        }
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        let _ = stream.write_all(head.as_bytes()).and_then(|_| stream.write_all(&body));
    });
    (url, handle)
}

#[test]
fn download_verifies_and_extracts() {
    let tmp = tempfile::tempdir().unwrap();
    let archive = write_synthetic_archive(tmp.path(), &SMALL).unwrap();
    let bytes = std::fs::read(&archive).unwrap();
    let md5 = md5_hex(&archive).unwrap();
    let data_dir = tmp.path().join("data");

    let (url, server) = serve_once(bytes.clone());
    let err = download(&data_dir, &quiet(&url, CIFAR10_MD5)).unwrap_err();
    server.join().unwrap();
    assert!(matches!(&err, DataError::Md5Mismatch { found, .. } if *found == md5), "{err}");
    assert!(listing(&data_dir).is_empty(), "{:?}", listing(&data_dir));

    let (url, server) = serve_once(bytes);
    let found = ensure(&data_dir, Some(&quiet(&url, &md5))).unwrap();
    server.join().unwrap();
    assert_eq!(found, Source::Dir(data_dir.join(EXTRACTED_DIR)));
    assert_eq!(listing(&data_dir), [EXTRACTED_DIR]);
    assert_eq!(load(&data_dir).unwrap().test, load(&archive).unwrap().test);
    // Data present: no download is attempted (this URL would fail).
    let unreachable = quiet("http://127.0.0.1:9/", &md5);
    assert_eq!(ensure(&data_dir, Some(&unreachable)).unwrap(), found);
}

#[test]
fn default_download_is_the_official_archive() {
    let options = DownloadOptions::default();
    assert_eq!(options.url, "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz");
    assert_eq!(options.md5, "c32a1d4ab5d03f1284b67883e8d87530");
    assert_eq!(options.layout, Layout::OFFICIAL);
}

// ---- loader ----

fn loader(records: &Arc<Records>, indices: Vec<u32>, workers: usize) -> Loader {
    let config = LoaderConfig { workers, ..LoaderConfig::train(42) };
    Loader::new(Arc::clone(records), indices, config).unwrap()
}

#[test]
fn loader_batches_do_not_depend_on_workers() {
    let records = Arc::new(synthetic_records(1_000, 3, 30));
    let split = split_train_val(1_000, 100, 42).unwrap();
    let reference: Vec<Batch> = loader(&records, split.train.clone(), 0).epoch(1).collect();
    assert_eq!(reference.len(), 8); // 900 = 7 × 128 + 4
    assert_eq!(reference.last().unwrap().len, 4);
    assert_eq!(reference[0].shape(), [128, 3, 32, 32]);
    assert_eq!(reference[0].images.len(), 128 * 3072);
    for workers in [1, 2, 3] {
        let batches: Vec<Batch> = loader(&records, split.train.clone(), workers).epoch(1).collect();
        assert_eq!(batches, reference, "{workers} workers");
    }
}

#[test]
fn loader_epochs_reshuffle_and_cover_the_split() {
    let records = Arc::new(synthetic_records(600, 4, 30));
    let indices: Vec<u32> = (0..500).collect();
    let l = loader(&records, indices.clone(), 2);
    let (e0, e1) = (l.order(0), l.order(1));
    assert_ne!(e0, e1);
    assert_eq!(e0, l.order(0));
    let mut sorted = e1.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, indices);
    // Labels of the batches follow the epoch's order.
    let labels: Vec<u8> = l.epoch(1).flat_map(|b| b.labels).collect();
    let expected: Vec<u8> = e1.iter().map(|&i| records.label(i as usize)).collect();
    assert_eq!(labels, expected);
    // Another seed, another order.
    let other = Loader::new(Arc::clone(&records), indices, LoaderConfig::train(43)).unwrap();
    assert_ne!(other.order(1), e1);
}

#[test]
fn loader_resumes_at_a_batch() {
    let records = Arc::new(synthetic_records(700, 5, 30));
    let l = loader(&records, (0..700).collect(), 2);
    let full: Vec<Batch> = l.epoch(3).collect();
    for k in [0, 1, 4, full.len()] {
        let resumed: Vec<Batch> = l.epoch_from(3, k).collect();
        assert_eq!(resumed.as_slice(), &full[k..], "start at batch {k}");
    }
    assert_eq!(l.epoch_from(3, 100).count(), 0);
    assert_eq!(l.epoch_from(3, 2).len(), full.len() - 2);
}

#[test]
fn eval_loader_only_normalises_in_order() {
    let records = Arc::new(synthetic_records(300, 6, 30));
    let l = Loader::new(Arc::clone(&records), (0..300).collect(), LoaderConfig::eval()).unwrap();
    let norm = Normalizer::default();
    let mut expected = vec![0.0; 3072];
    let mut position = 0;
    for batch in l.epoch(9) {
        for (i, image) in batch.images.chunks_exact(3072).enumerate() {
            norm.normalize(records.image(position + i), &mut expected);
            assert_eq!(image, expected.as_slice());
            assert_eq!(batch.labels[i], records.label(position + i));
        }
        position += batch.len;
    }
    assert_eq!(position, 300);
}

#[test]
fn training_batches_are_augmented_views() {
    // Every augmented image is one of the 162 flip/crop variants of its source.
    let records = Arc::new(synthetic_records(64, 8, 30));
    let l = loader(&records, (0..64).collect(), 1);
    let order = l.order(2);
    let norm = Normalizer::default();
    let mut candidate = vec![0.0; 3072];
    let mut changed = 0;
    for batch in l.epoch(2) {
        for (i, image) in batch.images.chunks_exact(3072).enumerate() {
            let src = records.image(order[batch.index * 128 + i] as usize);
            let mut variants = (0..162).map(|v| Augment {
                flip: v >= 81,
                dx: (v % 9) as i8 - 4,
                dy: ((v / 9) % 9) as i8 - 4,
            });
            let hit = variants.find(|&aug| {
                norm.augment(src, &mut candidate, aug);
                candidate == image
            });
            let aug = hit.expect("an augmentation of its source image");
            changed += (aug != Augment::NONE) as usize;
        }
    }
    assert!(changed > 50, "{changed} of 64 images changed");
}

#[test]
fn loader_rejects_bad_settings_and_stops_early() {
    let records = Arc::new(synthetic_records(10, 9, 0));
    let zero = LoaderConfig { batch_size: 0, ..LoaderConfig::eval() };
    assert!(matches!(Loader::new(Arc::clone(&records), vec![0], zero), Err(DataError::Config(_))));
    let err = Loader::new(Arc::clone(&records), vec![10], LoaderConfig::eval()).err().unwrap();
    assert!(err.to_string().contains("expected below 10"), "{err}");
    // Dropping an epoch with full prefetch queues returns (workers are told to stop).
    let config = LoaderConfig { batch_size: 1, prefetch: 1, workers: 3, ..LoaderConfig::train(1) };
    let l = Loader::new(records, (0..10).collect(), config).unwrap();
    let mut epoch = l.epoch(0);
    assert_eq!(epoch.next().unwrap().index, 0);
    drop(epoch);
}

#[test]
fn alternating_flips_mirror_each_image_the_other_way_every_epoch() {
    let records = Arc::new(synthetic_records(600, 4, 30));
    let config = LoaderConfig { flip: cifar_train::recipe::FlipMode::Alternating, workers: 0, ..LoaderConfig::train(5) };
    let loader = Loader::new(records, (0..600).collect(), config).unwrap();
    let flips_of = |epoch: u64| {
        let mut by_id = vec![None; 600];
        for plan in loader.plans_from(epoch, 0) {
            for (&id, aug) in plan.ids.iter().zip(&plan.augments) {
                by_id[id as usize] = Some(aug.flip);
            }
        }
        by_id.into_iter().map(|f| f.expect("every image once an epoch")).collect::<Vec<bool>>()
    };
    let first = flips_of(0);
    let mirrored = first.iter().filter(|&&f| f).count();
    assert!((240..=360).contains(&mirrored), "{mirrored} of 600 mirrored in the first epoch");
    for epoch in 1..4u64 {
        let flips = flips_of(epoch);
        let want: Vec<bool> = first.iter().map(|&f| f ^ (epoch % 2 == 1)).collect();
        assert_eq!(flips, want, "epoch {epoch}");
    }
    // The crops stay random: the same image moves differently in two epochs.
    let crops = |epoch| loader.plans_from(epoch, 0).flat_map(|p| p.augments).map(|a| (a.dx, a.dy)).collect::<Vec<_>>();
    assert_ne!(crops(0), crops(2));
}

/// `--crop-padding` reaches the loader: the offsets of a whole epoch stay within it, reach both
/// ends, and a padding of 0 leaves only the flips.
#[test]
fn the_crop_padding_bounds_the_drawn_offsets() {
    let records = Arc::new(synthetic_records(600, 4, 31));
    for pad in [0i8, 2, 4] {
        let config = LoaderConfig { crop_padding: pad as usize, workers: 0, ..LoaderConfig::train(7) };
        let loader = Loader::new(Arc::clone(&records), (0..600).collect(), config).unwrap();
        let augs: Vec<_> = loader.plans_from(0, 0).flat_map(|p| p.augments).collect();
        assert_eq!(augs.len(), 600);
        let offsets: Vec<i8> = augs.iter().flat_map(|a| [a.dx, a.dy]).collect();
        assert_eq!(offsets.iter().min(), Some(&-pad), "pad {pad}");
        assert_eq!(offsets.iter().max(), Some(&pad), "pad {pad}");
        let mirrored = augs.iter().filter(|a| a.flip).count();
        assert!((240..=360).contains(&mirrored), "pad {pad}: {mirrored} of 600 mirrored");
    }
}

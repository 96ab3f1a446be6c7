//! `serve`: the inference server (see `serve --help`); `serve bench`: benchmark reports.

mod cli;

use anyhow::{Context, Result};
use cifar_serve::batcher::BatchPolicy;
use cifar_serve::bench::http_load::{LoadPlan, Payload};
use cifar_serve::bench::latency::LatencyPlan;
use cifar_serve::bench::BenchOptions;
use cifar_serve::ort::OrtOptions;
use cifar_serve::{RegistryOptions, ServerOptions};
use clap::Parser;
use std::io::Write;
use std::time::Duration;

fn main() {
    let cli = cli::Cli::parse();
    init_logs(cli.log_format);
    let result = match cli.command {
        Some(cli::Command::Bench(args)) => bench(args),
        None => run(cli.run),
    };
    if let Err(err) = result {
        eprintln!("serve: error: {}", cifar_serve::cause::chain(err.as_ref()));
        std::process::exit(1);
    }
}

fn init_logs(format: cli::LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        // Colour codes only for a terminal: logs redirected to a file stay plain text.
        cli::LogFormat::Text => logs.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).init(),
        cli::LogFormat::Json => logs.json().with_current_span(true).with_span_list(false).init(),
    }
}

fn bench(args: cli::BenchArgs) -> Result<()> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut batch_sizes: Vec<usize> = args.batch_sizes.iter().map(|&b| b as usize).collect();
    batch_sizes.sort_unstable();
    batch_sizes.dedup();
    let opts = BenchOptions {
        models_dir: args.models,
        out_dir: args.out,
        ort_lib: args.ort_lib,
        ort: OrtOptions { device: args.device, allow_cpu_fallback: args.allow_cpu_fallback, threads: args.threads.map_or(cores, |t| t as usize), spin: args.ort_spin },
        latency: LatencyPlan { batch_sizes, iters: args.iters as usize, warmup_iters: args.warmup as usize, budget_per_size: None, pause: None },
        http: match args.url {
            Some(url) => Some(LoadPlan {
                url,
                concurrency: args.concurrency as usize,
                duration: args.duration,
                payload: payload(args.image.as_deref())?,
                api_key: args.api_key_file.as_deref().map(cifar_serve::auth::first_key).transpose()?,
            }),
            None => None,
        },
    };
    let (_, written) = cifar_serve::bench::run(&opts)?;
    for path in written {
        println!("wrote {}", path.display());
    }
    Ok(())
}

/// The image `serve bench --url` sends: `--image`, or the generated picture.
fn payload(image: Option<&std::path::Path>) -> Result<Payload> {
    Ok(image.map(Payload::file).transpose()?.unwrap_or_else(Payload::sample))
}

fn run(args: cli::RunArgs) -> Result<()> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let opts = ServerOptions {
        bind: args.bind,
        registry: RegistryOptions {
            dir: args.models.context("--models DIR is required")?,
            default_model: args.default_model,
            ort_lib: args.ort_lib,
            ort: OrtOptions {
                device: args.device,
                allow_cpu_fallback: args.allow_cpu_fallback,
                threads: args.threads.map_or(cores, |t| t as usize),
                spin: args.ort_spin,
            },
            policy: BatchPolicy {
                max_batch: args.max_batch as usize,
                max_delay: Duration::from_micros(args.max_queue_delay_us),
                max_queue: args.max_queue as usize,
            },
        },
        max_body: usize::try_from(args.max_body.as_u64()).unwrap_or(usize::MAX),
        http_workers: args.http_workers.map_or(cores, |w| w as usize),
        shutdown_timeout: Duration::from_secs(args.shutdown_timeout),
        api_key_file: args.api_key_file,
        protect_all: args.protect_all,
        cors_origins: args.cors_allow_origin,
        watch: args.watch.then(|| Duration::from_millis(args.watch_interval_ms)),
        grpc_bind: args.grpc_bind,
    };
    tracing::info!("starting: {}", opts.describe());
    actix_web::rt::System::new().block_on(cifar_serve::server::run(opts, |at| {
        // stdout carries exactly these lines, for scripts and tests to find the ports; the
        // HTTP line comes last: once it is there, both protocols answer.
        if let Some(grpc) = at.grpc {
            tracing::info!("ready: gRPC on {grpc}");
            println!("grpc listening on {grpc}");
        }
        tracing::info!("ready: listening on http://{}", at.http);
        println!("listening on http://{}", at.http);
        let _ = std::io::stdout().flush();
    }))?;
    Ok(())
}

mod cli;
mod commands;

use cli::Cli;
use std::process::ExitCode;

/// Exit statuses, as `train --help` documents them.
const FAILED: u8 = 1;
const USAGE: u8 = 2;
const DIVERGED: u8 = 3;
const RUN_CONFLICT: u8 = 4;

/// See [`cifar_train::runtime`]: a training step's allocation pattern wants mimalloc.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    cifar_train::runtime::tune();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .without_time()
        .init();
    match run(Cli::parse_with_recipe_defaults()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(exit_status(&err))
        }
    }
}

fn exit_status(err: &anyhow::Error) -> u8 {
    use cifar_models::ZooError::UnknownModel;
    use cifar_train::TrainError;
    if matches!(err.downcast_ref(), Some(UnknownModel(_))) || err.downcast_ref::<cifar_train::recipe::RecipeError>().is_some() {
        return USAGE;
    }
    match err.downcast_ref::<TrainError>() {
        Some(TrainError::Model(UnknownModel(_))) => USAGE,
        Some(TrainError::Diverged { .. }) => DIVERGED,
        Some(TrainError::RunExists { .. } | TrainError::ResumeMismatch { .. }) => RUN_CONFLICT,
        _ => FAILED,
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    if let Some(command) = cli.command {
        return match command {
            cli::Command::Export(args) => commands::export::run(&args),
            cli::Command::Quantize(args) => commands::quantize::run(&args),
            cli::Command::Speed(args) => commands::speed::run(&args),
            cli::Command::Synthetic(args) => {
                let spec = cifar_train::data::SyntheticSpec { seed: args.seed, ..Default::default() };
                cifar_train::data::write_synthetic(&args.out, &spec)?;
                eprintln!("wrote a synthetic CIFAR-10 (official layout, 10,000 records per file) to {}", args.out.display());
                Ok(())
            }
        };
    }
    let args = cli.train;
    if args.list_models {
        return commands::models::list(args.json);
    }
    let Some(model) = args.model.as_deref() else {
        anyhow::bail!("nothing to do: pass --model NAME, --list-models or a subcommand (see --help)");
    };
    if args.summary {
        return commands::models::summary(model);
    }
    commands::train::run(&args, model)
}

mod cli;
mod commands;

use clap::Parser;
use cli::Cli;
use std::process::ExitCode;

/// Exit status of a job that failed; bad usage exits with [`USAGE`] (as clap does).
const FAILED: u8 = 1;
const USAGE: u8 = 2;

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            let usage = matches!(err.downcast_ref(), Some(cifar_models::ZooError::UnknownModel(_)));
            ExitCode::from(if usage { USAGE } else { FAILED })
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    if let Some(command) = cli.command {
        return match command {
            cli::Command::Export(args) => commands::export::run(&args),
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
    cifar_models::info(model)?;
    anyhow::bail!("training is not implemented yet; `--model {model} --summary` describes the model")
}

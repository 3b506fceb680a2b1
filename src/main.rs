//! Entry point: parse, dispatch to [`commands`], map the result to an exit status.

mod cli;
mod commands;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command};

fn main() -> ExitCode {
    commands::reproducible_math();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("BGSTREAM_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    // Fail points (tikv's `fail`) exist only in builds with the `failpoints` feature: the
    // crash tests use them (FAILPOINTS=...) to stop the process at exact points of a commit.
    #[cfg(feature = "failpoints")]
    let _failpoints = fail::FailScenario::setup();
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Shard(a)) => commands::shard::run(&a),
        Some(Command::Aggregate(a)) => commands::aggregate::run(&a),
        Some(Command::Export(a)) => commands::export::run(&a),
        Some(Command::Run(a)) => run(&a),
        None => run(&cli.run),
        #[cfg(feature = "torch")]
        Some(Command::Bench(a)) => commands::bench::run(&a),
        #[cfg(feature = "torch")]
        Some(Command::Preview(a)) => commands::preview::run(&a),
        #[cfg(feature = "torch")]
        Some(Command::Challenge(a)) => commands::challenge::run(&a),
        #[cfg(not(feature = "torch"))]
        Some(Command::Bench(_) | Command::Preview(_) | Command::Challenge(_)) => {
            commands::without_torch("run models")
        }
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("bgstream: error: {e:#}");
            match e.downcast_ref::<bgstream::error::FatalError>() {
                Some(bgstream::error::FatalError::Usage(_)) => ExitCode::from(2),
                _ => ExitCode::FAILURE,
            }
        }
    }
}

fn run(a: &cli::RunArgs) -> anyhow::Result<u8> {
    #[cfg(feature = "torch")]
    return commands::run::run(a);
    #[cfg(not(feature = "torch"))]
    {
        let _ = a;
        commands::without_torch("run models")
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        super::cli::Cli::command().debug_assert();
    }
}

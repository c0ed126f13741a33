//! The `strata` binary: thin wiring around the services.

mod cache_cmd;
mod check_cmd;
mod cli;
mod config_file;
mod group_cmd;
mod kafka_client;
mod output;
mod serve;
mod topic_cmd;

use clap::Parser;

fn main() -> std::process::ExitCode {
    if let Err(error) = config_file::load_into_env(std::env::args_os(), std::env::vars()) {
        eprintln!("error: {error:#}");
        return std::process::ExitCode::from(2);
    }
    let cli = cli::Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("STRATA_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the runtime: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli::run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

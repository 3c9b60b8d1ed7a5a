//! `aiguillage`: the command-line entry point of an Aiguillage federation member.

mod access;
mod admin_client;
mod api;
mod cli;
mod clock;
mod config;
mod daemon;
mod executor;
mod files;
mod job_file;
mod metrics;
mod profiles;
mod tools;

use clap::Parser;

fn main() {
    let cli = cli::Cli::parse();
    init_tracing(cli.log_format);
    if let Err(e) = cli.run() {
        eprintln!("error: {e:#}");
        let code = match e.downcast_ref::<daemon::Stop>() {
            Some(daemon::Stop::StoreFailed(_)) => daemon::EXIT_STORE_FAILED,
            _ => 1,
        };
        std::process::exit(code);
    }
}

fn init_tracing(format: cli::LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        cli::LogFormat::Human => builder.init(),
        cli::LogFormat::Json => builder.json().init(),
    }
}

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
mod logging;
mod metrics;
mod profiles;
mod tools;

use clap::Parser;

fn main() {
    let cli = cli::Cli::parse();
    let format = cli.log_format;
    logging::init(format);
    if let Err(e) = cli.run() {
        let code = match e.downcast_ref::<daemon::Stop>() {
            Some(daemon::Stop::StoreFailed(_)) => daemon::EXIT_STORE_FAILED,
            _ => 1,
        };
        logging::fatal(format, &e, code);
        std::process::exit(code);
    }
}

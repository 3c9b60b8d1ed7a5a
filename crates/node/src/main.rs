//! `aiguillage`: the command-line entry point of an Aiguillage federation member.

mod access;
mod admin_client;
mod api;
mod cli;
mod clock;
mod config;
mod console;
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
    if cli.ends_quietly_on_a_closed_pipe() {
        // `aiguillage referral list | head`: end like any Unix tool when the reader has
        // gone, instead of panicking on the failed write (Rust ignores SIGPIPE by default).
        // SAFETY: restoring the default action of a signal before any thread starts.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
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

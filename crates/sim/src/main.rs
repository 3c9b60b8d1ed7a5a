//! `aiguillage-sim`: runs scenario files through the deterministic simulator.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

use aiguillage_sim::{Scenario, report};

#[derive(Parser)]
#[command(
    name = "aiguillage-sim",
    version,
    about = "Deterministic simulator of the Aiguillage federation"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one scenario and write its summary, time series and plots.
    Run {
        scenario: PathBuf,
        /// Seed for every random choice (default: the scenario's).
        #[arg(long)]
        seed: Option<u64>,
        /// Output folder (default: sim-out/<scenario name>).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Policy to run instead of the scenario's (a built-in or one of its [policies]).
        #[arg(long)]
        policy: Option<String>,
        /// Show a progress line even when stderr is not a terminal.
        #[arg(long)]
        progress: bool,
    },
    /// Run one scenario under several policies with the same seed and workload.
    Compare {
        scenario: PathBuf,
        /// Comma-separated policies, e.g. no_federation,random,nearest,margin,scored.
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "no_federation,random,nearest,margin,scored"
        )]
        policies: Vec<String>,
        #[arg(long)]
        seed: Option<u64>,
        /// Output folder (default: sim-out/<scenario name>-compare).
        #[arg(long)]
        out: Option<PathBuf>,
        #[arg(long)]
        progress: bool,
    },
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Run {
            scenario,
            seed,
            out,
            policy,
            progress,
        } => {
            let s = Scenario::load(&scenario)?;
            let seed = seed.unwrap_or(s.seed);
            let policy = policy.unwrap_or_else(|| s.policy.name.clone());
            let out = out.unwrap_or_else(|| PathBuf::from("sim-out").join(&s.name));
            let started = Instant::now();
            let r = run_one(&s, seed, &policy, progress)?;
            let wall = started.elapsed();
            report::write_run(&out, &r).with_context(|| format!("writing {}", out.display()))?;
            print!("{}", report::table(&r.summary));
            let events = r.summary.engine.events;
            println!(
                "wall time {:.2} s, {:.0} events/s, {:.0} core calls/s; outputs in {}",
                wall.as_secs_f64(),
                events as f64 / wall.as_secs_f64().max(1e-9),
                r.summary.engine.core_calls as f64 / wall.as_secs_f64().max(1e-9),
                out.display()
            );
            println!("digest {}", r.digest);
            if r.summary.invariants.violations > 0 {
                bail!(
                    "{} invariant violation(s); see summary.json",
                    r.summary.invariants.violations
                );
            }
        }
        Command::Compare {
            scenario,
            policies,
            seed,
            out,
            progress,
        } => {
            let s = Scenario::load(&scenario)?;
            let seed = seed.unwrap_or(s.seed);
            let out =
                out.unwrap_or_else(|| PathBuf::from("sim-out").join(format!("{}-compare", s.name)));
            let mut runs = Vec::new();
            let started = Instant::now();
            for p in &policies {
                eprintln!("policy {p}");
                let r = run_one(&s, seed, p, progress)?;
                report::write_run(&out.join(p), &r)
                    .with_context(|| format!("writing {}", out.join(p).display()))?;
                runs.push((p.clone(), r));
            }
            report::write_compare(&out, &runs)
                .with_context(|| format!("writing {}", out.display()))?;
            print!("{}", report::compare_table(&runs));
            println!(
                "wall time {:.2} s; outputs in {}",
                started.elapsed().as_secs_f64(),
                out.display()
            );
            let mut all = String::new();
            for (_, r) in &runs {
                all.push_str(&r.digest);
            }
            println!("digest {}", combined(&all));
            let violations: u64 = runs
                .iter()
                .map(|(_, r)| r.summary.invariants.violations)
                .sum();
            if violations > 0 {
                bail!("{violations} invariant violation(s); see compare.json");
            }
        }
    }
    Ok(())
}

fn run_one(
    s: &Scenario,
    seed: u64,
    policy: &str,
    progress: bool,
) -> Result<aiguillage_sim::RunOutcome> {
    let show = progress || std::io::stderr().is_terminal();
    let mut bar = |share: f64| {
        let width = 40;
        let filled = (share * width as f64) as usize;
        let mut err = std::io::stderr();
        let _ = write!(
            err,
            "\r[{}{}] {:5.1}% of virtual time",
            "#".repeat(filled),
            " ".repeat(width - filled.min(width)),
            share * 100.0
        );
        let _ = err.flush();
    };
    let r = aiguillage_sim::run(s, seed, policy, if show { Some(&mut bar) } else { None })?;
    if show {
        eprintln!();
    }
    Ok(r)
}

/// One digest over the digests of a comparison.
fn combined(digests: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(digests.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

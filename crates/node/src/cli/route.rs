//! `aiguillage route --explain`: a dry run of the routing decision for a project, with the
//! member profiles in config/ as the directory.

use std::path::{Path, PathBuf};

use aiguillage_core::directory::SectorTable;
use aiguillage_core::project_file::ProjectFile;
use aiguillage_core::routing::{self, Outcome, RoutingPolicy, Standing, Term};
use aiguillage_wire::{Advert, GpuCapacity, MemberId};
use anyhow::{Context, Result, bail};

use super::JsonFlag;
use crate::{clock, files, profiles};

/// `aiguillage route --explain PROJECT --from MEMBER`.
#[derive(clap::Args)]
pub struct RouteArgs {
    /// The project file (see config/examples/project-*.toml).
    #[arg(long)]
    explain: PathBuf,
    /// The member where the project is filed.
    #[arg(long)]
    from: MemberId,
    /// Folder of member profiles.
    #[arg(long, default_value = "config")]
    members: PathBuf,
    /// When a project in a sector the member only accepts leaves, as `[core.routing] rule`
    /// in node.toml: better_suited (the default) or margin.
    #[arg(long, default_value = "better_suited", value_parser = parse_rule)]
    rule: routing::ReferralRule,
    #[command(flatten)]
    json: JsonFlag,
}

fn parse_rule(s: &str) -> Result<routing::ReferralRule, String> {
    match s {
        "better_suited" => Ok(routing::ReferralRule::BetterSuited),
        "margin" => Ok(routing::ReferralRule::Margin),
        _ => Err("expected better_suited or margin".into()),
    }
}

impl RouteArgs {
    pub fn run(self) -> Result<()> {
        let policy = RoutingPolicy {
            rule: self.rule,
            ..RoutingPolicy::default()
        };
        explain(
            &self.explain,
            &self.from,
            &self.members,
            &policy,
            self.json.json,
        )
    }
}

fn explain(
    project: &Path,
    from: &MemberId,
    members: &Path,
    policy: &RoutingPolicy,
    json: bool,
) -> Result<()> {
    let text = files::read_to_string(project)?;
    let file = ProjectFile::from_toml(&text, &project.display().to_string())?;
    let card = file.card();
    let profiles = profiles::load_dir(members)?;
    // Live capacity and intake are unknown offline; the directory holds what profiles say.
    let adverts: Vec<Advert> = profiles
        .iter()
        .map(|p| p.advert(1, GpuCapacity::default(), None))
        .collect();
    let tables: Vec<SectorTable> = adverts.iter().map(SectorTable::of).collect();
    let Some(me) = adverts.iter().position(|a| &a.member == from) else {
        bail!("{from} has no profile under {}", members.display());
    };
    let now = clock::now();
    let decision = routing::decide(
        &card,
        (&adverts[me], &tables[me]),
        adverts.iter().zip(&tables),
        |_| Standing {
            reciprocity: 0.0,
            behaviour: None,
            now,
            decline_half_life_ms: 0,
        },
        policy,
        now,
    );
    let explanation = decision.explanation(&card, from, policy);
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&explanation).context("encoding the explanation")?
        );
        return Ok(());
    }
    let verdict = match explanation.outcome {
        Outcome::Keep => "KEEP",
        Outcome::Refer => "REFER",
        Outcome::Exhausted => "NO MEMBER CAN TAKE IT",
    };
    println!("{verdict}: {}", explanation.text);
    println!(
        "rule: {} (this member's policy for accepted sectors: {})",
        explanation.rule.tag(),
        match policy.rule {
            routing::ReferralRule::BetterSuited => "better_suited",
            routing::ReferralRule::Margin => "margin",
        }
    );
    println!();
    let header: Vec<String> = Term::ALL
        .iter()
        .map(|t| format!("{:>8}", &t.name()[..t.name().len().min(8)]))
        .collect();
    println!(
        "{:<4} {:<14} {:>6} {}",
        "rank",
        "member",
        "score",
        header.join(" ")
    );
    let row = |rank: String, member: &str, report: &routing::ScoreReport| {
        let terms: Vec<String> = report
            .terms
            .iter()
            .map(|t| format!("{:>8.3}", t.contribution))
            .collect();
        println!(
            "{rank:<4} {member:<14} {:>6.3} {}",
            report.total,
            terms.join(" ")
        );
    };
    row("here".into(), from.as_str(), &explanation.local);
    for c in &explanation.ranked {
        row(c.rank.to_string(), c.member.as_str(), &c.score);
    }
    let weights: Vec<String> = Term::ALL
        .iter()
        .map(|t| format!("{}={}", t.name(), policy.weights.get(*t)))
        .collect();
    println!(
        "(each column is weight × value; weights: {})",
        weights.join(", ")
    );
    if explanation.eligible_unranked > 0 {
        if explanation.rule == routing::Rule::BetterSuitedElsewhere {
            println!(
                "{} more eligible member(s) are not offered it: not better suited, or past the {} best",
                explanation.eligible_unranked, policy.max_candidates
            );
        } else {
            println!(
                "{} more eligible member(s) ranked lower",
                explanation.eligible_unranked
            );
        }
    }
    if !explanation.ineligible.is_empty() {
        println!();
        println!("not eligible:");
        for i in &explanation.ineligible {
            println!("  {:<14} {}", i.member.as_str(), i.rule.describe());
        }
        let more = explanation
            .ineligible_total
            .saturating_sub(explanation.ineligible.len());
        if more > 0 {
            println!("  … and {more} more (the summary above counts them by rule)");
        }
    }
    Ok(())
}

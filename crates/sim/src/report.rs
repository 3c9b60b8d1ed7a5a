//! What a run leaves behind: the summary table, `summary.json`, time series and per-member
//! CSV files, SVG plots, and the comparison table of several policies.

use std::fmt::Write as _;
use std::io;
use std::path::Path;

use crate::summary::{Quantiles, RunOutcome, Summary};
use crate::svg::{self, Line};

/// Members shown one by one in plots; the others are summarised.
const PLOT_MEMBERS: usize = 40;

fn opt(v: Option<f64>) -> String {
    v.map_or("-".into(), |x| format!("{x:.2}"))
}

fn q(v: &Quantiles) -> String {
    format!("{} / {} / {}", opt(v.p50), opt(v.p95), opt(v.p99))
}

/// The summary as a table for the terminal.
pub fn table(s: &Summary) -> String {
    let p = &s.projects;
    let j = &s.jobs;
    let n = &s.network;
    let rows: Vec<(&str, String)> = vec![
        (
            "scenario / policy / seed",
            format!("{} / {} / {}", s.scenario, s.policy, s.seed),
        ),
        (
            "members (factories), GPUs",
            format!("{} ({}), {}", s.members, s.factories, s.gpus),
        ),
        (
            "virtual time",
            format!("{} d + {} d settling", s.duration_days, s.settle_days),
        ),
        ("projects filed", p.filed.to_string()),
        (
            "kept / referred / accepted elsewhere",
            format!("{} / {} / {}", p.kept, p.referred, p.accepted_elsewhere),
        ),
        (
            "match quality (ends at a priority member)",
            format!("{:.3}", p.match_quality),
        ),
        (
            "achievable match quality, achieved ratio",
            format!("{:.3}, {:.3}", p.achievable_match_quality, p.achieved_ratio),
        ),
        (
            "unplaced with a priority member in consent",
            p.exhausted_with_eligible.to_string(),
        ),
        (
            "served at home after every target declined",
            p.served_at_home_after_all.to_string(),
        ),
        (
            "members at intake / offers declined for it",
            format!(
                "{} / {}",
                s.inflow.members_at_intake, s.inflow.declined_no_capacity
            ),
        ),
        (
            "highest peak held / intake (member)",
            format!(
                "{:.2} ({})",
                s.inflow.max_peak_over_intake,
                s.inflow.most_loaded.as_deref().unwrap_or("-")
            ),
        ),
        (
            "exhausted share (exhausted / withdrawn / pending)",
            format!(
                "{:.4} ({} / {} / {})",
                p.exhausted_share, p.exhausted, p.withdrawn, p.pending
            ),
        ),
        (
            "time to acceptance p50 / p99 (h)",
            format!(
                "{} / {} (n = {})",
                opt(p.time_to_acceptance_hours.p50),
                opt(p.time_to_acceptance_hours.p99),
                p.time_to_acceptance_hours.n
            ),
        ),
        (
            "offers per project / per referral",
            format!("{:.3} / {:.3}", p.offers_per_project, p.offers_per_referral),
        ),
        (
            "referral messages per project",
            format!("{:.2}", p.messages_per_project),
        ),
        (
            "jobs submitted / started / on another member",
            format!("{} / {} / {}", j.submitted, j.started, j.started_remote),
        ),
        (
            "jobs missed / never started",
            format!("{} / {}", j.missed, j.never_started),
        ),
        ("job wait p50 / p95 / p99 (min)", q(&j.wait_minutes)),
        (
            "GPU utilisation, Jain's index of load",
            format!("{:.3}, {}", j.utilisation, opt(j.fairness_jain)),
        ),
        (
            "lease re-placements / placements",
            format!("{} / {}", j.lease_replacements, j.placements),
        ),
        (
            "overflow messages per job",
            format!("{:.2}", j.overflow_messages_per_job),
        ),
        (
            "messages / adverts published / advert deliveries",
            format!(
                "{} / {} / {}",
                n.messages, n.adverts_published, n.advert_deliveries
            ),
        ),
        (
            "dropped: loss / partition / down / silent",
            format!(
                "{} / {} / {} / {}",
                n.dropped_loss, n.dropped_partition, n.dropped_member_down, n.dropped_silent
            ),
        ),
        (
            "core calls / events",
            format!("{} / {}", s.engine.core_calls, s.engine.events),
        ),
        (
            "invariant checks / violations",
            format!("{} / {}", s.invariants.checks, s.invariants.violations),
        ),
    ];
    let w = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let mut out = String::new();
    for (k, v) in rows {
        let _ = writeln!(out, "{k:<w$}  {v}");
    }
    if !p.missed.is_empty() {
        let _ = writeln!(out, "could have ended at a priority member and did not:");
        for (k, v) in &p.missed {
            let _ = writeln!(out, "  {k}: {v}");
        }
    }
    for v in &s.invariants.first {
        let _ = writeln!(out, "  VIOLATION: {v}");
    }
    out
}

/// Several runs of one scenario side by side.
pub fn compare_table(runs: &[(String, RunOutcome)]) -> String {
    let mut header = vec!["measure".to_owned()];
    header.extend(runs.iter().map(|(n, _)| n.clone()));
    type Row = (&'static str, fn(&RunOutcome) -> String);
    let rows: Vec<Row> = vec![
        ("match quality", |r| {
            format!("{:.3}", r.summary.projects.match_quality)
        }),
        ("achievable", |r| {
            format!("{:.3}", r.summary.projects.achievable_match_quality)
        }),
        ("achieved ratio", |r| {
            format!("{:.3}", r.summary.projects.achieved_ratio)
        }),
        ("exhausted share", |r| {
            format!("{:.4}", r.summary.projects.exhausted_share)
        }),
        ("exhausted, eligible", |r| {
            r.summary.projects.exhausted_with_eligible.to_string()
        }),
        ("referred share", |r| {
            format!("{:.3}", r.summary.projects.referred_share)
        }),
        ("accept p50 (h)", |r| {
            opt(r.summary.projects.time_to_acceptance_hours.p50)
        }),
        ("accept p99 (h)", |r| {
            opt(r.summary.projects.time_to_acceptance_hours.p99)
        }),
        ("peak held/intake", |r| {
            format!("{:.2}", r.summary.inflow.max_peak_over_intake)
        }),
        ("declined: intake", |r| {
            r.summary.inflow.declined_no_capacity.to_string()
        }),
        ("offers/project", |r| {
            format!("{:.3}", r.summary.projects.offers_per_project)
        }),
        ("ref. msgs/project", |r| {
            format!("{:.2}", r.summary.projects.messages_per_project)
        }),
        ("job wait p50 (min)", |r| {
            opt(r.summary.jobs.wait_minutes.p50)
        }),
        ("job wait p95 (min)", |r| {
            opt(r.summary.jobs.wait_minutes.p95)
        }),
        ("job wait p99 (min)", |r| {
            opt(r.summary.jobs.wait_minutes.p99)
        }),
        ("jobs missed", |r| r.summary.jobs.missed.to_string()),
        ("jobs elsewhere", |r| {
            r.summary.jobs.started_remote.to_string()
        }),
        ("GPU utilisation", |r| {
            format!("{:.3}", r.summary.jobs.utilisation)
        }),
        ("Jain (load/cap.)", |r| opt(r.summary.jobs.fairness_jain)),
        ("lease re-placements", |r| {
            r.summary.jobs.lease_replacements.to_string()
        }),
        ("messages", |r| r.summary.network.messages.to_string()),
        ("violations", |r| {
            r.summary.invariants.violations.to_string()
        }),
        ("digest", |r| r.digest[..16].to_owned()),
    ];
    let mut cells: Vec<Vec<String>> = vec![header];
    for (name, f) in rows {
        let mut row = vec![name.to_owned()];
        row.extend(runs.iter().map(|(_, r)| f(r)));
        cells.push(row);
    }
    let widths: Vec<usize> = (0..cells[0].len())
        .map(|c| cells.iter().map(|r| r[c].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in &cells {
        let line: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(c, v)| {
                if c == 0 {
                    format!("{v:<w$}", w = widths[c])
                } else {
                    format!("{v:>w$}", w = widths[c])
                }
            })
            .collect();
        let _ = writeln!(out, "{}", line.join("  "));
    }
    out
}

/// Writes `summary.json`, the CSV files and the plots of one run into `dir`.
pub fn write_run(dir: &Path, r: &RunOutcome) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut json = serde_json::to_value(&r.summary).map_err(io::Error::other)?;
    if let Some(o) = json.as_object_mut() {
        o.insert("digest".into(), r.digest.clone().into());
    }
    let text = serde_json::to_string_pretty(&json).map_err(io::Error::other)?;
    std::fs::write(dir.join("summary.json"), text + "\n")?;

    let mut ts = String::from(
        "t_hours,projects,jobs,jobs_started,jobs_waiting,messages,adverts,dropped,utilisation,members_down\n",
    );
    for s in &r.series {
        let _ = writeln!(
            ts,
            "{:.3},{},{},{},{},{},{},{},{:.4},{}",
            s.t_hours,
            s.projects,
            s.jobs,
            s.jobs_started,
            s.jobs_waiting,
            s.messages,
            s.adverts,
            s.dropped,
            s.utilisation,
            s.members_down
        );
    }
    std::fs::write(dir.join("timeseries.csv"), ts)?;

    let mut ms = String::from("t_hours,member,busy_gpus,utilisation\n");
    for row in &r.member_series {
        let _ = writeln!(
            ms,
            "{:.3},{},{},{:.4}",
            row.t_hours, r.members[row.member].member, row.busy_gpus, row.utilisation
        );
    }
    std::fs::write(dir.join("members_timeseries.csv"), ms)?;

    let mut mc = String::from(
        "member,role,country,gpus,filed,kept,referred_out,referred_out_accepted,exhausted,offers_in,accepted_in,declined_in,declined_no_capacity,intake,peak_held,utilisation,gpu_hours_hosted_for_others,gpu_hours_used_elsewhere\n",
    );
    for m in &r.members {
        let _ = writeln!(
            mc,
            "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{:.4},{:.3},{:.3}",
            m.member,
            m.role,
            m.country,
            m.gpus,
            m.filed,
            m.kept,
            m.referred_out,
            m.referred_out_accepted,
            m.exhausted,
            m.offers_in,
            m.accepted_in,
            m.declined_in,
            m.declined_no_capacity,
            m.intake,
            m.peak_held,
            m.utilisation,
            m.gpu_hours_hosted_for_others,
            m.gpu_hours_used_elsewhere
        );
    }
    std::fs::write(dir.join("members.csv"), mc)?;

    let mut wq = String::from("quantile,job_wait_minutes,time_to_acceptance_hours\n");
    for qv in [0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 1.0] {
        let w = crate::metrics::quantile(&r.waits_ms, qv).map(|v| v as f64 / 60_000.0);
        let a = crate::metrics::quantile(&r.acceptance_ms, qv).map(|v| v as f64 / 3_600_000.0);
        let _ = writeln!(
            wq,
            "{qv},{},{}",
            w.map_or(String::new(), |x| format!("{x:.3}")),
            a.map_or(String::new(), |x| format!("{x:.3}"))
        );
    }
    std::fs::write(dir.join("distributions.csv"), wq)?;

    write_plots(dir, r)
}

fn write_plots(dir: &Path, r: &RunOutcome) -> io::Result<()> {
    // Utilisation: the busiest members one by one (by capacity), plus the federation.
    let mut shown: Vec<usize> = (0..r.members.len())
        .filter(|i| r.members[*i].gpus > 0)
        .collect();
    shown.sort_by(|a, b| r.members[*b].gpus.cmp(&r.members[*a].gpus).then(a.cmp(b)));
    shown.truncate(10);
    shown.sort_unstable();
    let mut lines: Vec<Line> = shown
        .iter()
        .map(|i| Line {
            name: r.members[*i].member.clone(),
            points: r
                .member_series
                .iter()
                .filter(|row| row.member == *i)
                .map(|row| (row.t_hours / 24.0, row.utilisation))
                .collect(),
        })
        .collect();
    lines.push(Line {
        name: "federation".into(),
        points: r
            .series
            .iter()
            .map(|s| (s.t_hours / 24.0, s.utilisation))
            .collect(),
    });
    std::fs::write(
        dir.join("gpu_utilisation.svg"),
        svg::line_chart(
            &format!("GPU utilisation per member ({})", r.summary.policy),
            "day",
            "utilisation",
            &lines,
            Some(1.0),
        ),
    )?;

    std::fs::write(
        dir.join("job_waits.svg"),
        svg::line_chart(
            &format!("Job wait until first start, CDF ({})", r.summary.policy),
            "minutes",
            "share of jobs",
            &[Line {
                name: r.summary.policy.clone(),
                points: svg::cdf(&r.waits_ms, 60_000.0),
            }],
            Some(1.0),
        ),
    )?;

    std::fs::write(
        dir.join("time_to_acceptance.svg"),
        svg::line_chart(
            &format!("Time from filing to acceptance, CDF ({})", r.summary.policy),
            "hours",
            "share of accepted referrals",
            &[Line {
                name: r.summary.policy.clone(),
                points: svg::cdf(&r.acceptance_ms, 3_600_000.0),
            }],
            Some(1.0),
        ),
    )?;

    let mut by_volume: Vec<usize> = (0..r.members.len()).collect();
    by_volume.sort_by(|a, b| {
        let va = r.members[*a].filed + r.members[*a].offers_in;
        let vb = r.members[*b].filed + r.members[*b].offers_in;
        vb.cmp(&va).then(a.cmp(b))
    });
    by_volume.truncate(PLOT_MEMBERS);
    by_volume.sort_unstable();
    let cats: Vec<String> = by_volume
        .iter()
        .map(|i| r.members[*i].member.clone())
        .collect();
    let col = |f: fn(&crate::summary::MemberReport) -> u64| -> Vec<f64> {
        by_volume.iter().map(|i| f(&r.members[*i]) as f64).collect()
    };
    let stacks = vec![
        ("kept".to_owned(), col(|m| m.kept)),
        (
            "referred, accepted".to_owned(),
            col(|m| m.referred_out_accepted),
        ),
        ("exhausted".to_owned(), col(|m| m.exhausted)),
        (
            "referred, other".to_owned(),
            col(|m| {
                m.referred_out
                    .saturating_sub(m.referred_out_accepted)
                    .saturating_sub(m.exhausted)
            }),
        ),
        ("accepted from others".to_owned(), col(|m| m.accepted_in)),
        ("declined offers".to_owned(), col(|m| m.declined_in)),
    ];
    std::fs::write(
        dir.join("referral_outcomes.svg"),
        svg::stacked_bars(
            &format!("Referral outcomes per member ({})", r.summary.policy),
            "projects / offers",
            &cats,
            &stacks,
        ),
    )
}

/// Writes the comparison of several policies: `compare.json`, `compare.csv` and CDF plots
/// with one line per policy.
pub fn write_compare(dir: &Path, runs: &[(String, RunOutcome)]) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let json: Vec<serde_json::Value> = runs
        .iter()
        .map(|(_, r)| {
            let mut v = serde_json::to_value(&r.summary).unwrap_or_default();
            if let Some(o) = v.as_object_mut() {
                o.insert("digest".into(), r.digest.clone().into());
            }
            v
        })
        .collect();
    let text = serde_json::to_string_pretty(&json).map_err(io::Error::other)?;
    std::fs::write(dir.join("compare.json"), text + "\n")?;
    let mut csv = String::from(
        "policy,match_quality,achievable_match_quality,achieved_ratio,referred_share,exhausted_share,exhausted_with_eligible,max_peak_over_intake,declined_no_capacity,accept_p50_h,accept_p99_h,offers_per_project,messages_per_project,wait_p50_min,wait_p95_min,wait_p99_min,jobs_missed,utilisation,jain,lease_replacements,digest\n",
    );
    for (name, r) in runs {
        let s = &r.summary;
        let f = |v: Option<f64>| v.map_or(String::new(), |x| format!("{x}"));
        let _ = writeln!(
            csv,
            "{name},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
            s.projects.match_quality,
            s.projects.achievable_match_quality,
            s.projects.achieved_ratio,
            s.projects.referred_share,
            s.projects.exhausted_share,
            s.projects.exhausted_with_eligible,
            s.inflow.max_peak_over_intake,
            s.inflow.declined_no_capacity,
            f(s.projects.time_to_acceptance_hours.p50),
            f(s.projects.time_to_acceptance_hours.p99),
            s.projects.offers_per_project,
            s.projects.messages_per_project,
            f(s.jobs.wait_minutes.p50),
            f(s.jobs.wait_minutes.p95),
            f(s.jobs.wait_minutes.p99),
            s.jobs.missed,
            s.jobs.utilisation,
            f(s.jobs.fairness_jain),
            s.jobs.lease_replacements,
            r.digest
        );
    }
    std::fs::write(dir.join("compare.csv"), csv)?;
    let waits: Vec<Line> = runs
        .iter()
        .map(|(n, r)| Line {
            name: n.clone(),
            points: svg::cdf(&r.waits_ms, 60_000.0),
        })
        .collect();
    std::fs::write(
        dir.join("job_waits.svg"),
        svg::line_chart(
            "Job wait until first start, CDF per policy",
            "minutes",
            "share of jobs",
            &waits,
            Some(1.0),
        ),
    )?;
    let acc: Vec<Line> = runs
        .iter()
        .map(|(n, r)| Line {
            name: n.clone(),
            points: svg::cdf(&r.acceptance_ms, 3_600_000.0),
        })
        .collect();
    std::fs::write(
        dir.join("time_to_acceptance.svg"),
        svg::line_chart(
            "Time from filing to acceptance, CDF per policy",
            "hours",
            "share of accepted referrals",
            &acc,
            Some(1.0),
        ),
    )
}

//! CLI verbs that call a running node's admin API.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde_json::Value;

use super::JsonFlag;
use super::table::{Table, id_order, local_time_of};
use crate::admin_client::AdminClient;

/// Which node to talk to. Given once in the environment (`AIGUILLAGE_DATA_DIR`, or
/// `AIGUILLAGE_API` with `AIGUILLAGE_TOKEN_FILE`), or on the command line.
#[derive(clap::Args, Clone, Debug)]
pub struct NodeArgs {
    /// The node's data folder: its run.json names the admin API, admin.token holds the token.
    #[arg(long, global = true, env = "AIGUILLAGE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// The node's admin API address (with --token-file).
    #[arg(long, global = true, env = "AIGUILLAGE_API")]
    pub api: Option<std::net::SocketAddr>,
    /// The file holding the admin token (with --api).
    #[arg(long, global = true, env = "AIGUILLAGE_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// A devnet member's id, looked up under --devnet-dir.
    #[arg(long, global = true, env = "AIGUILLAGE_NODE")]
    pub node: Option<String>,
    /// The devnet folder --node looks in.
    #[arg(
        long,
        global = true,
        env = "AIGUILLAGE_DEVNET_DIR",
        default_value = "devnet-data"
    )]
    pub devnet_dir: PathBuf,
}

impl NodeArgs {
    pub fn client(&self) -> Result<AdminClient> {
        if let Some(addr) = self.api {
            let tf = self
                .token_file
                .as_ref()
                .context("--api needs --token-file (or AIGUILLAGE_TOKEN_FILE)")?;
            let token = crate::files::read_to_string(tf)?;
            return Ok(AdminClient::new(addr, token.trim().to_owned()));
        }
        if let Some(dir) = &self.data_dir {
            return AdminClient::for_data_dir(dir)
                .with_context(|| format!("finding the node of {}", dir.display()));
        }
        if let Some(node) = &self.node {
            return AdminClient::for_data_dir(&self.devnet_dir.join(node)).with_context(|| {
                format!(
                    "finding devnet member {node} under {}",
                    self.devnet_dir.display()
                )
            });
        }
        anyhow::bail!(
            "say which node: --data-dir DIR (or AIGUILLAGE_DATA_DIR), --api ADDR --token-file \
             FILE (or AIGUILLAGE_API and AIGUILLAGE_TOKEN_FILE), or --node ID for a devnet member"
        )
    }
}

/// The verbs that talk to a running node through its admin API.
#[derive(clap::Subcommand)]
pub enum NodeCommand {
    /// The node's status.
    Status {
        #[command(flatten)]
        node: NodeArgs,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// The node's directory of members.
    Directory {
        #[command(flatten)]
        node: NodeArgs,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Projects filed here.
    Project {
        #[command(flatten)]
        node: NodeArgs,
        #[command(subcommand)]
        command: ProjectCommand,
    },
    /// Referrals, out and in.
    Referral {
        #[command(flatten)]
        node: NodeArgs,
        #[command(subcommand)]
        command: ReferralCommand,
    },
    /// GPU jobs.
    Job {
        #[command(flatten)]
        node: NodeArgs,
        #[command(subcommand)]
        command: JobCommand,
    },
    /// The reciprocity ledger.
    Ledger {
        #[command(flatten)]
        node: NodeArgs,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// The figures an AI Factory reports to its funders.
    Kpi {
        #[command(flatten)]
        node: NodeArgs,
        #[command(flatten)]
        json: JsonFlag,
        /// Print `measure,value` lines for a spreadsheet instead of a table.
        #[arg(long, conflicts_with = "json")]
        csv: bool,
    },
    /// What the node told its people: decisions needed, answers, progress, jobs.
    Notifications {
        #[command(flatten)]
        node: NodeArgs,
        #[command(subcommand)]
        command: NoticeCommand,
    },
}

#[derive(clap::Subcommand)]
pub enum NoticeCommand {
    /// The latest notifications, or those after a sequence number.
    List {
        /// Only those not marked read.
        #[arg(long)]
        unread: bool,
        /// Only those after this sequence number.
        #[arg(long, default_value_t = 0)]
        after: u64,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Mark every notification up to this sequence number read.
    Read {
        /// The sequence number (the first column of `notifications list`).
        up_to: u64,
        #[command(flatten)]
        json: JsonFlag,
    },
}

/// `--step` and `--state` of a progress report.
#[derive(clap::Args)]
pub struct ProgressArgs {
    /// The journey step the company is at: first_contact, training, assessment,
    /// solution_matching, financing, poc_sandbox or production.
    #[arg(long)]
    step: aiguillage_wire::Service,
    /// in_progress, completed (the journey here ended well) or abandoned.
    #[arg(long, default_value = "in_progress")]
    state: aiguillage_wire::ProgressState,
    /// A note for the record (and, for a referral, for its origin).
    #[arg(long, default_value = "")]
    note: String,
}

impl ProgressArgs {
    fn body(&self) -> Value {
        serde_json::json!({ "step": self.step, "state": self.state, "note": self.note })
    }
}

#[derive(clap::Subcommand)]
pub enum ProjectCommand {
    /// File a project (see config/examples/project-*.toml).
    File {
        /// The project file.
        file: PathBuf,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// List the projects filed here.
    List {
        #[command(flatten)]
        json: JsonFlag,
    },
    /// A project with its routing explanation and its journey here.
    Show {
        /// The project's id, e.g. lu-l-aif/p3.
        id: String,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Move a project served here along its journey, or end it.
    Progress {
        /// The project's id.
        id: String,
        #[command(flatten)]
        progress: ProgressArgs,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Record that the one-stop shop advised the company against the project.
    AdviseAgainst {
        /// The project's id.
        id: String,
        /// Why it is not worth doing, in the adviser's words.
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        json: JsonFlag,
    },
}

#[derive(clap::Subcommand)]
pub enum ReferralCommand {
    /// Every referral, out and in.
    List {
        #[command(flatten)]
        json: JsonFlag,
    },
    /// A referral with its routing explanation and lifecycle history.
    Show {
        /// The referral's id, e.g. lu-l-aif/3.
        id: String,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Accept an incoming referral that awaits a decision.
    Accept {
        /// The referral's id.
        id: String,
        /// A note for the record.
        #[arg(long, default_value = "")]
        detail: String,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Decline an incoming referral that awaits a decision.
    Decline {
        /// The referral's id.
        id: String,
        /// Why, for the origin and the record.
        #[arg(long, default_value = "")]
        detail: String,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Report progress on a referral taken in (its dossier has arrived).
    Progress {
        /// The referral's id.
        id: String,
        #[command(flatten)]
        progress: ProgressArgs,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Withdraw a referral this member made (the client changed its mind).
    Withdraw {
        /// The referral's id.
        id: String,
        /// Why, for the target and the record.
        #[arg(long, default_value = "")]
        detail: String,
        #[command(flatten)]
        json: JsonFlag,
    },
}

#[derive(clap::Subcommand)]
pub enum JobCommand {
    /// Submit a job (see config/examples/job-small.toml).
    Submit {
        /// The job file.
        file: PathBuf,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Every job submitted or hosted here.
    List {
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Where the job stands, where it ran, its exit code and history.
    Show {
        /// The job's id, e.g. lu-l-aif/7.
        id: String,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Cancel a job this member submitted, wherever it runs.
    Cancel {
        /// The job's id.
        id: String,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// The end of the stdout and stderr of a job this member submitted (the last 192 KiB of
    /// each), fetched from the host it ran at.
    Output {
        /// The job's id.
        id: String,
        /// How long to wait for the host's answer.
        #[arg(long, default_value = "30s")]
        wait: String,
        #[command(flatten)]
        json: JsonFlag,
    },
}

impl NodeCommand {
    pub fn run(self) -> Result<()> {
        match self {
            NodeCommand::Status { node, json } => status(&node, json.json),
            NodeCommand::Directory { node, json } => directory(&node, json.json),
            NodeCommand::Ledger { node, json } => ledger(&node, json.json),
            NodeCommand::Kpi { node, json, csv } => kpi(&node, json.json, csv),
            NodeCommand::Notifications { node, command } => match command {
                NoticeCommand::List {
                    unread,
                    after,
                    json,
                } => notifications(&node, unread, after, json.json),
                NoticeCommand::Read { up_to, json } => {
                    let v = node.client()?.post(
                        "/notifications/read",
                        &serde_json::json!({ "up_to": up_to }),
                    )?;
                    print(&v, json.json, |v| {
                        println!("read up to {}", v["read_up_to"]);
                    });
                    Ok(())
                }
            },
            NodeCommand::Project { node, command } => match command {
                ProjectCommand::File { file, json } => project_file(&node, &file, json.json),
                ProjectCommand::List { json } => project_list(&node, json.json),
                ProjectCommand::Show { id, json } => project_show(&node, &id, json.json),
                ProjectCommand::Progress { id, progress, json } => act(
                    &node,
                    &id,
                    &format!("/projects/{id}/progress"),
                    &progress.body(),
                    json.json,
                ),
                ProjectCommand::AdviseAgainst { id, reason, json } => act(
                    &node,
                    &id,
                    &format!("/projects/{id}/advise-against"),
                    &serde_json::json!({ "reason": reason }),
                    json.json,
                ),
            },
            NodeCommand::Referral { node, command } => match command {
                ReferralCommand::List { json } => referral_list(&node, json.json),
                ReferralCommand::Show { id, json } => referral_show(&node, &id, json.json),
                ReferralCommand::Accept { id, detail, json } => {
                    referral_decide(&node, &id, true, &detail, json.json)
                }
                ReferralCommand::Decline { id, detail, json } => {
                    referral_decide(&node, &id, false, &detail, json.json)
                }
                ReferralCommand::Progress { id, progress, json } => act(
                    &node,
                    &id,
                    &format!("/referrals/{id}/progress"),
                    &progress.body(),
                    json.json,
                ),
                ReferralCommand::Withdraw { id, detail, json } => act(
                    &node,
                    &id,
                    &format!("/referrals/{id}/withdraw"),
                    &serde_json::json!({ "detail": detail }),
                    json.json,
                ),
            },
            NodeCommand::Job { node, command } => match command {
                JobCommand::Submit { file, json } => job_submit(&node, &file, json.json),
                JobCommand::List { json } => job_list(&node, json.json),
                JobCommand::Show { id, json } => job_show(&node, &id, json.json),
                JobCommand::Cancel { id, json } => job_cancel(&node, &id, json.json),
                JobCommand::Output { id, wait, json } => {
                    job_output(&node, &id, crate::clock::parse_duration(&wait)?, json.json)
                }
            },
        }
    }
}

/// The largest project or job file the CLI reads; a larger one is refused before it is
/// read whole.
const MAX_INPUT_BYTES: u64 = 1 << 20;

fn print(v: &Value, json: bool, human: impl Fn(&Value)) {
    if json {
        println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
    } else {
        human(v);
    }
}

fn pretty(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

fn status(t: &NodeArgs, json: bool) -> Result<()> {
    let client = t.client()?;
    let v = client.get("/status")?;
    print(&v, json, |v| {
        let n = |k: &str| v[k].as_u64().map_or("-".to_owned(), |x| x.to_string());
        println!(
            "member {} (peer id {})",
            v["member"].as_str().unwrap_or("?"),
            v["peer_id"].as_str().unwrap_or("?")
        );
        println!("  console http://{}/console", client.addr);
        for l in v["listen"].as_array().into_iter().flatten() {
            println!("  listening on {}", l.as_str().unwrap_or(""));
        }
        println!(
            "roster serial {} ({} members); connected to {} member(s); directory {}",
            n("roster_serial"),
            n("roster_members"),
            n("peers_connected"),
            n("directory")
        );
        for p in v["peers_not_connected"].as_array().into_iter().flatten() {
            println!(
                "  not connected: {} ({} failed dial(s){})",
                p["member"].as_str().unwrap_or("?"),
                p["failed_dials"].as_u64().unwrap_or(0),
                p["last_error"]
                    .as_str()
                    .map(|e| format!(", last: {e}"))
                    .unwrap_or_default()
            );
        }
        match v["clock_offset_s"].as_f64() {
            Some(o) => println!(
                "clock: {o:+.3} s against the median of {} member(s)",
                n("clock_members")
            ),
            None => println!("clock: no member heard yet"),
        }
        for c in v["clocks_off"].as_array().into_iter().flatten() {
            println!(
                "  {}'s clock is {:+.1} s from this one",
                c["member"].as_str().unwrap_or("?"),
                c["ahead_s"].as_f64().unwrap_or(0.0)
            );
        }
        println!("GPUs: {} free of {}", n("gpus_free"), n("gpus_total"));
        let mut t = Table::new(&["held in memory", "count"]);
        for (label, key) in [
            ("projects", "projects"),
            ("referrals out", "referrals_out"),
            ("referrals in", "referrals_in"),
            ("jobs submitted here", "jobs"),
            ("jobs hosted here", "jobs_hosted"),
        ] {
            t.row(vec![label.into(), n(key)]);
        }
        t.print();
    });
    Ok(())
}

fn directory(t: &NodeArgs, json: bool) -> Result<()> {
    let v = t.client()?.get("/directory")?;
    print(&v, json, |v| {
        let mut t = Table::new(&[
            "member",
            "role",
            "country",
            "gpus",
            "free",
            "intake",
            "advert issued",
            "priority",
        ]);
        let n = |x: &Value| x.as_u64().map_or("-".to_owned(), |x| x.to_string());
        for a in v.as_array().into_iter().flatten() {
            let prio: Vec<&str> = a["priority"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            t.row(vec![
                a["member"].as_str().unwrap_or("").into(),
                a["role"].as_str().unwrap_or("").into(),
                a["country"].as_str().unwrap_or("").into(),
                n(&a["gpus_total"]),
                n(&a["gpus_free"]),
                n(&a["referral_intake"]),
                local_time_of(&a["issued_at"]),
                prio.join(","),
            ]);
        }
        t.print_or("no adverts yet (is the node connected? see `aiguillage status`)");
    });
    Ok(())
}

fn project_file(t: &NodeArgs, path: &Path, json: bool) -> Result<()> {
    let text = crate::files::read_to_string_bounded(path, MAX_INPUT_BYTES, "project file")?;
    let file: toml::Value =
        toml::from_str(&text).with_context(|| format!("{} is not TOML", path.display()))?;
    // Validate locally first, so errors name the file and line.
    aiguillage_core::project_file::ProjectFile::from_toml(&text, &path.display().to_string())?;
    let body = serde_json::to_value(file)?;
    let v = t.client()?.post("/projects", &body)?;
    print(&v, json, |v| {
        println!(
            "{} {}: {}",
            v["project"].as_str().unwrap_or(""),
            v["outcome"].as_str().unwrap_or(""),
            v["explanation"].as_str().unwrap_or("")
        );
        if let Some(r) = v["referral"].as_str() {
            println!("referral {r} (follow it with `aiguillage referral show {r}`)");
        }
    });
    Ok(())
}

fn referral_list(t: &NodeArgs, json: bool) -> Result<()> {
    let v = t.client()?.get("/referrals")?;
    print(&v, json, |v| {
        let mut rows: Vec<&Value> = v.as_array().into_iter().flatten().collect();
        rows.sort_by_key(|r| id_order(r["referral"].as_str().unwrap_or("")));
        let mut t = Table::new(&["referral", "direction", "sector", "state", "with"]);
        for r in rows {
            let state = r["state"]["state"]
                .as_str()
                .or(r["state"].as_str())
                .unwrap_or("");
            let other = r["target"].as_str().or(r["origin"].as_str()).unwrap_or("-");
            t.row(vec![
                r["referral"].as_str().unwrap_or("").into(),
                r["direction"].as_str().unwrap_or("").into(),
                r["sector"].as_str().unwrap_or("").into(),
                state.into(),
                other.into(),
            ]);
        }
        t.print_or("no referrals");
    });
    Ok(())
}

fn referral_show(t: &NodeArgs, id: &str, json: bool) -> Result<()> {
    let v = t.client()?.get(&format!("/referrals/{id}"))?;
    print(&v, json, |v| {
        let r = &v["referral"];
        // An incoming referral's state carries its deadline ({"state": …}); an outgoing
        // one's is its name.
        let state = r["state"]["state"]
            .as_str()
            .or(r["state"].as_str())
            .unwrap_or("?");
        let card = &r["card"];
        if v["direction"] == "in" {
            println!(
                "referral {id} from {}: {state}",
                r["origin"].as_str().unwrap_or("?")
            );
        } else {
            println!("referral {id} (originated here): {state}");
        }
        if card.is_object() {
            let list = |x: &Value| {
                let items: Vec<&str> = x
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                if items.is_empty() {
                    "-".to_owned()
                } else {
                    items.join(", ")
                }
            };
            println!(
                "  project {}: {} in {}, {} company, stage {}",
                card["project"].as_str().unwrap_or("?"),
                card["sector"].as_str().unwrap_or("?"),
                card["country"].as_str().unwrap_or("?"),
                card["company_size"].as_str().unwrap_or("?"),
                card["stage"].as_str().unwrap_or("?")
            );
            println!("  needs: {}", list(&card["services_needed"]));
            if let Some(h) = card["gpu_hours"].as_u64() {
                println!("  GPU-hours: {h}");
            }
            println!("  languages: {}", list(&card["languages"]));
        }
        if state == "awaiting_decision" {
            println!(
                "  decide by {} (`aiguillage referral accept|decline {id}`)",
                local_time_of(&r["respond_by"])
            );
        }
        let dossier = &r["dossier"];
        if dossier.is_object() {
            println!(
                "  client: {}, contact {} <{}>",
                dossier["company"].as_str().unwrap_or("?"),
                dossier["contact_name"].as_str().unwrap_or("?"),
                dossier["contact_email"].as_str().unwrap_or("?")
            );
            if let Some(summary) = dossier["summary"].as_str() {
                println!("  summary: {summary}");
            }
        }
        for a in r["attempts"].as_array().into_iter().flatten() {
            println!(
                "  attempt {} at {}: {} (offered {}, answer by {})",
                a["attempt"],
                a["target"].as_str().unwrap_or("?"),
                a["outcome"]["outcome"].as_str().unwrap_or("waiting"),
                local_time_of(&a["offered_at"]),
                local_time_of(&a["respond_by"])
            );
        }
        if let Some(text) = v["explanation"]["text"].as_str() {
            println!("  routing: {text}");
        }
        history(&r["history"]);
    });
    Ok(())
}

fn referral_decide(t: &NodeArgs, id: &str, accept: bool, detail: &str, json: bool) -> Result<()> {
    let action = if accept { "accept" } else { "decline" };
    act(
        t,
        id,
        &format!("/referrals/{id}/{action}"),
        &serde_json::json!({ "detail": detail }),
        json,
    )
}

fn job_submit(t: &NodeArgs, path: &Path, json: bool) -> Result<()> {
    let text = crate::files::read_to_string_bounded(path, MAX_INPUT_BYTES, "job file")?;
    let file: toml::Value =
        toml::from_str(&text).with_context(|| format!("{} is not TOML", path.display()))?;
    let parsed: crate::job_file::JobFile =
        toml::from_str(&text).with_context(|| format!("{} is not a job file", path.display()))?;
    parsed
        .check()
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let v = t.client()?.post("/jobs", &serde_json::to_value(file)?)?;
    print(&v, json, |v| {
        let job = v["job"].as_str().unwrap_or("?");
        println!(
            "job {job} submitted: {} (follow it with `aiguillage job show {job}`)",
            v["phase"]
                .as_str()
                .or(v["phase"]["phase"].as_str())
                .unwrap_or("accepted")
        );
    });
    Ok(())
}

fn job_list(t: &NodeArgs, json: bool) -> Result<()> {
    let v = t.client()?.get("/jobs")?;
    print(&v, json, |v| {
        let mut rows: Vec<&Value> = v.as_array().into_iter().flatten().collect();
        rows.sort_by_key(|r| id_order(r["job"].as_str().unwrap_or("")));
        let mut t = Table::new(&["job", "direction", "gpus", "phase", "host", "lease"]);
        for r in rows {
            t.row(vec![
                r["job"].as_str().unwrap_or("").into(),
                r["direction"].as_str().unwrap_or("").into(),
                r["gpus"].to_string(),
                r["phase"]
                    .as_str()
                    .or(r["phase"]["phase"].as_str())
                    .unwrap_or("")
                    .into(),
                r["host"]
                    .as_str()
                    .or(r["origin"].as_str().map(|_| "here"))
                    .unwrap_or("here")
                    .into(),
                r["epoch"].to_string(),
            ]);
        }
        t.print_or("no jobs");
    });
    Ok(())
}

fn ledger(t: &NodeArgs, json: bool) -> Result<()> {
    let v = t.client()?.get("/ledger")?;
    print(&v, json, |v| {
        let mut t = Table::new(&[
            "member",
            "GPU-h hosted",
            "GPU-h consumed",
            "referrals sent (accepted)",
            "received (accepted)",
            "balance",
        ]);
        let hours = |x: &Value| format!("{:.2}", x.as_u64().unwrap_or(0) as f64 / 3600.0);
        for r in v.as_array().into_iter().flatten() {
            let tot = &r["totals"];
            t.row(vec![
                r["member"].as_str().unwrap_or("").into(),
                hours(&tot["gpu_seconds_hosted"]),
                hours(&tot["gpu_seconds_consumed"]),
                format!(
                    "{} ({})",
                    tot["referrals_sent"], tot["referrals_sent_accepted"]
                ),
                format!(
                    "{} ({})",
                    tot["referrals_received"], tot["referrals_received_accepted"]
                ),
                r["balance"]
                    .as_f64()
                    .map_or("-".into(), |b| format!("{b:.2}")),
            ]);
        }
        t.print_or("nothing exchanged with another member yet");
    });
    Ok(())
}

/// Posts an action on `subject` and says the state it left it in.
fn act(t: &NodeArgs, subject: &str, path: &str, body: &Value, json: bool) -> Result<()> {
    let v = t.client()?.post(path, body)?;
    print(&v, json, |v| {
        let state = v
            .as_str()
            .or(v["state"].as_str())
            .or(v["state"]["state"].as_str())
            .unwrap_or("done");
        match v["step"].as_str() {
            Some(step) => println!("{subject}: {state} at {step}"),
            None => println!("{subject}: {state}"),
        }
    });
    Ok(())
}

fn time(v: &Value) -> String {
    local_time_of(v)
}

fn history(h: &Value) {
    for t in h.as_array().into_iter().flatten() {
        println!(
            "  {} {:<16} {}",
            time(&t["at"]),
            t["state"].as_str().unwrap_or(""),
            t["detail"].as_str().unwrap_or("")
        );
    }
}

fn project_list(t: &NodeArgs, json: bool) -> Result<()> {
    let v = t.client()?.get("/projects")?;
    print(&v, json, |v| {
        let mut rows: Vec<&Value> = v.as_array().into_iter().flatten().collect();
        rows.sort_by_key(|p| id_order(p["card"]["project"].as_str().unwrap_or("")));
        let mut t = Table::new(&[
            "project", "sector", "filed", "outcome", "journey", "step", "referral",
        ]);
        for p in rows {
            t.row(vec![
                p["card"]["project"].as_str().unwrap_or("").into(),
                p["card"]["sector"].as_str().unwrap_or("").into(),
                local_time_of(&p["filed_at"]),
                p["explanation"]["outcome"].as_str().unwrap_or("").into(),
                p["journey"]["state"]["state"].as_str().unwrap_or("").into(),
                p["journey"]["step"]
                    .as_str()
                    .or(p["card"]["stage"].as_str())
                    .unwrap_or("-")
                    .into(),
                p["referral"].as_str().unwrap_or("-").into(),
            ]);
        }
        t.print_or("no projects filed here");
    });
    Ok(())
}

fn project_show(t: &NodeArgs, id: &str, json: bool) -> Result<()> {
    let v = t.client()?.get(&format!("/projects/{id}"))?;
    print(&v, json, |v| {
        let card = &v["card"];
        println!(
            "project {}: {} ({}, {}), filed {}",
            card["project"].as_str().unwrap_or(id),
            card["sector"].as_str().unwrap_or(""),
            card["country"].as_str().unwrap_or(""),
            card["company_size"].as_str().unwrap_or(""),
            time(&v["filed_at"])
        );
        if let Some(text) = v["explanation"]["text"].as_str() {
            println!("routing: {text}");
        }
        if let Some(r) = v["referral"].as_str() {
            println!("referral {r} (see `aiguillage referral show {r}`)");
        }
        let j = &v["journey"];
        println!(
            "journey here: {} at {}",
            j["state"]["state"].as_str().unwrap_or(""),
            j["step"]
                .as_str()
                .unwrap_or(card["stage"].as_str().unwrap_or("-"))
        );
        if let Some(reason) = j["state"]["reason"].as_str() {
            println!("  reason: {reason}");
        }
        history(&j["history"]);
    });
    Ok(())
}

fn notifications(t: &NodeArgs, unread: bool, after: u64, json: bool) -> Result<()> {
    let mut path = format!("/notifications?after={after}");
    if unread {
        path.push_str("&unread=true");
    }
    let v = t.client()?.get(&path)?;
    print(&v, json, |v| {
        let rows = v["notifications"].as_array().cloned().unwrap_or_default();
        if rows.is_empty() {
            println!("no notifications{}", if unread { " unread" } else { "" });
        }
        for n in rows {
            let text =
                serde_json::from_value::<aiguillage_core::Notification>(n["notification"].clone())
                    .map(|n| n.describe())
                    .unwrap_or_else(|_| n["notification"].to_string());
            let by = n["notification"]["decide_by"]
                .as_u64()
                .map(|_| format!(" by {}", time(&n["notification"]["decide_by"])))
                .unwrap_or_default();
            println!(
                "{:>6} {} {} {text}{by}",
                n["seq"].as_u64().unwrap_or(0),
                time(&n["at"]),
                if n["read"] == true { " " } else { "*" }
            );
        }
        println!(
            "read up to {}; mark read with `aiguillage notifications read N`",
            v["read_up_to"]
        );
    });
    Ok(())
}

/// The figures as `measure value` rows: nested tables joined with `.`, e.g.
/// `referrals_out.de-jaif.health.accepted`.
fn kpi_rows(v: &Value, prefix: &str, out: &mut Vec<(String, String)>) {
    match v {
        Value::Object(o) => {
            for (k, val) in o {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                kpi_rows(val, &key, out);
            }
        }
        Value::String(s) => out.push((prefix.to_owned(), s.clone())),
        other => out.push((prefix.to_owned(), other.to_string())),
    }
}

fn kpi(t: &NodeArgs, json: bool, csv: bool) -> Result<()> {
    let v = t.client()?.get("/kpi")?;
    if json {
        pretty(&v);
        return Ok(());
    }
    let mut rows = Vec::new();
    kpi_rows(&v, "", &mut rows);
    if csv {
        println!("measure,value");
        for (k, val) in rows {
            println!("{k},{val}");
        }
    } else {
        let mut t = Table::new(&["measure", "value"]);
        for (k, val) in rows {
            t.row(vec![k, val]);
        }
        t.print();
    }
    Ok(())
}

/// `job show`: where the job stands, where it ran and how it ended, then its history.
fn job_show(t: &NodeArgs, id: &str, json: bool) -> Result<()> {
    let v = t.client()?.get(&format!("/jobs/{id}"))?;
    print(&v, json, |v| {
        let job = &v["job"];
        let phase = &job["phase"];
        let tag = phase["phase"].as_str().unwrap_or("?");
        let gpus = job["spec"]["requirements"]["gpus"].as_u64().unwrap_or(0);
        let epoch = job["epoch"].as_u64().unwrap_or(0);
        if v["direction"] == "hosted" {
            println!(
                "job {id}: hosted here for {}, {gpus} GPU(s), epoch {epoch}: {tag}",
                job["origin"].as_str().unwrap_or("?")
            );
        } else {
            println!("job {id}: submitted here, {gpus} GPU(s): {tag}");
            let at = match v["host"].as_str() {
                Some(h) => format!("at {h} (epoch {epoch})"),
                None => "here".into(),
            };
            match tag {
                "done" => {
                    let exit = phase["exit_code"]
                        .as_i64()
                        .map_or("no exit code".into(), |c| format!("exit code {c}"));
                    println!(
                        "  ran {at}: {}, {exit}",
                        phase["state"].as_str().unwrap_or("?")
                    );
                }
                "leased" | "reserving" => println!("  placed {at}"),
                "queued" | "missed" => println!(
                    "  not placed: {}",
                    phase["reason"].as_str().unwrap_or("no reason given")
                ),
                _ => {}
            }
            for p in job["placements"].as_array().into_iter().flatten() {
                println!(
                    "  placement epoch {} at {}: {}",
                    p["epoch"],
                    p["host"].as_str().unwrap_or("?"),
                    p["outcome"].as_str().unwrap_or(if p["confirmed"] == true {
                        "confirmed"
                    } else {
                        "pending"
                    })
                );
            }
        }
        for h in job["history"].as_array().into_iter().flatten() {
            let at = local_time_of(&h["at"]);
            println!(
                "  {at}  {} {}",
                h["state"].as_str().unwrap_or(""),
                h["detail"].as_str().unwrap_or("")
            );
        }
    });
    Ok(())
}

/// `job cancel`: stops a job this member submitted, wherever it runs.
fn job_cancel(t: &NodeArgs, id: &str, json: bool) -> Result<()> {
    let v = t
        .client()?
        .post(&format!("/jobs/{id}/cancel"), &serde_json::json!({}))?;
    print(&v, json, |v| {
        println!(
            "job {id}: {}",
            v["phase"].as_str().unwrap_or("cancel requested")
        )
    });
    Ok(())
}

/// `job output`: asks the host (or reads it here), waits for the answer, prints it.
fn job_output(t: &NodeArgs, id: &str, wait: std::time::Duration, json: bool) -> Result<()> {
    let client = t.client()?;
    let asked = client.post(&format!("/jobs/{id}/output"), &serde_json::json!({}))?;
    let output = if asked["stdout"].is_string() {
        asked
    } else {
        let since = asked["requested_at"].as_u64().unwrap_or(0);
        let end = std::time::Instant::now() + wait;
        loop {
            if let Ok(v) = client.get(&format!("/jobs/{id}/output"))
                && v["fetched_at"].as_u64().is_some_and(|at| at >= since)
            {
                break v;
            }
            if std::time::Instant::now() >= end {
                anyhow::bail!(
                    "{} did not send the output of job {id} within {} (is it connected? see `aiguillage status`)",
                    asked["host"].as_str().unwrap_or("the host"),
                    humantime::format_duration(wait)
                );
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    };
    print(&output, json, |v| {
        let source = v["source"].as_str().unwrap_or("?");
        let at = if source == "here" {
            "here".to_owned()
        } else {
            format!("at {source}")
        };
        for stream in ["stdout", "stderr"] {
            let text = v[stream].as_str().unwrap_or("");
            let size = v[format!("{stream}_size")].as_u64().unwrap_or(0);
            let shown = if (text.len() as u64) < size {
                format!("the last {} of {size} bytes", text.len())
            } else {
                format!("{size} bytes")
            };
            println!("--- {stream} of job {id} {at} ({shown})");
            print!("{text}");
            if !text.is_empty() && !text.ends_with('\n') {
                println!();
            }
        }
    });
    Ok(())
}

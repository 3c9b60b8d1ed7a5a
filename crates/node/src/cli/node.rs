//! CLI verbs that call a running node's admin API.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde_json::Value;

use crate::admin_client::AdminClient;

/// Where to find the node: a devnet member by id, or an API address with a token file.
pub struct Target {
    pub node: Option<String>,
    pub devnet_dir: PathBuf,
    pub api: Option<std::net::SocketAddr>,
    pub token_file: Option<PathBuf>,
}

impl Target {
    pub fn client(&self) -> Result<AdminClient> {
        match (&self.node, &self.api) {
            (_, Some(addr)) => {
                let tf = self
                    .token_file
                    .as_ref()
                    .context("--api needs --token-file")?;
                let token = crate::files::read_to_string(tf)?;
                Ok(AdminClient::new(*addr, token.trim().to_owned()))
            }
            (Some(node), None) => AdminClient::for_data_dir(&self.devnet_dir.join(node))
                .with_context(|| {
                    format!(
                        "finding devnet member {node} under {}",
                        self.devnet_dir.display()
                    )
                }),
            (None, None) => anyhow::bail!(
                "say which node: --node ID (a devnet member) or --api ADDR --token-file FILE"
            ),
        }
    }
}

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

pub fn status(t: &Target, json: bool) -> Result<()> {
    let v = t.client()?.get("/status")?;
    print(&v, json, |v| {
        if let Some(o) = v.as_object() {
            for (k, val) in o {
                println!("{k:<16} {val}");
            }
        }
    });
    Ok(())
}

pub fn directory(t: &Target, json: bool) -> Result<()> {
    let v = t.client()?.get("/directory")?;
    print(&v, json, |v| {
        println!(
            "{:<14} {:<8} {:<3} {:>5} {:>5} {:>6}  priority",
            "member", "role", "cc", "gpus", "free", "intake"
        );
        for a in v.as_array().into_iter().flatten() {
            let prio: Vec<&str> = a["priority"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            println!(
                "{:<14} {:<8} {:<3} {:>5} {:>5} {:>6}  {}",
                a["member"].as_str().unwrap_or(""),
                a["role"].as_str().unwrap_or(""),
                a["country"].as_str().unwrap_or(""),
                a["gpus_total"],
                a["gpus_free"],
                a["referral_intake"],
                prio.join(",")
            );
        }
    });
    Ok(())
}

pub fn project_file(t: &Target, path: &Path, json: bool) -> Result<()> {
    let text = crate::files::read_to_string(path)?;
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

pub fn referral_list(t: &Target, json: bool) -> Result<()> {
    let v = t.client()?.get("/referrals")?;
    print(&v, json, |v| {
        for r in v.as_array().into_iter().flatten() {
            let state = r["state"]["state"]
                .as_str()
                .or(r["state"].as_str())
                .unwrap_or("");
            let other = r["target"].as_str().or(r["origin"].as_str()).unwrap_or("-");
            println!(
                "{:<18} {:<4} {:<22} {:<18} {}",
                r["referral"].as_str().unwrap_or(""),
                r["direction"].as_str().unwrap_or(""),
                r["sector"].as_str().unwrap_or(""),
                state,
                other
            );
        }
    });
    Ok(())
}

pub fn referral_show(t: &Target, id: &str, json: bool) -> Result<()> {
    let v = t.client()?.get(&format!("/referrals/{id}"))?;
    print(&v, json, |v| {
        if let Some(text) = v["explanation"]["text"].as_str() {
            println!("routing: {text}");
        }
        for h in v["referral"]["history"].as_array().into_iter().flatten() {
            println!(
                "  {} {:<14} {}",
                crate::clock::format_time(aiguillage_wire::Timestamp(
                    h["at"].as_u64().unwrap_or(0)
                )),
                h["state"].as_str().unwrap_or(""),
                h["detail"].as_str().unwrap_or("")
            );
        }
    });
    Ok(())
}

pub fn referral_decide(t: &Target, id: &str, accept: bool, detail: &str, json: bool) -> Result<()> {
    let action = if accept { "accept" } else { "decline" };
    let v = t.client()?.post(
        &format!("/referrals/{id}/{action}"),
        &serde_json::json!({ "detail": detail }),
    )?;
    print(&v, json, pretty);
    Ok(())
}

pub fn job_submit(t: &Target, path: &Path, json: bool) -> Result<()> {
    let text = crate::files::read_to_string(path)?;
    let file: toml::Value =
        toml::from_str(&text).with_context(|| format!("{} is not TOML", path.display()))?;
    let parsed: crate::job_file::JobFile =
        toml::from_str(&text).with_context(|| format!("{} is not a job file", path.display()))?;
    parsed
        .check()
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let v = t.client()?.post("/jobs", &serde_json::to_value(file)?)?;
    print(&v, json, pretty);
    Ok(())
}

pub fn get_and_print(t: &Target, path: &str, json: bool) -> Result<()> {
    let v = t.client()?.get(path)?;
    print(&v, json, pretty);
    Ok(())
}

/// `job show`: where the job stands, where it ran and how it ended, then its history.
pub fn job_show(t: &Target, id: &str, json: bool) -> Result<()> {
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
            let at = h["at"]
                .as_u64()
                .map(|ms| crate::clock::format_time(aiguillage_wire::Timestamp(ms)))
                .unwrap_or_default();
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
pub fn job_cancel(t: &Target, id: &str, json: bool) -> Result<()> {
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

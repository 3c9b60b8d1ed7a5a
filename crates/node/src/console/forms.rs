//! The console's forms: an urlencoded body read into the same typed calls the admin API
//! makes. A field the form does not have is refused, not dropped.

use aiguillage_core::project_file::ProjectFile;
use serde_json::{Value, json};

use super::{Console, User, pages};
use crate::api::{self, ApiCall, ApiError, ProgressReport};
use crate::job_file::JobFile;

/// An urlencoded form body, fields in order (a name may repeat, as checkboxes do).
pub struct Form(Vec<(String, String)>);

/// The most fields a console form has, with room for every checkbox.
pub const MAX_FIELDS: usize = 128;
/// The fields that may come more than once (multiple choices).
const REPEATED: &[&str] = &["secondary_sectors", "services_needed"];

impl Form {
    pub fn empty() -> Form {
        Form(Vec::new())
    }

    pub fn parse(body: &[u8]) -> Result<Form, ApiError> {
        let fields = form_urlencoded::parse(body).take(MAX_FIELDS + 1);
        let form = Form(
            fields
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        );
        if form.0.len() > MAX_FIELDS {
            return Err(ApiError::bad_request(format!(
                "the form has more than {MAX_FIELDS} fields"
            )));
        }
        Ok(form)
    }

    pub fn one(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn text(&self, name: &str) -> String {
        self.one(name).unwrap_or("").trim().to_owned()
    }

    pub fn all_of(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, v)| k == name && !v.trim().is_empty())
            .map(|(_, v)| v.trim().to_owned())
            .collect()
    }

    /// A comma-separated field as a list.
    fn list(&self, name: &str) -> Vec<String> {
        self.text(name)
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// Refuses a field that is not one of `known` (besides the CSRF token), and one that
    /// comes twice where only one value is read.
    pub fn only(&self, known: &[&str]) -> Result<(), ApiError> {
        for (i, (k, _)) in self.0.iter().enumerate() {
            if k != "csrf" && !known.contains(&k.as_str()) {
                return Err(ApiError::bad_request(format!(
                    "the form has a field {k:?} this page does not take"
                )));
            }
            if !REPEATED.contains(&k.as_str()) && self.0[..i].iter().any(|(e, _)| e == k) {
                return Err(ApiError::bad_request(format!(
                    "the form has the field {k:?} twice"
                )));
            }
        }
        Ok(())
    }
}

pub enum Done {
    Redirect(String),
    /// A part of a page, for htmx to put in place.
    Part(axum::http::StatusCode, maud::Markup),
    Page(maud::Markup),
    /// The page again, with why the form was refused.
    Refused(axum::http::StatusCode, maud::Markup),
}

fn referral_page(id: &str) -> String {
    format!("/console/referral?id={}", pages::url_encode(id))
}

const PROJECT_FIELDS: &[&str] = &[
    "sector",
    "secondary_sectors",
    "country",
    "company_size",
    "stage",
    "services_needed",
    "gpu_hours",
    "datasets_wanted",
    "languages",
    "consent_scope",
    "consent_members",
    "consent_countries",
    "company",
    "contact_name",
    "contact_email",
    "summary",
    "choice",
    "reason",
    "preview",
];

/// The project form as the JSON of a project file, so that it is checked by the same
/// decoder, with the same messages, as a file given to the CLI.
pub fn project_json(form: &Form) -> Result<Value, ApiError> {
    form.only(PROJECT_FIELDS)?;
    let gpu_hours: u64 = match form.text("gpu_hours").as_str() {
        "" => 0,
        s => s.parse().map_err(|_| {
            ApiError::invalid(format!("gpu_hours: {s:?} is not a whole number of hours"))
        })?,
    };
    let scope = form.text("consent_scope");
    let (members, countries) = (form.list("consent_members"), form.list("consent_countries"));
    // Names typed under another scope would be dropped, and the consent be wider or
    // narrower than the client's: refused instead.
    if scope != "named" && !(members.is_empty() && countries.is_empty()) {
        return Err(ApiError::invalid(
            "consent: members or countries are named, but the scope chosen is not \
             \"only to the members or countries named\"",
        ));
    }
    let mut consent = json!({});
    match scope.as_str() {
        "whole_federation" => consent["whole_federation"] = json!(true),
        "named" => {
            consent["members"] = json!(members);
            consent["countries"] = json!(countries);
        }
        "local_only" => consent["local_only"] = json!(true),
        other => {
            return Err(ApiError::invalid(format!(
                "consent: {other:?}: choose the whole federation, named members or \
                 countries, or here only"
            )));
        }
    }
    let mut v = json!({
        "sector": form.text("sector"),
        "secondary_sectors": form.all_of("secondary_sectors"),
        "country": form.text("country").to_uppercase(),
        "company_size": form.text("company_size"),
        "stage": form.text("stage"),
        "services_needed": form.all_of("services_needed"),
        "gpu_hours": gpu_hours,
        "datasets_wanted": form.list("datasets_wanted"),
        "languages": form.list("languages"),
        "consent": consent,
        "dossier": {
            "company": form.text("company"),
            "contact_name": form.text("contact_name"),
            "contact_email": form.text("contact_email"),
            "summary": form.one("summary").unwrap_or(""),
        },
    });
    let reason = form.text("reason");
    match form.text("choice").as_str() {
        "" | "route" if !reason.is_empty() => {
            return Err(ApiError::invalid(
                "reason: a reason is for staying here or advising against, not for routing",
            ));
        }
        "" | "route" => {}
        "stay" => v["stay"] = json!({ "reason": reason }),
        "advise_against" => v["advised_against"] = json!({ "reason": reason }),
        other => {
            return Err(ApiError::invalid(format!(
                "choice: {other:?}: route, stay or advise_against"
            )));
        }
    }
    Ok(v)
}

fn project_file(form: &Form) -> Result<ProjectFile, ApiError> {
    file_of(project_json(form)?)
}

fn file_of(v: Value) -> Result<ProjectFile, ApiError> {
    let file: ProjectFile =
        serde_json::from_value(v).map_err(|e| ApiError::invalid(format!("project: {e}")))?;
    file.check()?;
    if let Some(r) = file.stay.as_ref().or(file.advised_against.as_ref())
        && r.reason.trim().is_empty()
    {
        return Err(ApiError::invalid(
            "reason: say why the project stays here or is not worth doing",
        ));
    }
    Ok(file)
}

/// A whole number from a form field, or a 422 naming it.
fn number(form: &Form, name: &str, default: u64) -> Result<u64, ApiError> {
    match form.text(name).as_str() {
        "" => Ok(default),
        s => s
            .parse()
            .map_err(|_| ApiError::invalid(format!("{name}: {s:?} is not a whole number"))),
    }
}

/// The job form as a job file: the command one argument per line, the environment one
/// `NAME=value` per line.
fn job_file(form: &Form) -> Result<JobFile, ApiError> {
    form.only(&[
        "gpus",
        "time_limit_s",
        "start_within_s",
        "residency",
        "priority",
        "command",
        "env",
    ])?;
    // One entry per line; the text area's last line break ends the last one, and an empty
    // line anywhere else is refused, not dropped.
    let lines = |name: &str| -> Result<Vec<String>, ApiError> {
        let text = form.one(name).unwrap_or("").replace("\r\n", "\n");
        let text = text.strip_suffix('\n').unwrap_or(&text);
        if text.is_empty() {
            return Ok(Vec::new());
        }
        text.split('\n')
            .enumerate()
            .map(|(n, l)| {
                if l.trim().is_empty() {
                    Err(ApiError::invalid(format!(
                        "{name}: line {} is empty",
                        n + 1
                    )))
                } else {
                    Ok(l.to_owned())
                }
            })
            .collect()
    };
    let mut env = serde_json::Map::new();
    for line in lines("env")? {
        let (k, v) = line
            .split_once('=')
            .ok_or_else(|| ApiError::invalid(format!("env: {line:?} is not NAME=value")))?;
        let k = k.trim().to_owned();
        if env.contains_key(&k) {
            return Err(ApiError::invalid(format!("env: {k} is set twice")));
        }
        env.insert(k, Value::from(v));
    }
    let v = json!({
        "gpus": number(form, "gpus", 1)?,
        "time_limit_s": number(form, "time_limit_s", 3600)?,
        "start_within_s": number(form, "start_within_s", 3600)?,
        "residency": form.list("residency").iter().map(|c| c.to_uppercase()).collect::<Vec<_>>(),
        "priority": number(form, "priority", 0)?,
        "command": lines("command")?,
        "env": env,
    });
    let file: JobFile =
        serde_json::from_value(v).map_err(|e| ApiError::invalid(format!("job: {e}")))?;
    file.check()
        .map_err(|e| ApiError::invalid(format!("job: {e}")))?;
    Ok(file)
}

async fn file_or_preview(c: &Console, user: &User, form: &Form) -> Result<Done, ApiError> {
    let file = project_file(form)?;
    if form.one("preview").is_some() {
        let explanation = c.ask(user, ApiCall::Preview(Box::new(file))).await?;
        return Ok(Done::Page(
            pages::new_project(c, user, Some(form), Some(&explanation), None).await?,
        ));
    }
    let filed = c.ask(user, ApiCall::FileProject(Box::new(file))).await?;
    Ok(Done::Redirect(match filed["referral"].as_str() {
        Some(r) => referral_page(r),
        None => format!(
            "/console/project?id={}",
            pages::url_encode(filed["project"].as_str().unwrap_or(""))
        ),
    }))
}

/// Does what a form asks, as the user.
pub async fn act(c: &Console, user: &User, name: &str, form: &Form) -> Result<Done, ApiError> {
    match name {
        // A refused filing shows the form again, filled in, with what is wrong.
        "projects" => match file_or_preview(c, user, form).await {
            Ok(done) => Ok(done),
            Err(e) => Ok(Done::Refused(
                e.status,
                pages::new_project(c, user, Some(form), None, Some(&e.message)).await?,
            )),
        },
        // The live preview, while the form is filled: routing needs the card, not the
        // dossier, so one not written yet is left out.
        "preview" => {
            let previewed = async {
                let mut v = project_json(form)?;
                if v["dossier"]
                    .as_object()
                    .is_some_and(|d| d.values().all(|f| f.as_str().is_some_and(str::is_empty)))
                {
                    v.as_object_mut().map(|o| o.remove("dossier"));
                }
                let file = file_of(v)?;
                c.ask(user, ApiCall::Preview(Box::new(file))).await
            };
            // A card not complete yet is an answer here ("not yet: …"), not a failed
            // request: the form is being filled. Filing refuses it with its status.
            Ok(match previewed.await {
                Ok(e) => Done::Part(axum::http::StatusCode::OK, pages::preview(&e)),
                Err(e) => Done::Part(
                    axum::http::StatusCode::OK,
                    pages::preview_refused(&e.message),
                ),
            })
        }
        "decide" => {
            form.only(&["id", "decision", "reason", "note"])?;
            let id = form.text("id");
            let referral = crate::api::referral_id(&id)?;
            let accept = match form.text("decision").as_str() {
                "accept" => true,
                "decline" => false,
                other => {
                    return Err(ApiError::invalid(format!(
                        "decision: {other:?}: accept or decline"
                    )));
                }
            };
            let reason = match (accept, form.text("reason").as_str()) {
                (true, "") => None,
                (true, _) => return Err(ApiError::invalid("reason: only a decline takes one")),
                (false, "") => None,
                (false, tag) => Some(api::decline_reason(tag)?),
            };
            c.ask(
                user,
                ApiCall::Decide {
                    referral,
                    accept,
                    reason,
                    detail: form.text("note"),
                },
            )
            .await?;
            Ok(Done::Redirect(referral_page(&id)))
        }
        "progress" => {
            form.only(&["id", "step", "state", "note"])?;
            let id = form.text("id");
            let referral = crate::api::referral_id(&id)?;
            let report: ProgressReport = serde_json::from_value(json!({
                "step": form.text("step"),
                "state": form.text("state"),
                "note": form.text("note"),
            }))
            .map_err(|e| ApiError::invalid(format!("progress: {e}")))?;
            c.ask(user, ApiCall::Progress { referral, report }).await?;
            Ok(Done::Redirect(referral_page(&id)))
        }
        "withdraw" => {
            form.only(&["id", "note"])?;
            let id = form.text("id");
            let referral = crate::api::referral_id(&id)?;
            c.ask(
                user,
                ApiCall::Withdraw {
                    referral,
                    detail: form.text("note"),
                },
            )
            .await?;
            Ok(Done::Redirect(referral_page(&id)))
        }
        "jobs" => {
            let file = job_file(form)?;
            let submitted = c.ask(user, ApiCall::SubmitJob(Box::new(file))).await?;
            Ok(Done::Redirect(format!(
                "/console/job?id={}",
                pages::url_encode(submitted["job"].as_str().unwrap_or(""))
            )))
        }
        "cancel" | "output" => {
            form.only(&["id"])?;
            let id = form.text("id");
            let job = crate::api::job_id(&id)?;
            let call = if name == "cancel" {
                ApiCall::CancelJob(job)
            } else {
                ApiCall::FetchOutput(job)
            };
            c.ask(user, call).await?;
            Ok(Done::Redirect(format!(
                "/console/job?id={}",
                pages::url_encode(&id)
            )))
        }
        other => Err(ApiError::not_found(format!(
            "the console has no form {other:?}"
        ))),
    }
}

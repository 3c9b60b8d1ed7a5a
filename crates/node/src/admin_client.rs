//! A small HTTP/1.1 client for the local admin API, used by the CLI verbs and `devnet`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::daemon::RunInfo;

#[derive(Clone, Debug)]
pub struct AdminClient {
    pub addr: SocketAddr,
    token: String,
}

impl AdminClient {
    pub fn new(addr: SocketAddr, token: String) -> AdminClient {
        AdminClient { addr, token }
    }

    /// The client for a node whose data folder is `data_dir` (reads run.json and the token).
    pub fn for_data_dir(data_dir: &Path) -> Result<AdminClient> {
        let run = data_dir.join("run.json");
        let info: RunInfo = serde_json::from_str(&crate::files::read_to_string(&run)?)
            .with_context(|| format!("{} is not a node's run file", run.display()))?;
        let token = crate::files::read_to_string(&data_dir.join("admin.token"))?;
        Ok(AdminClient::new(info.admin, token.trim().to_owned()))
    }

    pub fn get(&self, path: &str) -> Result<Value> {
        self.call("GET", path, None)
    }

    pub fn post(&self, path: &str, body: &Value) -> Result<Value> {
        self.call("POST", path, Some(body))
    }

    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value> {
        let (status, text) = request(self.addr, method, path, Some(&self.token), body)?;
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::String(text.clone()));
        if !(200..300).contains(&status) {
            let msg = value.get("error").and_then(Value::as_str).unwrap_or(&text);
            bail!("{method} {path}: HTTP {status}: {msg}");
        }
        Ok(value)
    }
}

/// One request with `Connection: close`; returns the status and the body.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .with_context(|| format!("connecting to the admin API at {addr}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body.as_bytes())?;
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .with_context(|| format!("reading the answer from {addr}"))?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .context("malformed HTTP answer")?;
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("malformed HTTP status line")?;
    Ok((status, body.to_owned()))
}

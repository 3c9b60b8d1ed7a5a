//! A real browser for the console's tests: headless Chromium driven by chromedriver over
//! the W3C WebDriver protocol (JSON over HTTP), with nothing between them but this file.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::free_port;

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";
/// The key W3C WebDriver names an element by.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// chromedriver and the browsers it runs; stopped on drop.
pub struct Driver {
    child: Child,
    addr: SocketAddr,
    _profiles: tempfile::TempDir,
}

/// One browser window with its own profile (cookies).
pub struct Browser<'d> {
    driver: &'d Driver,
    session: String,
}

/// One HTTP/1.1 exchange on a fresh connection: (status, body).
fn exchange(addr: SocketAddr, method: &str, path: &str, body: Option<&Value>) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connecting to chromedriver");
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    // chromedriver keeps the connection open: read the head, then the body it announces.
    let mut reader = std::io::BufReader::new(s);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if std::io::BufRead::read_line(&mut reader, &mut line).unwrap() == 0 || line == "\r\n" {
            break;
        }
        head.push_str(&line);
    }
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let lower = head.to_ascii_lowercase();
    let length = lower
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|n| n.trim().parse::<usize>().ok());
    let body = match length {
        Some(n) => {
            let mut buf = vec![0; n];
            reader.read_exact(&mut buf).unwrap();
            String::from_utf8_lossy(&buf).into_owned()
        }
        None => {
            let mut rest = String::new();
            reader.read_to_string(&mut rest).unwrap();
            if lower.contains("transfer-encoding: chunked") {
                dechunk(&rest)
            } else {
                rest
            }
        }
    };
    (status, body)
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

impl Driver {
    /// Starts chromedriver; the test fails, naming what to install, when it is missing.
    pub fn start() -> Driver {
        for (path, package) in [(CHROMEDRIVER, "chromium-driver"), (CHROMIUM, "chromium")] {
            assert!(
                Path::new(path).exists(),
                "{path} is missing: the console tests need Debian's {package} package \
                 (scripts/test.sh installs it as root)"
            );
        }
        let port = free_port();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting chromedriver");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let end = Instant::now() + Duration::from_secs(30);
        loop {
            if TcpStream::connect(addr).is_ok() {
                let (status, body) = exchange(addr, "GET", "/status", None);
                if status == 200 && body.contains("\"ready\":true") {
                    break;
                }
            }
            assert!(
                Instant::now() < end,
                "chromedriver did not answer within 30 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Driver {
            child,
            addr,
            _profiles: tempfile::tempdir().unwrap(),
        }
    }

    /// A new headless browser window with a profile of its own.
    pub fn browser(&self) -> Browser<'_> {
        let profile = self._profiles.path().join(format!("p{}", free_port()));
        let caps = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1280,1000",
                         "--no-first-run", "--disable-background-networking",
                         "--disable-component-update", "--disable-sync",
                         format!("--user-data-dir={}", profile.display())],
            },
            "goog:loggingPrefs": { "browser": "ALL" },
            "timeouts": { "script": 30000, "pageLoad": 60000 },
        } } });
        let (status, body) = exchange(self.addr, "POST", "/session", Some(&caps));
        assert_eq!(status, 200, "chromedriver refused a session: {body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        Browser {
            driver: self,
            session: v["value"]["sessionId"].as_str().unwrap().to_owned(),
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Browser<'_> {
    fn drop(&mut self) {
        let _ = exchange(
            self.driver.addr,
            "DELETE",
            &format!("/session/{}", self.session),
            None,
        );
    }
}

impl Browser<'_> {
    /// A WebDriver command: its `value`, or `Err(message)` for a WebDriver error.
    fn try_cmd(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        let (status, text) = exchange(
            self.driver.addr,
            method,
            &format!("/session/{}{path}", self.session),
            body.as_ref(),
        );
        let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| {
            panic!("chromedriver answered {status} with non-JSON ({e}): {text}")
        });
        if status == 200 {
            Ok(v["value"].clone())
        } else {
            Err(format!(
                "{}: {}",
                v["value"]["error"], v["value"]["message"]
            ))
        }
    }

    fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.try_cmd(method, path, body)
            .unwrap_or_else(|e| panic!("WebDriver {method} {path}: {e}"))
    }

    pub fn goto(&self, url: &str) {
        self.cmd("POST", "/url", Some(json!({ "url": url })));
    }

    pub fn url(&self) -> String {
        self.cmd("GET", "/url", None).as_str().unwrap().to_owned()
    }

    pub fn try_find(&self, css: &str) -> Option<String> {
        self.try_cmd(
            "POST",
            "/element",
            Some(json!({ "using": "css selector", "value": css })),
        )
        .ok()
        .map(|v| v[ELEMENT].as_str().unwrap().to_owned())
    }

    pub fn find(&self, css: &str) -> String {
        self.try_find(css)
            .unwrap_or_else(|| panic!("no element {css:?} on {}", self.url()))
    }

    pub fn count(&self, css: &str) -> usize {
        self.cmd(
            "POST",
            "/elements",
            Some(json!({ "using": "css selector", "value": css })),
        )
        .as_array()
        .map_or(0, Vec::len)
    }

    pub fn click(&self, css: &str) {
        let e = self.find(css);
        self.cmd("POST", &format!("/element/{e}/click"), Some(json!({})));
    }

    /// Replaces the text of an input.
    pub fn fill(&self, css: &str, text: &str) {
        let e = self.find(css);
        self.cmd("POST", &format!("/element/{e}/clear"), Some(json!({})));
        self.cmd(
            "POST",
            &format!("/element/{e}/value"),
            Some(json!({ "text": text })),
        );
    }

    pub fn text(&self, css: &str) -> String {
        let e = self.find(css);
        self.cmd("GET", &format!("/element/{e}/text"), None)
            .as_str()
            .unwrap_or("")
            .to_owned()
    }

    /// Runs JavaScript in the page (a returned promise is awaited).
    pub fn exec(&self, script: &str, args: Value) -> Value {
        self.cmd(
            "POST",
            "/execute/sync",
            Some(json!({ "script": script, "args": args })),
        )
    }

    /// The page as a PNG file.
    pub fn screenshot(&self, path: &Path) {
        let b64 = self.cmd("GET", "/screenshot", None);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, base64(b64.as_str().unwrap())).unwrap();
    }

    /// What the page logged at warning level or above since the last call.
    pub fn console_problems(&self) -> Vec<String> {
        self.cmd("POST", "/se/log", Some(json!({ "type": "browser" })))
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| matches!(e["level"].as_str(), Some("SEVERE" | "WARNING")))
            .map(|e| e["message"].as_str().unwrap_or("").to_owned())
            .collect()
    }

    /// Every address the page loaded or fetched, the page itself included.
    pub fn requested(&self) -> Vec<String> {
        let v = self.exec(
            "return [location.href].concat(performance.getEntriesByType('resource').map(e => e.name));",
            json!([]),
        );
        v.as_array()
            .unwrap()
            .iter()
            .map(|u| u.as_str().unwrap_or("").to_owned())
            .collect()
    }

    /// Polls `f` every 100 ms for up to `secs` seconds.
    pub fn wait_for(&self, secs: u64, what: &str, mut f: impl FnMut() -> bool) {
        let end = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < end {
            if f() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let shown = self
            .try_cmd(
                "POST",
                "/execute/sync",
                Some(json!({ "script": "return document.body.innerText;", "args": [] })),
            )
            .unwrap_or_default();
        panic!(
            "timed out after {secs} s waiting for {what} on {}; the page says:\n{}",
            self.url(),
            shown.as_str().unwrap_or("")
        );
    }
}

fn base64(s: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for v in s.bytes().filter_map(value) {
        acc = (acc << 6) | v as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

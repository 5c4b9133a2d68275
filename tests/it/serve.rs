//! `wrapper serve`: the real binary on a port-0 listener or a unix socket, real wrapper runs
//! writing the database from other processes, and a minimal HTTP/1.1 client over std
//! sockets (so the tests see exactly the bytes on the wire: status, headers, chunks, SSE).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::process::Command;
use std::time::Instant;

use crate::harness::{wait_until, Env, Running, DEADLINE};

const TOKEN: &str = "test-token-0123456789abcdef";

/// A response as it came off the wire.
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.status, self.body))
    }

    /// The `error.code` of a refusal, after checking it is JSON with the same status.
    fn error_code(&self) -> String {
        let j = self.json();
        assert_eq!(j["error"]["status"], self.status, "{}", self.body);
        assert!(
            j["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{}",
            self.body
        );
        j["error"]["code"].as_str().unwrap_or_default().to_string()
    }
}

trait Conn: Read + Write {}
impl Conn for TcpStream {}
impl Conn for UnixStream {}

fn send(conn: &mut dyn Conn, path: &str, headers: &[(&str, &str)], method: &str) {
    let mut req = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    conn.write_all(req.as_bytes()).expect("send request");
}

/// Reads the status line and headers.
fn read_head(r: &mut impl BufRead) -> (u16, Vec<(String, String)>) {
    let mut line = String::new();
    r.read_line(&mut line).expect("status line");
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {line:?}"));
    let mut headers = Vec::new();
    loop {
        line.clear();
        r.read_line(&mut line).expect("header");
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    (status, headers)
}

/// A body, chunked or not, read to its end.
struct Body<R> {
    r: R,
    chunked: bool,
    left: usize,
    done: bool,
}

impl<R: BufRead> Read for Body<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.done {
            return Ok(0);
        }
        if !self.chunked {
            return self.r.read(buf);
        }
        if self.left == 0 {
            let mut line = String::new();
            self.r.read_line(&mut line)?;
            if line.trim().is_empty() {
                line.clear();
                self.r.read_line(&mut line)?;
            }
            if line.is_empty() {
                self.done = true;
                return Ok(0);
            }
            self.left = usize::from_str_radix(line.trim(), 16)
                .map_err(|_| std::io::Error::other(format!("bad chunk size {line:?}")))?;
            if self.left == 0 {
                self.done = true;
                return Ok(0);
            }
        }
        let want = buf.len().min(self.left);
        let n = self.r.read(&mut buf[..want])?;
        self.left -= n;
        Ok(n)
    }
}

fn body_of<R: BufRead>(r: R, headers: &[(String, String)]) -> Body<R> {
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    Body {
        r,
        chunked,
        left: 0,
        done: false,
    }
}

fn exchange(mut conn: Box<dyn Conn>, path: &str, headers: &[(&str, &str)], method: &str) -> Reply {
    send(&mut *conn, path, headers, method);
    let mut r = BufReader::new(conn);
    let (status, headers) = read_head(&mut r);
    let mut body = String::new();
    body_of(r, &headers)
        .read_to_string(&mut body)
        .expect("read body");
    Reply {
        status,
        headers,
        body,
    }
}

/// A running `wrapper serve`.
struct Server {
    run: Running,
    port: u16,
}

impl Server {
    fn tcp(env: &Env, extra: &[&str]) -> Server {
        let mut c = env.cmd();
        c.args(["serve", "--listen", "127.0.0.1:0", "--db"])
            .arg(env.db())
            .args(extra)
            .env("WRAPPER_SERVE_TOKEN", TOKEN);
        let run = Running::spawn(c);
        run.out.wait_for("/\n");
        let text = run.out.text();
        let port = text
            .split("http://127.0.0.1:")
            .nth(1)
            .and_then(|s| s.split('/').next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no port in {text:?}"));
        Server { run, port }
    }

    fn connect(&self) -> Box<dyn Conn> {
        let s = TcpStream::connect(("127.0.0.1", self.port)).expect("connect");
        s.set_read_timeout(Some(DEADLINE)).expect("timeout");
        Box::new(s)
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// GET with the token and a Host of this server, plus `extra` headers.
    fn get(&self, path: &str) -> Reply {
        self.get_with(path, &[])
    }

    fn get_with(&self, path: &str, extra: &[(&str, &str)]) -> Reply {
        let host = self.host();
        let auth = format!("Bearer {TOKEN}");
        let mut h = vec![("Host", host.as_str()), ("Authorization", auth.as_str())];
        h.extend_from_slice(extra);
        exchange(self.connect(), path, &h, "GET")
    }

    /// GET with exactly these headers.
    fn raw(&self, path: &str, headers: &[(&str, &str)], method: &str) -> Reply {
        exchange(self.connect(), path, headers, method)
    }

    /// Opens an event stream and returns its reader once the headers are in.
    fn stream(&self, path: &str, extra: &[(&str, &str)]) -> (Vec<(String, String)>, Sse) {
        let mut conn = self.connect();
        let host = self.host();
        let auth = format!("Bearer {TOKEN}");
        let mut h = vec![
            ("Host", host.as_str()),
            ("Authorization", auth.as_str()),
            ("Accept", "text/event-stream"),
            ("Accept-Encoding", "gzip, br"),
        ];
        h.extend_from_slice(extra);
        send(&mut *conn, path, &h, "GET");
        let mut r = BufReader::new(conn);
        let (status, headers) = read_head(&mut r);
        assert_eq!(status, 200, "{headers:?}");
        let body = BufReader::new(body_of(r, &headers));
        (headers, Sse { body })
    }
}

/// One Server-Sent Event, or a comment (keep-alive).
#[derive(Debug, Default)]
struct SseEvent {
    event: String,
    id: Option<String>,
    data: String,
    comment: bool,
}

struct Sse {
    body: BufReader<Body<BufReader<Box<dyn Conn>>>>,
}

impl Sse {
    /// The next event or comment; `None` at the end of the stream.
    fn next(&mut self) -> Option<SseEvent> {
        let mut ev = SseEvent::default();
        let mut any = false;
        loop {
            let mut line = String::new();
            match self.body.read_line(&mut line) {
                Ok(0) | Err(_) => return any.then_some(ev),
                Ok(_) => {}
            }
            let l = line.trim_end_matches(['\r', '\n']);
            if l.is_empty() {
                if any {
                    return Some(ev);
                }
                continue;
            }
            any = true;
            if l.starts_with(':') {
                ev.comment = true;
            } else if let Some((k, v)) = l.split_once(':') {
                let v = v.strip_prefix(' ').unwrap_or(v);
                match k {
                    "event" => ev.event = v.to_string(),
                    "id" => ev.id = Some(v.to_string()),
                    "data" => ev.data.push_str(v),
                    _ => {}
                }
            }
        }
    }

    /// The next `extraction` event (skipping comments and others), within the deadline.
    fn next_extraction(&mut self) -> serde_json::Value {
        let start = Instant::now();
        loop {
            assert!(start.elapsed() < DEADLINE, "no extraction event in time");
            let ev = self.next().expect("the stream ended");
            if ev.event == "extraction" {
                let j: serde_json::Value = serde_json::from_str(&ev.data).expect("JSON event");
                assert_eq!(ev.id.as_deref(), Some(j["id"].to_string().as_str()));
                return j;
            }
        }
    }
}

/// Two finished sessions: codex (an error, a warning, a high-risk prompt, a path) and
/// claude (one error, exit 3).
fn recorded() -> Env {
    let env = Env::new();
    let out = env
        .run_cmd(
            "codex",
            &["--session-id", "sess-codex-1"],
            &[
                "sh",
                "-c",
                "echo 'error: boom'; echo 'warning: careful' >&2; printf 'Delete everything? [y/N] \\n'; echo 'at src/main.rs:3:5'",
            ],
        )
        .output()
        .expect("run");
    assert!(out.status.success(), "{out:?}");
    let out = env
        .run_cmd(
            "claude",
            &["--session-id", "sess-claude-1"],
            &["sh", "-c", "echo 'error[E0308]: mismatched'; exit 3"],
        )
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(3));
    env
}

#[test]
fn serve_answers_queries_with_the_cli_filters_and_json_errors() {
    let env = recorded();
    let s = Server::tcp(&env, &[]);

    let r = s.get("/api/query/extractions?agent=codex&limit=2");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let j = r.json();
    assert_eq!(
        (j["total"].as_i64(), j["page"].as_i64(), j["limit"].as_i64()),
        (Some(4), Some(1), Some(2))
    );
    let rows = j["extractions"].as_array().expect("rows");
    assert_eq!(rows.len(), 2);
    assert!(rows
        .iter()
        .all(|e| e["agent_name"] == "codex" && e["session_id"] == "sess-codex-1"));
    let page2 = s
        .get("/api/query/extractions?agent=codex&limit=2&page=2")
        .json();
    let ids = |j: &serde_json::Value| -> Vec<i64> {
        j["extractions"]
            .as_array()
            .expect("rows")
            .iter()
            .filter_map(|e| e["id"].as_i64())
            .collect()
    };
    assert_eq!(ids(&page2).len(), 2);
    assert!(
        ids(&page2).iter().all(|i| !ids(&j).contains(i)),
        "pages overlap"
    );

    // The CLI's names and the --json field names are both filters; empty means none.
    let j = s.get("/api/query/extractions?type=error&agent=").json();
    assert_eq!(j["total"], 2);
    let j = s
        .get("/api/query/extractions?event_type=prompt&risk_level=high&session_id=sess-co")
        .json();
    assert_eq!(j["total"], 1, "{j}");
    assert_eq!(j["extractions"][0]["pattern"], "t_prompt");
    let j = s
        .get("/api/query/extractions?since=1h&until=2999-01-01&pattern=t_error")
        .json();
    assert_eq!(j["total"], 2);

    let j = s.get("/api/query/sessions?days=1&agent=claude").json();
    assert_eq!(j["total"], 1);
    assert_eq!(j["sessions"][0]["state"], "failed");
    assert_eq!(j["sessions"][0]["exit_code"], 3);
    let j = s.get("/api/query/session/sess-cl").json();
    assert_eq!(j["session"]["session_id"], "sess-claude-1");
    assert!(
        j["state_changes"].as_array().is_some_and(|c| c.len() >= 3),
        "{j}"
    );

    let j = s.get("/api/query/stats/agent/codex").json();
    assert_eq!(j["agent_name"], "codex");
    assert_eq!(j["total_sessions"], 1);
    assert_eq!(j["total_extractions"], 4);
    assert_eq!(j["extractions_by_type"]["error"], 1);
    assert_eq!(j["success_rate"], 1.0);
    let j = s.get("/api/query/stats/pattern/t_error").json();
    assert_eq!(
        (j["total_extractions"].as_i64(), j["success_rate"].as_f64()),
        (Some(2), Some(0.5))
    );
    assert_eq!(j["extractions_by_agent"]["claude"], 1);
    let j = s.get("/api/query/timeline?agent=claude").json();
    let kinds: Vec<&str> = j["timeline"]
        .as_array()
        .expect("timeline")
        .iter()
        .filter_map(|e| e["what"].as_str())
        .collect();
    assert_eq!(kinds.first(), Some(&"started"));
    assert_eq!(kinds.last(), Some(&"failed"));
    assert!(kinds.contains(&"error"));
    // The server never writes; `wrapper search` (or an idle recording wrapper) indexes.
    let r = s.get("/api/query/search?q=mismatched").json();
    assert!(r["not_indexed"].as_i64() > Some(0), "{r}");
    let out = env
        .cmd()
        .args(["search", "--db"])
        .arg(env.db())
        .arg("x")
        .output()
        .expect("index");
    assert!(out.status.success());
    let j = s.get("/api/query/search?q=mismatched").json();
    assert_eq!(j["not_indexed"], 0);
    assert_eq!(j["hits"][0]["session_id"], "sess-claude-1", "{j}");
    assert_eq!(j["hits"][0]["snippet"], "error[E0308]: mismatched");

    // Bad filters: 400 naming the parameter; unknown sessions: 404; never a 500.
    for (path, code, word) in [
        ("/api/query/extractions?since=soonish", 400, "since"),
        ("/api/query/extractions?risk=severe", 400, "risk"),
        ("/api/query/extractions?limit=0", 400, "limit"),
        ("/api/query/extractions?limit=ten", 400, "limit"),
        ("/api/query/extractions?page=0", 400, "page"),
        ("/api/query/extractions?tpye=error", 400, "tpye"),
        ("/api/query/sessions?days=x", 400, "days"),
        ("/api/query/sessions?active=perhaps", 400, "active"),
        ("/api/query/timeline?from=someday", 400, "from"),
        ("/api/query/search?q=%22unbalanced&raw=1", 400, "unbalanced"),
        (
            "/api/query/search?q=x&raw=1&agent=codex&limit=5000",
            400,
            "limit",
        ),
        ("/api/query/code-blocks/xyz", 400, "digest"),
        ("/api/query/extractions?session=nope", 404, "nope"),
        ("/api/query/session/sess-", 400, "ambiguous"),
        ("/api/query/session/nope", 404, "nope"),
        ("/api/query/stats/agent/nobody", 404, "nobody"),
        ("/api/query/stats/pattern/no_such_rule", 404, "no_such_rule"),
        ("/api/query/code-blocks/abcdef", 404, "abcdef"),
        ("/api/nothing/here", 404, "endpoint"),
    ] {
        let r = s.get(path);
        assert_eq!(r.status, code, "{path}: {}", r.body);
        r.error_code();
        assert!(r.body.contains(word), "{path}: {}", r.body);
    }
    let r = s.raw(
        "/api/query/sessions",
        &[
            ("Host", &s.host()),
            ("Authorization", &format!("Bearer {TOKEN}")),
        ],
        "POST",
    );
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (405, "method_not_allowed")
    );

    let r = s.get("/api");
    assert!(r.json()["endpoints"]
        .as_array()
        .is_some_and(|e| e.len() > 5));
    drop(s);
}

#[test]
fn serve_refuses_requests_without_the_token_or_from_foreign_hosts_and_origins() {
    let env = recorded();
    let s = Server::tcp(&env, &[]);
    let host = s.host();
    let good = format!("Bearer {TOKEN}");
    let wrong = format!("Bearer {}x", &TOKEN[..TOKEN.len() - 1]);
    let origin = format!("http://localhost:{}", s.port);
    let other_port = format!("http://localhost:{}", s.port.wrapping_add(1));
    // Older versions handed the page a cookie; browsers send a cookie to every port of the
    // host, so none is set or taken now.
    let cookie = format!("wrapper_token_{}={TOKEN}", s.port);
    let path = "/api/query/sessions";
    for (headers, status, what) in [
        (vec![("Host", host.as_str())], 401, "no token"),
        (
            vec![("Host", host.as_str()), ("Authorization", wrong.as_str())],
            401,
            "a wrong token",
        ),
        (
            vec![("Host", host.as_str()), ("Authorization", TOKEN)],
            401,
            "a token without Bearer",
        ),
        (
            vec![("Host", "evil.example"), ("Authorization", good.as_str())],
            403,
            "a rebinding Host",
        ),
        (
            vec![
                ("Host", "evil.example:80"),
                ("Authorization", good.as_str()),
            ],
            403,
            "a rebinding Host with port",
        ),
        (vec![("Authorization", good.as_str())], 403, "no Host"),
        (
            vec![
                ("Host", host.as_str()),
                ("Authorization", good.as_str()),
                ("Origin", "http://evil.example"),
            ],
            403,
            "a foreign Origin",
        ),
        (
            vec![
                ("Host", host.as_str()),
                ("Authorization", good.as_str()),
                ("Origin", other_port.as_str()),
            ],
            403,
            "another port's Origin",
        ),
        (
            vec![
                ("Host", host.as_str()),
                ("Authorization", good.as_str()),
                ("Origin", "null"),
            ],
            403,
            "a null Origin",
        ),
        (
            vec![("Host", host.as_str()), ("Authorization", good.as_str())],
            200,
            "the token",
        ),
        (
            vec![
                ("Host", "localhost"),
                ("Authorization", good.as_str()),
                ("Origin", origin.as_str()),
            ],
            200,
            "own Origin",
        ),
        (
            vec![("Host", "[::1]:1"), ("Cookie", cookie.as_str())],
            401,
            "a cookie",
        ),
        (
            vec![("Host", "[::1]:1"), ("Authorization", good.as_str())],
            200,
            "the token, Host [::1]",
        ),
    ] {
        let r = s.raw(path, &headers, "GET");
        assert_eq!(r.status, status, "{what}: {}", r.body);
        if status != 200 {
            r.error_code();
            assert!(r.header("access-control-allow-origin").is_none());
        }
        if status == 401 {
            assert_eq!(
                r.header("www-authenticate"),
                Some("Bearer realm=\"wrapper\""),
                "{what}"
            );
        }
    }
    // Unknown paths and the streams are behind the guard; the page and its assets hold no
    // data and load without the token (the page asks the API for everything, with it), but
    // only under this server's names.
    for p in ["/nope", "/api/events/stream", "/api", "/assets/nope.js"] {
        assert_eq!(s.raw(p, &[("Host", &host)], "GET").status, 401, "{p}");
    }
    for p in ["/", "/assets/app.js", "/assets/asciinema-player.min.js"] {
        assert_eq!(s.raw(p, &[("Host", &host)], "GET").status, 200, "{p}");
        assert_eq!(
            s.raw(p, &[("Host", "evil.example")], "GET").status,
            403,
            "{p}"
        );
        let r = s.raw(
            p,
            &[("Host", &host), ("Origin", other_port.as_str())],
            "GET",
        );
        assert_eq!(r.status, 403, "{p}");
    }
    // The URL older versions printed: the token moves into the fragment (sent to no server)
    // and out of the query; no cookie.
    let r = s.raw(&format!("/?token={TOKEN}&x=1"), &[("Host", &host)], "GET");
    assert_eq!(r.status, 303);
    assert_eq!(
        r.header("location"),
        Some(format!("/?x=1#token={TOKEN}").as_str())
    );
    assert!(r.header("set-cookie").is_none());
    // Found by a review: a path a browser reads as another host never carries the token there.
    for p in ["//evil.example/", "/\\evil.example/", "///evil.example"] {
        let r = s.raw(&format!("{p}?token={TOKEN}"), &[("Host", &host)], "GET");
        assert_eq!(r.status, 303, "{p}");
        assert_eq!(
            r.header("location"),
            Some(format!("/#token={TOKEN}").as_str()),
            "{p}"
        );
    }
    // A wrong token in the query is refused, not ignored, even on the page.
    assert_eq!(
        s.raw(&format!("/?token={TOKEN}x"), &[("Host", &host)], "GET")
            .status,
        401
    );
    let page = s.raw("/", &[("Host", &host)], "GET");
    assert_eq!(page.status, 200);
    assert!(page.header("set-cookie").is_none());
    assert!(page
        .header("content-type")
        .is_some_and(|t| t.starts_with("text/html")));
    assert!(page.body.contains("/assets/app.js"));
    assert!(page
        .header("content-security-policy")
        .is_some_and(|c| c.contains("default-src 'none'")));
    assert_eq!(page.header("referrer-policy"), Some("no-referrer"));

    // The token never reaches the server's output beyond the banner's own URL.
    drop(s);
}

#[test]
fn serve_streams_events_another_process_commits_and_resumes_from_last_event_id() {
    let env = recorded();
    let s = Server::tcp(&env, &["--keep-alive", "100ms", "--poll-interval", "10ms"]);
    let (headers, mut sse) = s.stream("/api/events/stream?agent=codex&type=error", &[]);
    let h = |n: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(n))
            .map(|(_, v)| v.clone())
    };
    assert!(h("content-type").is_some_and(|t| t.starts_with("text/event-stream")));
    assert_eq!(
        h("content-encoding"),
        None,
        "an event stream is never compressed"
    );
    assert_eq!(h("cache-control").as_deref(), Some("no-cache"));
    let ready = sse.next().expect("ready");
    assert_eq!(ready.event, "ready");

    // Another process: a live codex session that waits for us between two errors.
    let go = env.path("go");
    let mut c = env.run_cmd(
        "codex",
        &["--session-id", "live-1", "--flush-interval", "20ms"],
        &[
            "sh",
            "-c",
            "echo 'error: first live'; echo 'warning: not an error' >&2; while [ ! -e go ]; do sleep 0.01; done; echo 'error: second live'",
        ],
    );
    c.current_dir(env.dir.path());
    let agent = Running::spawn(c);
    let first = sse.next_extraction();
    assert_eq!(first["matched_value"], "first live");
    assert_eq!(first["session_id"], "live-1");
    let first_id = first["id"].as_i64().expect("id");
    // Idle now: keep-alive comments arrive.
    let mut saw_comment = false;
    let start = Instant::now();
    while !saw_comment && start.elapsed() < DEADLINE {
        saw_comment = sse.next().is_some_and(|e| e.comment);
    }
    assert!(saw_comment, "no keep-alive comment");
    drop(sse);

    std::fs::write(&go, "").expect("go");
    let (code, _, _) = agent.wait();
    assert_eq!(code, 0);
    // Reconnect as a browser does: only what came after the last event seen.
    let last = first_id.to_string();
    let (_, mut sse) = s.stream(
        "/api/events/stream?agent=codex&type=error",
        &[("Last-Event-ID", &last)],
    );
    let next = sse.next_extraction();
    assert_eq!(next["matched_value"], "second live", "{next}");
    assert!(next["id"].as_i64() > Some(first_id));
    // The same from ?after=, and a session filter by prefix.
    let (_, mut sse) = s.stream("/api/events/stream?session=live&after=0", &[]);
    let all: Vec<String> = (0..3)
        .map(|_| {
            sse.next_extraction()["matched_value"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect();
    assert_eq!(all, ["first live", "not an error", "second live"]);

    let r = s.get_with("/api/events/stream", &[("Last-Event-ID", "x")]);
    assert_eq!(r.status, 400);
    assert_eq!(s.get("/api/events/stream?session=nope").status, 404);
    assert_eq!(s.get("/api/events/stream?limit=5").status, 400);
}

#[test]
fn serve_ends_streams_and_exits_0_on_sigterm_and_sigint() {
    let env = recorded();
    for sig in [
        nix::sys::signal::Signal::SIGTERM,
        nix::sys::signal::Signal::SIGINT,
    ] {
        let s = Server::tcp(&env, &[]);
        let (_, mut sse) = s.stream("/api/events/stream", &[]);
        assert_eq!(sse.next().map(|e| e.event).as_deref(), Some("ready"));
        s.run.signal(sig);
        // The open stream ends (a clean end of the chunked body), then the process exits 0.
        while let Some(ev) = sse.next() {
            assert!(ev.comment || ev.event == "ready", "{ev:?}");
        }
        let Server { run, .. } = s;
        let (code, out, err) = run.wait();
        assert_eq!(code, 0, "{sig}: {}", String::from_utf8_lossy(&err));
        assert!(
            !String::from_utf8_lossy(&err).contains(TOKEN),
            "the token leaked to stderr"
        );
        assert_eq!(
            String::from_utf8_lossy(&out).matches(TOKEN).count(),
            0,
            "a given token is not printed"
        );
    }
}

#[test]
fn serve_listens_on_a_private_unix_socket_by_default() {
    let env = recorded();
    let run_dir = env.path("run");
    std::fs::create_dir(&run_dir).expect("run dir");
    std::fs::set_permissions(&run_dir, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    let mut c = env.cmd();
    c.args(["serve", "--db"])
        .arg(env.db())
        .env("XDG_RUNTIME_DIR", &run_dir);
    let run = Running::spawn(c);
    run.out.wait_for("curl --unix-socket");
    let sock = run_dir.join("wrapper/serve.sock");
    let mode =
        |p: &std::path::Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode(&sock), 0o600);
    assert_eq!(mode(&run_dir.join("wrapper")), 0o700);
    // No token over the socket: the file mode is the access control.
    let conn = UnixStream::connect(&sock).expect("connect");
    let r = exchange(
        Box::new(conn),
        "/api/query/sessions",
        &[("Host", "localhost")],
        "GET",
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["total"], 2);

    // A second server on the same socket is refused; the first one keeps it.
    let out = env
        .cmd()
        .args(["serve", "--db"])
        .arg(env.db())
        .env("XDG_RUNTIME_DIR", &run_dir)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("another server is listening"));

    run.signal(nix::sys::signal::Signal::SIGTERM);
    let (code, _, _) = run.wait();
    assert_eq!(code, 0);
    assert!(!sock.exists(), "the socket is removed at exit");
}

#[test]
fn serve_refuses_unsafe_or_bad_settings_with_exit_2() {
    let env = recorded();
    let run = |args: &[&str], token: Option<&str>| {
        let mut c: Command = env.cmd();
        c.arg("serve").arg("--db").arg(env.db()).args(args);
        match token {
            Some(t) => c.env("WRAPPER_SERVE_TOKEN", t),
            None => c.env_remove("WRAPPER_SERVE_TOKEN"),
        };
        let out = c.output().expect("run");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = run(&["--listen", "0.0.0.0:0"], None);
    assert_eq!(code, Some(2));
    assert!(err.contains("--allow-remote"), "{err}");
    let (code, err) = run(&["--listen", "somewhere"], None);
    assert_eq!(code, Some(2));
    assert!(err.contains("ADDR:PORT"), "{err}");
    let (code, err) = run(&["--listen", "127.0.0.1:0"], Some("short"));
    assert_eq!(code, Some(2));
    assert!(err.contains("16 characters"), "{err}");
    let out = env
        .cmd()
        .args(["serve", "--db", "/nonexistent/x.db"])
        .output()
        .expect("run");
    let (code, err) = (out.status.code(), String::from_utf8_lossy(&out.stderr));
    assert_eq!(code, Some(2));
    assert!(err.contains("no database"), "{err}");
    let (code, _) = run(&["--allow-remote"], None);
    assert_eq!(code, Some(2), "--allow-remote needs --listen");

    // A random token is printed once, in the URL to open.
    let mut c = env.cmd();
    c.args(["serve", "--listen", "127.0.0.1:0", "--db"])
        .arg(env.db())
        .env_remove("WRAPPER_SERVE_TOKEN");
    let s = Running::spawn(c);
    s.out.wait_for("/#token=");
    wait_until("the whole URL", || {
        s.out
            .text()
            .trim_end()
            .ends_with(|c: char| c.is_ascii_hexdigit())
    });
    let text = s.out.text();
    let token = text
        .rsplit("/#token=")
        .next()
        .unwrap_or("")
        .trim()
        .to_string();
    assert_eq!(token.len(), 64, "{text}");
    assert_eq!(text.matches(&token).count(), 1);
    drop(s);
}

#[test]
fn serve_replays_and_exports_a_captured_session() {
    let env = Env::new();
    let out = env
        .run_cmd(
            "codex",
            &["--session-id", "cap-1"],
            &[
                "sh",
                "-c",
                "printf '\\033[31merror: red\\033[0m\\n'; sleep 0.3; echo 'done ✓'",
            ],
        )
        .output()
        .expect("run");
    assert!(out.status.success(), "{out:?}");
    let out = env
        .run_cmd(
            "codex",
            &["--session-id", "nocap-1", "--no-capture"],
            &["echo", "error: x"],
        )
        .output()
        .expect("run");
    assert!(out.status.success(), "{out:?}");
    let s = Server::tcp(&env, &[]);

    // The file `asciinema play` reads, the same bytes `wrapper export` writes.
    let r = s.get("/api/export/session/cap.cast");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("content-type"), Some("application/x-asciicast"));
    let cli = env
        .cmd()
        .args(["export", "cap-1", "--db"])
        .arg(env.db())
        .output()
        .expect("export");
    assert_eq!(r.body.as_bytes(), &cli.stdout[..]);
    assert!(
        r.body.contains("\\u001b[31merror: red\\u001b[0m\\r\\n"),
        "{}",
        r.body
    );
    let v3 = s.get("/api/export/session/cap-1.cast?format=asciicast-v3");
    assert!(
        v3.body.starts_with("{\"version\":3") || v3.body.contains("\"version\":3"),
        "{}",
        v3.body
    );
    assert!(s
        .get("/api/export/session/cap-1.txt")
        .body
        .contains("done ✓"));

    // The replay: start, the output in order with growing times, the exit, the end.
    let (_, mut sse) = s.stream("/api/replay/session/cap-1?speed=4", &[]);
    let mut kinds = Vec::new();
    let mut output = String::new();
    let mut last_t = 0.0;
    while let Some(ev) = sse.next() {
        if ev.comment {
            continue;
        }
        if ev.event != "start" && ev.event != "end" {
            let j: serde_json::Value = serde_json::from_str(&ev.data).expect("json");
            let t = j["t"].as_f64().expect("t");
            assert!(t >= last_t, "times go forward: {t} after {last_t}");
            last_t = t;
            if ev.event == "output" {
                output.push_str(j["data"].as_str().unwrap_or_default());
            }
        }
        kinds.push(ev.event);
    }
    assert_eq!(kinds.first().map(String::as_str), Some("start"));
    assert_eq!(kinds.last().map(String::as_str), Some("end"));
    assert!(
        kinds.iter().any(|k| k == "marker") && kinds.iter().any(|k| k == "exit"),
        "{kinds:?}"
    );
    assert_eq!(output, "\u{1b}[31merror: red\u{1b}[0m\r\ndone ✓\r\n");

    for (path, code, word) in [
        ("/api/replay/session/nocap-1", 404, "no captured output"),
        (
            "/api/export/session/nocap-1.cast",
            404,
            "no captured output",
        ),
        ("/api/replay/session/nope", 404, "nope"),
        ("/api/replay/session/cap-1?speed=0", 400, "speed"),
        ("/api/replay/session/cap-1?from=soon", 400, "from"),
        (
            "/api/export/session/cap-1.txt?format=asciicast-v3",
            400,
            "format",
        ),
        ("/api/export/session/cap-1.exe", 404, ".cast"),
    ] {
        let r = s.get(path);
        assert_eq!(r.status, code, "{path}: {}", r.body);
        r.error_code();
        assert!(r.body.contains(word), "{path}: {}", r.body);
    }
    let j = s.get("/api/query/session/cap-1").json();
    assert_eq!(j["capture"]["mode"], "pipe", "{j}");
    assert!(s.get("/api/query/session/nocap-1").json()["capture"].is_null());
}

//! `wrapper serve`: decides where to listen and who may connect, then runs `serve::Server`
//! until SIGINT or SIGTERM.
//!
//! Safe by default: a unix socket (0600 in a 0700 directory) that only this user can open.
//! TCP only when asked (`--listen`), on a loopback address unless `--allow-remote`, and then
//! every request needs the token (random per start and printed once as a URL to open, or
//! `--token` / `WRAPPER_SERVE_TOKEN`) and a `Host`/`Origin` of this server (see
//! `serve::auth`). Everything that can be refused is refused before the server starts,
//! with exit 2.

use std::io::{self, ErrorKind, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, Context};
use clap::Args;

use crate::cli::{parse_duration, DbOpt};
use crate::config::db_path;
use crate::error::{CliError, CliResult};
use crate::serve::{auth, Access, Server, Settings, TcpAccess};

/// Serve the query API, a live tail of events and a web page over HTTP
#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  wrapper serve                              a unix socket only this user can open
  curl --unix-socket \"$XDG_RUNTIME_DIR/wrapper/serve.sock\" http://localhost/api/query/sessions
  wrapper serve --listen 127.0.0.1:8765      TCP on loopback; prints a URL with a token to open
  WRAPPER_SERVE_TOKEN=... wrapper serve --listen 127.0.0.1:8765   a token of your own

The database is opened read-only. See docs/SERVE.md for the endpoints.")]
pub struct ServeArgs {
    /// Listen on TCP ADDR:PORT (127.0.0.1:8765, [::1]:8765, localhost:8765; port 0 picks a
    /// free one) instead of the unix socket
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Option<String>,
    /// The unix socket [default: $XDG_RUNTIME_DIR/wrapper/serve.sock]
    #[arg(long, value_name = "PATH", conflicts_with = "listen")]
    pub socket: Option<PathBuf>,
    /// Allow --listen on an address other machines can reach (the token is still required,
    /// and HTTP is not encrypted: put a TLS proxy in front)
    #[arg(long, requires = "listen")]
    pub allow_remote: bool,
    /// Another name the Host header may carry, for a server reached by that name (repeatable)
    #[arg(long = "allow-host", value_name = "NAME", requires = "listen")]
    pub allow_hosts: Vec<String>,
    /// The token TCP clients must send [default: random, printed once]. Prefer the
    /// environment variable: other users can read command lines
    #[arg(
        long,
        env = "WRAPPER_SERVE_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub token: Option<String>,
    /// Interval of the keep-alive comments on event streams
    #[arg(long, value_name = "DUR", default_value = "15s", value_parser = parse_duration)]
    pub keep_alive: Duration,
    /// How often open event streams look for new commits
    #[arg(long, value_name = "DUR", default_value = "50ms", value_parser = parse_duration)]
    pub poll_interval: Duration,
    #[command(flatten)]
    pub db: DbOpt,
}

/// Where the server listens, bound before anything else starts.
enum Bound {
    Tcp(std::net::TcpListener, SocketAddr),
    Unix(std::os::unix::net::UnixListener, SocketGuard),
}

pub fn run(args: ServeArgs) -> CliResult<i32> {
    let db = db_path(&args.db)?;
    let (bound, access, token_shown) = bind(&args)?;
    let server = Server::new(Settings {
        db: db.clone(),
        access,
        keep_alive: args.keep_alive.max(Duration::from_millis(10)),
        poll: args.poll_interval.max(Duration::from_millis(1)),
    })
    .map_err(CliError::usage)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("serve")
        .enable_all()
        .build()
        .map_err(CliError::internal)?;
    rt.block_on(async move {
        let shutdown = shutdown_signal().map_err(CliError::internal)?;
        match bound {
            Bound::Tcp(l, addr) => {
                l.set_nonblocking(true).map_err(CliError::internal)?;
                let l = tokio::net::TcpListener::from_std(l).map_err(CliError::internal)?;
                banner_tcp(&db, addr, token_shown.as_deref())?;
                served(server.run(l, shutdown).await)
            }
            Bound::Unix(l, guard) => {
                l.set_nonblocking(true).map_err(CliError::internal)?;
                let l = tokio::net::UnixListener::from_std(l).map_err(CliError::internal)?;
                banner_unix(&db, &guard.0)?;
                let r = served(server.run(l, shutdown).await);
                drop(guard);
                r
            }
        }
    })
}

fn served(r: io::Result<()>) -> CliResult<i32> {
    r.map(|()| 0)
        .map_err(|e| CliError::internal(anyhow!("serving: {e}")))
}

/// SIGINT or SIGTERM, registered now so a signal that arrives right after the banner counts.
fn shutdown_signal() -> io::Result<impl std::future::Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = int.recv() => {},
            _ = term.recv() => {},
        }
        tracing::info!("shutting down");
    })
}

fn bind(args: &ServeArgs) -> CliResult<(Bound, Access, Option<String>)> {
    let Some(listen) = &args.listen else {
        let path = match &args.socket {
            Some(p) => p.clone(),
            None => default_socket_dir()?.join("serve.sock"),
        };
        let (l, guard) = bind_unix(&path)?;
        return Ok((Bound::Unix(l, guard), Access::Socket, None));
    };
    let addr = parse_listen(listen).map_err(|e| CliError::usage(anyhow!("--listen: {e}")))?;
    if !addr.ip().is_loopback() && !args.allow_remote {
        return Err(CliError::usage(anyhow!(
            "--listen {listen}: {} can be reached from other machines; wrapper serve listens on \
             loopback only (127.0.0.1, [::1], localhost) unless you add --allow-remote",
            addr.ip()
        )));
    }
    let (token, shown) = match &args.token {
        Some(t) => {
            auth::check_token(t)
                .map_err(|e| CliError::usage(anyhow!("--token / WRAPPER_SERVE_TOKEN: {e}")))?;
            (t.clone(), None)
        }
        None => {
            let t = auth::random_token().map_err(CliError::internal)?;
            (t.clone(), Some(t))
        }
    };
    let l = std::net::TcpListener::bind(addr)
        .map_err(|e| CliError::usage(anyhow!("cannot listen on {addr}: {e}")))?;
    let local = l.local_addr().map_err(CliError::internal)?;
    let mut hosts = args.allow_hosts.clone();
    if !local.ip().is_unspecified() {
        hosts.push(url_host(local.ip()));
    }
    let access = Access::Tcp(TcpAccess::new(token, local.port(), &hosts));
    Ok((Bound::Tcp(l, local), access, shown))
}

/// `127.0.0.1:8765`, `[::1]:8765`, or `localhost:8765` (taken as 127.0.0.1).
pub fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    let s = s.trim();
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    if let Some(port) = s.strip_prefix("localhost:") {
        let port = port
            .parse::<u16>()
            .map_err(|_| format!("{port:?} is not a port number"))?;
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
    }
    Err(format!(
        "{s:?} is not ADDR:PORT; write it like 127.0.0.1:8765, [::1]:8765 or localhost:8765"
    ))
}

fn url_host(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

/// `$XDG_RUNTIME_DIR/wrapper`, or `$TMPDIR/wrapper-<uid>` where there is no runtime dir (as
/// tmux does), created 0700; an existing one must be ours and closed to others.
fn default_socket_dir() -> CliResult<PathBuf> {
    let uid = nix::unistd::getuid().as_raw();
    let dir = match dirs::runtime_dir() {
        Some(d) => d.join("wrapper"),
        None => std::env::temp_dir().join(format!("wrapper-{uid}")),
    };
    match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
        Err(e) => {
            return Err(CliError::usage(anyhow!(
                "cannot create {}: {e}",
                dir.display()
            )))
        }
    }
    let meta = std::fs::symlink_metadata(&dir)
        .with_context(|| format!("cannot read {}", dir.display()))
        .map_err(CliError::usage)?;
    if !meta.is_dir() || meta.uid() != uid || meta.mode() & 0o077 != 0 {
        return Err(CliError::usage(anyhow!(
            "{} must be a directory of yours that nobody else can open (mode 0700); \
             fix it or pass --socket PATH",
            dir.display()
        )));
    }
    Ok(dir)
}

/// Removes the socket file when the server ends.
struct SocketGuard(PathBuf);

impl Drop for SocketGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Binds the socket with mode 0600 from the start (umask), replacing a stale socket left by
/// a server that died, but never a live one or a file that is not a socket.
fn bind_unix(path: &Path) -> CliResult<(std::os::unix::net::UnixListener, SocketGuard)> {
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(CliError::usage(anyhow!(
                "{} exists and is not a socket; pass another --socket PATH",
                path.display()
            )));
        }
        if UnixStream::connect(path).is_ok() {
            return Err(CliError::usage(anyhow!(
                "another server is listening on {}; stop it or pass --socket PATH",
                path.display()
            )));
        }
        let _ = std::fs::remove_file(path);
    }
    use nix::sys::stat::{umask, Mode};
    let old = umask(Mode::from_bits_truncate(0o177));
    let bound = std::os::unix::net::UnixListener::bind(path);
    umask(old);
    let l =
        bound.map_err(|e| CliError::usage(anyhow!("cannot listen on {}: {e}", path.display())))?;
    let guard = SocketGuard(path.to_path_buf());
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| CliError::internal(anyhow!("chmod {}: {e}", path.display())))?;
    Ok((l, guard))
}

fn banner_tcp(db: &Path, addr: SocketAddr, token: Option<&str>) -> CliResult<()> {
    let base = format!("http://{}:{}/", url_host(addr.ip()), addr.port());
    let mut out = io::stdout().lock();
    let text = match token {
        Some(t) => format!(
            "wrapper serve: {} (read-only) at {base}\n\
             Open this URL in a browser; the token is shown only this once, and scripts send it \
             as `Authorization: Bearer <token>`:\n\n    {base}#token={t}\n",
            db.display()
        ),
        None => format!(
            "wrapper serve: {} (read-only) at {base}\n\
             Token from --token / WRAPPER_SERVE_TOKEN: open {base}#token=<token>, or send \
             `Authorization: Bearer <token>`\n",
            db.display()
        ),
    };
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(crate::output::io_error)
}

fn banner_unix(db: &Path, socket: &Path) -> CliResult<()> {
    let mut out = io::stdout().lock();
    let text = format!(
        "wrapper serve: {} (read-only) on unix socket {}\n\n    curl --unix-socket {} http://localhost/api/query/sessions\n",
        db.display(),
        socket.display(),
        socket.display()
    );
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(crate::output::io_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses() {
        assert_eq!(parse_listen("127.0.0.1:8765").map(|a| a.port()), Ok(8765));
        assert!(parse_listen("[::1]:0").is_ok_and(|a| a.ip().is_loopback()));
        assert!(parse_listen("localhost:80").is_ok_and(|a| a.ip().is_loopback()));
        assert!(parse_listen("0.0.0.0:80").is_ok_and(|a| !a.ip().is_loopback()));
        assert!(parse_listen("localhost").is_err());
        assert!(parse_listen("example.com:80").is_err());
    }
}

//! `shmbus serve`: every segment of the host over HTTP. `/metrics` for Prometheus, the JSON
//! of `list --json` and `info --json` under `/api/segments`, and a live dashboard at `/`.
//!
//! Read-only from end to end: each scan of `/dev/shm` is `list`'s own (`list::scan`), each
//! segment opened read-only by its kind; a report is `info`'s own (`Kind::report`). A scan is
//! kept for `--refresh-ms`, so that many clients polling often cost one scan per period; the
//! scans also give the rates (the publish counts' advance between two of them).
//! Nothing a segment or a file holds can stop the server: an unreadable file is a row with
//! its error, a failed scan an answer that says so.

mod snapshot;

use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use clap::Args;
use shmbus::inspect;

use crate::kinds::{self, Payloads};
use crate::output::{CmdResult, Failure};
use crate::text;
use snapshot::Snapshots;

#[derive(Args, Debug)]
pub(crate) struct ServeArgs {
    /// The address and port to listen on: an IP address (not a host name) and a port. Port 0
    /// picks a free port; the address listened on is printed on stdout either way.
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:9464")]
    listen: SocketAddr,
    /// Allow a --listen address other than loopback (127.0.0.0/8, ::1). Anyone who can reach
    /// the port can then read every segment's name, shape, counts and participants' pids.
    #[arg(long)]
    allow_remote: bool,
    /// Show the values a segment holds (a board's cells) in /api/segments/NAME and on the
    /// page. Without it, reports give each value's length and no bytes.
    #[arg(long)]
    show_payloads: bool,
    /// Only segments whose name starts with PREFIX (with --all, other files whose name does).
    #[arg(long, value_name = "PREFIX")]
    prefix: Option<String>,
    /// Also list files in /dev/shm that are not shmbus segments (as "foreign").
    #[arg(long)]
    all: bool,
    /// How long one scan of /dev/shm serves requests, in milliseconds (50 to 60000): requests
    /// within that time of a scan are answered from it; the next one scans again. Rates are
    /// the publish counts' advance between two scans.
    #[arg(long, value_name = "MS", default_value_t = 500,
          value_parser = clap::value_parser!(u64).range(50..=60_000))]
    refresh_ms: u64,
}

/// What the handlers share.
struct Shared {
    snapshots: Snapshots,
    payloads: Payloads,
    hosts: Hosts,
    /// Rate windows measured at once: each holds a thread for its second, reading every item.
    hz_windows: tokio::sync::Semaphore,
}

/// At most this many `/hz` windows at once; more are told to try again.
const HZ_WINDOWS: usize = 4;

/// Which `Host` headers the server answers.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Hosts {
    /// Loopback names only (`localhost`, `127.0.0.1`, `[::1]`): a web page elsewhere whose name
    /// was made to resolve to 127.0.0.1 (DNS rebinding) must not read the segments through the
    /// user's browser.
    Loopback,
    /// Any: `--allow-remote` was given.
    Any,
}

pub(crate) fn run(args: &ServeArgs) -> CmdResult {
    let addr = args.listen;
    if !addr.ip().is_loopback() {
        if !args.allow_remote {
            return Err(Failure(format!(
                "refusing to listen on {addr}: not a loopback address, so anyone who can reach \
                 the port could read every segment's metadata; pass --allow-remote to do so, or \
                 listen on 127.0.0.1"
            )));
        }
        let payloads = if args.show_payloads {
            "and, with --show-payloads, the values boards hold"
        } else {
            "but no payloads (those need --show-payloads)"
        };
        eprintln!(
            "shmbus: warning: listening on {addr}, which other hosts may reach: anyone who \
             can reach this port can read every segment's name, shape, counts and \
             participants' pids, {payloads}. There is no authentication."
        );
    }
    let listener = std::net::TcpListener::bind(addr)
        .map_err(|e| Failure(format!("cannot listen on {addr}: {e}")))?;
    listener.set_nonblocking(true)?;
    let bound = listener.local_addr()?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "listening on http://{bound}/")?;
    out.flush()?;
    drop(out);

    let shared = Arc::new(Shared {
        snapshots: Snapshots::new(
            args.all,
            args.prefix.clone(),
            Duration::from_millis(args.refresh_ms),
        ),
        payloads: if args.show_payloads {
            Payloads::Shown
        } else {
            Payloads::Hidden
        },
        hosts: if args.allow_remote {
            Hosts::Any
        } else {
            Hosts::Loopback
        },
        hz_windows: tokio::sync::Semaphore::new(HZ_WINDOWS),
    });
    let app = Router::new()
        .route("/", get(page_html))
        .route("/dashboard.js", get(page_js))
        .route("/dashboard.css", get(page_css))
        .route("/metrics", get(metrics))
        .route("/api/segments", get(segments))
        .route("/api/segments/{name}", get(segment))
        .route("/api/segments/{name}/hz", get(hz))
        .layer(axum::middleware::from_fn_with_state(
            shared.clone(),
            host_guard,
        ))
        .with_state(shared);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        axum::serve(listener, app).await
    })?;
    Ok(())
}

const PAGE_HTML: &str = include_str!("dashboard.html");
const PAGE_JS: &str = include_str!("dashboard.js");
const PAGE_CSS: &str = include_str!("dashboard.css");

async fn page_html() -> Response {
    with_type("text/html; charset=utf-8", PAGE_HTML.to_owned())
}

async fn page_js() -> Response {
    with_type("text/javascript; charset=utf-8", PAGE_JS.to_owned())
}

async fn page_css() -> Response {
    with_type("text/css; charset=utf-8", PAGE_CSS.to_owned())
}

/// `GET /metrics`: the Prometheus text format, from the latest scan.
async fn metrics(State(s): State<Arc<Shared>>) -> Response {
    let snap = s.snapshots.fresh().await;
    with_type("text/plain; version=0.0.4; charset=utf-8", snap.metrics())
}

/// `GET /api/segments`: what `shmbus list --json` prints, from the latest scan.
async fn segments(State(s): State<Arc<Shared>>) -> Response {
    let snap = s.snapshots.fresh().await;
    match snap.list_json() {
        Ok(json) => json_response(StatusCode::OK, json.to_owned()),
        Err(e) => error_json(StatusCode::SERVICE_UNAVAILABLE, e),
    }
}

/// `GET /api/segments/NAME`: what `shmbus info NAME --json` prints (a board's values only with
/// `--show-payloads`).
async fn segment(State(s): State<Arc<Shared>>, Path(name): Path<String>) -> Response {
    let payloads = s.payloads;
    let report = tokio::task::spawn_blocking(move || {
        inspect::validate_name(&name).map_err(|e| (StatusCode::BAD_REQUEST, e.to_string()))?;
        if std::fs::symlink_metadata(inspect::segment_path(&name)).is_err() {
            let e = shmbus::Error::NotFound { name: name.clone() };
            return Err((StatusCode::NOT_FOUND, e.to_string()));
        }
        kinds::of_segment(&name)
            .report(&name, None, payloads)
            .map_err(|Failure(e)| (StatusCode::UNPROCESSABLE_ENTITY, e))
    })
    .await;
    match report {
        // A bus that fails a check is still reported: its checks say which, its error why.
        Ok(Ok(r)) => json_response(StatusCode::OK, r.json),
        Ok(Err((status, e))) => error_json(status, &e),
        Err(e) => error_json(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

/// Refuses a request whose `Host` is not a loopback name, unless `--allow-remote` was given.
async fn host_guard(
    State(s): State<Arc<Shared>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if s.hosts == Hosts::Loopback {
        if let Some(host) = req.headers().get(header::HOST) {
            let host = host.to_str().unwrap_or("");
            if !is_loopback_host(host) {
                return error_json(
                    StatusCode::FORBIDDEN,
                    &format!(
                        "Host {host:?} is not a loopback name: shmbus serve answers requests \
                         for localhost, 127.0.0.1 and [::1] only, unless started with \
                         --allow-remote"
                    ),
                );
            }
        }
    }
    next.run(req).await
}

/// `localhost`, a loopback IP address, either with a port.
fn is_loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.split(':').next().unwrap_or(""),
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// `GET /api/segments/NAME/hz`: what `shmbus hz NAME --window 1 --count 1 --json` prints, a
/// bus's or records segment's rates and the losses of a read-only subscriber over one second.
async fn hz(State(s): State<Arc<Shared>>, Path(name): Path<String>) -> Response {
    let Ok(_permit) = s.hz_windows.try_acquire() else {
        return error_json(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("{HZ_WINDOWS} rate windows are being measured already; try again"),
        );
    };
    let window = tokio::task::spawn_blocking(move || {
        inspect::validate_name(&name).map_err(|e| (StatusCode::BAD_REQUEST, e.to_string()))?;
        crate::hz::one_window_json(&name, Duration::from_secs(1))
            .map_err(|Failure(e)| (StatusCode::UNPROCESSABLE_ENTITY, e))
    })
    .await;
    match window {
        Ok(Ok(json)) => json_response(StatusCode::OK, json),
        Ok(Err((status, e))) => error_json(status, &e),
        Err(e) => error_json(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

fn with_type(content_type: &'static str, body: String) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        body,
    )
        .into_response()
}

fn json_response(status: StatusCode, json: String) -> Response {
    let mut r = with_type("application/json", json);
    *r.status_mut() = status;
    r
}

/// `{"error": "..."}` with `status`.
fn error_json(status: StatusCode, e: &str) -> Response {
    json_response(status, text::json_line(&serde_json::json!({ "error": e })))
}

#[cfg(test)]
mod tests {
    use super::is_loopback_host;

    #[test]
    fn only_loopback_names_pass_the_host_guard() {
        for ok in [
            "localhost",
            "LOCALHOST:9464",
            "127.0.0.1",
            "127.0.0.1:9464",
            "127.1.2.3:80",
            "[::1]:9464",
            "[::1]",
        ] {
            assert!(is_loopback_host(ok), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:9464",
            "10.0.0.1:9464",
            "localhost.evil.example",
            "[::2]:9464",
            "",
        ] {
            assert!(!is_loopback_host(bad), "{bad}");
        }
    }
}

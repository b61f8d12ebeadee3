//! `hookgate listen`: consumes a pull destination over the admin API and
//! forwards each delivery to a local URL, so that a laptop or a service with
//! no open port gets its webhooks with the gateway's durability (nothing is
//! lost while it is away: the deliveries wait in the gateway).
//!
//! The parts: [`client`] (the admin API: pull, ack, create, delete),
//! [`forward`] (one delivery to the local app), [`session`] (the loop, its
//! reconnects and its stop), [`display`] (the lines on stdout), [`filter`]
//! (`--filter` arguments), [`backoff`] (the reconnect schedule).
//!
//! Order of a run: check the flags (all problems at once) → find or create
//! the destination → the session → remove a destination it created (unless
//! `--keep`) → the summary.

pub mod backoff;
pub mod client;
pub mod display;
pub mod filter;
pub mod forward;
pub mod session;

use std::str::FromStr;
use std::time::Duration;

use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use self::client::Gateway;
use self::display::{Output, Summary};
use self::forward::Forwarder;
use self::session::{fatal, until_answered, Session, Settings};

/// Longest lease the API grants.
const MAX_LEASE: Duration = Duration::from_secs(12 * 3600);
/// Longest long-poll the API accepts.
const MAX_WAIT: Duration = Duration::from_secs(60);
/// The default lease: the local app's timeout, and this for the result to
/// reach the gateway.
const LEASE_MARGIN: Duration = Duration::from_secs(10);
/// How long removing a temporary destination may take at exit.
const CLEANUP: Duration = Duration::from_secs(5);

fn duration_arg(s: &str) -> Result<Duration, String> {
    crate::config::Dur::from_str(s).map(|d| d.0)
}

/// Flags of `hookgate listen`.
#[derive(clap::Args, Clone)]
pub struct ListenArgs {
    /// The gateway's admin address (its `admin_listen`), like http://127.0.0.1:8081.
    #[arg(long, value_name = "URL")]
    pub gateway: String,
    /// An admin token of the gateway (one of `admin_tokens`). Sent only to the
    /// gateway, never to the local app.
    #[arg(long, env = "HOOKGATE_TOKEN", hide_env_values = true)]
    pub token: String,
    /// The pull destination to consume. With --create it may be left out: a
    /// name like listen-<hostname>-<4 hex digits> is made.
    #[arg(long, value_name = "NAME", required_unless_present = "create")]
    pub destination: Option<String>,
    /// Where each delivery is POSTed, like http://localhost:3000/webhooks.
    #[arg(long, value_name = "URL")]
    pub forward_to: String,
    /// Also trust the CA certificates in this PEM file when connecting to an
    /// HTTPS gateway (a private CA, or the gateway's self-signed certificate).
    #[arg(long, value_name = "FILE")]
    pub ca: Option<std::path::PathBuf>,
    /// Create the destination first, as a pull destination fed by --source,
    /// and remove it on exit (unless --keep).
    #[arg(long, requires = "source")]
    pub create: bool,
    /// With --create: the source whose messages go to the destination.
    #[arg(long, value_name = "SOURCE", requires = "create")]
    pub source: Option<String>,
    /// With --create: only these event types (globs), comma-separated.
    #[arg(long, value_name = "TYPES", value_delimiter = ',', requires = "create")]
    pub event_types: Vec<String>,
    /// With --create: only messages matching this condition (repeatable, all
    /// must hold): SELECTOR=VALUE, SELECTOR!=VALUE, SELECTOR^=PREFIX or a bare
    /// SELECTOR (has a value), like body:/message/chat/id=42.
    #[arg(long = "filter", value_name = "CONDITION", value_parser = filter::parse, requires = "create")]
    pub filters: Vec<crate::select::Condition>,
    /// With --create: keep the destination on exit (its messages keep
    /// queueing for the next run).
    #[arg(long, requires = "create")]
    pub keep: bool,
    /// One JSON object per line on stdout instead of text.
    #[arg(long)]
    pub json: bool,
    /// Exit after this many deliveries.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub max: Option<u64>,
    /// Most deliveries forwarded at once.
    #[arg(long, value_name = "N", default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub concurrency: u32,
    /// How long the gateway waits for each result before handing the delivery
    /// out again: 1s to 12h, longer than --timeout [default: --timeout plus 10s]
    #[arg(long, value_name = "DURATION", value_parser = duration_arg)]
    pub lease: Option<Duration>,
    /// How long the local app may take to answer one delivery.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = duration_arg)]
    pub timeout: Duration,
    /// How long each pull waits for a delivery before asking again (at most 60s).
    #[arg(long, value_name = "DURATION", default_value = "20s", value_parser = duration_arg)]
    pub wait: Duration,
    /// On Ctrl-C, how long deliveries under way may take to finish.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = duration_arg)]
    pub grace: Duration,
}

/// Why `listen` stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    /// Bad flags (every problem, one per line).
    #[error("{0}")]
    Usage(String),
    /// The gateway refused (bad token, no such destination) or cannot be used.
    #[error("{0}")]
    Failed(String),
}

impl ListenError {
    /// The process's exit code: 2 for bad flags, else 1.
    pub fn exit_code(&self) -> u8 {
        match self {
            ListenError::Usage(_) => 2,
            ListenError::Failed(_) => 1,
        }
    }
}

/// The checked flags.
struct Plan {
    gateway: url::Url,
    /// Extra CA certificates to trust for the gateway (`--ca`).
    ca: Vec<reqwest::Certificate>,
    forward_to: url::Url,
    settings: Settings,
    /// The definition to create, with `--create`.
    create: Option<Value>,
    keep: bool,
    json: bool,
    timeout: Duration,
}

/// A URL of a flag: absolute, http or https.
fn http_url(flag: &str, v: &str, like: &str, problems: &mut Vec<String>) -> Option<url::Url> {
    match url::Url::parse(v) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.has_host() => Some(u),
        Ok(_) => {
            problems.push(format!("{flag} {v:?} must be an http:// or https:// URL"));
            None
        }
        Err(e) => {
            problems.push(format!(
                "{flag} {v:?} is not a URL ({e}); write it like {like}"
            ));
            None
        }
    }
}

/// The certificates of `--ca`: a PEM file with at least one certificate.
fn read_ca(path: &std::path::Path) -> Result<Vec<reqwest::Certificate>, String> {
    let pem = std::fs::read(path)
        .map_err(|e| format!("--ca {}: cannot be read ({e})", path.display()))?;
    match reqwest::Certificate::from_pem_bundle(&pem) {
        Ok(certs) if !certs.is_empty() => Ok(certs),
        Ok(_) => Err(format!(
            "--ca {}: no PEM certificate in it (-----BEGIN CERTIFICATE-----)",
            path.display()
        )),
        Err(e) => Err(format!(
            "--ca {}: not a PEM certificate file ({e})",
            path.display()
        )),
    }
}

/// The name made for `--create` without `--destination`:
/// `listen-<hostname>-<4 hex digits>`, within the names the API accepts.
pub fn generated_name(hostname: &str, n: u16) -> String {
    let host: String = hostname
        .trim()
        .to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .take(48)
        .collect();
    let host = host.trim_matches('-');
    let host = if host.is_empty() { "host" } else { host };
    format!("listen-{host}-{n:04x}")
}

/// This machine's name, as well as it can be found.
fn hostname() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .unwrap_or_default()
}

impl ListenArgs {
    /// Checks what clap cannot, collecting every problem.
    /// The destination's name (given or made), checking it, `--source` and
    /// `--event-types`.
    fn names(&self, problems: &mut Vec<String>) -> String {
        let destination = match &self.destination {
            Some(d) => d.clone(),
            None => generated_name(&hostname(), rand::random()),
        };
        if !crate::config::valid_name(&destination) {
            problems.push(format!(
                "--destination {destination:?} must be 1-64 letters, digits, '_', '-' or '.'"
            ));
        }
        if let Some(s) = &self.source {
            if !crate::config::valid_name(s) {
                problems.push(format!(
                    "--source {s:?} must be 1-64 letters, digits, '_', '-' or '.'"
                ));
            }
        }
        if self.event_types.iter().any(|t| t.trim().is_empty()) {
            problems.push("--event-types has an empty name".to_string());
        }
        destination
    }

    fn plan(&self) -> Result<Plan, ListenError> {
        let mut problems = Vec::new();
        let gateway = http_url(
            "--gateway",
            &self.gateway,
            "http://127.0.0.1:8081",
            &mut problems,
        );
        let forward_to = http_url(
            "--forward-to",
            &self.forward_to,
            "http://localhost:3000/webhooks",
            &mut problems,
        );
        let ca = self.ca.as_deref().and_then(|p| match read_ca(p) {
            Ok(c) => Some(c),
            Err(e) => {
                problems.push(e);
                None
            }
        });
        let destination = self.names(&mut problems);
        let lease = self.lease.unwrap_or(self.timeout + LEASE_MARGIN);
        if lease < Duration::from_secs(1) || lease > MAX_LEASE {
            problems.push("--lease must be from 1s to 12h".to_string());
        }
        if self.wait > MAX_WAIT {
            problems.push("--wait must be at most 60s".to_string());
        }
        if self.timeout.is_zero() {
            problems.push("--timeout must be more than 0".to_string());
        } else if self.timeout >= lease {
            problems.push(format!(
                "--timeout ({}) must be shorter than --lease ({}): a lease that runs out before the answer comes is handed out again",
                crate::config::Dur(self.timeout),
                crate::config::Dur(lease)
            ));
        }
        if !problems.is_empty() {
            return Err(ListenError::Usage(problems.join("\n")));
        }
        let create = self.create.then(|| {
            let mut def = json!({"name": destination, "type": "pull", "source": self.source});
            if !self.event_types.is_empty() {
                def["event_types"] = json!(self.event_types);
            }
            if !self.filters.is_empty() {
                def["filter"] = Value::Array(self.filters.iter().map(filter::to_json).collect());
            }
            def
        });
        Ok(Plan {
            gateway: gateway.expect("checked"),
            ca: ca.unwrap_or_default(),
            forward_to: forward_to.expect("checked"),
            settings: Settings {
                destination,
                concurrency: self.concurrency as usize,
                wait: self.wait,
                lease,
                grace: self.grace,
                max: self.max,
            },
            create,
            keep: self.keep,
            json: self.json,
            timeout: self.timeout,
        })
    }
}

/// Why a destination as the API shows it cannot be consumed, if it cannot.
fn not_consumable(name: &str, v: &Value) -> Option<String> {
    match v["type"].as_str() {
        Some("pull") => None,
        Some(_) => Some(session::not_pull(name)),
        None => Some(OLD_GATEWAY.to_string()),
    }
}

/// A gateway whose destinations have no `type`.
const OLD_GATEWAY: &str =
    "the gateway does not know pull destinations: it needs a version with `type = \"pull\"`";

/// Creates the destination of `--create`, or reuses a pull destination of
/// that name. `Some(true)` when it was created here (then it is removed on
/// exit), `None` when stopped first.
async fn create(
    gw: &Gateway,
    name: &str,
    def: &Value,
    stop: &CancellationToken,
) -> Result<Option<bool>, ListenError> {
    let Some(r) = until_answered("creating the destination", stop, || gw.create(def.clone())).await
    else {
        return Ok(None);
    };
    match r {
        Ok(_) => {
            eprintln!(
                "created pull destination {name} (source {})",
                def["source"].as_str().unwrap_or("?")
            );
            Ok(Some(true))
        }
        Err(e) if e.status() == Some(409) => {
            let Some(existing) =
                until_answered("reading the destination", stop, || gw.destination(name)).await
            else {
                return Ok(None);
            };
            let v = existing.map_err(|e| ListenError::Failed(fatal(&e, name, "reading it")))?;
            if v["type"].as_str() != Some("pull") {
                return Err(ListenError::Failed(format!(
                    "a destination named {name:?} exists already and is not a pull destination: choose another --destination"
                )));
            }
            eprintln!(
                "using the pull destination {name}, which exists already: its own source and filters apply, and it is kept on exit"
            );
            Ok(Some(false))
        }
        Err(e) => Err(ListenError::Failed(match e.status() {
            Some(401 | 403) => fatal(&e, name, "creating the destination"),
            _ => format!("creating the destination failed: {e}"),
        })),
    }
}

/// Checks that the destination exists and is a pull destination; `None`
/// when stopped first.
async fn check(
    gw: &Gateway,
    name: &str,
    stop: &CancellationToken,
) -> Result<Option<()>, ListenError> {
    let Some(r) = until_answered("reading the destination", stop, || gw.destination(name)).await
    else {
        return Ok(None);
    };
    let v = r.map_err(|e| ListenError::Failed(fatal(&e, name, "reading the destination")))?;
    match not_consumable(name, &v) {
        Some(why) => Err(ListenError::Failed(why)),
        None => Ok(Some(())),
    }
}

/// Removes the destination made by `--create`, trying for a few seconds.
async fn remove(gw: &Gateway, name: &str) {
    let deadline = tokio::time::Instant::now() + CLEANUP;
    let mut backoff = backoff::Backoff::new();
    loop {
        let e = match gw.delete(name).await {
            Ok(()) => {
                eprintln!("removed pull destination {name}");
                return;
            }
            Err(e) if e.status() == Some(404) => return,
            Err(e) => e,
        };
        let wait = backoff.fail();
        if !e.is_transient() || tokio::time::Instant::now() + wait > deadline {
            eprintln!(
                "could not remove pull destination {name} ({e}): remove it with DELETE /api/v1/destinations/{name}"
            );
            return;
        }
        tokio::time::sleep(wait).await;
    }
}

/// Runs `hookgate listen` until `stop` (SIGINT or SIGTERM) or `--max`.
/// Prints a line per delivery and a summary on stdout, the rest on stderr.
pub async fn run(args: ListenArgs, stop: CancellationToken) -> Result<Summary, ListenError> {
    let plan = args.plan()?;
    let gw = Gateway::new(&plan.gateway, &args.token, &plan.ca).map_err(ListenError::Usage)?;
    let fwd = Forwarder::new(&plan.forward_to, plan.timeout).map_err(ListenError::Usage)?;
    let out = Output { json: plan.json };
    let name = plan.settings.destination.clone();
    let created = match &plan.create {
        Some(def) => create(&gw, &name, def, &stop).await?,
        None => check(&gw, &name, &stop).await?.map(|()| false),
    };
    let Some(created) = created else {
        // Stopped before the gateway answered.
        out.summary(&Summary::default());
        return Ok(Summary::default());
    };
    eprintln!(
        "forwarding deliveries of {name} to {} (Ctrl-C to stop)",
        plan.forward_to
    );
    let session = Session::new(gw.clone(), fwd, plan.settings, out);
    let (summary, result) = session.run(stop).await;
    if created && !plan.keep {
        remove(&gw, &name).await;
    } else if created {
        eprintln!("kept pull destination {name}: its messages wait there for the next run");
    }
    out.summary(&summary);
    result.map_err(ListenError::Failed)?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: ListenArgs,
    }

    fn parse(extra: &[&str]) -> Result<ListenArgs, clap::Error> {
        let mut argv = vec![
            "listen",
            "--gateway",
            "http://127.0.0.1:8081",
            "--token",
            "t",
            "--forward-to",
            "http://localhost:3000/webhooks",
        ];
        argv.extend_from_slice(extra);
        Cli::try_parse_from(argv).map(|c| c.args)
    }

    #[test]
    fn generated_names_fit_the_api() {
        assert_eq!(
            generated_name("alice-laptop\n", 0xbeef),
            "listen-alice-laptop-beef"
        );
        assert_eq!(generated_name("Box.local", 1), "listen-box-local-0001");
        assert_eq!(generated_name("", 2), "listen-host-0002");
        let long = generated_name(&"x".repeat(200), 3);
        assert!(crate::config::valid_name(&long), "{long}");
        assert!(crate::config::valid_name(&generated_name("ü_ñ", 4)));
    }

    #[test]
    fn create_sends_a_pull_definition() {
        let a = parse(&[
            "--create",
            "--source",
            "telegram",
            "--destination",
            "dev-alice",
            "--event-types",
            "message,edited_*",
            "--filter",
            "body:/message/chat/id=42",
            "--filter",
            "header:X-Kind",
        ])
        .unwrap();
        let plan = a.plan().unwrap();
        assert_eq!(
            plan.create.unwrap(),
            json!({
                "name": "dev-alice",
                "type": "pull",
                "source": "telegram",
                "event_types": ["message", "edited_*"],
                "filter": [
                    {"field": "body:/message/chat/id", "eq": 42},
                    {"field": "header:x-kind", "exists": true},
                ],
            })
        );
        let bare = parse(&["--create", "--source", "telegram"])
            .unwrap()
            .plan()
            .unwrap();
        assert!(bare.settings.destination.starts_with("listen-"));
        assert_eq!(
            bare.create.unwrap(),
            json!({"name": bare.settings.destination, "type": "pull", "source": "telegram"})
        );
    }

    #[test]
    fn flags_that_need_each_other() {
        assert!(parse(&[]).is_err(), "a destination or --create");
        assert!(parse(&["--create"]).is_err(), "--create needs --source");
        for lone in [
            &["--destination", "d", "--source", "s"][..],
            &["--destination", "d", "--keep"],
            &["--destination", "d", "--filter", "body:/a=1"],
            &["--destination", "d", "--event-types", "a"],
        ] {
            assert!(parse(lone).is_err(), "{lone:?} needs --create");
        }
        let e = parse(&["--create", "--source", "s", "--filter", "nope=1"])
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("unknown selector"), "{e}");
        assert!(parse(&["--destination", "d", "--concurrency", "0"]).is_err());
        assert!(parse(&["--destination", "d", "--max", "0"]).is_err());
        assert!(parse(&["--destination", "d", "--lease", "soon"]).is_err());
    }

    #[test]
    fn every_problem_at_once() {
        let a = parse(&[
            "--destination",
            "no spaces",
            "--lease",
            "13h",
            "--wait",
            "2m",
        ])
        .unwrap();
        let mut a2 = a.clone();
        a2.gateway = "gw:8081".into();
        a2.forward_to = "ftp://x".into();
        let Err(ListenError::Usage(e)) = a2.plan() else {
            panic!("refused")
        };
        for says in [
            "--gateway",
            "--forward-to",
            "--destination",
            "--lease",
            "--wait",
        ] {
            assert!(e.contains(says), "{says}: {e}");
        }
        let short = parse(&["--destination", "d", "--lease", "10s"]).unwrap();
        let Err(ListenError::Usage(e)) = short.plan() else {
            panic!("refused")
        };
        assert!(
            e.contains("--timeout (30s) must be shorter than --lease (10s)"),
            "{e}"
        );
        let defaults = parse(&["--destination", "d"]).unwrap().plan().unwrap();
        assert_eq!(defaults.timeout, Duration::from_secs(30));
        assert_eq!(defaults.settings.lease, Duration::from_secs(40));
        let slow = parse(&["--destination", "d", "--timeout", "2m"])
            .unwrap()
            .plan()
            .unwrap();
        assert_eq!(
            slow.settings.lease,
            Duration::from_secs(130),
            "follows --timeout"
        );
    }

    #[test]
    fn only_pull_destinations_are_consumed() {
        assert_eq!(not_consumable("d", &json!({"type": "pull"})), None);
        let push = not_consumable("d", &json!({"type": "push"})).unwrap();
        assert!(push.contains("\"d\" is a push destination"), "{push}");
        let old = not_consumable("d", &json!({"name": "d", "url": "https://x"})).unwrap();
        assert!(old.contains("does not know pull destinations"), "{old}");
    }
}

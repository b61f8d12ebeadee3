//! `hookgate init`: a commented starter config for the providers named.
//!
//! The file it writes holds no secret: every key is a `${VAR}` reference, and a
//! comment says where each value is found at the provider. Each source carries
//! the exact URL to register with its provider, and is routed to the one
//! destination given. Invariant: with every variable set, the output is a config
//! that [`crate::config::parse`] accepts (the tests check every verifier type).

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;

use crate::config::{check_url, valid_name, VerifyKind, API_SOURCE};

/// The name of the one destination the starter config defines.
pub const DESTINATION: &str = "app";

/// `hookgate init` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct InitArgs {
    /// A provider to receive webhooks from, as its verify type (telegram, twilio,
    /// stripe, github, slack, shopify, meta, standard-webhooks, svix, hmac, basic,
    /// bearer, header), optionally with a source name: `stripe:billing`. Repeat it
    /// for several providers.
    #[arg(long = "source", value_name = "TYPE[:NAME]", required = true)]
    pub sources: Vec<String>,
    /// The URL of your handler, where every source's messages are delivered.
    #[arg(long, value_name = "URL")]
    pub destination: String,
    /// The ingest listener's address (providers' requests reach it at /in/<source>).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// The admin listener's address (API, metrics, health, console).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8081")]
    pub admin_listen: SocketAddr,
    /// The public base URL that reaches the ingest listener, such as
    /// https://hooks.example.com; without it the file says https://<your-host>.
    #[arg(long, value_name = "URL")]
    pub public_url: Option<String>,
    /// The embedded database file.
    #[arg(
        long,
        value_name = "PATH",
        default_value = "./hookgate-data/hookgate.db"
    )]
    pub storage_path: String,
    /// Write the config to this file instead of stdout (an existing file is
    /// refused unless --force).
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Overwrite the --output file if it exists.
    #[arg(long, requires = "output")]
    pub force: bool,
}

/// Why `init` refused its arguments or could not write.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// A `--source` whose type is not a verifier type.
    #[error("--source {0:?}: unknown type; the types are {1}")]
    UnknownType(String, String),
    /// A source name the config would refuse.
    #[error(
        "--source {0:?}: the name must be 1-64 letters, digits, '_', '-' or '.', and not `api`"
    )]
    BadName(String),
    /// Two `--source` with one name.
    #[error("--source: the name {0:?} is given twice; name one of them: --source TYPE:NAME")]
    Duplicate(String),
    /// A destination or public URL that is not an absolute http(s) URL.
    #[error("--{0}: {1}")]
    BadUrl(&'static str, String),
    /// The config would not load (a listener given twice, a destination URL
    /// the destination check refuses): the loader's own messages.
    #[error("the config would not load:\n{0}")]
    Invalid(String),
    /// The output file exists and `--force` was not given.
    #[error("{0} exists; pass --force to overwrite it")]
    Exists(String),
    /// Writing the output failed.
    #[error("cannot write {0}: {1}")]
    Write(String, std::io::Error),
}

/// One source of the starter config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StarterSource {
    /// The source name (`/in/{name}`).
    pub name: String,
    /// Its verifier.
    pub kind: VerifyKind,
}

/// An environment variable the config refers to, and what to put in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Variable {
    /// The variable's name, as in `${NAME}`.
    pub name: String,
    /// Where its value comes from.
    pub about: String,
}

/// Everything the starter config is made from, checked.
#[derive(Debug, Clone)]
pub struct Starter {
    /// The sources, in the order given.
    pub sources: Vec<StarterSource>,
    /// The destination's URL.
    pub destination: String,
    /// `server.listen`.
    pub listen: SocketAddr,
    /// `server.admin_listen`.
    pub admin_listen: SocketAddr,
    /// The public base URL, without a trailing `/`.
    pub public_url: Option<String>,
    /// `storage.path`.
    pub storage_path: String,
}

/// Parses a `--source` value: `TYPE` or `TYPE:NAME`.
fn parse_source(arg: &str) -> Result<StarterSource, InitError> {
    let (ty, name) = match arg.split_once(':') {
        Some((t, n)) => (t, n),
        None => (arg, arg),
    };
    let kind = if ty == "svix" {
        VerifyKind::StandardWebhooks
    } else {
        VerifyKind::ALL
            .into_iter()
            .find(|k| k.as_str() == ty)
            .ok_or_else(|| {
                let all: Vec<&str> = VerifyKind::ALL.iter().map(|k| k.as_str()).collect();
                InitError::UnknownType(arg.into(), all.join(", ") + ", svix")
            })?
    };
    if !valid_name(name) || name == API_SOURCE {
        return Err(InitError::BadName(arg.into()));
    }
    Ok(StarterSource {
        name: name.into(),
        kind,
    })
}

impl Starter {
    /// Checks the arguments: known types, distinct valid names, http(s) URLs.
    pub fn from_args(args: &InitArgs) -> Result<Starter, InitError> {
        let mut sources: Vec<StarterSource> = Vec::new();
        for arg in &args.sources {
            let s = parse_source(arg)?;
            if sources.iter().any(|o| o.name == s.name) {
                return Err(InitError::Duplicate(s.name));
            }
            sources.push(s);
        }
        check_url(&args.destination)
            .map_err(|e| InitError::BadUrl("destination", e.to_string()))?;
        let public_url = match &args.public_url {
            None => None,
            Some(u) => {
                check_url(u).map_err(|e| InitError::BadUrl("public-url", e.to_string()))?;
                if u.contains(['?', '#']) {
                    return Err(InitError::BadUrl(
                        "public-url",
                        format!("{u:?} must not have a query or fragment"),
                    ));
                }
                Some(u.trim_end_matches('/').to_owned())
            }
        };
        Ok(Starter {
            sources,
            destination: args.destination.clone(),
            listen: args.listen,
            admin_listen: args.admin_listen,
            public_url,
            storage_path: args.storage_path.clone(),
        })
    }

    /// The URL a provider is given for a source.
    pub fn register_url(&self, source: &str) -> String {
        let base = self.public_url.as_deref().unwrap_or("https://<your-host>");
        format!("{base}/in/{source}")
    }

    /// Every variable the config refers to, in the order they appear.
    pub fn variables(&self) -> Vec<Variable> {
        let mut out = vec![Variable {
            name: "HOOKGATE_ADMIN_TOKEN".into(),
            about: "a token you choose for the admin API and console (e.g. `openssl rand -hex 32`)"
                .into(),
        }];
        for s in &self.sources {
            out.extend(provider(s).vars);
        }
        out
    }

    /// The config text.
    pub fn render(&self) -> String {
        let mut o = String::new();
        let vars = self.variables();
        let width = vars.iter().map(|v| v.name.len()).max().unwrap_or(0);
        o.push_str(
            "# hookgate starter config, written by `hookgate init`.\n\
             #\n\
             # It holds no secret: each ${VAR} is read from the environment when hookgate\n\
             # starts (a variable that is not set is an error naming it). Set these:\n#\n",
        );
        for v in &vars {
            let _ = writeln!(o, "#   {:width$}  {}", v.name, v.about);
        }
        let _ = write!(
            o,
            "#\n\
             # then check the file and run the gateway:\n\
             #   hookgate check --config hookgate.toml\n\
             #   hookgate serve --config hookgate.toml\n\
             #\n\
             # Providers call {base}/in/<source>. The ingest listener below speaks plain\n\
             # HTTP on {listen}: put a TLS-terminating reverse proxy or load balancer in\n\
             # front of it that forwards {base}/in/ to http://{listen}/in/ (path\n\
             # unchanged). Telegram, Meta and Slack only call https:// URLs.\n\
             \n\
             [server]\n\
             # Ingest: webhooks arrive at /in/<source name>.\n\
             listen = \"{listen}\"\n\
             # Admin API, /metrics, /healthz, /readyz and the web console: keep it private.\n\
             admin_listen = \"{admin}\"\n\
             admin_tokens = [\"${{HOOKGATE_ADMIN_TOKEN}}\"]\n\
             # The proxy's address, so that its X-Forwarded-For is believed (for allow_ips):\n\
             # trusted_proxies = [\"127.0.0.1/32\"]\n\
             \n\
             [storage]\n\
             backend = \"sqlite\"\n\
             path = {path}\n\
             # Finished messages older than this are removed.\n\
             retention = \"7d\"\n",
            base = self.public_url.as_deref().unwrap_or("https://<your-host>"),
            listen = self.listen,
            admin = self.admin_listen,
            path = toml_str(&self.storage_path),
        );
        for s in &self.sources {
            self.render_source(s, &mut o);
        }
        let _ = write!(
            o,
            "\n\
             # ── where messages go ──\n\
             [[destinations]]\n\
             name = \"{DESTINATION}\"\n\
             url = {url}\n\
             timeout = \"10s\"\n\
             # Default retries: 8 attempts over about 18 hours, then the dead-letter queue.\n\
             # retry = {{ schedule = [\"0s\", \"5s\", \"30s\", \"5m\", \"30m\", \"2h\", \"5h\", \"10h\"] }}\n\
             # Sign deliveries (Standard Webhooks) so the handler can check they came from here:\n\
             # signing_secret = \"${{HOOKGATE_SIGNING_SECRET}}\"   # whsec_ followed by base64\n",
            url = toml_str(&self.destination),
        );
        for s in &self.sources {
            let _ = write!(
                o,
                "\n[[routes]]\nsource = {}\nto = \"{DESTINATION}\"\n",
                toml_str(&s.name)
            );
        }
        o
    }

    fn render_source(&self, s: &StarterSource, o: &mut String) {
        let p = provider(s);
        let url = self.register_url(&s.name);
        let _ = write!(
            o,
            "\n# ── {title} ──\n\
             # The URL to register: {url}\n\
             #   (it reaches the ingest listener at http://{listen}/in/{name})\n",
            name = s.name,
            title = if s.name == s.kind.as_str() {
                s.name.clone()
            } else {
                format!("{} ({})", s.name, s.kind.as_str())
            },
            listen = self.listen,
        );
        for line in p.register {
            let line = line.replace("{url}", &url);
            let _ = writeln!(o, "# {}", line.replace("{var}", &p.vars[0].name));
        }
        for v in &p.vars {
            let _ = writeln!(o, "# {}: {}", v.name, v.about);
        }
        let _ = writeln!(o, "[[sources]]\nname = {}", toml_str(&s.name));
        let mut verify = format!("type = \"{}\", {}", s.kind.as_str(), p.verify);
        if s.kind == VerifyKind::Twilio {
            // Twilio signs the URL it called; the gateway rebuilds it from Host
            // and X-Forwarded-Proto unless it is given.
            match &self.public_url {
                Some(_) => verify.push_str(&format!(", url = {}", toml_str(&url))),
                None => o.push_str(
                    "# Twilio signs the URL it called. Behind a proxy, add it to verify exactly as\n\
                     # entered in the console: url = \"https://<your-host>/in/<source>\".\n",
                ),
            }
        }
        let _ = writeln!(o, "verify = {{ {verify} }}");
        for line in p.extra {
            let _ = writeln!(o, "{line}");
        }
    }
}

/// What `init` writes for one provider.
struct Provider {
    /// Where to enter the URL, one comment line each: `{url}` is replaced by the
    /// URL, `{var}` by the name of the first variable.
    register: &'static [&'static str],
    /// The keys of the verify table after `type`.
    verify: String,
    /// The variables those keys use.
    vars: Vec<Variable>,
    /// Lines after the verify table.
    extra: &'static [&'static str],
}

fn provider(s: &StarterSource) -> Provider {
    let prefix: String = s
        .name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    let var = |suffix: &str, about: &str| Variable {
        name: format!("{prefix}_{suffix}"),
        about: about.into(),
    };
    let (verify, vars) = verify_keys(s.kind, &var);
    Provider {
        register: register(s.kind),
        verify,
        vars,
        extra: extra(s.kind),
    }
}

/// Where a provider's URL is entered, one comment line each (see
/// [`Provider::register`]).
fn register(kind: VerifyKind) -> &'static [&'static str] {
    use VerifyKind::*;
    match kind {
        Telegram => &[
            "Telegram: setWebhook with the URL and the secret token:",
            "  curl https://api.telegram.org/bot<BOT_TOKEN>/setWebhook -d url={url} \\",
            "    -d secret_token=\"${var}\"",
        ],
        Twilio => &[
            "Twilio Console: Phone Numbers > Manage > Active numbers > your number >",
            "  \"A message comes in\" (or \"A call comes in\"): Webhook {url}, HTTP POST.",
        ],
        Stripe => &["Stripe Dashboard: Developers > Webhooks > Add endpoint: Endpoint URL {url}."],
        Github => &[
            "GitHub: repository (or organization) Settings > Webhooks > Add webhook:",
            "  Payload URL {url}, Content type application/json, Secret as below.",
        ],
        Slack => &[
            "Slack: api.slack.com/apps > your app > Event Subscriptions > Request URL {url}",
            "  (and the same URL for Slash Commands and Interactivity).",
        ],
        Shopify => &[
            "Shopify admin: Settings > Notifications > Webhooks > Create webhook, URL {url},",
            "  format JSON; or an app's webhook subscription with that URL.",
        ],
        Meta => &[
            "Meta: developers.facebook.com > your app > WhatsApp (or Messenger, Instagram)",
            "  > Configuration > Webhook: Callback URL {url}, Verify token as below.",
        ],
        StandardWebhooks => {
            &["The sender's endpoint settings (e.g. a Svix app portal): endpoint URL {url}."]
        }
        Hmac => &[
            "The sender's webhook settings: URL {url}. Set header, algorithm (sha1, sha256,",
            "  sha512), encoding (hex, base64) and prefix to what its documentation says.",
        ],
        Basic => &[
            "The sender's webhook settings: URL {url} with HTTP basic auth, the user and",
            "  password as below.",
        ],
        Bearer => {
            &["The sender's webhook settings: URL {url}, header Authorization: Bearer <token>."]
        }
        Header => &[
            "The sender's webhook settings: URL {url}, the header named below carrying the key.",
        ],
    }
}

/// The keys of a provider's verify table after `type`, and the variables they
/// use (named by `var` from a suffix and what to put in it).
fn verify_keys(kind: VerifyKind, var: &dyn Fn(&str, &str) -> Variable) -> (String, Vec<Variable>) {
    use VerifyKind::*;
    let one = |suffix: &str, about: &str| {
        let v = var(suffix, about);
        (format!("secret = \"${{{}}}\"", v.name), vec![v])
    };
    match kind {
        Telegram => one(
            "SECRET_TOKEN",
            "a token you choose (1-256 of A-Z a-z 0-9 _ -), sent to setWebhook as secret_token",
        ),
        Twilio => one(
            "AUTH_TOKEN",
            "the account's Auth Token (Twilio Console > Account Info)",
        ),
        Stripe => one(
            "WEBHOOK_SECRET",
            "the endpoint's Signing secret (whsec_...), on its page in the Stripe Dashboard",
        ),
        Github => one(
            "WEBHOOK_SECRET",
            "a random string you choose, entered as the webhook's Secret",
        ),
        Slack => one(
            "SIGNING_SECRET",
            "your app's Signing Secret (api.slack.com/apps > Basic Information > App Credentials)",
        ),
        Shopify => one(
            "WEBHOOK_SECRET",
            "the signing key shown under Settings > Notifications > Webhooks, or for an app its Client secret",
        ),
        Meta => {
            let secret = var(
                "APP_SECRET",
                "the App secret (developers.facebook.com > your app > App settings > Basic)",
            );
            let token = var(
                "VERIFY_TOKEN",
                "a string you choose, entered as the Verify token beside the Callback URL",
            );
            let verify = format!(
                "secret = \"${{{}}}\", verify_token = \"${{{}}}\"",
                secret.name, token.name
            );
            (verify, vec![secret, token])
        }
        StandardWebhooks => one(
            "WEBHOOK_SECRET",
            "the endpoint's signing secret, whsec_ followed by base64",
        ),
        Hmac => {
            let (secret, vars) = one("SIGNING_SECRET", "the key the sender signs the body with");
            (
                format!(
                    "{secret}, header = \"X-Signature\", algorithm = \"sha256\", encoding = \"hex\""
                ),
                vars,
            )
        }
        Basic => {
            let user = var("USER", "a user name you choose");
            let password = var("PASSWORD", "a password you choose");
            let verify = format!("secret = \"${{{}}}:${{{}}}\"", user.name, password.name);
            (verify, vec![user, password])
        }
        Bearer => one("TOKEN", "a token you choose (e.g. `openssl rand -hex 32`)"),
        Header => {
            let (secret, vars) = one("KEY", "the value the sender puts in the header");
            (format!("header = \"X-Api-Key\", {secret}"), vars)
        }
    }
}

/// The lines after a provider's verify table.
fn extra(kind: VerifyKind) -> &'static [&'static str] {
    use VerifyKind::*;
    match kind {
        Telegram => &[
            "# Telegram's networks. Only with trusted_proxies set (behind a proxy every",
            "# request seems to come from the proxy):",
            "# allow_ips = [\"149.154.160.0/20\", \"91.108.4.0/22\"]",
        ],
        Twilio => &["# The preset answers <Response></Response> (text/xml); to reply with TwiML:",
              "# response = { content_type = \"text/xml\", body = \"<Response><Message>Thanks!</Message></Response>\" }"],
        Stripe => &["# Deliver only some events with the route's event_types = [\"payment_intent.*\"]."],
        Meta => &["# For WhatsApp, the changed field (\"messages\", ...) as event type:",
                  "# event_type = \"body:/entry/0/changes/0/field\""],
        Hmac => &["# No timestamp in such a signature: add a dedup key on an event id if there is one:",
              "# dedup = { key = \"body:/id\" }"],
        Github | Slack | Shopify | StandardWebhooks | Basic | Bearer | Header => &[],
    }
}

/// A TOML basic string.
fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

/// A value every variable of the starter config may take, for loading it
/// before it is written: a `whsec_` key is also a valid token, user name and
/// password.
const PLACEHOLDER: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// Runs `hookgate init`: the config on stdout, or in `--output`. It is loaded
/// with the config module first, so what is written is what `check` accepts.
pub fn run(args: &InitArgs) -> Result<(), InitError> {
    let text = Starter::from_args(args)?.render();
    crate::config::parse(&text, "hookgate init", &|_| Some(PLACEHOLDER.into()))
        .map_err(|e| InitError::Invalid(e.to_string()))?;
    match &args.output {
        None => std::io::stdout()
            .write_all(text.as_bytes())
            .map_err(|e| InitError::Write("stdout".into(), e)),
        Some(path) => {
            let shown = path.display().to_string();
            let mut open = std::fs::OpenOptions::new();
            open.write(true);
            if args.force {
                open.create(true).truncate(true);
            } else {
                // create_new: no window between a check and the write.
                open.create_new(true);
            }
            let mut f = open.open(path).map_err(|e| match e.kind() {
                std::io::ErrorKind::AlreadyExists => InitError::Exists(shown.clone()),
                _ => InitError::Write(shown.clone(), e),
            })?;
            f.write_all(text.as_bytes())
                .map_err(|e| InitError::Write(shown, e))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{self, Config};
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        init: InitArgs,
    }

    fn args(argv: &[&str]) -> InitArgs {
        Cli::try_parse_from(std::iter::once("init").chain(argv.iter().copied()))
            .unwrap()
            .init
    }

    const VALUE: &str = PLACEHOLDER;

    fn load(s: &Starter) -> Config {
        let text = s.render();
        config::parse(&text, "init.toml", &|_| Some(VALUE.to_owned()))
            .unwrap_or_else(|e| panic!("{e}\n---\n{text}"))
    }

    fn every_type() -> Vec<String> {
        VerifyKind::ALL
            .iter()
            .map(|k| k.as_str().to_owned())
            .collect()
    }

    #[test]
    fn every_verify_type_renders_a_config_that_loads() {
        let mut argv: Vec<String> = every_type()
            .into_iter()
            .flat_map(|t| ["--source".to_owned(), t])
            .collect();
        argv.extend(["--destination", "http://localhost:3000/hook"].map(String::from));
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        let s = Starter::from_args(&args(&argv)).unwrap();
        let cfg = load(&s);
        assert_eq!(cfg.sources.len(), VerifyKind::ALL.len());
        for (src, kind) in cfg.sources.iter().zip(VerifyKind::ALL) {
            assert_eq!(src.name.get_ref(), kind.as_str());
            let v = src.verify.as_ref().expect("a verify table").get_ref();
            assert_eq!(v.kind, kind);
            assert!(!v.keys().is_empty(), "{kind:?}");
            assert!(config::verify_problems(v).is_empty(), "{kind:?}");
        }
        assert_eq!(cfg.destinations.len(), 1);
        assert_eq!(cfg.destinations[0].name, DESTINATION);
        assert_eq!(
            cfg.destinations[0].url.as_deref(),
            Some("http://localhost:3000/hook")
        );
        let routed: Vec<&str> = cfg
            .routes
            .iter()
            .map(|r| r.source.get_ref().as_str())
            .collect();
        assert_eq!(routed, every_type());
        assert_eq!(cfg.server.admin_tokens.len(), 1);
        assert_eq!(cfg.server.admin_tokens[0].expose(), VALUE);
        assert!(
            config::warnings(&cfg).is_empty(),
            "{:?}",
            config::warnings(&cfg)
        );
    }

    #[test]
    fn secrets_are_variables_named_in_the_header() {
        let s = Starter::from_args(&args(&[
            "--source",
            "telegram",
            "--source",
            "twilio",
            "--source",
            "meta",
            "--source",
            "basic:forms",
            "--destination",
            "http://localhost:3000/hook",
        ]))
        .unwrap();
        let text = s.render();
        let names: Vec<String> = s.variables().into_iter().map(|v| v.name).collect();
        assert_eq!(
            names,
            [
                "HOOKGATE_ADMIN_TOKEN",
                "TELEGRAM_SECRET_TOKEN",
                "TWILIO_AUTH_TOKEN",
                "META_APP_SECRET",
                "META_VERIFY_TOKEN",
                "FORMS_USER",
                "FORMS_PASSWORD"
            ]
        );
        // Each variable is needed: without it, loading fails naming it.
        for n in &names {
            assert!(
                text.contains(&format!("\n#   {n} ")),
                "{n} listed at the top"
            );
            let errs = config::parse(&text, "init.toml", &|v| (v != n).then(|| VALUE.into()))
                .unwrap_err()
                .to_string();
            assert!(errs.contains(&format!("{n} is not set")), "{n}: {errs}");
        }
        // The values reach the verify tables: a secret is not written in the file.
        let cfg = config::parse(&text, "init.toml", &|n| Some(format!("v-{n}"))).unwrap();
        let keys = |i: usize| cfg.sources[i].verify.as_ref().unwrap().get_ref().keys();
        assert_eq!(keys(0)[0].expose(), "v-TELEGRAM_SECRET_TOKEN");
        assert_eq!(keys(3)[0].expose(), "v-FORMS_USER:v-FORMS_PASSWORD");
        let meta = cfg.sources[2].verify.as_ref().unwrap().get_ref();
        assert_eq!(
            meta.verify_token.as_ref().unwrap().expose(),
            "v-META_VERIFY_TOKEN"
        );
    }

    #[test]
    fn the_register_url_and_listeners_are_written() {
        let s = Starter::from_args(&args(&[
            "--source",
            "telegram",
            "--source",
            "twilio",
            "--destination",
            "https://app.example.com/hook",
            "--listen",
            "0.0.0.0:9443",
            "--admin-listen",
            "127.0.0.1:9444",
        ]))
        .unwrap();
        let text = s.render();
        assert!(text.contains("# The URL to register: https://<your-host>/in/telegram\n"));
        assert!(
            text.contains("url=https://<your-host>/in/telegram"),
            "{text}"
        );
        assert!(text.contains("http://0.0.0.0:9443/in/twilio"), "{text}");
        let cfg = load(&s);
        assert_eq!(cfg.server.listen.0, "0.0.0.0:9443".parse().unwrap());
        assert_eq!(cfg.server.admin_listen.0, "127.0.0.1:9444".parse().unwrap());
        // No public URL: Twilio's url is left to the gateway (a placeholder would not load).
        let twilio = cfg.sources[1].verify.as_ref().unwrap().get_ref();
        assert_eq!(twilio.url, None);
    }

    #[test]
    fn a_public_url_makes_twilio_s_url_exact() {
        let s = Starter::from_args(&args(&[
            "--source",
            "twilio:sms",
            "--destination",
            "http://localhost:3000/hook",
            "--public-url",
            "https://hooks.example.com/",
            "--storage-path",
            "/var/lib/hookgate/hookgate.db",
        ]))
        .unwrap();
        let cfg = load(&s);
        let v = cfg.sources[0].verify.as_ref().unwrap().get_ref();
        assert_eq!(v.url.as_deref(), Some("https://hooks.example.com/in/sms"));
        assert!(s
            .render()
            .contains("# The URL to register: https://hooks.example.com/in/sms\n"));
        assert_eq!(cfg.storage.path, "/var/lib/hookgate/hookgate.db");
        assert!(s.variables().iter().any(|v| v.name == "SMS_AUTH_TOKEN"));
    }

    #[test]
    fn bad_arguments_are_refused_with_the_reason() {
        let err = |argv: &[&str]| Starter::from_args(&args(argv)).unwrap_err().to_string();
        let e = err(&["--source", "telegramm", "--destination", "http://x/"]);
        assert!(
            e.contains("unknown type") && e.contains("telegram, twilio"),
            "{e}"
        );
        let e = err(&[
            "--source",
            "stripe",
            "--source",
            "stripe",
            "--destination",
            "http://x/",
        ]);
        assert!(e.contains("given twice") && e.contains("TYPE:NAME"), "{e}");
        let e = err(&["--source", "bearer:api", "--destination", "http://x/"]);
        assert!(e.contains("name"), "{e}");
        let e = err(&["--source", "bearer:a b", "--destination", "http://x/"]);
        assert!(e.contains("name"), "{e}");
        let e = err(&["--source", "bearer", "--destination", "localhost:3000"]);
        assert!(e.starts_with("--destination:"), "{e}");
        let e = err(&[
            "--source",
            "bearer",
            "--destination",
            "http://x/",
            "--public-url",
            "https://h.example/?a=1",
        ]);
        assert!(e.starts_with("--public-url:"), "{e}");
        // Two sources of one type under two names load.
        let s = Starter::from_args(&args(&[
            "--source",
            "stripe",
            "--source",
            "stripe:connect",
            "--source",
            "svix",
            "--destination",
            "http://x/",
        ]))
        .unwrap();
        let cfg = load(&s);
        assert_eq!(cfg.sources[1].name.get_ref(), "connect");
        assert_eq!(
            cfg.sources[2].verify.as_ref().unwrap().get_ref().kind,
            VerifyKind::StandardWebhooks
        );
    }

    #[test]
    fn a_config_that_would_not_load_is_not_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hookgate.toml");
        let e = run(&args(&[
            "--source",
            "github",
            "--destination",
            "http://x/",
            "--listen",
            "127.0.0.1:8081",
            "--output",
            path.to_str().unwrap(),
        ]))
        .unwrap_err();
        assert!(matches!(e, InitError::Invalid(_)), "{e}");
        assert!(e.to_string().contains("must differ"), "{e}");
        assert!(!path.exists());
    }

    #[test]
    fn output_refuses_an_existing_file_without_force() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hookgate.toml");
        let p = path.to_str().unwrap();
        let base = [
            "--source",
            "github",
            "--destination",
            "http://x/",
            "--output",
            p,
        ];
        run(&args(&base)).unwrap();
        let first = std::fs::read_to_string(&path).unwrap();
        assert!(first.contains("name = \"github\""));
        std::fs::write(&path, "keep").unwrap();
        let e = run(&args(&base)).unwrap_err();
        assert!(matches!(e, InitError::Exists(_)), "{e}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "keep");
        let mut forced = base.to_vec();
        forced.push("--force");
        run(&args(&forced)).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), first);
    }
}

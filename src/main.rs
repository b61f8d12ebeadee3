//! The `hookgate` command: `serve`, `check`, `echo`, `bench` and `listen`, and the
//! setup commands of [`hookgate::cli_extra`] (`completions`, `man`, `init`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

/// mimalloc instead of the system allocator: measured under saturation, glibc's
/// malloc and free took about a tenth of the gateway's CPU, much of it in
/// consolidation and arena locks shared by the runtime, writer and reader threads.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "hookgate",
    version = hookgate::cli_extra::VERSION,
    about = "A durable webhook gateway: receive, verify, store, deliver and send webhooks."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args)]
struct ConfigArg {
    /// The config file.
    #[arg(
        long,
        short = 'c',
        env = "HOOKGATE_CONFIG",
        default_value = "hookgate.toml"
    )]
    config: PathBuf,
}

#[derive(clap::Args)]
struct ServeArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Use an embedded database file that holds another program's tables,
    /// adding hookgate's beside them (without it such a file is refused).
    #[arg(long)]
    adopt: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway until SIGINT or SIGTERM, then drain and exit; SIGHUP
    /// reloads the config file.
    Serve(ServeArgs),
    /// Check a config file and print a summary of it.
    Check(ConfigArg),
    /// Run a receiver that prints every request and answers 200.
    Echo {
        /// Address to listen on: HOST:PORT, where HOST may be a name (localhost:9000).
        #[arg(long, default_value = "127.0.0.1:9000")]
        listen: String,
        /// A whsec_ secret: also check each request's Standard Webhooks signature.
        #[arg(long)]
        secret: Option<String>,
    },
    /// Benchmark the gateway against a bare HTTP server on this machine.
    Bench(hookgate::bench::BenchArgs),
    /// Consume a pull destination and forward each delivery to a local URL,
    /// until SIGINT or SIGTERM.
    Listen(hookgate::listen::ListenArgs),
    #[command(flatten)]
    Extra(hookgate::cli_extra::Extra),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    hookgate::telemetry::init_logging();
    match cli.command {
        Command::Extra(e) => hookgate::cli_extra::run(e, Cli::command()),
        Command::Bench(args) => match hookgate::bench::run(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(e.exit_code())
            }
        },
        Command::Check(c) => check(&c.config),
        Command::Listen(args) => listen(args),
        Command::Serve(s) => serve(&s.config.config, s.adopt),
        Command::Echo { listen, secret } => {
            let rt = runtime();
            match rt.block_on(hookgate::echo::run(&listen, secret)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn listen(args: hookgate::listen::ListenArgs) -> ExitCode {
    let rt = runtime();
    rt.block_on(async move {
        let stop = CancellationToken::new();
        let mut signals = Signals::install();
        let on_signal = stop.clone();
        tokio::spawn(async move {
            // SIGHUP means nothing to listen: only a stop ends it.
            while signals.wait().await != Signal::Stop {}
            on_signal.cancel();
        });
        match hookgate::listen::run(args, stop).await {
            Ok(_) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(e.exit_code())
            }
        }
    })
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("the tokio runtime starts")
}

fn load(path: &std::path::Path) -> Result<hookgate::config::Config, ExitCode> {
    hookgate::config::load(path).map_err(|errs| {
        eprintln!("{errs}");
        eprintln!(
            "{}: {} error{} found",
            path.display(),
            errs.0.len(),
            if errs.0.len() == 1 { "" } else { "s" }
        );
        ExitCode::FAILURE
    })
}

fn check(path: &std::path::Path) -> ExitCode {
    let cfg = match load(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    for w in hookgate::config::warnings(&cfg) {
        eprintln!("{}: warning: {w}", path.display());
    }
    print!("{}", hookgate::summary::render(&cfg));
    println!("{}: OK", path.display());
    ExitCode::SUCCESS
}

fn serve(path: &std::path::Path, adopt: bool) -> ExitCode {
    let mut cfg = match load(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    cfg.storage.adopt = adopt;
    let rt = runtime();
    rt.block_on(async move {
        let shutdown = CancellationToken::new();
        // Installed before anything listens: a SIGTERM sent as soon as
        // `/healthz` answers must stop the gateway cleanly, not kill it.
        let mut signals = Signals::install();
        let running = match hookgate::app::start(cfg, shutdown.clone()).await {
            Ok(r) => r,
            Err(e) => {
                // Once, on stderr, whatever the log filter and format.
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        };
        // A refused reload is logged and counted by the reload itself; the
        // gateway keeps running with the config it has.
        while signals.wait().await == Signal::Reload {
            let _ = running.reload().await;
        }
        running.stop();
        running.wait().await;
        ExitCode::SUCCESS
    })
}

/// SIGTERM, SIGINT and SIGHUP, caught from the moment they are installed.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

/// What a signal asks for.
#[derive(PartialEq, Eq)]
enum Signal {
    /// SIGTERM or SIGINT: drain and exit.
    Stop,
    /// SIGHUP: reload the config file.
    Reload,
}

impl Signals {
    fn install() -> Self {
        use tokio::signal::unix::{signal, SignalKind};
        Signals {
            term: signal(SignalKind::terminate()).expect("install the SIGTERM handler"),
            int: signal(SignalKind::interrupt()).expect("install the SIGINT handler"),
            hup: signal(SignalKind::hangup()).expect("install the SIGHUP handler"),
        }
    }

    /// Waits for the next one.
    async fn wait(&mut self) -> Signal {
        tokio::select! {
            _ = self.term.recv() => Signal::Stop,
            _ = self.int.recv() => Signal::Stop,
            _ = self.hup.recv() => Signal::Reload,
        }
    }
}

//! The commands that help install and set up hookgate rather than run it:
//! `completions`, `man`, `init` and `openapi`, and the `--version` text.
//!
//! They are one [`clap::Subcommand`] enum flattened into the binary's command
//! list, so the binary adds them with one variant and one match arm. Shell
//! completions and man pages are generated from the binary's own clap
//! definitions, passed in as a [`clap::Command`], so they never fall behind it.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap_complete::Shell;

/// What `hookgate --version` prints after the name: the package version and
/// the commit it was built from (`0.1.0 (commit 1a2b3c4, 2026-12-01)`), or
/// `commit unknown` when built outside a git checkout.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("HOOKGATE_BUILD_COMMIT"),
    ")"
);

/// The setup commands.
#[derive(Debug, clap::Subcommand)]
pub enum Extra {
    /// Print a shell completion script on stdout (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell to complete for.
        shell: Shell,
    },
    /// Print the man page (roff) on stdout, or write one page per command into a directory.
    Man {
        /// Write hookgate.1 and hookgate-<command>.1 into this directory instead.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Write a commented starter config for the providers named.
    Init(crate::init::InitArgs),
    /// Print the admin API's OpenAPI 3.1 document (JSON) on stdout, as
    /// `GET /api/v1/openapi.json` serves it.
    Openapi,
}

/// Runs one of the setup commands; `cmd` is the binary's whole command line
/// definition (`Cli::command()`).
pub fn run(extra: Extra, cmd: clap::Command) -> ExitCode {
    let done = match extra {
        Extra::Completions { shell } => completions(shell, cmd),
        Extra::Man { dir: None } => man(cmd),
        Extra::Man { dir: Some(dir) } => man_pages(cmd, &dir),
        Extra::Init(args) => crate::init::run(&args).map_err(|e| e.to_string()),
        Extra::Openapi => write_stdout(crate::admin::openapi::document_json().as_bytes()),
    };
    match done {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn completions(shell: Shell, mut cmd: clap::Command) -> Result<(), String> {
    let name = cmd.get_name().to_owned();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, name, &mut out);
    write_stdout(&out)
}

fn man(cmd: clap::Command) -> Result<(), String> {
    let mut out = Vec::new();
    clap_mangen::Man::new(cmd)
        .render(&mut out)
        .map_err(|e| e.to_string())?;
    write_stdout(&out)
}

fn man_pages(cmd: clap::Command, dir: &std::path::Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    clap_mangen::generate_to(cmd, dir)
        .map_err(|e| format!("cannot write the man pages in {}: {e}", dir.display()))
}

/// Writes to stdout; a closed pipe (`hookgate man | head`) is not an error.
fn write_stdout(bytes: &[u8]) -> Result<(), String> {
    match std::io::stdout().lock().write_all(bytes) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.to_string()),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};

    /// A stand-in for the binary's command line, with the setup commands flattened in.
    #[derive(Parser)]
    #[command(name = "hookgate", version = VERSION)]
    struct Cli {
        #[command(subcommand)]
        command: Command,
    }

    #[derive(clap::Subcommand)]
    enum Command {
        /// Check a config file.
        Check,
        #[command(flatten)]
        Extra(Extra),
    }

    #[test]
    fn the_version_names_the_commit() {
        let v = Cli::command().render_version();
        assert!(
            v.starts_with(&format!("hookgate {} (commit ", env!("CARGO_PKG_VERSION"))),
            "{v}"
        );
        let commit = env!("HOOKGATE_BUILD_COMMIT");
        assert!(
            commit == "unknown"
                || commit.split_once(", ").is_some_and(|(h, d)| {
                    h.len() >= 7 && h.bytes().all(|b| b.is_ascii_hexdigit()) && d.len() == 10
                }),
            "{commit}"
        );
    }

    #[test]
    fn man_pages_are_written_per_command() {
        let dir = tempfile::tempdir().unwrap();
        man_pages(Cli::command(), dir.path()).unwrap();
        for page in [
            "hookgate.1",
            "hookgate-check.1",
            "hookgate-init.1",
            "hookgate-completions.1",
        ] {
            let text = std::fs::read_to_string(dir.path().join(page)).unwrap();
            assert!(
                text.starts_with(".ie \\n(.g .ds Aq"),
                "{page} is roff: {text}"
            );
            assert!(text.contains(".TH "), "{page}");
        }
        let init = std::fs::read_to_string(dir.path().join("hookgate-init.1")).unwrap();
        assert!(init.contains("destination"), "{init}");
    }

    #[test]
    fn the_setup_commands_parse() {
        let c = Cli::try_parse_from(["hookgate", "completions", "fish"]).unwrap();
        assert!(matches!(
            c.command,
            Command::Extra(Extra::Completions { shell: Shell::Fish })
        ));
        assert!(Cli::try_parse_from(["hookgate", "completions", "tcsh"]).is_err());
        // --force only with --output.
        assert!(Cli::try_parse_from([
            "hookgate",
            "init",
            "--source",
            "github",
            "--destination",
            "http://x/",
            "--force"
        ])
        .is_err());
    }
}

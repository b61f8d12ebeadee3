//! Installing and setting up: `cargo install --path .` puts a working `hookgate`
//! in a root, and its `--version`, `completions bash` and `init … | check` work.
//! The same checks run on the binary cargo built for the tests, so they hold in
//! every `cargo test` even though the install itself is only run on demand.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use hookgate::config::VerifyKind;

const MANIFEST_DIR: &str = env!("CARGO_MANIFEST_DIR");

/// `--version` names the version and, in a git checkout, the commit of HEAD.
fn check_version(bin: &Path) {
    let out = Command::new(bin).arg("--version").output().unwrap();
    assert!(out.status.success());
    let v = String::from_utf8(out.stdout).unwrap();
    let prefix = format!("hookgate {} (commit ", env!("CARGO_PKG_VERSION"));
    assert!(v.starts_with(&prefix) && v.ends_with(")\n"), "{v}");
    let head = Command::new("git")
        .args(["-C", MANIFEST_DIR, "rev-parse", "--short", "HEAD"])
        .output();
    if let Some(head) = head.ok().filter(|o| o.status.success()) {
        let head = String::from_utf8(head.stdout).unwrap();
        assert!(
            v.starts_with(&format!("{prefix}{}, ", head.trim())),
            "{v} is not of HEAD {head}"
        );
    }
}

/// The bash script loads in bash, registers a completion for `hookgate`, and
/// completes a subcommand and the shells `completions` takes.
fn check_completions(bin: &Path, dir: &Path) {
    let out = Command::new(bin)
        .args(["completions", "bash"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let script = dir.join("hookgate.bash");
    std::fs::write(&script, &out.stdout).unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    for sub in ["serve", "check", "init", "completions", "man"] {
        assert!(text.contains(sub), "{sub} is completed");
    }
    let loaded = Command::new("bash")
        .arg("-c")
        .arg(format!(
            r#"set -e; source '{}'; complete -p hookgate
            COMP_WORDS=(hookgate in); COMP_CWORD=1; _hookgate hookgate in hookgate
            echo "[${{COMPREPLY[*]}}]"
            COMP_WORDS=(hookgate completions ''); COMP_CWORD=2; _hookgate hookgate '' completions
            echo "[${{COMPREPLY[*]}}]""#,
            script.display()
        ))
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&loaded.stdout);
    let lines: Vec<&str> = said.lines().collect();
    assert!(
        loaded.status.success() && lines.len() == 3,
        "{said}{}",
        String::from_utf8_lossy(&loaded.stderr)
    );
    assert!(
        lines[0].contains("-F _hookgate") && lines[0].ends_with(" hookgate"),
        "{said}"
    );
    assert_eq!(lines[1], "[init]");
    for shell in ["bash", "zsh", "fish"] {
        assert!(lines[2].contains(shell), "{said}");
    }
}

/// `init` for every verifier type piped into `check --config /dev/stdin`, with
/// each `${VAR}` of the config set: `check` accepts it, and lists every source
/// routed to the destination. Without the variables it is refused.
fn check_init_then_check(bin: &Path) {
    let mut init = Command::new(bin);
    init.arg("init");
    for k in VerifyKind::ALL {
        init.args(["--source", k.as_str()]);
    }
    init.args(["--destination", "http://localhost:3000/hook"]);
    let text = init.output().unwrap();
    assert!(text.status.success(), "{text:?}");
    let vars = variables(&String::from_utf8(text.stdout).unwrap());
    assert!(vars.contains("HOOKGATE_ADMIN_TOKEN"), "{vars:?}");
    assert!(vars.len() > VerifyKind::ALL.len(), "{vars:?}");

    let mut run = |with_env: bool| {
        let mut producer = init.stdout(Stdio::piped()).spawn().unwrap();
        let mut check = Command::new(bin);
        check
            .args(["check", "--config", "/dev/stdin"])
            .env_remove("HOOKGATE_CONFIG")
            .stdin(producer.stdout.take().unwrap());
        for v in &vars {
            check.env_remove(v);
            if with_env {
                // A whsec_ key: valid for every type, Standard Webhooks included.
                check.env(v, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
            }
        }
        let out = check.output().unwrap();
        assert!(producer.wait().unwrap().success());
        out
    };

    let out = run(true);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.ends_with("/dev/stdin: OK\n"), "{stdout}");
    assert!(!stderr.contains("warning"), "{stderr}");
    for k in VerifyKind::ALL {
        let name = k.as_str();
        assert!(
            stdout.contains(&format!("/in/{name} ")),
            "{name} in:\n{stdout}"
        );
        assert!(
            stdout.contains(&format!("\n  {name} [*] -> app\n")),
            "{name} routed:\n{stdout}"
        );
    }

    let out = run(false);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("HOOKGATE_ADMIN_TOKEN is not set"),
        "{stderr}"
    );
}

/// The names of the `${VAR}` references in a config text.
fn variables(text: &str) -> BTreeSet<String> {
    text.split("${")
        .skip(1)
        .filter_map(|rest| rest.split_once('}'))
        .map(|(name, _)| name.to_owned())
        .filter(|name| name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
        .collect()
}

fn check_binary(bin: &Path) {
    let dir = tempfile::tempdir().unwrap();
    check_version(bin);
    check_completions(bin, dir.path());
    check_init_then_check(bin);
}

#[test]
fn the_built_binary_prints_its_version_completions_and_a_starter_config() {
    check_binary(Path::new(env!("CARGO_BIN_EXE_hookgate")));
}

/// `systemd-analyze verify` accepts `contrib/hookgate.service` without a word,
/// its `ExecStart` pointed at the built binary (verify needs it to exist) and
/// `man hookgate` finding the pages `hookgate man --dir` writes (verify runs
/// `man` for the unit's `Documentation=`). Skipped where systemd's tools are
/// not installed.
#[test]
fn systemd_analyze_verifies_the_unit() {
    let has = Command::new("systemd-analyze").arg("--version").output();
    if !has.is_ok_and(|o| o.status.success()) {
        eprintln!("skipped: systemd-analyze is not installed");
        return;
    }
    let bin = env!("CARGO_BIN_EXE_hookgate");
    let dir = tempfile::tempdir().unwrap();
    let made = Command::new(bin)
        .args(["man", "--dir"])
        .arg(dir.path().join("man1"))
        .status()
        .unwrap();
    assert!(made.success());
    let unit =
        std::fs::read_to_string(Path::new(MANIFEST_DIR).join("contrib/hookgate.service")).unwrap();
    let exec = "ExecStart=/usr/local/bin/hookgate serve --config /etc/hookgate/hookgate.toml\n";
    assert!(unit.contains(exec), "{unit}");
    for line in [
        "DynamicUser=yes",
        "StateDirectory=hookgate",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "Restart=on-failure",
        "ExecReload=/bin/kill -HUP $MAINPID",
    ] {
        assert!(unit.lines().any(|l| l == line), "{line}");
    }
    let path = dir.path().join("hookgate.service");
    std::fs::write(&path, unit.replace("/usr/local/bin/hookgate", bin)).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .env("MANPATH", dir.path())
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success() && said.is_empty(), "{said}");
}

/// The install as the docs write it, into a temporary root, offline (the test
/// build has already fetched every dependency). Ignored by default: it is a
/// release build of every dependency, measured at 34 minutes of wall time (12
/// of CPU) on two cores shared with other builds. Run it with
/// `cargo test --test it install:: -- --ignored`; `HOOKGATE_INSTALL_TARGET_DIR`
/// names a target directory to keep between runs (else a temporary one).
#[test]
#[ignore = "a release build of every dependency: 34 minutes measured on two shared cores"]
fn cargo_install_puts_a_working_hookgate_in_the_root() {
    let root = tempfile::tempdir().unwrap();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    // Its own target directory: `cargo install` must not touch the test build's.
    let target = std::env::var_os("HOOKGATE_INSTALL_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.path().join("target"));
    let started = Instant::now();
    let out = Command::new(cargo)
        .args(["install", "--offline", "--locked", "--path", MANIFEST_DIR])
        .arg("--root")
        .arg(root.path())
        .env("CARGO_TARGET_DIR", &target)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("cargo install took {:?}", started.elapsed());
    let bin: PathBuf = root.path().join("bin").join("hookgate");
    assert!(bin.is_file(), "{} installed", bin.display());
    check_binary(&bin);
}

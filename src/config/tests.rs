use super::*;
use proptest::prelude::*;

/// A config with every section (the example of docs/configuration.md), whole.
pub const SPEC_EXAMPLE: &str = r#"
[server]
listen = "127.0.0.1:8080"
admin_listen = "127.0.0.1:8081"
admin_tokens = ["${HOOKGATE_ADMIN_TOKEN}"]
allow_private_destinations = false
trusted_proxies = []
max_body = "1MiB"
read_timeout = "10s"

[storage]
backend = "sqlite"
path = "./hookgate-data/hookgate.db"
retention = "7d"
max_pending = 10000000

[[sources]]
name = "telegram"
verify = { type = "telegram", secret = "${TG_SECRET}" }
event_type = "body:/message/chat/type"
dedup = { key = "body:/update_id", window = "24h" }
rate_limit = { per_second = 100, burst = 200 }
allow_ips = ["149.154.160.0/20", "91.108.4.0/22"]
response = { status = 200, content_type = "text/plain", body = "" }

[[destinations]]
name = "bot"
url = "http://127.0.0.1:9000/updates"
timeout = "10s"
max_in_flight = 16
rate_limit = { per_second = 50 }
retry = { schedule = ["0s", "5s", "30s", "5m", "30m", "2h", "5h", "10h"] }
disable_after = "5d"
circuit_breaker = { failures = 10, cooldown = "60s" }
signing_secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
headers = { Authorization = "Bearer ${BOT_API_KEY}" }
forward_headers = "all"

[[routes]]
source = "telegram"
event_types = ["*"]
to = "bot"
filter = [ { field = "body:/message/text", exists = true } ]
ordering_key = "body:/message/chat/id"
priority = "normal"
delay = "0s"
"#;

fn env(name: &str) -> Option<String> {
    match name {
        "HOOKGATE_ADMIN_TOKEN" => Some("admintoken".into()),
        "TG_SECRET" => Some("tgsecret".into()),
        "BOT_API_KEY" => Some("botkey".into()),
        _ => None,
    }
}

fn errors(text: &str) -> Vec<ConfigError> {
    parse(text, "hg.toml", &env)
        .expect_err("config should be refused")
        .0
}

#[test]
fn the_spec_example_parses() {
    let cfg = parse(SPEC_EXAMPLE, "hg.toml", &env).unwrap();
    assert_eq!(cfg.server.admin_tokens[0].expose(), "admintoken");
    assert_eq!(cfg.sources.len(), 1);
    let s = &cfg.sources[0];
    assert_eq!(s.name.get_ref(), "telegram");
    let v = s.verify.as_ref().unwrap().get_ref();
    assert_eq!(v.kind, VerifyKind::Telegram);
    assert_eq!(v.keys()[0].expose(), "tgsecret");
    assert_eq!(s.dedup.as_ref().unwrap().window, Some(Dur::secs(86_400)));
    assert_eq!(s.allow_ips.len(), 2);
    let d = &cfg.destinations[0];
    assert_eq!(d.max_in_flight, Some(16));
    assert_eq!(
        d.retry.as_ref().unwrap().schedule.as_ref().unwrap().len(),
        8
    );
    assert_eq!(d.headers["Authorization"], "Bearer botkey");
    assert_eq!(d.forward_headers, Some(ForwardHeaders::All));
    assert_eq!(d.circuit_breaker.unwrap().failures, 10);
    let r = &cfg.routes[0];
    assert_eq!(r.to.get_ref().names(), vec!["bot"]);
    assert_eq!(r.filter.len(), 1);
    assert_eq!(r.priority, Priority::Normal);
    assert_eq!(cfg.storage.retention, Dur::secs(7 * 86_400));
}

#[test]
fn an_empty_file_is_all_defaults() {
    let cfg = parse("", "hg.toml", &env).unwrap();
    assert_eq!(cfg.server.max_body, Size(1 << 20));
    assert_eq!(cfg.storage.backend, Backend::Sqlite);
    assert!(cfg.sources.is_empty());
}

#[test]
fn the_lease_margin_defaults_to_thirty_seconds_and_must_be_positive() {
    let cfg = parse("", "hg.toml", &env).unwrap();
    assert_eq!(cfg.storage.lease_margin, Dur::secs(30));
    let cfg = parse("[storage]\nlease_margin = \"2s\"\n", "hg.toml", &env).unwrap();
    assert_eq!(cfg.storage.lease_margin, Dur::secs(2));
    let errs = errors("[storage]\nlease_margin = \"0s\"\n");
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0]
            .message
            .contains("storage.lease_margin must be more than 0"),
        "{}",
        errs[0].message
    );
}

#[test]
fn waiting_requests_are_bounded_by_count_and_bytes() {
    let cfg = parse("", "hg.toml", &env).unwrap();
    assert_eq!(cfg.storage.max_waiting, 1024);
    assert_eq!(cfg.storage.max_waiting_bytes.0, 32 << 20);
    let cfg = parse("[storage]\nmax_waiting_bytes = \"8MiB\"\n", "hg.toml", &env).unwrap();
    assert_eq!(cfg.storage.max_waiting_bytes.0, 8 << 20);
    let errs = errors("[storage]\nmax_waiting = 0\nmax_waiting_bytes = \"10B\"\n");
    let text: Vec<&str> = errs.iter().map(|e| e.message.as_str()).collect();
    assert_eq!(errs.len(), 2, "{text:?}");
    assert!(text[0].contains("storage.max_waiting must be more than 0"));
    assert!(text[1].contains("storage.max_waiting_bytes must be at least 1KiB"));
}

#[test]
fn unknown_keys_are_errors_with_line_and_column() {
    let text =
        "[[destinations]]\nname = \"bot\"\nurl = \"http://127.0.0.1:9/x\"\ntimout = \"5s\"\n";
    let errs = errors(text);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(errs[0].line, Some(4));
    assert_eq!(errs[0].col, Some(1));
    assert!(errs[0].message.contains("timout"), "{}", errs[0].message);
    assert!(errs[0].to_string().starts_with("hg.toml:4:1: "));
}

#[test]
fn every_error_is_reported_at_once() {
    let text = r#"
[server]
max_body = "lots"

[[sources]]
name = "a"
verfy = { type = "github", secret = "x" }

[[sources]]
name = "b"
verify = { type = "github" }

[[destinations]]
name = "d"
url = "ftp://example.com"
timeout = "soon"

[[routes]]
source = "nope"
to = "missing"
"#;
    let errs = errors(text);
    let text_of = |needle: &str| {
        errs.iter()
            .find(|e| e.message.contains(needle))
            .unwrap_or_else(|| panic!("no error mentions {needle:?}: {errs:#?}"))
    };
    assert_eq!(text_of("lots").line, Some(3));
    assert_eq!(text_of("verfy").line, Some(7));
    assert_eq!(text_of("needs `secret`").line, Some(11));
    assert_eq!(text_of("soon").line, Some(16));
    assert_eq!(text_of("`nope`").line, Some(19));
    assert_eq!(text_of("`missing`").line, Some(20));
    assert!(
        errs.windows(2).all(|w| w[0].line <= w[1].line),
        "sorted by position"
    );
}

#[test]
fn a_missing_variable_is_named() {
    let errs = errors("[server]\nadmin_tokens = [\"${NOT_SET_ANYWHERE}\"]\n");
    assert_eq!(errs.len(), 1);
    assert!(errs[0].message.contains("NOT_SET_ANYWHERE"));
    assert_eq!(errs[0].line, Some(2));
}

#[test]
fn syntax_errors_have_positions() {
    let errs = errors("[server\nlisten = 1\n");
    assert!(!errs.is_empty());
    assert_eq!(errs[0].line, Some(1));
}

#[test]
fn unknown_sections_and_bad_shapes() {
    let errs = errors("[servr]\nlisten = \"x\"\n");
    assert!(errs[0].message.contains("servr"));
    let errs = errors("[sources]\nname = \"a\"\n");
    assert!(errs[0].message.contains("[[sources]]"), "{errs:?}");
}

#[test]
fn names_and_references() {
    let errs = errors(
        "[[sources]]\nname = \"api\"\n[[sources]]\nname = \"a b\"\n[[destinations]]\nname = \"d\"\nurl = \"http://x\"\n[[destinations]]\nname = \"d\"\nurl = \"http://y\"\n",
    );
    let all = errs
        .iter()
        .map(|e| e.message.clone())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(all.contains("reserved"), "{all}");
    assert!(all.contains("\"a b\""), "{all}");
    assert!(all.contains("defined twice"), "{all}");
}

#[test]
fn tenant_source_names_are_reserved() {
    let errs = errors("[[sources]]\nname = \"tenant.app_1\"\n");
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(errs[0].message.contains("`tenant.`"), "{errs:?}");
    assert_eq!(errs[0].line, Some(2));
}

#[test]
fn verifier_fields_are_checked_per_type() {
    let errs = errors("[[sources]]\nname = \"g\"\nverify = { type = \"github\", secret = \"s\", url = \"http://x\" }\n");
    assert!(errs[0].message.contains("`url` does not apply"), "{errs:?}");
    let errs = errors("[[sources]]\nname = \"h\"\nverify = { type = \"hmac\", secret = \"s\" }\n");
    assert!(errs[0].message.contains("needs `header`"), "{errs:?}");
    let errs =
        errors("[[sources]]\nname = \"h\"\nverify = { type = \"nosuch\", secret = \"s\" }\n");
    assert!(errs[0].message.contains("nosuch"), "{errs:?}");
    let errs =
        errors("[[sources]]\nname = \"h\"\nverify = { type = \"svix\", secret = \"whsec_***\" }\n");
    assert!(errs[0].message.contains("whsec_"), "{errs:?}");
    let errs = errors(
        "[[sources]]\nname = \"t\"\nverify = { type = \"twilio\", secret = \"s\", url = \"https://x.com/sms?a=1\" }\n",
    );
    assert!(errs[0].message.contains("query"), "{errs:?}");
    let errs = errors(
        "[[sources]]\nname = \"t\"\nverify = { type = \"stripe\", secret = \"s\", tolerance = \"0s\" }\n",
    );
    assert!(errs[0].message.contains("tolerance"), "{errs:?}");
    let errs = errors(
        "[[sources]]\nname = \"t\"\nverify = { type = \"github\", secret = \"s\", tolerance = \"1m\" }\n",
    );
    assert!(
        errs[0].message.contains("`tolerance` does not apply"),
        "{errs:?}"
    );
    let errs = errors(
        "[[sources]]\nname = \"m\"\nverify = { type = \"meta\", secret = \"s\", verify_token = \"\" }\n",
    );
    assert!(errs[0].message.contains("verify_token"), "{errs:?}");
    let errs = errors(
        "[[sources]]\nname = \"m\"\nverify = { type = \"slack\", secret = \"s\", verify_token = \"t\" }\n",
    );
    assert!(
        errs[0].message.contains("`verify_token` does not apply"),
        "{errs:?}"
    );
    // Every provider's documented config is accepted.
    for v in [
        "{ type = \"twilio\", secret = \"t\", url = \"https://hooks.example.com:8443/twilio\" }",
        "{ type = \"stripe\", secrets = [\"whsec_a\", \"whsec_b\"], tolerance = \"10m\" }",
        "{ type = \"meta\", secret = \"app\", verify_token = \"tok\" }",
        "{ type = \"hmac\", secret = \"k\", header = \"X-Webhook-Signature\", algorithm = \"sha256\", encoding = \"base64\" }",
        "{ type = \"hmac\", secret = \"k\", header = \"X-Sig\", algorithm = \"sha512\", prefix = \"sha512=\" }",
        "{ type = \"standard-webhooks\", secret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\" }",
        "{ type = \"svix\", secret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\" }",
    ] {
        let text = format!("[[sources]]\nname = \"s\"\nverify = {v}\n");
        if let Err(e) = parse(&text, "hg.toml", &env) {
            panic!("{v}: {e:?}");
        }
    }
    // Secrets never appear in errors.
    let errs = errors(
        "[[sources]]\nname = \"h\"\nverify = { type = \"basic\", secret = \"nocolonsecret\" }\n",
    );
    assert!(
        errs.iter().all(|e| !e.message.contains("nocolonsecret")),
        "{errs:?}"
    );
}

#[test]
fn retry_forms() {
    let base = "[[destinations]]\nname = \"d\"\nurl = \"http://127.0.0.1:1/\"\n";
    let ok = |extra: &str| parse(&format!("{base}{extra}"), "t", &env).unwrap();
    let d = &ok("retry = { max_attempts = 5, initial = \"1s\", max = \"1h\" }\n").destinations[0];
    assert_eq!(d.retry.as_ref().unwrap().max_attempts, Some(5));
    let bad = |extra: &str| errors(&format!("{base}{extra}"));
    assert!(!bad("retry = { schedule = [\"1s\"], max_attempts = 3 }\n").is_empty());
    assert!(!bad("retry = { schedule = [] }\n").is_empty());
    assert!(!bad("retry = { max_attempts = 0 }\n").is_empty());
    assert!(!bad("retry = { initial = \"1h\", max = \"1s\" }\n").is_empty());
    assert!(!bad("retry = { shedule = [\"1s\"] }\n").is_empty());
}

#[test]
fn filters_need_one_test() {
    let text = "[[sources]]\nname = \"s\"\n[[destinations]]\nname = \"d\"\nurl = \"http://x/\"\n[[routes]]\nsource = \"s\"\nto = \"d\"\nfilter = [ { field = \"body:/x\" }, { field = \"nope:/x\", eq = 1 } ]\n";
    // A filter that does not deserialize does not hide the route's other checks.
    let errs = errors(text);
    assert_eq!(errs.len(), 2, "{errs:?}");
    assert!(errs[0].message.contains("needs one test"));
    assert_eq!((errs[0].line, errs[0].col), (Some(9), Some(12)));
    assert!(errs[1].message.contains("nope:/x"));
    assert_eq!((errs[1].line, errs[1].col), (Some(9), Some(45)));
    let errs = errors(&text.replace(", { field = \"nope:/x\", eq = 1 }", ""));
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(errs[0].message.contains("needs one test"));
    assert_eq!(errs[0].line, Some(9));
}

#[test]
fn forward_header_forms() {
    let base = "[[destinations]]\nname = \"d\"\nurl = \"http://127.0.0.1:1/\"\n";
    let cfg = parse(
        &format!("{base}forward_headers = [\"X-GitHub-Event\"]\n"),
        "t",
        &env,
    )
    .unwrap();
    assert_eq!(
        cfg.destinations[0].forward_headers,
        Some(ForwardHeaders::Only(vec!["x-github-event".into()]))
    );
    let cfg = parse(&format!("{base}forward_headers = \"none\"\n"), "t", &env).unwrap();
    assert_eq!(
        cfg.destinations[0].forward_headers,
        Some(ForwardHeaders::None)
    );
    assert!(!errors(&format!("{base}forward_headers = \"some\"\n")).is_empty());
}

proptest! {
    #[test]
    fn parsing_arbitrary_text_never_panics(text in "\\PC{0,300}") {
        let _ = parse(&text, "fuzz.toml", &env);
    }

    #[test]
    fn truncated_configs_never_panic(cut in 0usize..2000) {
        let cut = cut.min(SPEC_EXAMPLE.len());
        let mut end = cut;
        while !SPEC_EXAMPLE.is_char_boundary(end) { end -= 1; }
        let _ = parse(&SPEC_EXAMPLE[..end], "cut.toml", &env);
    }

    #[test]
    fn mutated_configs_never_panic(pos in 0usize..2000, byte in any::<u8>()) {
        let mut b = SPEC_EXAMPLE.as_bytes().to_vec();
        let p = pos % b.len();
        b[p] = byte;
        if let Ok(text) = String::from_utf8(b) {
            let _ = parse(&text, "mut.toml", &env);
        }
    }

    #[test]
    fn durations_in_config_parse_or_error(ms in 0u64..1_000_000_000) {
        let text = format!("[server]\nread_timeout = \"{ms}ms\"\n");
        let cfg = parse(&text, "t", &env);
        if ms == 0 {
            prop_assert!(cfg.is_err());
        } else {
            prop_assert_eq!(cfg.unwrap().server.read_timeout, Dur::millis(ms));
        }
    }
}

/// A config with a mistake of each kind, one per line noted below.
const MANY_MISTAKES: &str = r#"[server]
listen = "not-an-address"
max_body = "lots"
admin_tokns = ["t"]

[storage]
retension = "7d"

[[sources]]
name = "demo"
verfy = { type = "github", secret = "s" }
rate_limit = { per_second = 0 }

[[destinations]]
name = "bot"
url = "ftp://example.com"
max_inflight = 3
timeout = "soon"
signing_secret = "not-whsec"
retry = { max_attempts = 0 }

[[routes]]
source = "demo"
to = ["bot", "nowhere"]
priority = "urgent"
"#;

#[test]
fn one_run_reports_every_mistake_at_its_key_or_value() {
    let errs = errors(MANY_MISTAKES);
    let expected: &[(&str, usize, usize)] = &[
        ("not-an-address", 2, 10),
        ("lots", 3, 12),
        (
            "unknown key \"admin_tokns\", did you mean \"admin_tokens\"?",
            4,
            1,
        ),
        (
            "unknown key \"retension\", did you mean \"retention\"?",
            7,
            1,
        ),
        ("unknown key \"verfy\", did you mean \"verify\"?", 11, 1),
        ("per_second", 12, 29),
        ("ftp://example.com", 16, 7),
        (
            "unknown key \"max_inflight\", did you mean \"max_in_flight\"?",
            17,
            1,
        ),
        ("soon", 18, 11),
        ("signing_secret", 19, 18),
        ("max_attempts", 20, 26),
        ("`nowhere`", 24, 14),
        ("urgent", 25, 12),
    ];
    for (needle, line, col) in expected {
        let e = errs
            .iter()
            .find(|e| e.message.contains(needle))
            .unwrap_or_else(|| panic!("no error mentions {needle:?}: {errs:#?}"));
        assert_eq!(
            (e.line, e.col),
            (Some(*line), Some(*col)),
            "position of {needle:?}: {e}"
        );
    }
    assert_eq!(errs.len(), expected.len(), "{errs:#?}");
}

#[test]
fn a_misspelt_key_does_not_hide_its_table_from_references() {
    let text = "[[sources]]\nname = \"demo\"\nverfy = { type = \"github\", secret = \"s\" }\n\n[[destinations]]\nname = \"d\"\nurl = \"http://127.0.0.1:1/\"\nmax_inflight = 3\n\n[[routes]]\nsource = \"demo\"\nto = \"d\"\n";
    let errs = errors(text);
    assert_eq!(errs.len(), 2, "{errs:#?}");
    assert!(
        errs[0].message.contains("did you mean \"verify\"?"),
        "{errs:#?}"
    );
    assert!(
        errs[1].message.contains("did you mean \"max_in_flight\"?"),
        "{errs:#?}"
    );
}

#[test]
fn a_table_without_its_name_still_defines_the_name_for_references() {
    // `url` has the wrong type, so the destination cannot be built; routes to it
    // must not also be told that `d` does not exist.
    let text = "[[destinations]]\nname = \"d\"\nurl = 5\n\n[[sources]]\nname = \"s\"\n\n[[routes]]\nsource = \"s\"\nto = \"d\"\n";
    let errs = errors(text);
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert_eq!((errs[0].line, errs[0].col), (Some(3), Some(7)));
}

#[test]
fn an_unknown_key_far_from_any_known_one_lists_the_known_keys() {
    let errs = errors("[storage]\nzzzzzz = 1\n");
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert!(
        errs[0].message.starts_with("unknown key \"zzzzzz\""),
        "{errs:#?}"
    );
    assert!(errs[0].message.contains("retention"), "{errs:#?}");
    let errs = errors("[servr]\n");
    assert!(
        errs[0].message.contains("did you mean \"server\"?"),
        "{errs:#?}"
    );
}

#[test]
fn errors_about_secrets_do_not_echo_them() {
    for text in [
        "[server]\nadmin_tokens = \"tok-hunter2\"\n",
        "[[destinations]]\nname = \"d\"\nurl = \"http://127.0.0.1:1/\"\nsigning_secret = \"hunter2-not-whsec\"\n",
        "[[sources]]\nname = \"s\"\nverify = { type = \"github\", secret = [\"hunter2\"] }\n",
        "[[sources]]\nname = \"s\"\nverify = { type = \"github\", secrets = \"hunter2\" }\n",
    ] {
        let errs = errors(text);
        assert!(
            errs.iter().all(|e| !e.to_string().contains("hunter2")),
            "{text}: {errs:#?}"
        );
    }
}

#[test]
fn hostile_documents_get_errors_not_panics() {
    for depth in [64, 5_000] {
        let arrays = format!(
            "[server]\nlisten = {}{}\n",
            "[".repeat(depth),
            "]".repeat(depth)
        );
        assert!(!errors(&arrays).is_empty());
        let tables = format!(
            "[[sources]]\nname = \"s\"\nverify = {}1{}\n",
            "{ a = ".repeat(depth),
            " }".repeat(depth)
        );
        assert!(!errors(&tables).is_empty());
        let dotted = format!("[server]\n{} = 1\n", vec!["k"; depth].join("."));
        assert!(!errors(&dotted).is_empty());
    }
    let huge = "x".repeat(4 << 20);
    let errs = errors(&format!(
        "[server]\nlisten = \"{huge}\"\n[[sources]]\nname = \"{huge}\"\n"
    ));
    assert_eq!(errs.len(), 2, "{}", errs.len());
    // Many bad entries in one table: reported up to a bound, in bounded time.
    let many: String = (0..10_000).map(|i| format!("k{i} = {i}\n")).collect();
    let errs = errors(&format!("[storage]\n{many}"));
    assert!(errs.len() <= 65, "{}", errs.len());
    // A file that is not UTF-8 is a clear error.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bin.toml");
    std::fs::write(&path, b"[server]\nlisten = \"\xff\xfe\"\n").unwrap();
    let errs = load(&path).unwrap_err().0;
    assert!(errs[0].message.contains("cannot read"), "{errs:?}");
}

/// A line of a generated config: a table header or a key with a value, each
/// right, misspelt or of the wrong type.
fn config_line() -> impl Strategy<Value = String> {
    let header = prop::sample::select(vec![
        "[server]",
        "[storage]",
        "[[sources]]",
        "[[destinations]]",
        "[[routes]]",
        "[sources]",
        "[server.listen]",
    ]);
    let key = prop::sample::select(vec![
        "name",
        "url",
        "verify",
        "verfy",
        "to",
        "source",
        "listen",
        "max_body",
        "retry",
        "filter",
        "max_inflight",
        "max_in_flight",
        "timeout",
        "signing_secret",
        "admin_tokens",
        "priority",
        "rate_limit",
        "x.y",
    ]);
    let value = prop::sample::select(vec![
        "\"a\"",
        "1",
        "-1",
        "true",
        "1.5",
        "\"5s\"",
        "[]",
        "[1, \"b\"]",
        "{ type = \"github\" }",
        "{ type = \"github\", secret = \"s\", nope = 1 }",
        "{ per_second = 0 }",
        "{ a = { b = 1 } }",
        "\"http://127.0.0.1:1/\"",
        "\"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"",
        "[ { field = \"body:/x\", eq = 1 }, { field = 2 } ]",
        "{ max_attempts = 0, schedule = [\"1s\"] }",
        "\"${MISSING}\"",
    ]);
    prop_oneof![
        header.prop_map(String::from),
        (key, value).prop_map(|(k, v)| format!("{k} = {v}")),
    ]
}

proptest! {
    #[test]
    fn generated_configs_parse_or_report_errors_inside_the_text(
        lines in prop::collection::vec(config_line(), 0..40)
    ) {
        let text = lines.join("\n");
        if let Err(errs) = parse(&text, "gen.toml", &env) {
            prop_assert!(!errs.0.is_empty());
            for e in &errs.0 {
                prop_assert!(!e.message.is_empty());
                prop_assert!(e.line.unwrap_or(1) <= lines.len().max(1), "{}", e);
            }
        }
    }
}

#[test]
fn what_only_api_destinations_take_is_refused_in_the_file_at_its_key() {
    let errs = errors(
        "[[destinations]]\nname = \"d\"\nurl = \"http://127.0.0.1:1/\"\nevent_types = [\"*\"]\n",
    );
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert_eq!(
        (errs[0].line, errs[0].col),
        (Some(4), Some(15)),
        "{errs:#?}"
    );
    assert!(
        errs[0].message.starts_with(
            "destination `d`: event_types applies to destinations made through the API"
        ),
        "{errs:#?}"
    );
}

#[test]
fn a_pull_destination_has_no_url_and_a_push_one_needs_one() {
    let ok = parse(
        "[[destinations]]\nname = \"inbox\"\ntype = \"pull\"\nmax_in_flight = 5\n",
        "hg.toml",
        &env,
    )
    .unwrap();
    assert_eq!(ok.destinations[0].kind, super::def::DestinationType::Pull);
    assert_eq!(ok.destinations[0].url, None);
    for (text, (line, says)) in [
        (
            "[[destinations]]\nname = \"d\"\n",
            (1, "needs a url (or type = \"pull\""),
        ),
        (
            "[[destinations]]\nname = \"d\"\ntype = \"pull\"\nurl = \"http://x/\"\n",
            (4, "a pull destination has no url"),
        ),
        (
            "[[destinations]]\nname = \"d\"\ntype = \"pull\"\ncircuit_breaker = { failures = 3, cooldown = \"30s\" }\n",
            (4, "circuit_breaker does not apply to a pull destination"),
        ),
        (
            "[[destinations]]\nname = \"d\"\ntype = \"pull\"\ntimeout = \"5s\"\n",
            (4, "timeout does not apply to a pull destination"),
        ),
        (
            "[[transforms]]\nname = \"t\"\ncode = \"function transform(r) { return r; }\"\n[[destinations]]\nname = \"d\"\ntype = \"pull\"\ntransform = \"t\"\n",
            (7, "transform does not apply to a pull destination"),
        ),
        (
            "[[destinations]]\nname = \"d\"\ntype = \"poll\"\n",
            (3, "did you mean \"pull\"?"),
        ),
        (
            "[[destinations]]\nname = \"d\"\ntype = \"pull\"\nsource = \"s\"\n",
            (4, "source applies to destinations made through the API"),
        ),
        (
            "[[destinations]]\nname = \"d\"\ntype = \"pull\"\nfilter = [{ field = \"body:/x\", eq = 1 }]\n",
            (4, "filter applies to destinations made through the API"),
        ),
    ] {
        let errs = errors(text);
        assert_eq!(errs.len(), 1, "{text}: {errs:#?}");
        assert_eq!(errs[0].line, Some(line), "{text}: {errs:#?}");
        assert!(errs[0].message.contains(says), "{text}: {errs:#?}");
    }
}

#[test]
fn telemetry_is_off_by_default_and_takes_an_endpoint() {
    let cfg = parse("", "hg.toml", &env).unwrap();
    assert_eq!(cfg.telemetry, TelemetryConfig::default());
    assert_eq!(cfg.telemetry.traces_url(), None);
    assert_eq!(cfg.telemetry.sample_ratio, 1.0);
    assert_eq!(cfg.telemetry.service_name, "hookgate");
    let cfg = parse(
        "[telemetry]\notlp_endpoint = \"http://127.0.0.1:4318\"\nsample_ratio = 0.25\nservice_name = \"edge\"\n",
        "hg.toml",
        &env,
    )
    .unwrap();
    assert_eq!(
        cfg.telemetry.traces_url().as_deref(),
        Some("http://127.0.0.1:4318/v1/traces")
    );
    assert_eq!(cfg.telemetry.sample_ratio, 0.25);
    assert_eq!(cfg.telemetry.service_name, "edge");
    for (given, used) in [
        ("http://c:4318/", "http://c:4318/v1/traces"),
        ("https://c/otlp", "https://c/otlp/v1/traces"),
        ("http://c:4318/v1/traces", "http://c:4318/v1/traces"),
        ("http://c:4318/v1/traces/", "http://c:4318/v1/traces"),
    ] {
        let t = TelemetryConfig {
            otlp_endpoint: Some(given.into()),
            ..TelemetryConfig::default()
        };
        assert_eq!(t.traces_url().as_deref(), Some(used), "{given}");
    }
}

/// Each bad `[telemetry]` value is reported at its own line, all at once.
#[test]
fn telemetry_errors_are_at_their_keys() {
    let text = "[telemetry]\notlp_endpoint = \"ftp://collector:4318\"\nsample_ratio = 1.5\nservice_name = \" \"\n";
    let errs = errors(text);
    let at = |needle: &str| {
        errs.iter()
            .find(|e| e.message.contains(needle))
            .unwrap_or_else(|| panic!("no error about {needle}: {errs:#?}"))
            .line
    };
    assert_eq!(at("telemetry.otlp_endpoint"), Some(2));
    assert_eq!(at("telemetry.sample_ratio"), Some(3));
    assert_eq!(at("telemetry.service_name"), Some(4));
    assert_eq!(errs.len(), 3, "{errs:#?}");
    for bad in [
        "\"not a url\"",
        "\"http://\"",
        "\"http://c:4318/?token=x\"",
        "\"mailto:ops@example.com\"",
    ] {
        let errs = errors(&format!("[telemetry]\notlp_endpoint = {bad}\n"));
        assert_eq!(errs.len(), 1, "{bad}: {errs:#?}");
        assert!(
            errs[0].message.contains("telemetry.otlp_endpoint"),
            "{errs:#?}"
        );
        assert!(
            !errs[0].message.contains("token=x"),
            "the URL is not echoed"
        );
    }
    for bad in ["-0.1", "nan", "inf", "\"half\""] {
        let errs = errors(&format!("[telemetry]\nsample_ratio = {bad}\n"));
        assert_eq!(errs.len(), 1, "{bad}: {errs:#?}");
        assert_eq!(errs[0].line, Some(2), "{bad}: {errs:#?}");
    }
    let errs = errors("[telemetry]\notlp_endpont = \"http://c:4318\"\n");
    assert!(errs[0].message.contains("otlp_endpoint"), "{errs:#?}");
    let errs = errors(
        "[telemetry]\nsample_ratio = 1.0\nper_tenant_metrics = [\"app_1\", \"customer-42\"]\n",
    );
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert_eq!(errs[0].line, Some(3), "{errs:#?}");
    assert!(errs[0].message.contains("\"customer-42\""), "{errs:#?}");
    let cfg = parse(
        "[telemetry]\nper_tenant_metrics = [\"app_1\"]\n",
        "hg.toml",
        &env,
    )
    .unwrap();
    assert_eq!(cfg.telemetry.per_tenant_metrics, ["app_1"]);
}

/// A source, a destination and a route naming `transform`, then `extra`.
fn with_transform(route_transform: &str, extra: &str) -> String {
    format!(
        "[[sources]]\nname = \"s\"\n[[destinations]]\nname = \"d\"\nurl = \"http://127.0.0.1:1/\"\n[[routes]]\nsource = \"s\"\nto = \"d\"\ntransform = \"{route_transform}\"\n{extra}"
    )
}

#[test]
fn transforms_parse_with_their_limits() {
    let text = with_transform(
        "t",
        "[[transforms]]\nname = \"t\"\ncode = \"function transform(r) { return r; }\"\ntimeout = \"20ms\"\nmemory_limit = \"4MiB\"\n",
    );
    let cfg = parse(&text, "hg.toml", &env).unwrap();
    let t = &cfg.transforms[0];
    assert_eq!(cfg.routes[0].transform.as_deref(), Some("t"));
    assert_eq!(t.text(), Some("function transform(r) { return r; }"));
    assert_eq!(
        t.limits(),
        crate::transform::Limits {
            memory: 4 << 20,
            time: std::time::Duration::from_millis(20)
        }
    );
}

#[test]
fn transform_problems_are_reported_at_their_fields() {
    let cases = [
        // A route naming no transformation.
        (with_transform("nope", ""), "transform `nope` is not a defined transform", 9),
        // Both and neither of file and code; a zero timeout; a tiny memory limit.
        (
            with_transform("t", "[[transforms]]\nname = \"t\"\nfile = \"a.js\"\ncode = \"x\"\n"),
            "has both `file` and `code`",
            13,
        ),
        (
            with_transform("t", "[[transforms]]\nname = \"t\"\n"),
            "needs `file` or `code`",
            11,
        ),
        (
            with_transform("t", "[[transforms]]\nname = \"t\"\ncode = \"x\"\ntimeout = \"0s\"\n"),
            "timeout must be more than 0",
            13,
        ),
        (
            with_transform("t", "[[transforms]]\nname = \"t\"\ncode = \"x\"\nmemory_limit = \"1KiB\"\n"),
            "memory_limit must be between 1MiB and 1GiB",
            13,
        ),
        (
            with_transform("t", "[[transforms]]\nname = \"t\"\ncode = \"x\"\n[[transforms]]\nname = \"t\"\ncode = \"y\"\n"),
            "transform `t` is defined twice",
            14,
        ),
    ];
    for (text, want, line) in cases {
        let errs = errors(&text);
        let e = errs
            .iter()
            .find(|e| e.message.contains(want))
            .unwrap_or_else(|| panic!("{want}: {errs:?}"));
        assert_eq!(e.line, Some(line), "{want}: {e:?}");
    }
}

#[test]
fn a_transform_file_is_read_relative_to_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("js")).unwrap();
    std::fs::write(
        dir.path().join("js/t.js"),
        "function transform(r) { return null; }",
    )
    .unwrap();
    let cfg_path = dir.path().join("hookgate.toml");
    std::fs::write(
        &cfg_path,
        with_transform("t", "[[transforms]]\nname = \"t\"\nfile = \"js/t.js\"\n"),
    )
    .unwrap();
    let cfg = load(&cfg_path).unwrap();
    assert_eq!(
        cfg.transforms[0].text(),
        Some("function transform(r) { return null; }")
    );
    std::fs::write(
        &cfg_path,
        with_transform(
            "t",
            "[[transforms]]\nname = \"t\"\nfile = \"js/missing.js\"\n",
        ),
    )
    .unwrap();
    let errs = load(&cfg_path).unwrap_err().0;
    assert!(
        errs.iter()
            .any(|e| e.message.contains("transform `t`: cannot read")
                && e.message.contains("missing.js")
                && e.line == Some(12)),
        "{errs:?}"
    );
}

//! `tierback run` (what cron starts) and the Prometheus metrics it leaves behind.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use tierback_tests::Env;

fn services(textfile: &std::path::Path) -> String {
    format!(
        "[metrics]\ntextfile = \"{}\"\nlisten = \"127.0.0.1:0\"\n\n\
         [services.shop]\ndriver = \"command\"\nschedule = [\"* * * * *\"]\ncommand = [\"seq\", \"1\", \"50000\"]\nextension = \"sql\"\n\n\
         [services.broken]\ndriver = \"command\"\nschedule = [\"* * * * *\"]\ncommand = [\"false\"]\nextension = \"rdb\"\n\n\
         [services.manual]\ndriver = \"command\"\ncommand = [\"echo\", \"x\"]\nextension = \"txt\"\n",
        textfile.display()
    )
}

fn metric(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[test]
fn run_does_what_is_due_once_and_writes_metrics() {
    let env = Env::new("");
    let textfile = env.path().join("textfile/tierback.prom");
    env.write_config(&services(&textfile));
    // The schedule is decided on the tierback clock, set here, never on the wall clock's minute.
    let run_at = |now: &str| env.run_with(&["run"], &[("TIERBACK_NOW", now)]);
    let out = run_at("2027-01-16T12:00:05Z");
    assert_eq!(
        out.status.code(),
        Some(3),
        "one service fails, others work: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("backup of broken failed"));
    let list = env.list_json();
    assert_eq!(
        list.len(),
        1,
        "only the scheduled, working service is backed up"
    );
    assert_eq!(list[0]["service"], "shop");

    // Within the same minute nothing is due again (a retry waits for the next slot); the next
    // minute is.
    run_at("2027-01-16T12:00:05Z");
    assert_eq!(
        env.list_json().len(),
        1,
        "a second run in the same minute backs up nothing"
    );
    run_at("2027-01-16T12:01:05Z");
    assert_eq!(env.list_json().len(), 2, "the next minute's slot is due");

    let text = std::fs::read_to_string(&textfile).expect("textfile written");
    assert_eq!(
        metric(&text, "backup_success{service=\"shop\",type=\"sql\"}"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        metric(&text, "backup_success{service=\"broken\""),
        Some(0.0),
        "{text}"
    );
    assert!(metric(&text, "backup_age_hours{service=\"shop\"}").unwrap() < 1.0);
    assert_eq!(
        metric(&text, "backup_age_hours{service=\"manual\"}"),
        Some(f64::INFINITY),
        "never backed up: +Inf so RPO alerts fire"
    );
    assert!(metric(&text, "backup_storage_used_bytes{tier=\"local\"}").unwrap() > 0.0);
    assert_eq!(
        metric(
            &text,
            "backup_files_count{location=\"local\",service=\"shop\"}"
        ),
        Some(2.0)
    );
    assert!(metric(&text, "backup_storage_free_bytes{location=").unwrap() > 0.0);
    assert!(metric(&text, "backup_compression_ratio{service=\"shop\"}").unwrap() > 1.0);
    // The verify job ran (first run: never verified before) and passed.
    assert_eq!(
        metric(&text, "backup_verify_success{service=\"shop\"}"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        metric(&text, "backup_checksum_failures{service=\"all\"}"),
        Some(0.0)
    );
    // So did the weekly restore test (first run: never tested before): a command source's
    // backup is read back whole, every block verified.
    assert_eq!(
        metric(&text, "backup_restore_test_success{service=\"shop\"}"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        metric(&text, "backup_restore_test_success{service=\"broken\"}"),
        None,
        "no backup, no test: {text}"
    );
    for name in [
        "backup_last_run_timestamp",
        "backup_duration_seconds",
        "backup_size_bytes",
    ] {
        assert!(
            text.contains(&format!("# TYPE {name} gauge")),
            "{name} missing"
        );
    }
    assert!(!env.path().join("textfile/tierback.prom.tmp").exists());

    // The same text on stdout.
    let out = env.ok(&["metrics"]);
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("backup_success{service=\"shop\",type=\"sql\"} 1")
    );
}

#[test]
fn metrics_are_served_over_http() {
    let env = Env::new("");
    let textfile = env.path().join("m.prom");
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    env.write_config(&services(&textfile).replace("127.0.0.1:0", &format!("127.0.0.1:{port}")));
    env.ok(&["backup", "shop"]);
    let mut child = env
        .cmd(&["metrics", "--serve"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let body = loop {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
                .unwrap();
            let mut body = String::new();
            s.read_to_string(&mut body).unwrap();
            break body;
        }
        assert!(Instant::now() < deadline, "metrics server never listened");
        std::thread::sleep(Duration::from_millis(100));
    };
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(body.starts_with("HTTP/1.1 200 OK"), "{body}");
    assert!(
        body.contains("backup_success{service=\"shop\",type=\"sql\"} 1"),
        "{body}"
    );
}

/// `RUST_LOG=tierback=debug tierback run` follows each step of a run: every line logged inside
/// a step names the run and the step (`run{at=…}:backup{service="shop"}: …`).
#[test]
fn debug_logging_shows_each_step_nested_in_its_run() {
    let env = Env::new("");
    env.write_config(&format!(
        "[tiers.second]\ntype = \"local\"\npath = \"{}\"\n\n\
         [services.shop]\ndriver = \"command\"\nschedule = [\"* * * * *\"]\ncommand = [\"seq\", \"1\", \"1000\"]\nextension = \"sql\"\n",
        env.path().join("second").display()
    ));
    let out = env
        .cmd(&["run"])
        .env_remove("TIERBACK_LOG")
        .env("RUST_LOG", "tierback=debug")
        // 2027-01-16T12:00:05Z: the run span carries the tierback clock's time.
        .env("TIERBACK_NOW", "2027-01-16T12:00:05Z")
        .output()
        .expect("run tierback");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    for step in [
        "backup{service=\"shop\"}",
        "sync{tier=\"second\"}",
        "verify{tier=\"local\"}",
        "verify{tier=\"second\"}",
    ] {
        assert!(
            stderr.contains(&format!("run{{at=1800100805}}:{step}: ")),
            "no line of {step} inside the run:\n{stderr}"
        );
    }
    // TIERBACK_LOG says the same, and wins over RUST_LOG.
    let out = env
        .cmd(&["run"])
        .env("TIERBACK_LOG", "tierback=debug")
        .env("RUST_LOG", "off")
        .env("TIERBACK_NOW", "2027-01-16T12:01:05Z")
        .output()
        .expect("run tierback");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("run{at=1800100865}:backup{service=\"shop\"}: "),
        "{stderr}"
    );
}

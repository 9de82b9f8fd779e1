//! Every Grafana dashboard in docs/grafana queries only what tierback exports: each panel's PromQL
//! (and each template variable's `label_values`) names metrics that the textfile really holds,
//! with labels those metrics really carry. What tierback exports is not a list kept here: the
//! test brings about every event that makes a metric appear (a backup, one still running, a sync
//! to a second tier, a verification, a restore test), lets `tierback run` write the metrics
//! textfile and reads its `# TYPE` lines and samples.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::process::CommandExt;
use std::path::Path;

use tierback_tests::Env;

/// Kills the process group of a backup left running on purpose.
struct Group(std::process::Child);

impl Drop for Group {
    fn drop(&mut self) {
        // SAFETY: signalling the process group this test created.
        unsafe { libc::kill(-(self.0.id() as i32), libc::SIGKILL) };
        let _ = self.0.wait();
    }
}

/// Metric name → the label names its samples carry, from a Prometheus text exposition.
fn exported(text: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            out.entry(rest.split_whitespace().next().unwrap().to_owned())
                .or_default();
        } else if !line.starts_with('#') && !line.is_empty() {
            let (name, labels) = match line.split_once('{') {
                Some((n, rest)) => (n, rest.rsplit_once('}').unwrap().0),
                None => (line.split_whitespace().next().unwrap(), ""),
            };
            let names = out.get_mut(name).unwrap_or_else(|| {
                panic!("sample of {name} without a # TYPE line before it: {line}")
            });
            // Values are quoted and escaped: take each name before `="`.
            let mut rest = labels;
            while let Some((k, v)) = rest.split_once("=\"") {
                names.insert(k.trim_start_matches(',').trim().to_owned());
                let mut end = 0;
                let bytes = v.as_bytes();
                while bytes[end] != b'"' {
                    end += if bytes[end] == b'\\' { 2 } else { 1 };
                }
                rest = &v[end + 1..];
            }
        }
    }
    out
}

/// Writes the metrics textfile after every event that adds metrics to it and returns its text.
fn everything_tierback_exports() -> String {
    let env = Env::new("");
    let textfile = env.path().join("prom/tierback.prom");
    env.write_config(&format!(
        "[tiers.copy]\ntype = \"local\"\npath = \"{dir}/tiers/copy\"\n\n\
         [metrics]\ntextfile = \"{textfile}\"\n\n\
         [services.shop]\ndriver = \"command\"\nschedule = [\"0 0 1 1 *\"]\ncommand = [\"seq\", \"1\", \"20000\"]\nextension = \"sql\"\n\n\
         [services.slow]\ndriver = \"command\"\nschedule = [\"0 0 1 1 *\"]\ncommand = [\"sleep\", \"60\"]\nextension = \"bin\"\n",
        dir = env.path().display(),
        textfile = textfile.display()
    ));
    env.ok(&["backup", "shop"]);
    env.ok(&["sync"]);
    env.ok(&["verify", "--all"]);
    env.ok(&["restore-test", "shop"]);
    let _slow = Group(
        env.cmd(&["backup", "slow"])
            .process_group(0)
            .spawn()
            .unwrap(),
    );
    // Wait until the catalog records the slow backup as running, then let `run` write the file.
    for _ in 0..100 {
        let text = String::from_utf8(env.ok(&["metrics"]).stdout).unwrap();
        if text.contains("backup_running_since_timestamp{") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    env.ok(&["run"]);
    std::fs::read_to_string(&textfile).expect("run writes the metrics textfile")
}

/// Words of PromQL that are not metric names.
const KEYWORDS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "and",
    "or",
    "unless",
    "offset",
    "bool",
    "atan2",
    "inf",
    "nan",
    "Inf",
    "NaN",
];

/// What one PromQL expression uses: metric names, with the label names each selector matches
/// on, and the label names in `by (…)`-style lists and legends.
#[derive(Debug, Default)]
struct Uses {
    selectors: Vec<(String, Vec<String>)>,
    grouping: Vec<String>,
}

fn is_ident_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_' || c == b':'
}

fn is_ident(c: u8) -> bool {
    is_ident_start(c) || c.is_ascii_digit()
}

/// The label names of a matcher list `a="x", b=~"y"` (without the braces).
fn matcher_labels(inside: &str) -> Vec<String> {
    let mut labels = Vec::new();
    let b = inside.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'"' || b[i] == b'\'' || b[i] == b'`' {
            let q = b[i];
            i += 1;
            while i < b.len() && b[i] != q {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
        } else if is_ident_start(b[i]) {
            let start = i;
            while i < b.len() && is_ident(b[i]) {
                i += 1;
            }
            labels.push(inside[start..i].to_owned());
        } else {
            i += 1;
        }
    }
    labels
}

/// The index just past the bracket that closes the one at `open`, skipping quoted strings.
fn closing(b: &[u8], open: usize) -> usize {
    let (o, c) = (b[open], if b[open] == b'{' { b'}' } else { b']' });
    let mut depth = 0;
    let mut i = open;
    while i < b.len() {
        match b[i] {
            b'"' | b'\'' | b'`' => {
                let q = b[i];
                i += 1;
                while b[i] != q {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
            }
            x if x == o => depth += 1,
            x if x == c => {
                depth -= 1;
                if depth == 0 {
                    return i + 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    panic!("unclosed {} in {}", o as char, String::from_utf8_lossy(b));
}

fn parse(expr: &str) -> Uses {
    let b = expr.as_bytes();
    let mut uses = Uses::default();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'"' || c == b'\'' || c == b'`' {
            i = closing_quote(b, i);
        } else if c == b'[' {
            i = closing(b, i); // a range or subquery: durations, $__rate_interval
        } else if c == b'{' {
            // A selector without a name: `{__name__="x"}` is the only way it could name one.
            let end = closing(b, i);
            let labels = matcher_labels(&expr[i + 1..end - 1]);
            assert!(
                !labels.iter().any(|l| l == "__name__"),
                "{expr}: __name__ matchers are not checked; name the metric"
            );
            i = end;
        } else if c.is_ascii_digit() || (c == b'.' && i + 1 < b.len() && b[i + 1].is_ascii_digit())
        {
            // A number (1e3, 0x1f, 86400) or a duration after offset (5m): not a name.
            while i < b.len() && (is_ident(b[i]) || b[i] == b'.') {
                i += 1;
            }
        } else if c == b'$' {
            // A Grafana variable outside a string ($__interval): not a name.
            i += 1;
            while i < b.len() && is_ident(b[i]) {
                i += 1;
            }
        } else if is_ident_start(c) {
            let start = i;
            while i < b.len() && is_ident(b[i]) {
                i += 1;
            }
            let word = &expr[start..i];
            let mut j = i;
            while j < b.len() && b[j].is_ascii_whitespace() {
                j += 1;
            }
            let next = b.get(j).copied();
            if matches!(
                word,
                "by" | "without" | "on" | "ignoring" | "group_left" | "group_right"
            ) {
                if next == Some(b'(') {
                    let end = expr[j..].find(')').map(|k| j + k + 1).expect("closing )");
                    uses.grouping.extend(matcher_labels(&expr[j + 1..end - 1]));
                    i = end;
                }
            } else if KEYWORDS.contains(&word) || next == Some(b'(') || grouping_follows(&expr[i..])
            {
                // A keyword, a function or an aggregation: its arguments are read on.
            } else if next == Some(b'{') {
                let end = closing(b, j);
                uses.selectors
                    .push((word.to_owned(), matcher_labels(&expr[j + 1..end - 1])));
                i = end;
            } else {
                uses.selectors.push((word.to_owned(), Vec::new()));
            }
        } else {
            i += 1;
        }
    }
    uses
}

/// `by (…)` or `without (…)` comes next: the word before is an aggregation (`sum by (l) (…)`).
fn grouping_follows(rest: &str) -> bool {
    let rest = rest.trim_start();
    ["by", "without"].iter().any(|k| {
        rest.strip_prefix(k)
            .is_some_and(|r| !r.bytes().next().is_some_and(is_ident))
    })
}

fn closing_quote(b: &[u8], open: usize) -> usize {
    let q = b[open];
    let mut i = open + 1;
    while b[i] != q {
        i += if b[i] == b'\\' { 2 } else { 1 };
    }
    i + 1
}

/// `{{label}}` names in a legend format.
fn legend_labels(format: &str) -> Vec<String> {
    format
        .split("{{")
        .skip(1)
        .filter_map(|s| s.split_once("}}"))
        .map(|(l, _)| l.trim().to_owned())
        .collect()
}

/// Every panel, rows' nested panels included.
fn panels<'a>(list: &'a serde_json::Value, out: &mut Vec<&'a serde_json::Value>) {
    for p in list.as_array().into_iter().flatten() {
        out.push(p);
        panels(&p["panels"], out);
    }
}

/// (where, PromQL, legend) of every query in a dashboard, template variables included
/// (`label_values(metric, label)` as the selector `metric` grouped by `label`).
fn queries(dashboard: &serde_json::Value) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    let mut all = Vec::new();
    panels(&dashboard["panels"], &mut all);
    for p in all {
        for t in p["targets"].as_array().into_iter().flatten() {
            if let Some(expr) = t["expr"].as_str() {
                out.push((
                    format!("panel {:?}", p["title"].as_str().unwrap_or("")),
                    expr.to_owned(),
                    t["legendFormat"].as_str().unwrap_or("").to_owned(),
                ));
            }
        }
    }
    for v in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if v["type"] != "query" {
            continue;
        }
        let q = v["query"]["query"]
            .as_str()
            .or(v["query"].as_str())
            .or(v["definition"].as_str())
            .unwrap_or_else(|| panic!("variable {} has no query", v["name"]));
        let q = q.trim();
        let expr = if let Some(args) = q
            .strip_prefix("label_values(")
            .and_then(|a| a.strip_suffix(')'))
        {
            match args.rsplit_once(',') {
                Some((sel, label)) => format!("group by ({}) ({})", label.trim(), sel.trim()),
                None => panic!("label_values without a metric: {q}"),
            }
        } else if let Some(e) = q
            .strip_prefix("query_result(")
            .and_then(|a| a.strip_suffix(')'))
        {
            e.to_owned()
        } else {
            panic!("variable {}: query {q:?} is not checked", v["name"]);
        };
        out.push((
            format!("variable ${}", v["name"].as_str().unwrap()),
            expr,
            String::new(),
        ));
    }
    out
}

#[test]
fn the_parser_finds_metrics_and_labels() {
    let u = parse(
        r#"sum by (service) (rate(backup_x_total{service=~"$service", tier!="a{b}"}[5m])) / on (service) group_left backup_y offset 1h or vector(0) > bool 3.5e2 and backup_z"#,
    );
    let names: Vec<&str> = u.selectors.iter().map(|s| s.0.as_str()).collect();
    assert_eq!(names, ["backup_x_total", "backup_y", "backup_z"]);
    assert_eq!(u.selectors[0].1, ["service", "tier"]);
    assert_eq!(u.grouping, ["service", "service"]);
    let u = parse("group by (service) (backup_age_hours) + count without (a) (backup_b)");
    let names: Vec<&str> = u.selectors.iter().map(|s| s.0.as_str()).collect();
    assert_eq!(names, ["backup_age_hours", "backup_b"]);
    let u = parse("predict_linear(backup_storage_free_bytes[3d], 7 * 86400)");
    assert_eq!(
        u.selectors,
        [("backup_storage_free_bytes".to_owned(), vec![])]
    );
    assert_eq!(
        legend_labels("{{service}} ({{ type }})"),
        ["service", "type"]
    );
    let e = exported(
        "# HELP a x\n# TYPE a gauge\na{k=\"v \\\" =\\\"\",l=\"w\"} 1\n# TYPE b gauge\nb 2\n",
    );
    assert_eq!(e["a"], BTreeSet::from(["k".to_owned(), "l".to_owned()]));
    assert!(e["b"].is_empty());
}

#[test]
fn every_dashboard_queries_only_what_tierback_exports() {
    let text = everything_tierback_exports();
    let metrics = exported(&text);
    // The events above really happened: a metric of each.
    for m in [
        "backup_success",
        "backup_running_since_timestamp",
        "backup_network_throughput_bytes",
        "backup_verify_read_bytes",
        "backup_restore_test_success",
        "backup_storage_free_bytes",
    ] {
        assert!(metrics.contains_key(m), "{m} not exported:\n{text}");
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/grafana");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no dashboards in {}", dir.display());
    let mut problems = Vec::new();
    let mut checked = 0;
    for file in &files {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let dashboard: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(file).unwrap())
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        let queries = queries(&dashboard);
        assert!(!queries.is_empty(), "{name}: no queries found");
        for (place, expr, legend) in queries {
            let uses = parse(&expr);
            // Labels of every metric in the query: what `by (…)` and the legend may name.
            let mut available = BTreeSet::new();
            let mut all_known = true;
            for (metric, labels) in &uses.selectors {
                checked += 1;
                let Some(have) = metrics.get(metric) else {
                    all_known = false;
                    problems.push(format!(
                        "{name} {place}: `{expr}` queries {metric}, which tierback does not export"
                    ));
                    continue;
                };
                for l in labels {
                    if !have.contains(l) {
                        problems.push(format!(
                            "{name} {place}: `{expr}` matches on label {l} of {metric}, which has only {have:?}"
                        ));
                    }
                }
                available.extend(have.iter().cloned());
            }
            for l in uses.grouping.iter().chain(&legend_labels(&legend)) {
                if all_known && !available.contains(l) {
                    problems.push(format!(
                        "{name} {place}: `{expr}` (legend {legend:?}) uses label {l}, which none of its metrics has ({available:?})"
                    ));
                }
            }
        }
    }
    assert!(checked > 20, "only {checked} metric references found");
    assert!(
        problems.is_empty(),
        "{}\n\nexported:\n{text}",
        problems.join("\n")
    );
}

//! The two ways of running tierback that docs/ ships agree: every line of docs/cron/tierback.crontab
//! has a systemd timer in docs/systemd that fires at the same times and starts a service running
//! the same `tierback` command at the same CPU and I/O priority (`nice`/`ionice` in cron,
//! `Nice=`/`IOScheduling*=` in the unit), and every timer has its crontab line.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn docs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("docs")
}

/// What runs and how: the tierback arguments, the nice value and the I/O class and priority
/// (`ionice` classes: 0 none, 1 realtime, 2 best-effort, 3 idle).
#[derive(Debug, PartialEq, Eq, Clone)]
struct Job {
    args: Vec<String>,
    nice: i32,
    io: Option<(u8, Option<u8>)>,
}

/// Minutes of one week (Monday 00:00 = 0) at which a schedule fires.
type Fires = BTreeSet<u32>;

/// The values of one cron or OnCalendar field: `*`, `N`, `A-B`, `*/S`, `A/S`, `A-B/S`, lists.
fn field(spec: &str, lo: u32, hi: u32) -> BTreeSet<u32> {
    let mut out = BTreeSet::new();
    for part in spec.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (
                r,
                s.parse::<u32>()
                    .unwrap_or_else(|_| panic!("step in {spec}")),
            ),
            None => (part, 1),
        };
        let (a, b) = if range == "*" {
            (lo, hi)
        } else if let Some((a, b)) = range.split_once('-') {
            (a.parse().unwrap(), b.parse().unwrap())
        } else {
            let a: u32 = range.parse().unwrap_or_else(|_| panic!("field {spec}"));
            // `A/S` runs from A to the end of the range; a bare `A` is just A.
            (a, if part.contains('/') { hi } else { a })
        };
        assert!(lo <= a && b <= hi, "{spec} out of {lo}..={hi}");
        out.extend((a..=b).step_by(step as usize));
    }
    out
}

/// Minutes of the week a five-field cron schedule fires at (day of month and month must be `*`:
/// a week cannot tell them apart).
fn cron_fires(fields: &[&str]) -> Fires {
    let [min, hour, dom, mon, dow] = fields else {
        panic!("cron needs five fields: {fields:?}")
    };
    assert!(
        *dom == "*" && *mon == "*",
        "day of month and month are not compared: {fields:?}"
    );
    // cron's day of week: 0 or 7 is Sunday; ours: 0 is Monday.
    let days: BTreeSet<u32> = field(dow, 0, 7).into_iter().map(|d| (d + 6) % 7).collect();
    let (hours, mins) = (field(hour, 0, 23), field(min, 0, 59));
    let mut out = Fires::new();
    for d in &days {
        for h in &hours {
            for m in &mins {
                out.insert(d * 1440 + h * 60 + m);
            }
        }
    }
    out
}

/// Minutes of the week a systemd OnCalendar= expression fires at: `[DOW] [*-*-*] H:M[:S]` and the
/// shorthands (systemd.time(7)); a date other than `*-*-*` is not compared.
fn calendar_fires(spec: &str) -> Fires {
    let spec = match spec {
        "minutely" => "*-*-* *:*:00",
        "hourly" => "*-*-* *:00:00",
        "daily" => "*-*-* 00:00:00",
        "weekly" => "Mon *-*-* 00:00:00",
        s => s,
    };
    const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    let mut days: BTreeSet<u32> = (0..7).collect();
    let mut time = None;
    for word in spec.split_whitespace() {
        if word.contains(':') {
            time = Some(word);
        } else if word.contains('-') && word.chars().next().unwrap().is_ascii_digit()
            || word.starts_with('*')
        {
            assert_eq!(word, "*-*-*", "dates are not compared: {spec}");
        } else {
            days = word
                .split(',')
                .flat_map(|d| {
                    let idx = |n: &str| DAYS.iter().position(|x| n.starts_with(x)).unwrap() as u32;
                    match d.split_once("..") {
                        Some((a, b)) => (idx(a)..=idx(b)).collect::<Vec<_>>(),
                        None => vec![idx(d)],
                    }
                })
                .collect();
        }
    }
    let time = time.unwrap_or("00:00:00");
    let parts: Vec<&str> = time.split(':').collect();
    let (hour, min) = (parts[0], parts[1]);
    if let Some(sec) = parts.get(2) {
        assert!(
            *sec == "0" || *sec == "00",
            "seconds are not compared: {spec}"
        );
    }
    let (hours, mins) = (field(hour, 0, 23), field(min, 0, 59));
    let mut out = Fires::new();
    for d in &days {
        for h in &hours {
            for m in &mins {
                out.insert(d * 1440 + h * 60 + m);
            }
        }
    }
    out
}

/// `nice`/`ionice` prefixes, then `tierback ARGS`; shell redirections dropped.
fn cron_job(command: &str) -> Job {
    let words: Vec<&str> = command
        .split_whitespace()
        .take_while(|w| !w.starts_with('>') && !w.starts_with("2>") && !w.starts_with('<'))
        .collect();
    let mut job = Job {
        args: Vec::new(),
        nice: 0,
        io: None,
    };
    let mut i = 0;
    loop {
        match words[i] {
            "nice" => {
                assert_eq!(words[i + 1], "-n", "nice without -n: {command}");
                job.nice += words[i + 2].parse::<i32>().unwrap();
                i += 3;
            }
            "ionice" => {
                i += 1;
                let (mut class, mut level) = (2, None);
                while words[i].starts_with('-') {
                    match words[i] {
                        "-c" => class = words[i + 1].parse().unwrap(),
                        "-n" => level = Some(words[i + 1].parse().unwrap()),
                        o => panic!("ionice option {o} not compared: {command}"),
                    }
                    i += 2;
                }
                job.io = Some((class, level));
            }
            _ => break,
        }
    }
    let bin = words[i];
    assert!(
        bin == "tierback" || bin.ends_with("/tierback"),
        "cron line does not run tierback: {command}"
    );
    job.args = words[i + 1..].iter().map(|s| s.to_string()).collect();
    job
}

/// `Key=value` lines of a unit file's section, in order (a key may repeat).
fn unit(path: &Path) -> Vec<(String, String, String)> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut section = String::new();
    let mut out = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(s) = line.strip_prefix('[') {
            section = s.trim_end_matches(']').to_owned();
        } else if let Some((k, v)) = line.split_once('=') {
            out.push((section.clone(), k.trim().to_owned(), v.trim().to_owned()));
        } else {
            panic!("{}: not a unit line: {line}", path.display());
        }
    }
    out
}

fn get<'a>(u: &'a [(String, String, String)], section: &str, key: &str) -> Vec<&'a str> {
    u.iter()
        .filter(|(s, k, _)| s == section && k == key)
        .map(|(_, _, v)| v.as_str())
        .collect()
}

/// The job a oneshot service runs.
fn service_job(path: &Path) -> Job {
    let u = unit(path);
    let exec = get(&u, "Service", "ExecStart");
    assert_eq!(exec.len(), 1, "{}: one ExecStart", path.display());
    let words: Vec<&str> = exec[0]
        .trim_start_matches(['-', '@', '+', '!'])
        .split_whitespace()
        .collect();
    assert!(
        words[0].ends_with("/tierback"),
        "{}: ExecStart does not run tierback",
        path.display()
    );
    let class = get(&u, "Service", "IOSchedulingClass")
        .last()
        .map(|c| match *c {
            "realtime" | "1" => 1,
            "best-effort" | "2" => 2,
            "idle" | "3" => 3,
            o => panic!("{}: IOSchedulingClass={o}", path.display()),
        });
    let level = get(&u, "Service", "IOSchedulingPriority")
        .last()
        .map(|p| p.parse::<u8>().unwrap());
    Job {
        args: words[1..].iter().map(|s| s.to_string()).collect(),
        nice: get(&u, "Service", "Nice")
            .last()
            .map_or(0, |n| n.parse().unwrap()),
        io: match (class, level) {
            (None, None) => None,
            // systemd's default class is best-effort; ionice's -n alone means the same.
            (c, l) => Some((c.unwrap_or(2), l)),
        },
    }
}

/// Each crontab line's (schedule, job).
fn crontab() -> Vec<(String, Fires, Job)> {
    let text = std::fs::read_to_string(docs().join("cron/tierback.crontab")).unwrap();
    let mut out = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let first = line.split_whitespace().next().unwrap();
        if first.contains('=') {
            continue; // SHELL=, PATH=, TIERBACK_CONFIG=
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        // /etc/cron.d format: five fields, the user, the command.
        assert!(words.len() > 6, "short crontab line: {line}");
        assert_eq!(words[5], "root", "{line}");
        let schedule = words[..5].join(" ");
        out.push((
            schedule,
            cron_fires(&words[..5]),
            cron_job(&words[6..].join(" ")),
        ));
    }
    assert!(!out.is_empty(), "no crontab lines");
    out
}

/// Each timer's (name, OnCalendar, fires, job of the service it starts).
fn timers() -> Vec<(String, String, Fires, Job)> {
    let dir = docs().join("systemd");
    let mut out = Vec::new();
    let mut names: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "timer"))
        .collect();
    names.sort();
    for path in names {
        let u = unit(&path);
        let stem = path.file_stem().unwrap().to_str().unwrap().to_owned();
        let service = get(&u, "Timer", "Unit")
            .first()
            .map_or(format!("{stem}.service"), |s| s.to_string());
        let service = dir.join(&service);
        assert!(
            service.exists(),
            "{} starts {}, which is not shipped",
            path.display(),
            service.display()
        );
        let calendars = get(&u, "Timer", "OnCalendar");
        assert!(!calendars.is_empty(), "{}: no OnCalendar", path.display());
        let mut fires = Fires::new();
        for c in &calendars {
            fires.extend(calendar_fires(c));
        }
        out.push((stem, calendars.join("; "), fires, service_job(&service)));
    }
    out
}

#[test]
fn every_crontab_line_has_a_systemd_timer_that_does_the_same() {
    let cron = crontab();
    let timers = timers();
    let mut matched: BTreeMap<&str, &str> = BTreeMap::new();
    for (schedule, fires, job) in &cron {
        let same_job: Vec<_> = timers.iter().filter(|t| t.3.args == job.args).collect();
        assert!(
            !same_job.is_empty(),
            "crontab `{schedule}` runs `tierback {}`; no systemd timer starts a unit that does",
            job.args.join(" ")
        );
        let t = same_job.iter().find(|t| t.2 == *fires).unwrap_or_else(|| {
            panic!(
                "crontab `{schedule}` (tierback {}) fires at other times than {}",
                job.args.join(" "),
                same_job
                    .iter()
                    .map(|t| format!("{}.timer `{}`", t.0, t.1))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        });
        assert_eq!(
            (job.nice, job.io),
            (t.3.nice, t.3.io),
            "crontab `{schedule}` and {}.service run at different priorities (nice, (ionice class, level))",
            t.0
        );
        matched.insert(&t.0, schedule);
    }
    for t in &timers {
        assert!(
            matched.contains_key(t.0.as_str()),
            "{}.timer (`{}`, tierback {}) has no crontab line",
            t.0,
            t.1,
            t.3.args.join(" ")
        );
    }
    // The seed's two schedules: a run every 5 minutes and the 08:00 status report.
    assert!(matched.len() >= 2, "{matched:?}");
}

#[test]
fn the_schedule_parsers_agree_on_known_pairs() {
    assert_eq!(
        cron_fires(&["*/5", "*", "*", "*", "*"]),
        calendar_fires("*:0/5")
    );
    assert_eq!(cron_fires(&["*/5", "*", "*", "*", "*"]).len(), 7 * 24 * 12);
    assert_eq!(
        cron_fires(&["0", "8", "*", "*", "*"]),
        calendar_fires("*-*-* 08:00:00")
    );
    assert_eq!(
        cron_fires(&["0", "0", "*", "*", "*"]),
        calendar_fires("daily")
    );
    assert_eq!(
        cron_fires(&["0", "14", "*", "*", "0"]),
        calendar_fires("Sun *-*-* 14:00")
    );
    assert_eq!(
        cron_fires(&["30", "4", "*", "*", "1-5"]),
        calendar_fires("Mon..Fri 04:30")
    );
    assert_ne!(
        cron_fires(&["0", "8", "*", "*", "*"]),
        calendar_fires("*-*-* 09:00:00")
    );
    assert_eq!(
        cron_job("nice -n 10 ionice -c 2 -n 7 tierback run --quiet >> /var/log/x 2>&1"),
        Job {
            args: vec!["run".into(), "--quiet".into()],
            nice: 10,
            io: Some((2, Some(7)))
        }
    );
}

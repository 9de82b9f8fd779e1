//! A second, unprivileged user on the host: the tier, the catalog and the locks are owner-only
//! unless a tier names a group, and `status` points out a tier readable beyond its mode. (The
//! mount's own access checks are in tests/mount_audit.rs.) Real users, created by the test.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use tierback_tests::{Env, tierback_bin};

/// A user (and a group) that exist for the test's life.
struct Accounts {
    users: Vec<String>,
    group: String,
}

impl Accounts {
    /// `members` users in a new group, then `others` users outside it.
    fn create(tag: &str, members: usize, others: usize) -> Accounts {
        let id = std::process::id();
        let group = format!("tbg{tag}{id}");
        run("groupadd", &[&group]);
        let mut users = Vec::new();
        for i in 0..members + others {
            let user = format!("tbu{tag}{id}{i}");
            if i < members {
                run("useradd", &["-M", "-G", &group, &user]);
            } else {
                run("useradd", &["-M", &user]);
            }
            users.push(user);
        }
        Accounts { users, group }
    }
}

impl Drop for Accounts {
    fn drop(&mut self) {
        for u in &self.users {
            let _ = Command::new("userdel").arg(u).output();
        }
        let _ = Command::new("groupdel").arg(&self.group).output();
    }
}

fn run(program: &str, args: &[&str]) {
    let out = Command::new(program).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `cmd ARGS` as `user`.
fn as_user(user: &str, cmd: &[&str]) -> Output {
    Command::new("runuser")
        .args(["-u", user, "--"])
        .args(cmd)
        .output()
        .unwrap()
}

fn denied(out: &Output) -> bool {
    !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("ermission denied")
}

/// An installation whose directory other users may traverse (so only tierback's own modes
/// stand between them and the files).
fn env(tier_extra: &str) -> Env {
    let env = Env::new("");
    std::fs::set_permissions(env.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(
        env.config(),
        format!(
            "[catalog]\npath = \"{0}/state/catalog.db\"\n\n[tiers.local]\ntype = \"local\"\npath = \"{0}/tiers/local\"\n{tier_extra}\n\n\
             [services.shop]\ndriver = \"command\"\ncommand = [\"seq\", \"1\", \"1000\"]\nextension = \"sql\"\n",
            env.path().display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(env.config(), std::fs::Permissions::from_mode(0o644)).unwrap();
    env.ok(&["backup", "shop"]);
    env
}

fn tier_file(env: &Env) -> std::path::PathBuf {
    let key = env.list_json()[0]["key"].as_str().unwrap().to_owned();
    env.local_tier().join(key)
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn tiers_catalog_and_locks_are_owner_only_by_default() {
    let accounts = Accounts::create("a", 0, 1);
    let stranger = &accounts.users[0];
    let env = env("");
    let file = tier_file(&env);
    assert_eq!(mode(&file), 0o600);
    assert_eq!(mode(&env.local_tier()), 0o700);
    assert_eq!(mode(&env.path().join("state/catalog.db")), 0o600);
    assert_eq!(mode(&env.path().join("state")), 0o700);
    assert_eq!(mode(&env.path().join("state/locks")), 0o700);

    let out = as_user(stranger, &["cat", file.to_str().unwrap()]);
    assert!(denied(&out), "a stranger read a backup: {out:?}");
    let out = as_user(stranger, &["ls", env.local_tier().to_str().unwrap()]);
    assert!(denied(&out), "a stranger listed the tier: {out:?}");
    let cfg = env.config();
    let out = as_user(
        stranger,
        &[
            tierback_bin().to_str().unwrap(),
            "--config",
            cfg.to_str().unwrap(),
            "list",
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("not readable by this user"),
        "a stranger listed the catalog: {err}"
    );
    // The metrics textfile is the one thing meant for another user (node_exporter).
    env.write_config(&format!(
        "[metrics]\ntextfile = \"{}/prom/tierback.prom\"\n\n[services.shop]\ndriver = \"command\"\ncommand = [\"seq\", \"1\", \"10\"]\nextension = \"sql\"\n",
        env.path().display()
    ));
    env.ok(&["run"]);
    assert_eq!(mode(&env.path().join("prom/tierback.prom")), 0o644);
}

#[test]
fn a_tier_group_lets_its_members_read_and_status_flags_wider_modes() {
    let accounts = Accounts::create("b", 1, 1);
    let (member, stranger) = (&accounts.users[0], &accounts.users[1]);
    let env = env(&format!("group = \"{}\"", accounts.group));
    let file = tier_file(&env);
    assert_eq!(mode(&file), 0o640);
    assert_eq!(mode(&env.local_tier()), 0o750);

    let out = as_user(member, &["cat", file.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    let gz = std::fs::read(&file).unwrap();
    assert_eq!(out.stdout, gz, "the group member reads the stored file");
    let out = as_user(stranger, &["cat", file.to_str().unwrap()]);
    assert!(denied(&out), "outside the group: {out:?}");

    // A file made world-readable by hand is pointed out.
    let status = String::from_utf8_lossy(&env.ok(&["status"]).stdout).into_owned();
    assert!(!status.contains("WARNING"), "{status}");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let status = String::from_utf8_lossy(&env.ok(&["status"]).stdout).into_owned();
    assert!(
        status.contains("WARNING: 1 files and directories") && status.contains("0644"),
        "{status}"
    );
    // A group that does not exist is named.
    env.write_config(
        "[services.shop]\ndriver = \"command\"\ncommand = [\"seq\", \"1\", \"10\"]\nextension = \"sql\"\n",
    );
    let text = std::fs::read_to_string(env.config()).unwrap().replace(
        "type = \"local\"",
        "type = \"local\"\ngroup = \"no-such-group-here\"",
    );
    std::fs::write(env.config(), text).unwrap();
    let out = env.run(&["backup", "shop"]);
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("group \"no-such-group-here\" does not exist"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

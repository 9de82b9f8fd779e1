//! Issue 4 disaster recovery: the catalog and the local tier are lost; the catalog is rebuilt
//! from the offsite tier alone (an rclone crypt remote), and the mount shows the same offsite
//! tree as before, with every checksum passing through the mount.

use std::process::Command;

use tierback_tests::fuse::Mount;
use tierback_tests::rclone::Remotes;
use tierback_tests::{Env, sh, sql_dump};

fn offsite_tree(mount: &Mount) -> String {
    let out = sh(&format!(
        "cd '{}' && find . -path './*/offsite/*' -printf '%P %s\\n' | sort",
        mount.dir.display()
    ));
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn catalog_rebuilt_from_a_crypt_offsite_tier_shows_the_same_tree() {
    let remotes = Remotes::new();
    // The mount and every tierback command run as children of this test: they inherit the
    // RCLONE_CONFIG_* variables that define the remotes (this test binary runs nothing else).
    for (k, v) in &remotes.env {
        unsafe { std::env::set_var(k, v) };
    }
    let env = Env::new("");
    std::fs::write(env.path().join("dump.sql"), sql_dump(5 << 20, 9)).unwrap();
    let etc = env.path().join("etc");
    std::fs::create_dir_all(&etc).unwrap();
    std::fs::write(etc.join("nginx.conf"), "events {}\n").unwrap();
    env.write_config(&format!(
        "[tiers.offsite]\ntype = \"rclone\"\nremote = \"{}\"\ncopy = [\"all\"]\n\n\
         [services.shop]\ndriver = \"command\"\ncommand = [\"sh\", \"-c\", \"date +%s%N; cat {}/dump.sql\"]\nextension = \"sql\"\n\n\
         [services.configs]\ndriver = \"files\"\npaths = [\"{}\"]\n",
        remotes.crypt,
        env.path().display(),
        etc.display()
    ));
    for _ in 0..2 {
        env.ok(&["backup", "--all"]);
    }
    env.ok(&["sync"]);

    let before = {
        let mount = Mount::start(&env, &[]);
        offsite_tree(&mount)
    };
    assert_eq!(
        before
            .lines()
            .filter(|l| l.ends_with(".sql") || l.contains(".sql "))
            .count(),
        2,
        "{before}"
    );

    // Disaster: the catalog and the local tier are gone.
    for f in ["catalog.db", "catalog.db-wal", "catalog.db-shm"] {
        let _ = std::fs::remove_file(env.path().join(f));
    }
    std::fs::remove_dir_all(env.local_tier()).unwrap();

    let out = env.ok(&["catalog", "rebuild", "--from", "offsite"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("4 backups, 4 artifacts, 0 skipped"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    let mount = Mount::start(&env, &[]);
    let after = offsite_tree(&mount);
    assert_eq!(before, after, "the offsite tree differs after the rebuild");
    for service in ["shop", "configs"] {
        let day_dirs = std::fs::read_dir(mount.path(&format!("{service}/offsite"))).unwrap();
        for day in day_dirs.flatten() {
            let out = Command::new("sh")
                .arg("-c")
                .arg("sha256sum -c *.sha256")
                .current_dir(day.path())
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "sha256sum -c in {}: {}",
                day.path().display(),
                String::from_utf8_lossy(&out.stdout)
            );
            assert!(String::from_utf8_lossy(&out.stdout).contains(": OK"));
        }
    }
}

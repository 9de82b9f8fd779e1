//! `make install-files` (the install step of `make install`, given a built binary) into a scratch
//! DESTDIR: the binary, a man page that renders, bash/zsh/fish completions generated from the
//! clap definitions that complete tierback's commands, and every systemd unit from docs/systemd
//! pointing at the installed binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use tierback_tests::tierback_bin;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn ok(out: Output, what: &str) -> Output {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs `make install-files` with PREFIX=/opt/tb into a fresh DESTDIR; returns it.
fn installed() -> (tempfile::TempDir, PathBuf) {
    let dest = tempfile::Builder::new()
        .prefix("tierback-install-")
        .tempdir_in("/tmp")
        .unwrap();
    ok(
        Command::new("make")
            .current_dir(repo())
            .args(["-s", "install-files", "PREFIX=/opt/tb"])
            .arg(format!("BIN={}", tierback_bin().display()))
            .arg(format!("DESTDIR={}", dest.path().display()))
            // The generators need no config: a missing one must not matter.
            .env("TIERBACK_CONFIG", "/nonexistent/tierback.toml")
            .output()
            .expect("make"),
        "make install-files",
    );
    let root = dest.path().join("opt/tb");
    (dest, root)
}

#[test]
fn install_files_puts_binary_man_page_completions_and_units_in_place() {
    let (_dest, root) = installed();

    let bin = root.join("bin/tierback");
    let out = ok(
        Command::new(&bin).arg("--version").output().unwrap(),
        "tierback --version",
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("tierback "));

    // The man page: one page with every command, rendered without a warning.
    let page = root.join("share/man/man1/tierback.1");
    let roff = std::fs::read_to_string(&page).unwrap();
    for s in [
        ".TH TIERBACK 1",
        ".SH SYNOPSIS",
        ".SH COMMANDS",
        ".SH EXIT STATUS",
    ] {
        assert!(roff.contains(s), "{s} missing from the man page");
    }
    if have("groff") {
        let out = ok(
            // ASCII, no bold or underline (grotty -c -b -o -u): plain text to search.
            Command::new("groff")
                .args(["-man", "-Tascii", "-P-cbou", "-ww"])
                .arg(&page)
                .output()
                .unwrap(),
            "groff",
        );
        let warnings = String::from_utf8_lossy(&out.stderr);
        assert!(warnings.trim().is_empty(), "groff warns:\n{warnings}");
        let text = String::from_utf8_lossy(&out.stdout);
        for s in [
            "tierback backup",
            "tierback catalog rebuild",
            "tierback completions",
            "--config",
            "TIERBACK_CONFIG",
        ] {
            assert!(
                text.contains(s),
                "{s} missing from the rendered page:\n{text}"
            );
        }
    } else {
        eprintln!("groff missing: the man page is not rendered (make deps installs groff-base)");
    }
    if have("man") {
        let out = ok(
            Command::new("man")
                .arg("-l")
                .arg(&page)
                .env("MANPAGER", "cat")
                .env("MANWIDTH", "80")
                .output()
                .unwrap(),
            "man -l",
        );
        assert!(strip_overstrike(&String::from_utf8_lossy(&out.stdout)).contains("TIERBACK(1)"));
    }

    // bash: the script parses, and loaded it completes tierback's commands and a value list.
    let bash = root.join("share/bash-completion/completions/tierback");
    ok(
        Command::new("bash").arg("-n").arg(&bash).output().unwrap(),
        "bash -n",
    );
    let out = ok(
        Command::new("bash")
            .arg("-c")
            .arg(format!(
                "source '{}' && complete -p tierback && \
                 COMP_WORDS=(tierback re) COMP_CWORD=1 && _tierback tierback re tierback && echo \"${{COMPREPLY[*]}}\" && \
                 COMP_WORDS=(tierback completions '') COMP_CWORD=2 && _tierback tierback '' completions && echo \"${{COMPREPLY[*]}}\"",
                bash.display()
            ))
            .output()
            .unwrap(),
        "loading the bash completion",
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].contains("-F _tierback") && lines[0].ends_with(" tierback"),
        "{text}"
    );
    assert_eq!(lines[1], "restore-test", "{text}");
    for shell in ["bash", "zsh", "fish"] {
        assert!(lines[2].split(' ').any(|w| w == shell), "{text}");
    }

    // zsh and fish: their files, parsed by the shell where it is installed.
    let zsh = root.join("share/zsh/site-functions/_tierback");
    assert!(
        std::fs::read_to_string(&zsh)
            .unwrap()
            .starts_with("#compdef tierback")
    );
    let fish = root.join("share/fish/vendor_completions.d/tierback.fish");
    assert!(
        std::fs::read_to_string(&fish)
            .unwrap()
            .contains("complete -c tierback")
    );
    for (shell, file) in [("zsh", &zsh), ("fish", &fish)] {
        if have(shell) {
            ok(
                Command::new(shell).arg("-n").arg(file).output().unwrap(),
                shell,
            );
        }
    }

    // Every unit from docs/systemd, its ExecStart at the installed binary.
    let units = root.join("lib/systemd/system");
    let mut shipped: Vec<_> = std::fs::read_dir(repo().join("docs/systemd"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    shipped.sort();
    assert!(shipped.len() >= 6, "{shipped:?}");
    for name in shipped {
        let text = std::fs::read_to_string(units.join(&name))
            .unwrap_or_else(|e| panic!("{name:?} not installed: {e}"));
        assert!(
            !text.contains("/usr/local/bin/tierback"),
            "{name:?}: {text}"
        );
        if name.to_string_lossy().ends_with(".service") {
            assert!(
                text.contains("ExecStart=/opt/tb/bin/tierback "),
                "{name:?}: {text}"
            );
        }
    }
    for timer in ["tierback-run.timer", "tierback-status.timer"] {
        assert!(units.join(timer).exists(), "{timer}");
    }
}

/// Text without nroff's overstrike (`X\bX` bold, `_\bX` underline).
fn strip_overstrike(s: &str) -> String {
    let mut out: Vec<char> = Vec::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if chars.peek() == Some(&'\u{8}') {
            chars.next();
            continue; // the next char is the one shown
        }
        out.push(c);
    }
    out.into_iter().collect()
}

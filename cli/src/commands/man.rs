//! `tierback man` and `tierback completions SHELL`: the manual page (roff) and the shell completion
//! scripts, generated from the clap definitions in args.rs so that they never drift from the
//! parser. `make install` installs both.

use std::io::Write;

use anyhow::Result;
use clap::CommandFactory;
use clap_mangen::Man;

use super::EXIT_OK;
use crate::args::Cli;

/// The completion script for `shell` on stdout.
pub fn completions(shell: clap_complete::Shell) -> Result<i32> {
    let mut cmd = Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cmd, "tierback", &mut script);
    std::io::stdout().lock().write_all(&script)?;
    Ok(EXIT_OK)
}

/// The manual page, tierback(1), on stdout.
pub fn man() -> Result<i32> {
    std::io::stdout().lock().write_all(page()?.as_bytes())?;
    Ok(EXIT_OK)
}

/// roff's preamble, which clap_mangen writes before every part it renders.
const PREAMBLE: &str = ".ie \\n(.g .ds Aq \\(aq\n.el .ds Aq '\n";

/// One page: the global synopsis and options, then every command with its own synopsis,
/// description and options (not one page per subcommand: a single tierback.1 is installed).
fn page() -> std::io::Result<String> {
    let mut cmd = Cli::command();
    cmd.build();
    let man = Man::new(cmd.clone())
        .title("TIERBACK")
        .manual("tierback manual");
    let mut out = Vec::new();
    man.render_title(&mut out)?;
    man.render_name_section(&mut out)?;
    man.render_synopsis_section(&mut out)?;
    man.render_description_section(&mut out)?;
    man.render_options_section(&mut out)?;
    let mut page = String::from_utf8(out).expect("roff is UTF-8");
    page.push_str(".SH COMMANDS\n");
    let globals: Vec<clap::Id> = cmd
        .get_arguments()
        .filter(|a| a.is_global_set())
        .map(|a| a.get_id().clone())
        .collect();
    commands(&cmd, &globals, &mut page)?;
    page.push_str(EXTRA);
    Ok(format!("{PREAMBLE}{}", page.replace(PREAMBLE, "")))
}

/// Each leaf command under `cmd` as a `.SS` subsection.
fn commands(cmd: &clap::Command, globals: &[clap::Id], page: &mut String) -> std::io::Result<()> {
    for sub in cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
    {
        if sub.has_subcommands() {
            commands(sub, globals, page)?;
            continue;
        }
        // The global options are described once, above; --help everywhere.
        let mut leaf = sub.clone().mut_arg("help", |a| a.hide(true));
        for id in globals {
            leaf = leaf.mut_arg(id, |a| a.hide(true));
        }
        let name = sub.get_bin_name().unwrap_or(sub.get_name()).to_owned();
        let man = Man::new(leaf);
        let mut synopsis = Vec::new();
        man.render_synopsis_section(&mut synopsis)?;
        let mut description = Vec::new();
        man.render_description_section(&mut description)?;
        let mut options = Vec::new();
        man.render_options_section(&mut options)?;
        page.push_str(&format!(".SS \"{}\"\n", escape(&name)));
        for (i, part) in [synopsis, description, options].into_iter().enumerate() {
            let text = String::from_utf8(part).expect("roff is UTF-8");
            let body: String = text
                .replace(PREAMBLE, "")
                .lines()
                .filter(|l| !l.starts_with(".SH "))
                .map(|l| format!("{l}\n"))
                .collect();
            if i == 1 && !body.trim().is_empty() {
                page.push_str(".PP\n");
            }
            page.push_str(&body);
        }
    }
    Ok(())
}

/// Text as roff: backslashes and hyphens escaped.
fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('-', "\\-")
}

/// What the clap definitions do not say.
const EXTRA: &str = r#".SH EXIT STATUS
.TP
0
Success; \fBverify\fR: no problem found; \fBrun\fR: everything due worked, or nothing was due.
.TP
1
Failure, the reason on stderr as \fBtierback: error: ...\fR; \fBverify\fR: a problem was found;
\fBsync\fR: a copy failed or waits; \fBcatalog rebuild\fR: some files skipped; \fBrun\fR:
everything due failed.
.TP
2
Wrong command line (usage printed).
.TP
3
Partial: \fBbackup \-\-all\fR or \fBrun\fR: some services (or the sync, verify, prune jobs)
failed, others worked; \fBtiers setup\fR: the server refused part of the bucket policy.
.TP
126
\fBwal\-fetch\fR: the WAL file is archived but no tier has an intact copy.
.SH ENVIRONMENT
.TP
\fBTIERBACK_CONFIG\fR
The configuration file, as \fB\-\-config\fR.
.TP
\fBTIERBACK_LOG\fR, \fBRUST_LOG\fR
Log filter (\fBdebug\fR, \fBtrace\fR, or per module: \fBtierback=debug\fR), as \fB\-v\fR;
\fBTIERBACK_LOG\fR wins. Lines carry the step they belong to (\fBrun:sync{tier="offsite"}:\fR)
and, in the mount, the request (\fBread{req=32 ino=5 offset=0 size=49152}:\fR).
.TP
\fBVAULT_ADDR\fR, \fBVAULT_TOKEN\fR, \fBVAULT_NAMESPACE\fR
The Vault server and token that \fBvault:\fR secret references are read with (the token
otherwise from \fI~/.vault\-token\fR).
.TP
\fBTIERBACK_NOW\fR
Unix time to use as the current time, for simulations and tests.
.SH FILES
.TP
\fI/etc/tierback/tierback.toml\fR
The default configuration; \fBtierback init\fR writes an example there.
.TP
\fI/var/lib/tierback/catalog.db\fR
The catalog in the example configuration (\fB[catalog] path\fR).
.SH EXAMPLES
.nf
tierback init
tierback backup \-\-all
tierback list
tierback cat postgresql/local/2026\-01\-16/zentoria_main_120000.sql | psql \-d restored
tierback mount /mnt/backups
tierback verify \-\-all
tierback catalog rebuild \-\-from offsite
.fi
.SH SEE ALSO
\fBgzip\fR(1), \fBsha256sum\fR(1), \fBpsql\fR(1), \fBrclone\fR(1), \fBcrontab\fR(5),
\fBsystemd.timer\fR(5). The configuration, operations and format guides in the source
distribution's \fIdocs/\fR directory.
"#;

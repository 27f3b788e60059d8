//! `get --on-complete PROGRAM`: a program run when a download completes, as aria2's
//! `--on-download-complete` and Transmission's `script-torrent-done` are.
//!
//! The torrent's name comes from whoever made the torrent, so it never meets a shell:
//! the program is run directly (no `sh -c`), with the info-hash, the name and the path
//! of the downloaded file or folder as separate arguments, and the same in environment
//! variables. Its standard output goes to our standard error, so that it cannot break
//! `--json` output. The download goes on seeding beside it; shoal reports how it ended,
//! and exits only after that.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// What became of the program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Started {
        pid: u32,
    },
    /// It could not be started (not found, not executable).
    Failed(String),
    /// It ended, with this exit code (`None`: killed by a signal).
    Exited {
        code: Option<i32>,
    },
}

impl Outcome {
    /// The outcome as a JSON event and as a line for the user.
    pub fn describe(&self) -> (serde_json::Value, String) {
        use serde_json::json;
        match self {
            Outcome::Started { pid } => (
                json!({"event": "hook_started", "pid": pid}),
                format!("--on-complete program started (pid {pid})"),
            ),
            Outcome::Failed(reason) => (
                json!({"event": "hook_failed", "reason": reason}),
                format!("--on-complete program could not start: {reason}"),
            ),
            Outcome::Exited { code } => (
                json!({"event": "hook_exited", "code": code}),
                match code {
                    Some(code) => format!("--on-complete program exited with code {code}"),
                    None => "--on-complete program was killed by a signal".to_owned(),
                },
            ),
        }
    }
}

/// What the program is told of the download.
#[derive(Debug, Clone)]
pub struct Completed {
    pub info_hash: String,
    pub name: String,
    /// The downloaded file or folder.
    pub path: PathBuf,
}

/// Starts `program` for `done`; `report` hears that it started (or could not) and,
/// from a thread that waits for it, how it ended.
pub fn run(program: &Path, done: &Completed, report: impl Fn(Outcome) + Send + 'static) {
    let spawned = Command::new(program)
        .arg(&done.info_hash)
        .arg(&done.name)
        .arg(&done.path)
        .env("SHOAL_INFO_HASH", &done.info_hash)
        .env("SHOAL_NAME", &done.name)
        .env("SHOAL_PATH", &done.path)
        .stdin(Stdio::null())
        .stdout(Stdio::from(std::io::stderr()))
        .spawn();
    match spawned {
        Ok(mut child) => {
            report(Outcome::Started { pid: child.id() });
            std::thread::spawn(move || {
                let code = child.wait().ok().and_then(|status| status.code());
                report(Outcome::Exited { code });
            });
        }
        Err(e) => report(Outcome::Failed(format!("{}: {e}", program.display()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    /// A name written to be run by a shell reaches the program as plain text, and
    /// nothing runs it.
    #[test]
    fn the_name_never_meets_a_shell() {
        let dir = tempfile::tempdir().unwrap();
        let pwned = dir.path().join("pwned");
        let name = format!(
            "$(touch {}) `touch {}`; touch {}",
            pwned.display(),
            pwned.display(),
            pwned.display()
        );
        let out = dir.path().join("args");
        let script = dir.path().join("hook.sh");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\nprintf '%s\\n' \"$1\" \"$2\" \"$3\" \"$SHOAL_NAME\" > {}\n",
                out.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let done = Completed {
            info_hash: "ab".repeat(20),
            name: name.clone(),
            path: dir.path().join(&name),
        };
        let (tx, rx) = mpsc::channel();
        run(&script, &done, move |o| tx.send(o).unwrap());
        assert!(matches!(rx.recv().unwrap(), Outcome::Started { .. }));
        assert_eq!(rx.recv().unwrap(), Outcome::Exited { code: Some(0) });
        let written = std::fs::read_to_string(&out).unwrap();
        let lines: Vec<&str> = written.lines().collect();
        assert_eq!(lines[0], "ab".repeat(20));
        assert_eq!(lines[1], name);
        assert_eq!(lines[2], done.path.to_str().unwrap());
        assert_eq!(lines[3], name);
        assert!(!pwned.exists());

        let (tx, rx) = mpsc::channel();
        run(&dir.path().join("missing"), &done, move |o| {
            tx.send(o).unwrap()
        });
        assert!(matches!(rx.recv().unwrap(), Outcome::Failed(e) if e.contains("missing")));
    }
}

//! Running the iproute2 and iptables commands that build a lab, and
//! setting its sysctls, optionally inside one of its namespaces, with
//! errors that name the command line (as one could retype it) and what it
//! printed.

use std::{
    ffi::OsStr,
    fs, io,
    path::PathBuf,
    process::{Command, ExitStatus, Output},
};

use thiserror::Error;

use crate::netns::{NetNs, NetNsError};

#[derive(Debug, Error)]
pub enum CommandError {
    #[error("cannot run `{command}`: {cause}")]
    Spawn { command: String, cause: io::Error },
    #[error("`{command}` failed ({status}): {stderr}")]
    Failed {
        command: String,
        status: ExitStatus,
        stderr: String,
    },
    #[error("cannot set {setting} in network namespace {netns}: {cause}")]
    Sysctl {
        netns: String,
        setting: String,
        cause: io::Error,
    },
    #[error(transparent)]
    NetNs(#[from] NetNsError),
}

impl CommandError {
    /// Whether the program itself was not found.
    pub(crate) fn is_not_found(&self) -> bool {
        matches!(self, CommandError::Spawn { cause, .. } if cause.kind() == io::ErrorKind::NotFound)
    }
}

/// Runs `argv` (program first) in the namespace `netns`, or in the
/// caller's if `None`, and returns its standard output.
pub(crate) fn run<S: AsRef<OsStr>>(
    netns: Option<&str>,
    argv: impl IntoIterator<Item = S>,
) -> Result<String, CommandError> {
    let argv: Vec<S> = argv.into_iter().collect();
    let (program, args) = argv.split_first().expect("a command line has a program");
    let mut command = Command::new(program);
    command.args(args);
    let shown = show(netns, &argv);
    log::debug!("{shown}");
    // A child starts in the namespace of the thread that spawns it.
    let output: io::Result<Output> = match netns {
        Some(name) => NetNs::named(name)?.run(|| command.output())?,
        None => command.output(),
    };
    let output = output.map_err(|cause| CommandError::Spawn {
        command: shown.clone(),
        cause,
    })?;
    if !output.status.success() {
        return Err(CommandError::Failed {
            command: shown,
            status: output.status,
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// `run` for a command line whose arguments hold no whitespace (names,
/// addresses and numbers), which reads best as one string.
pub(crate) fn sh(netns: Option<&str>, line: &str) -> Result<String, CommandError> {
    run(netns, line.split_whitespace())
}

/// Applies `key=value` settings in `netns`, like `sysctl -w` there but
/// without needing procps: a thread inside the namespace sees that
/// namespace's `/proc/sys/net`.
pub(crate) fn sysctl(netns: &str, settings: &[&str]) -> Result<(), CommandError> {
    NetNs::named(netns)?.run(|| {
        for setting in settings {
            let (key, value) = setting.split_once('=').expect("settings are key=value");
            let path = PathBuf::from("/proc/sys").join(key.replace('.', "/"));
            log::debug!("ip netns exec {netns} sysctl -w {setting}");
            fs::write(path, value).map_err(|cause| CommandError::Sysctl {
                netns: netns.to_owned(),
                setting: (*setting).to_owned(),
                cause,
            })?;
        }
        Ok(())
    })?
}

fn show<S: AsRef<OsStr>>(netns: Option<&str>, argv: &[S]) -> String {
    let line = argv
        .iter()
        .map(|arg| arg.as_ref().to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ");
    match netns {
        Some(name) => format!("ip netns exec {name} {line}"),
        None => line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_names_the_command_and_its_stderr() {
        let err = sh(None, "ls /nonexistent-netprobe-path")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("`ls /nonexistent-netprobe-path` failed (exit status: 2): ls:"),
            "{err}"
        );
        let err = sh(None, "netprobe-no-such-program x").unwrap_err();
        assert!(err.is_not_found());
        assert!(
            err.to_string()
                .starts_with("cannot run `netprobe-no-such-program x`")
        );
    }

    #[test]
    fn a_command_that_cannot_run_names_its_cause_once() {
        let err = sh(None, "netprobe-no-such-program x").unwrap_err();
        assert_eq!(
            crate::bpf_link::error_chain(&err),
            "cannot run `netprobe-no-such-program x`: No such file or directory (os error 2)"
        );
    }
}

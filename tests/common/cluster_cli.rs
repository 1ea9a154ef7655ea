//! `keel` run as a command-line client of a `deploy/local-cluster` cluster (shared by the
//! scale-out suite and the cluster benchmark): the cluster's shared settings (keys, database)
//! from its state dir, none of the caller's `KEEL_*`.

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};

/// Runs `keel ARGS` for the cluster whose state dir is `dir`, with `stdin` written to it.
pub fn run_keel(dir: &Path, args: &[&str], stdin: &str) -> std::io::Result<Output> {
    let shared = std::fs::read_to_string(dir.join("cluster.env"))?;
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_keel"));
    for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("KEEL_")) {
        cmd.env_remove(key);
    }
    cmd.args(args).envs(shared.lines().filter_map(|l| l.split_once('=')));
    cmd.env("KEEL_DATA_DIR", dir.join("data/cli")).env("KEEL_LOG", "warn");
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn()?;
    child.stdin.take().expect("stdin is piped").write_all(stdin.as_bytes())?;
    child.wait_with_output()
}

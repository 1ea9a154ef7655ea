//! `deploy/local-cluster` driven by a benchmark: a state dir and ports of its own, a Redis and a
//! NATS of its own (`CLUSTER_OWN_SERVICES=1`, so nothing of the run stays in the machine's shared
//! ones), the benchmark's own `keel` binary, and `down` whenever a started cluster is let go of
//! (the measurement ended, failed, panicked or was interrupted).

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

#[path = "../../tests/common/cluster_cli.rs"]
mod cluster_cli;

/// Where and how the clusters of one benchmark run.
pub struct LocalCluster {
    dir: PathBuf,
    script_env: Vec<(String, String)>,
    pub balancer: String,
    base_port: u16,
}

impl LocalCluster {
    /// The balancer listens on `port`, instance I on `port + I`, the cluster's Redis and NATS on
    /// `port + 98` and `port + 99`; each must be free. `settings` are `KEEL_*` variables for
    /// every instance.
    pub fn new(port: u16, database_url: &str, settings: &[(&str, &str)]) -> Result<LocalCluster, String> {
        let taken: Vec<u16> =
            [0, 1, 2, 3, 98, 99].iter().map(|d| port + d).filter(|p| std::net::TcpListener::bind(("127.0.0.1", *p)).is_err()).collect();
        if !taken.is_empty() {
            return Err(format!("ports {taken:?} are in use (BENCH_CLUSTER_PORT picks another block)"));
        }
        let dir = std::env::temp_dir().join(format!("keel-bench-cluster-{}", std::process::id()));
        let script_env = [
            ("CLUSTER_DIR", dir.display().to_string()),
            ("CLUSTER_BIN", env!("CARGO_BIN_EXE_keel").to_owned()),
            ("CLUSTER_PORT", port.to_string()),
            ("CLUSTER_BASE_PORT", port.to_string()),
            ("CLUSTER_OWN_SERVICES", "1".to_owned()),
            ("KEEL_DATABASE_URL", database_url.to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .chain(settings.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())))
        .collect();
        Ok(LocalCluster { dir, script_env, balancer: format!("http://127.0.0.1:{port}"), base_port: port })
    }

    /// Instance `i` (1-based), reached directly.
    pub fn instance(&self, i: u16) -> String {
        format!("http://127.0.0.1:{}", self.base_port + i)
    }

    /// The cluster's own Redis.
    pub fn redis_url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.base_port + 98)
    }

    /// Starts `serves` instances (and no separate worker) behind the balancer; the cluster is
    /// stopped when the returned guard is dropped, and at once when `up` fails.
    pub fn up(&self, serves: usize) -> Result<Running<'_>, String> {
        let running = Running(self);
        succeeded("deploy/local-cluster up", self.script(&["up", "--serve", &serves.to_string(), "--workers", "0"]))?;
        Ok(running)
    }

    /// Runs `keel ARGS` with the cluster's shared settings (keys, database), `stdin` written to it.
    pub fn keel(&self, args: &[&str], stdin: &str) -> Result<String, String> {
        let output = cluster_cli::run_keel(&self.dir, args, stdin).map_err(|e| format!("running keel with the cluster's settings: {e}"));
        succeeded(&format!("keel {}", args.first().unwrap_or(&"")), output)
    }

    /// The state dir goes once every cluster is down; after a failure it stays, with the logs.
    pub fn remove(self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }

    pub fn logs(&self) -> PathBuf {
        self.dir.join("logs")
    }

    fn script(&self, args: &[&str]) -> Result<Output, String> {
        let mut cmd = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/local-cluster"));
        for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("KEEL_") || k.starts_with("CLUSTER_")) {
            cmd.env_remove(key);
        }
        cmd.args(args).envs(self.script_env.iter().map(|(k, v)| (k, v))).stdin(Stdio::null());
        cmd.output().map_err(|e| format!("running deploy/local-cluster: {e}"))
    }
}

/// A cluster that is up; dropping it runs `deploy/local-cluster down` for its state dir.
pub struct Running<'a>(&'a LocalCluster);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        if let Err(e) = succeeded("deploy/local-cluster down", self.0.script(&["down"])) {
            eprintln!("{e}");
        }
    }
}

/// The command's stdout when it exited with 0; else what it printed.
fn succeeded(what: &str, output: Result<Output, String>) -> Result<String, String> {
    let output = output?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if output.status.success() {
        Ok(stdout)
    } else {
        Err(format!("{what} failed ({}):\n{stdout}{}", output.status, String::from_utf8_lossy(&output.stderr)))
    }
}

//! The suite's logs and the secrets it used, kept for `.ci/scan-logs`: with `KEEL_TEST_LOG_DIR`
//! set, every server the suite starts logs (at debug level) into that folder, and every password
//! and token the helpers send or receive is listed there, one per line, so that one search over
//! the folder shows whether any secret ever reached a log.

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

/// What servers log while the suite keeps their logs: Keel's own events in full.
pub const CAPTURE_FILTER: &str = "info,keel=debug";

/// Secrets shorter than this are not listed: they would match by chance.
const SHORTEST_SECRET: usize = 12;

pub fn dir() -> Option<PathBuf> {
    std::env::var_os("KEEL_TEST_LOG_DIR").filter(|d| !d.is_empty()).map(PathBuf::from)
}

/// A file of this test process in the log folder, opened for appending.
fn open(name: &str) -> Option<Mutex<std::fs::File>> {
    let dir = dir()?;
    std::fs::create_dir_all(&dir).expect("creating KEEL_TEST_LOG_DIR");
    let path = dir.join(format!("{name}-{}.log", std::process::id()));
    Some(Mutex::new(std::fs::OpenOptions::new().create(true).append(true).open(path).expect("opening a log file")))
}

/// Sends the logs of the servers running inside this test process to the log folder (once).
pub fn capture_in_process() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        if let Some(file) = open("in-process") {
            let _ = tracing_subscriber::fmt()
                .json()
                .with_env_filter(tracing_subscriber::EnvFilter::new(CAPTURE_FILTER))
                .with_writer(file)
                .try_init();
        }
    });
}

/// Appends one line a server process logged.
pub fn keep_process_line(line: &str) {
    static FILE: OnceLock<Option<Mutex<std::fs::File>>> = OnceLock::new();
    if let Some(file) = FILE.get_or_init(|| open("processes")) {
        let mut file = file.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let _ = writeln!(file, "{line}");
    }
}

/// Lists `secret` among the secrets no log may hold.
pub fn remember_secret(secret: &str) {
    static FILE: OnceLock<Option<Mutex<std::fs::File>>> = OnceLock::new();
    if secret.len() < SHORTEST_SECRET || secret.contains('\n') {
        return;
    }
    if let Some(file) = FILE.get_or_init(|| dir().map(|_| open("secrets").expect("the secrets list"))) {
        let mut file = file.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let _ = writeln!(file, "{secret}");
    }
}

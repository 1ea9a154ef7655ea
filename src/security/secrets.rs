//! Secrets generated on first start and persisted in the data directory (mode 0600).

use std::io::Write as _;
use std::path::Path;

use anyhow::Context as _;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// Reads the secret `name` from `<data_dir>/secrets/`, creating it with `generate` when absent.
/// Two processes starting at once agree on one value: creation is exclusive.
pub fn load_or_create(data_dir: &Path, name: &str, generate: impl FnOnce() -> Vec<u8>) -> anyhow::Result<Vec<u8>> {
    let dir = data_dir.join("secrets");
    create_private_dir(&dir)?;
    let path = dir.join(name);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(&path) {
        Ok(mut file) => {
            let value = generate();
            file.write_all(STANDARD.encode(&value).as_bytes())
                .and_then(|()| file.sync_all())
                .with_context(|| format!("writing {}", path.display()))?;
            tracing::info!(secret = name, path = %path.display(), "generated a new secret and stored it with mode 0600");
            Ok(value)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => read(&path),
        Err(e) => Err(e).with_context(|| format!("creating {}", path.display())),
    }
}

/// Creates `dir` (and its parents) and makes it the owner's alone (mode 0700).
pub fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    #[cfg(unix)]
    std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .with_context(|| format!("restricting {}", dir.display()))?;
    Ok(())
}

fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    // A concurrent creator may not have written yet; wait briefly for the content.
    for _ in 0..50 {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        if !text.trim().is_empty() {
            return STANDARD.decode(text.trim()).with_context(|| format!("{} is not valid base64", path.display()));
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    anyhow::bail!("{} is empty", path.display())
}

/// Decodes a secret given in configuration as base64.
pub fn decode_configured(value: &str, key: &str) -> anyhow::Result<Vec<u8>> {
    STANDARD.decode(value.trim()).with_context(|| format!("`{key}` is not valid base64"))
}

//! The `keel` command line: parses arguments and dispatches into the library.

use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use keel::app::{Application, Services, open_store};
use keel::auth::error::AuthError;
use keel::auth::model::{Email, Password, Role, Roles, parse_name};
use keel::auth::service::NewAccount;
use keel::config::Config;
use keel::security::audit::{Actor, AuditTrail};
use keel::store::backup::{BackupError, existing_sqlite_file};
use secrecy::ExposeSecret as _;

#[derive(Parser)]
#[command(name = "keel", version, about = "Commerce backend in one binary")]
struct Cli {
    /// Configuration file (default: ./keel.toml when present). KEEL_* variables override it.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Log at the configured `log` level. Without it, commands other than `serve` and
    /// `worker` log only warnings and errors (on standard error).
    #[arg(long, short, global = true)]
    verbose: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the API (the default).
    Serve,
    /// Run job workers only (no HTTP).
    Worker,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Manage accounts.
    Admin {
        #[command(subcommand)]
        action: AdminAction,
    },
    /// Demo data.
    Demo {
        #[command(subcommand)]
        action: DemoAction,
    },
    /// The double-entry ledger.
    Ledger {
        #[command(subcommand)]
        action: LedgerAction,
    },
    /// The audit trail.
    Audit {
        #[command(subcommand)]
        action: AuditAction,
    },
    /// Copy the SQLite database to FILE while Keel serves (PostgreSQL: see the README).
    Backup {
        /// Where the copy goes, beside which it is written until complete.
        file: PathBuf,
        /// Replace FILE when it exists (else that is refused).
        #[arg(long)]
        force: bool,
    },
    /// Signing and field-encryption keys.
    Keys {
        #[command(subcommand)]
        action: KeysAction,
    },
    /// Print the OpenAPI document.
    Openapi,
}

#[derive(Subcommand)]
enum KeysAction {
    /// Add a new signing key and encryption key (running instances take them up without a
    /// restart), then re-encrypt stored values with the new key.
    Rotate,
    /// Print a fresh signing key, encryption key and key-encryption key as `KEEL_*=…` lines,
    /// for the configuration every instance of a deployment shares.
    Generate,
}

#[derive(Subcommand)]
enum LedgerAction {
    /// Check that every transaction sums to zero and every cached balance equals the sum of its
    /// entries; exits with 1 on any discrepancy.
    Verify,
}

#[derive(Subcommand)]
enum AuditAction {
    /// Check the hash chain of the audit trail: every entry unchanged and none missing; exits
    /// with 1 and names the first bad entry when it is broken.
    Verify,
}

#[derive(Subcommand)]
enum AdminAction {
    /// Create an account with a role (the first admin is made this way).
    Create {
        #[arg(long)]
        email: String,
        /// Read the password from standard input (the only way: never on the command line).
        #[arg(long, required = true)]
        password_stdin: bool,
        #[arg(long, value_enum, default_value = "admin")]
        role: CliRole,
        #[arg(long, default_value = "Administrator")]
        name: String,
    },
}

#[derive(Subcommand)]
enum DemoAction {
    /// Load a demo catalog, users and pricing rules (again: adds only what is missing).
    Seed,
}

#[derive(Clone, Copy, ValueEnum)]
enum CliRole {
    Support,
    Admin,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Openapi) = cli.command {
        return match keel::http::openapi().to_pretty_json() {
            Ok(json) => {
                println!("{json}");
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e.into(), false),
        };
    }
    let config = match Config::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("keel: {e}");
            return ExitCode::from(2);
        }
    };
    let command = cli.command.unwrap_or(Command::Serve);
    // Servers log for operators (JSON lines by default); one-shot commands print their result
    // on standard output and keep standard error for what went wrong.
    let long_running = matches!(command, Command::Serve | Command::Worker);
    let traces = if long_running {
        match keel::telemetry::init_logging(&config) {
            Ok(traces) => Some(traces),
            Err(e) => return fail(&e, false),
        }
    } else {
        keel::telemetry::init_command_logging(&config, cli.verbose);
        None
    };
    for name in keel::config::unknown_env_vars() {
        tracing::warn!(variable = %name, "ignoring an environment variable that names no Keel setting");
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => return fail(&e.into(), long_running),
    };
    let result = runtime.block_on(async move {
        match command {
            Command::Serve => serve(config).await,
            Command::Worker => run_worker(config).await,
            Command::Migrate => migrate(config).await,
            Command::Admin { action: AdminAction::Create { email, password_stdin: _, role, name } } => {
                admin_create(config, &email, role, &name).await
            }
            Command::Demo { action: DemoAction::Seed } => demo_seed(config).await,
            Command::Ledger { action: LedgerAction::Verify } => ledger_verify(config).await,
            Command::Audit { action: AuditAction::Verify } => audit_verify(config).await,
            Command::Backup { file, force } => backup(config, &file, force).await,
            Command::Keys { action: KeysAction::Rotate } => keys_rotate(config).await,
            Command::Keys { action: KeysAction::Generate } => {
                print!("{}", keel::security::keys::generated_settings());
                Ok(())
            }
            Command::Openapi => unreachable!("handled before configuration"),
        }
    });
    let code = match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e, long_running),
    };
    // Outside the runtime: the exporter sends the last spans from a thread of its own.
    if let Some(traces) = traces {
        traces.shutdown();
    }
    code
}

/// Reports `e` on standard error; a server also logs it, for whoever collects its logs.
fn fail(e: &anyhow::Error, long_running: bool) -> ExitCode {
    if long_running {
        tracing::error!(error = format!("{e:#}"), "keel stopped with an error");
    }
    eprintln!("keel: {e:#}");
    if e.is::<NotWithThisSetup>() { ExitCode::from(2) } else { ExitCode::FAILURE }
}

/// A command the configuration rules out: exit code 2, as for a bad setting.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct NotWithThisSetup(&'static str);

async fn serve(config: Config) -> anyhow::Result<()> {
    let app = Application::build(config).await?;
    if app.uses_tls() {
        tracing::info!(address = %app.local_addr(), "listening with TLS");
    } else {
        tracing::info!(address = %app.local_addr(), "listening");
    }
    app.run_until(shutdown_signal()).await
}

async fn run_worker(config: Config) -> anyhow::Result<()> {
    let services = Services::build(&config).await?;
    let worker = services.worker(&config);
    let store = services.store;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    store.forward_notifications("keel_jobs", worker.wake().clone(), stop_rx.clone()).await?;
    let keys = tokio::spawn(services.keys.keep_loaded(stop_rx.clone()));
    let running = tokio::spawn(worker.run(stop_rx));
    shutdown_signal().await;
    let _ = stop_tx.send(true);
    running.await?;
    keys.await?;
    store.close().await;
    Ok(())
}

async fn migrate(mut config: Config) -> anyhow::Result<()> {
    config.migrate_on_start = false;
    let store = open_store(&config).await?;
    let applied = store.migrate().await;
    store.close().await;
    match applied?.as_slice() {
        [] => println!("no migrations pending: the {} database is up to date", store.backend_name()),
        applied => {
            let noun = if applied.len() == 1 { "migration" } else { "migrations" };
            println!("applied {} {noun} to the {} database:", applied.len(), store.backend_name());
            for m in applied {
                println!("  {} {}", m.version, m.description);
            }
        }
    }
    Ok(())
}

async fn admin_create(config: Config, email: &str, role: CliRole, name: &str) -> anyhow::Result<()> {
    let mut password = String::new();
    std::io::stdin().lock().read_line(&mut password).context("reading the password from standard input")?;
    let password = password.trim_end_matches(['\r', '\n']);
    let email = Email::parse("email", email).map_err(|e| anyhow::anyhow!("invalid email: {}", e.0[0].message))?;
    let password = Password::parse("password", password, Some(&email)).map_err(|e| anyhow::anyhow!("password {}", e.0[0].message))?;
    let name = parse_name("name", name).map_err(|e| anyhow::anyhow!("name {}", e.0[0].message))?;
    let services = Services::build(&config).await?;
    let address = email.as_str().to_owned();
    let (role, role_name) = match role {
        CliRole::Support => (Role::Support, "support"),
        CliRole::Admin => (Role::Admin, "admin"),
    };
    let created = services.accounts.create_with_roles(NewAccount { email, password, name }, Roles::from_list(&[role])).await;
    services.store.close().await;
    match created {
        Ok(id) => {
            println!("{id}");
            Ok(())
        }
        Err(AuthError::EmailTaken) => Err(anyhow::anyhow!(
            "{address} already has an account, so none was created. To change the roles of an existing user, an admin \
             calls PATCH /v1/admin/users/{{id}} with {{\"roles\": [\"{role_name}\"]}} (GET /v1/admin/users?email_prefix={address} \
             shows the id); to make the first admin, run this command with another email"
        )),
        Err(e) => Err(anyhow::anyhow!("{e}")),
    }
}

async fn demo_seed(config: Config) -> anyhow::Result<()> {
    let services = Services::build(&config).await?;
    let report = keel::demo::seed(&services).await?;
    services.store.close().await;
    println!(
        "demo catalog: {} products created, {} already there; {} users and {} pricing rules created",
        report.products_created, report.products_existing, report.users_created, report.rules_created
    );
    println!("sign in (POST /v1/auth/login) as:");
    for (role, (email, password)) in [("admin", keel::demo::DEMO_ADMIN), ("customer", keel::demo::DEMO_CUSTOMER)] {
        println!("  {role:<9} {email:<24} password {password:?}");
    }
    println!("coupon codes (PUT /v1/cart/coupon, or ?coupon_code= on a quote): {}", keel::demo::coupon_codes().join(", "));
    println!(
        "WARNING: the demo admin's password is public (it is printed here and written in Keel's source). Seed only a \
         shop nobody else can reach, or change it at once (POST /v1/auth/password/change)."
    );
    Ok(())
}

async fn ledger_verify(config: Config) -> anyhow::Result<()> {
    let store = open_store(&config).await?;
    let verified = keel::ledger::Ledger::new(&store).verify(&Actor::keel()).await;
    store.close().await;
    let report = verified.context("reading the ledger")?;
    println!("{} accounts, {} entries", report.accounts, report.entries);
    for d in &report.discrepancies {
        println!("  {} {}: expected {}, found {}", d.kind, d.subject, d.expected, d.actual);
    }
    if !report.balanced {
        anyhow::bail!("the ledger has {} discrepancies", report.discrepancies.len());
    }
    println!("the ledger is balanced");
    Ok(())
}

async fn audit_verify(config: Config) -> anyhow::Result<()> {
    let store = open_store(&config).await?;
    let verified = AuditTrail::new(&store).verify().await;
    store.close().await;
    let verdict = verified.context("reading the audit trail")?;
    println!("{} entries checked", verdict.entries);
    if let Some(bad) = &verdict.first_bad {
        println!("first bad entry: seq {} id {} ({})", bad.seq, bad.id.as_deref().unwrap_or("-"), bad.reason.name());
        anyhow::bail!("the audit trail is broken at entry {}", bad.seq);
    }
    println!("the audit trail is intact");
    Ok(())
}

async fn backup(mut config: Config, file: &Path, force: bool) -> anyhow::Result<()> {
    let explain = |e: BackupError| -> anyhow::Error {
        match e {
            BackupError::Postgres => NotWithThisSetup(
                "the database is PostgreSQL, which keel backup does not copy: back it up with pg_dump (or base backups \
                 with WAL archiving) as the README's \"Backup and restore\" section describes",
            )
            .into(),
            BackupError::NoDatabase(path) => anyhow::anyhow!(
                "there is no SQLite database at {}: run keel backup with the configuration Keel serves with (--config, \
                 KEEL_DATA_DIR or KEEL_DATABASE_URL)",
                path.display()
            ),
            BackupError::Exists(path) => {
                anyhow::anyhow!("{} already exists, so nothing was written (pass --force to replace it)", path.display())
            }
            e => e.into(),
        }
    };
    existing_sqlite_file(config.database_url.expose_secret()).map_err(explain)?;
    // The copy is of the database as it is: nothing is migrated first.
    config.migrate_on_start = false;
    let store = open_store(&config).await?;
    let made = store.back_up(file, force).await;
    store.close().await;
    let snapshot = made.map_err(explain)?;
    println!(
        "backed up the database to {} ({} bytes, {:.1} MiB) in {:.2} s; SQLite's integrity check passed",
        snapshot.path.display(),
        snapshot.bytes,
        snapshot.bytes as f64 / (1024.0 * 1024.0),
        snapshot.took.as_secs_f64()
    );
    Ok(())
}

/// Values re-sealed per unit of work while re-encrypting.
const REENCRYPT_BATCH: u32 = 500;

async fn keys_rotate(config: Config) -> anyhow::Result<()> {
    let store = open_store(&config).await?;
    let rotated = rotate_and_reencrypt(&config, &store).await;
    store.close().await;
    rotated
}

async fn rotate_and_reencrypt(config: &Config, store: &keel::store::Store) -> anyhow::Result<()> {
    let (_, _, keys) = keel::app::key_ring(config, store).await?;
    let rotation = keys.rotate().await.context("adding the new keys")?;
    println!("added signing key {} and encryption key {}", rotation.signing_kid, rotation.encryption_kid);
    let wait = (rotation.active_from - chrono::Utc::now()).to_std().unwrap_or_default();
    println!(
        "they are in use from {} (running instances load them before); waiting {}s",
        rotation.active_from.to_rfc3339(),
        wait.as_secs()
    );
    tokio::time::sleep(wait).await;
    keys.load().await.context("loading the key ring")?;
    println!("re-encrypting stored values with encryption key {}", rotation.encryption_kid);
    let total = keys
        .reencrypt(REENCRYPT_BATCH, |column, done| println!("  {}.{}: {done} re-encrypted", column.table, column.column))
        .await
        .context("re-encrypting")?;
    println!("done: {total} values re-encrypted; the replaced keys stay in the ring, so nothing sealed with them is lost");
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn cli_is_well_formed() {
        use clap::CommandFactory as _;
        super::Cli::command().debug_assert();
    }
}

//! Mail transports and the job that sends a templated message.
//!
//! Mail is only ever sent by the `mail.send` job, enqueued in the transaction of the change
//! that causes it. The payload names a template; values that are secret (single-use tokens)
//! are sealed with the field cipher, so the jobs table and the back office never show them.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use lettre::message::{Mailbox, MultiPart};
use lettre::{AsyncSmtpTransport, AsyncTransport as _, Message, Tokio1Executor};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt as _;

use super::templates::{Rendered, Template};
use crate::jobs::{Completion, Done, Job, JobHandler, NewJob};
use crate::security::crypto::FieldCipher;

/// A message ready to send.
pub struct Mail {
    /// Stable per logical message: a retried job re-sends the same message id.
    pub message_id: String,
    pub to: String,
    pub subject: String,
    pub text: String,
    pub html: String,
}

#[async_trait::async_trait]
pub trait Mailer: Send + Sync {
    async fn send(&self, mail: &Mail) -> anyhow::Result<()>;
}

fn build(from: &Mailbox, mail: &Mail) -> anyhow::Result<Message> {
    let to: Mailbox = mail.to.parse().context("recipient address")?;
    Message::builder()
        .from(from.clone())
        .to(to)
        .subject(&mail.subject)
        .message_id(Some(format!("<{}@keel>", mail.message_id)))
        .multipart(MultiPart::alternative_plain_html(mail.text.clone(), mail.html.clone()))
        .context("building the message")
}

/// SMTP through lettre (`smtp://`, `smtps://`, or `smtp://…?tls=required`).
pub struct SmtpMailer {
    from: Mailbox,
    transport: AsyncSmtpTransport<Tokio1Executor>,
}

/// Whether the SMTP transport accepts `url` (checked when configuration loads).
pub fn smtp_url_parses(url: &str) -> bool {
    AsyncSmtpTransport::<Tokio1Executor>::from_url(url).is_ok()
}

impl SmtpMailer {
    pub fn new(url: &str, from: Mailbox) -> anyhow::Result<Self> {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .context("parsing the SMTP URL")?
            .timeout(Some(Duration::from_secs(20)))
            .build();
        Ok(Self { from, transport })
    }
}

#[async_trait::async_trait]
impl Mailer for SmtpMailer {
    async fn send(&self, mail: &Mail) -> anyhow::Result<()> {
        self.transport.send(build(&self.from, mail)?).await.context("SMTP delivery")?;
        Ok(())
    }
}

/// The zero-configuration transport: each message becomes `<dir>/<message id>.eml`.
/// Writing the same message again replaces the file, so a retried job leaves one copy.
/// Messages hold live single-use tokens, so the folder is 0700 and each file 0600.
pub struct FileMailer {
    from: Mailbox,
    dir: PathBuf,
}

impl FileMailer {
    pub fn new(dir: PathBuf, from: Mailbox) -> anyhow::Result<Self> {
        crate::security::secrets::create_private_dir(&dir)?;
        Ok(Self { from, dir })
    }
}

#[async_trait::async_trait]
impl Mailer for FileMailer {
    async fn send(&self, mail: &Mail) -> anyhow::Result<()> {
        let bytes = build(&self.from, mail)?.formatted();
        let path = self.dir.join(format!("{}.eml", mail.message_id));
        let tmp = path.with_extension("eml.tmp");
        let mut options = tokio::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        options.mode(0o600);
        let mut file = options.open(&tmp).await.with_context(|| format!("creating {}", tmp.display()))?;
        file.write_all(&bytes).await.with_context(|| format!("writing {}", tmp.display()))?;
        file.flush().await.with_context(|| format!("writing {}", tmp.display()))?;
        tokio::fs::rename(&tmp, &path).await.with_context(|| format!("writing {}", path.display()))?;
        Ok(())
    }
}

/// The payload of a `mail.send` job.
#[derive(Debug, Serialize, Deserialize)]
pub struct MailJob {
    pub to: String,
    pub template: Template,
    /// The template's values, sealed (they may hold single-use tokens).
    pub sealed: String,
}

pub const MAIL_KIND: &str = "mail.send";
const SEALED_COLUMN: &str = "jobs.mail";

/// A `LIKE … ESCAPE '\'` pattern that matches the payload of every mail job addressed to `to`
/// (so an erased account's address can be found and dropped with its mail).
pub fn addressed_to_pattern(to: &str) -> String {
    let field = serde_json::json!({ "to": to }).to_string();
    let field = &field[1..field.len() - 1];
    format!("%{}%", field.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_"))
}

/// Makes the job that sends `template` with `values` to `to`.
pub fn mail_job(cipher: &FieldCipher, to: &str, template: Template, values: &serde_json::Value) -> NewJob {
    let payload = MailJob { to: to.to_owned(), template, sealed: cipher.encrypt(SEALED_COLUMN, &values.to_string()) };
    NewJob::new(MAIL_KIND, serde_json::to_value(payload).expect("mail payload serialises")).on_queue("mail").attempts(12)
}

pub struct SendMail {
    pub mailer: Arc<dyn Mailer>,
    pub cipher: Arc<FieldCipher>,
    pub base_url: String,
}

#[async_trait::async_trait]
impl JobHandler for SendMail {
    fn kind(&self) -> &'static str {
        MAIL_KIND
    }

    async fn run(&self, job: &Job, completion: Completion) -> anyhow::Result<Done> {
        let payload: MailJob = serde_json::from_value(job.payload.clone()).context("mail job payload")?;
        let values: serde_json::Value = serde_json::from_str(&self.cipher.decrypt(SEALED_COLUMN, &payload.sealed)?)?;
        let Rendered { subject, text, html } = payload.template.render(&self.base_url, &values)?;
        let mail = Mail { message_id: job.id.clone(), to: payload.to, subject, text, html };
        // Sent before the completion's transaction opens: no transaction waits on SMTP. A crash
        // in between sends the mail again, under the same Message-ID.
        self.mailer.send(&mail).await?;
        completion.done().await
    }
}

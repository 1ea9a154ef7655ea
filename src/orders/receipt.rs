//! The receipt mail of a paid order: a job enqueued with the payment, whose completion
//! enqueues the mail itself, so each paid order is mailed once.

use std::sync::Arc;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use super::Orders;
use crate::auth::service::Accounts;
use crate::events::Effects;
use crate::jobs::{Completion, Done, Job, JobHandler, NewJob};
use crate::notify::mail::mail_job;
use crate::notify::templates::Template;
use crate::security::crypto::FieldCipher;
use crate::store::now;

pub const RECEIPT_KIND: &str = "orders.receipt";

#[derive(Serialize, Deserialize)]
struct ReceiptJob {
    order_id: String,
}

/// The job that mails `order_id`'s receipt.
pub fn job(order_id: &str) -> NewJob {
    let payload = ReceiptJob { order_id: order_id.to_owned() };
    NewJob::new(RECEIPT_KIND, serde_json::to_value(payload).expect("receipt payload serialises")).on_queue("mail")
}

pub struct SendReceipt {
    pub orders: Arc<Orders>,
    pub accounts: Arc<Accounts>,
    pub cipher: Arc<FieldCipher>,
}

#[async_trait::async_trait]
impl JobHandler for SendReceipt {
    fn kind(&self) -> &'static str {
        RECEIPT_KIND
    }

    async fn run(&self, job: &Job, completion: Completion) -> anyhow::Result<Done> {
        let payload: ReceiptJob = serde_json::from_value(job.payload.clone()).context("receipt job payload")?;
        let order = self.orders.find(&payload.order_id).await?.with_context(|| format!("order {} does not exist", payload.order_id))?;
        // An account disabled or erased since gets no mail.
        let Some((email, name)) = self.accounts.mail_address(&order.user_id).await? else { return completion.done().await };
        let items: Vec<_> = order
            .view
            .items
            .iter()
            .map(|i| serde_json::json!({"name": i.name, "quantity": i.quantity, "line_total": i.line_total.to_string()}))
            .collect();
        let values = serde_json::json!({
            "name": name, "order_id": order.view.id, "total": order.view.total.to_string(), "items": items,
        });
        let mail = Effects::default().job(mail_job(&self.cipher, &email, Template::Receipt, &values));
        let (done, ()) = completion
            .finish(|mut tx| {
                let mail = mail.clone();
                async move {
                    mail.write(&mut tx, now()).await?;
                    Ok((tx, ()))
                }
            })
            .await?;
        Ok(done)
    }
}

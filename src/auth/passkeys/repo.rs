//! SQL for passkeys and their ceremonies, written once for both backends.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::model::{CeremonyKind, PasskeyView};
use crate::store::{Backend, Build, Columns, Db, Sql, Store, StoreError, Tx};

/// A passkey as stored.
#[derive(Debug, Clone)]
pub struct PasskeyRow {
    pub id: String,
    pub user_id: String,
    /// webauthn-rs's `Passkey`, as JSON.
    pub credential: String,
    pub sign_count: i64,
}

pub struct NewPasskey<'a> {
    pub id: &'a str,
    pub user_id: &'a str,
    pub credential_id: &'a str,
    pub credential: &'a str,
    pub sign_count: i64,
    pub name: &'a str,
    pub created_at: DateTime<Utc>,
}

pub struct NewChallenge<'a> {
    pub id: &'a str,
    pub kind: CeremonyKind,
    /// The account a registration is for.
    pub user_id: Option<&'a str>,
    pub state: &'a str,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// A ceremony taken for its finish: its state and when it expired or expires.
pub struct TakenChallenge {
    pub state: String,
    pub expires_at: DateTime<Utc>,
}

#[async_trait::async_trait]
pub trait PasskeyRepo: Send + Sync {
    /// The credential ids (URL-safe base64) of the account's passkeys.
    async fn credential_ids(&self, user_id: &str) -> Result<Vec<String>, StoreError>;
    async fn list(&self, user_id: &str, after: Option<&str>, limit: u32) -> Result<Vec<PasskeyView>, StoreError>;
    async fn by_credential_id(&self, credential_id: &str) -> Result<Option<PasskeyRow>, StoreError>;

    /// Stores a started ceremony, forgetting those that expired.
    async fn insert_challenge(&self, tx: &mut Tx, challenge: &NewChallenge<'_>) -> Result<(), StoreError>;
    /// Deletes and returns a ceremony of `kind` (for `user_id`, when given). Of concurrent takers
    /// exactly one gets it; `None` when it is unknown, of another kind or account, or taken.
    async fn take_challenge(
        &self,
        tx: &mut Tx,
        id: &str,
        kind: CeremonyKind,
        user_id: Option<&str>,
    ) -> Result<Option<TakenChallenge>, StoreError>;

    /// `Conflict { constraint: unique::PASSKEY_CREDENTIAL }` when the credential is registered already.
    async fn insert(&self, tx: &mut Tx, passkey: &NewPasskey<'_>) -> Result<(), StoreError>;
    /// Records a sign-in: the updated credential, its counter and the time. False when the
    /// stored counter is not below `sign_count` any more (unless both are 0): a concurrent or
    /// cloned use got there first.
    async fn record_use(&self, tx: &mut Tx, id: &str, credential: &str, sign_count: i64, now: DateTime<Utc>) -> Result<bool, StoreError>;
    /// Deletes one of the account's passkeys; false when it has none with this id.
    async fn delete(&self, tx: &mut Tx, user_id: &str, id: &str) -> Result<bool, StoreError>;
}

/// The passkey repository of `store`'s backend.
pub fn for_store(store: &Store) -> Arc<dyn PasskeyRepo> {
    struct Passkeys;
    impl Build for Passkeys {
        type Output = Arc<dyn PasskeyRepo>;
        fn build<DB: Backend>(self, db: Db<DB>) -> Self::Output {
            Arc::new(SqlPasskeys { db })
        }
    }
    store.build(Passkeys)
}

struct SqlPasskeys<DB: Backend> {
    db: Db<DB>,
}

#[async_trait::async_trait]
impl<DB: Backend> PasskeyRepo for SqlPasskeys<DB> {
    async fn credential_ids(&self, user_id: &str) -> Result<Vec<String>, StoreError> {
        let mut conn = self.db.reader().await?;
        let rows = Sql::<DB>::new("SELECT credential_id FROM passkeys WHERE user_id = $1").bind(user_id).fetch_all(&mut conn).await?;
        rows.iter().map(|r| r.text("credential_id")).collect()
    }

    async fn list(&self, user_id: &str, after: Option<&str>, limit: u32) -> Result<Vec<PasskeyView>, StoreError> {
        let mut conn = self.db.reader().await?;
        let rows = Sql::<DB>::new(
            "SELECT id, name, created_at, last_used_at FROM passkeys WHERE user_id = $1 AND ($2 IS NULL OR id > $2) ORDER BY id LIMIT $3",
        )
        .bind(user_id)
        .bind(after.map(str::to_owned))
        .bind(i64::from(limit) + 1)
        .fetch_all(&mut conn)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(PasskeyView {
                    id: r.text("id")?,
                    name: r.text("name")?,
                    created_at: r.time("created_at")?,
                    last_used_at: r.opt_time("last_used_at")?,
                })
            })
            .collect()
    }

    async fn by_credential_id(&self, credential_id: &str) -> Result<Option<PasskeyRow>, StoreError> {
        let mut conn = self.db.reader().await?;
        let row = Sql::<DB>::new("SELECT id, user_id, credential, sign_count FROM passkeys WHERE credential_id = $1")
            .bind(credential_id)
            .fetch_optional(&mut conn)
            .await?;
        row.map(|r| {
            Ok(PasskeyRow {
                id: r.text("id")?,
                user_id: r.text("user_id")?,
                credential: r.text("credential")?,
                sign_count: r.int("sign_count")?,
            })
        })
        .transpose()
    }

    async fn insert_challenge(&self, tx: &mut Tx, c: &NewChallenge<'_>) -> Result<(), StoreError> {
        let conn = tx.conn::<DB>()?;
        Sql::<DB>::new("DELETE FROM passkey_challenges WHERE expires_at <= $1").bind(c.created_at).execute(conn).await?;
        Sql::<DB>::new(
            "INSERT INTO passkey_challenges (id, ceremony, user_id, state, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(c.id)
        .bind(c.kind.as_str())
        .bind(c.user_id.map(str::to_owned))
        .bind(c.state)
        .bind(c.created_at)
        .bind(c.expires_at)
        .execute(conn)
        .await?;
        Ok(())
    }

    async fn take_challenge(
        &self,
        tx: &mut Tx,
        id: &str,
        kind: CeremonyKind,
        user_id: Option<&str>,
    ) -> Result<Option<TakenChallenge>, StoreError> {
        let row = Sql::<DB>::new(
            "DELETE FROM passkey_challenges WHERE id = $1 AND ceremony = $2 AND ($3 IS NULL OR user_id = $3) RETURNING state, expires_at",
        )
        .bind(id)
        .bind(kind.as_str())
        .bind(user_id.map(str::to_owned))
        .fetch_optional(tx.conn::<DB>()?)
        .await?;
        row.map(|r| Ok(TakenChallenge { state: r.text("state")?, expires_at: r.time("expires_at")? })).transpose()
    }

    async fn insert(&self, tx: &mut Tx, p: &NewPasskey<'_>) -> Result<(), StoreError> {
        Sql::<DB>::new(
            "INSERT INTO passkeys (id, user_id, credential_id, credential, sign_count, name, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(p.id)
        .bind(p.user_id)
        .bind(p.credential_id)
        .bind(p.credential)
        .bind(p.sign_count)
        .bind(p.name)
        .bind(p.created_at)
        .execute(tx.conn::<DB>()?)
        .await?;
        Ok(())
    }

    async fn record_use(&self, tx: &mut Tx, id: &str, credential: &str, sign_count: i64, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let n = Sql::<DB>::new(
            "UPDATE passkeys SET credential = $2, sign_count = $3, last_used_at = $4 \
             WHERE id = $1 AND (sign_count < $3 OR (sign_count = 0 AND $3 = 0))",
        )
        .bind(id)
        .bind(credential)
        .bind(sign_count)
        .bind(now)
        .execute(tx.conn::<DB>()?)
        .await?;
        Ok(n == 1)
    }

    async fn delete(&self, tx: &mut Tx, user_id: &str, id: &str) -> Result<bool, StoreError> {
        let n =
            Sql::<DB>::new("DELETE FROM passkeys WHERE id = $1 AND user_id = $2").bind(id).bind(user_id).execute(tx.conn::<DB>()?).await?;
        Ok(n == 1)
    }
}

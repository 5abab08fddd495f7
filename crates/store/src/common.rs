//! The statements that read the same on every backend, written once.
//! `impl_tx!` and `impl_backend!` emit a backend's whole `Tx` and `Backend`
//! impls: the methods given to them (whose SQL, pool or locking differs)
//! plus the shared ones. Macros, not generic code, because sqlx's
//! per-database types make generic statement code far longer than the
//! statements themselves.

/// Emits a backend's whole `Tx` impl: the methods given to it plus the
/// statements every backend runs the same way on `self.tx`.
macro_rules! impl_tx {
    ($ty:ty { $($own:tt)* }) => {
        #[async_trait::async_trait]
        impl $crate::backend::Tx for $ty {
            $($own)*

            async fn insert_account(&mut self, new: &NewAccount, now: Timestamp) -> Result<Account> {
                let row: AccountRow = sqlx::query_as(sql::INSERT_ACCOUNT)
                    .bind(new.subdomain.as_str())
                    .bind(&new.name)
                    .bind(new.plan.as_str())
                    .bind(new.token_limit())
                    .bind(new.api_token_access)
                    .bind(now)
                    .fetch_one(&mut *self.tx)
                    .await?;
                Account::try_from(row)
            }

            async fn save_account(&mut self, a: &Account) -> Result<()> {
                sqlx::query(sql::SAVE_ACCOUNT)
                    .bind(&a.name)
                    .bind(a.plan.as_str())
                    .bind(a.token_limit)
                    .bind(a.api_token_access)
                    .bind(a.updated_at)
                    .bind(a.id)
                    .execute(&mut *self.tx)
                    .await?;
                Ok(())
            }

            async fn user(&mut self, account_id: i64, id: i64) -> Result<Option<User>> {
                let row: Option<UserRow> = sqlx::query_as(sql::ACCOUNT_USER)
                    .bind(account_id)
                    .bind(id)
                    .fetch_optional(&mut *self.tx)
                    .await?;
                row.map(User::try_from).transpose()
            }

            async fn email_taken(&mut self, account_id: i64, email_normalized: &str) -> Result<bool> {
                let n: i64 = sqlx::query_scalar(sql::EMAIL_TAKEN)
                    .bind(account_id)
                    .bind(email_normalized)
                    .fetch_one(&mut *self.tx)
                    .await?;
                Ok(n > 0)
            }

            async fn insert_user(&mut self, account_id: i64, new: &NewUser, now: Timestamp) -> Result<User> {
                let row: UserRow = sqlx::query_as(sql::INSERT_USER)
                    .bind(account_id)
                    .bind(&new.name)
                    .bind(new.email.as_str())
                    .bind(new.email.normalized())
                    .bind(new.role.as_str())
                    .bind(new.verified)
                    .bind(new.password_hash.as_deref())
                    .bind(now)
                    .fetch_one(&mut *self.tx)
                    .await?;
                User::try_from(row)
            }

            async fn save_user(&mut self, u: &User, now: Timestamp) -> Result<()> {
                sqlx::query(sql::SAVE_USER)
                    .bind(&u.name)
                    .bind(u.role.as_str())
                    .bind(u.verified)
                    .bind(u.suspended)
                    .bind(u.deleted)
                    .bind(now)
                    .bind(u.updated_at)
                    .bind(u.id)
                    .execute(&mut *self.tx)
                    .await?;
                Ok(())
            }

            async fn set_password(&mut self, user_id: i64, password_hash: &str) -> Result<()> {
                sqlx::query(sql::SET_PASSWORD)
                    .bind(password_hash)
                    .bind(user_id)
                    .execute(&mut *self.tx)
                    .await?;
                Ok(())
            }

            async fn count_tokens(&mut self, account_id: i64) -> Result<i64> {
                Ok(sqlx::query_scalar(sql::COUNT_TOKENS)
                    .bind(account_id)
                    .fetch_one(&mut *self.tx)
                    .await?)
            }

            async fn token(&mut self, account_id: i64, id: i64) -> Result<Option<ApiToken>> {
                let row: Option<TokenRow> = sqlx::query_as(sql::ACCOUNT_TOKEN)
                    .bind(account_id)
                    .bind(id)
                    .fetch_optional(&mut *self.tx)
                    .await?;
                Ok(row.map(ApiToken::from))
            }

            async fn token_hash_taken(&mut self, hash: &[u8]) -> Result<bool> {
                let n: i64 = sqlx::query_scalar(sql::TOKEN_HASH_TAKEN)
                    .bind(hash)
                    .fetch_one(&mut *self.tx)
                    .await?;
                Ok(n > 0)
            }

            async fn insert_token(&mut self, account_id: i64, new: &NewToken, now: Timestamp) -> Result<ApiToken> {
                let row: TokenRow = sqlx::query_as(sql::INSERT_TOKEN)
                    .bind(account_id)
                    .bind(&new.hash.0[..])
                    .bind(&new.visible_token)
                    .bind(new.description.as_deref())
                    .bind(new.active)
                    .bind(new.user_id)
                    .bind(now)
                    .fetch_one(&mut *self.tx)
                    .await?;
                Ok(ApiToken::from(row))
            }

            async fn save_token(&mut self, t: &ApiToken) -> Result<()> {
                sqlx::query(sql::SAVE_TOKEN)
                    .bind(t.description.as_deref())
                    .bind(t.active)
                    .bind(t.assigned_user_id)
                    .bind(t.updated_at)
                    .bind(t.id)
                    .execute(&mut *self.tx)
                    .await?;
                Ok(())
            }

            async fn delete_token(&mut self, id: i64) -> Result<()> {
                sqlx::query(sql::DELETE_TOKEN).bind(id).execute(&mut *self.tx).await?;
                Ok(())
            }

            async fn last_audit_hash(&mut self, account_id: i64) -> Result<Option<[u8; 32]>> {
                let hash: Option<Vec<u8>> = sqlx::query_scalar(sql::LAST_AUDIT_HASH)
                    .bind(account_id)
                    .fetch_optional(&mut *self.tx)
                    .await?;
                Ok(hash.map(|h| <[u8; 32]>::try_from(h.as_slice()).unwrap_or([0xff; 32])))
            }

            async fn insert_audit(&mut self, e: &AuditEvent, hash: &[u8; 32]) -> Result<i64> {
                let id: i64 = sqlx::query_scalar(sql::INSERT_AUDIT)
                    .bind(e.account_id)
                    .bind(e.action.as_str())
                    .bind(e.actor_type.as_str())
                    .bind(e.actor_id)
                    .bind(&e.actor_name)
                    .bind(e.source_type.as_str())
                    .bind(e.source_id)
                    .bind(&e.source_label)
                    .bind(&e.change_description)
                    .bind(e.ip_address.as_deref())
                    .bind(e.created_at)
                    .bind(&hash[..])
                    .fetch_one(&mut *self.tx)
                    .await?;
                Ok(id)
            }

            async fn commit(self: Box<Self>) -> Result<()> {
                self.tx.commit().await?;
                Ok(())
            }
        }
    };
}

pub(crate) use impl_tx;

/// Emits a backend's whole `Backend` impl: the methods given to it (those
/// whose pool, locking or SQL differs) plus the reads that are the same
/// text on every backend: the follower's through `self.follow`, the rest
/// through `self.pool`.
macro_rules! impl_backend {
    ($ty:ty { $($own:tt)* }) => {
        #[async_trait::async_trait]
        impl $crate::backend::Backend for $ty {
            $($own)*

            async fn latest_change(&self) -> Result<i64> {
                let seq: Option<i64> = sqlx::query_scalar(sql::LATEST_CHANGE).fetch_one(&self.follow).await?;
                Ok(seq.unwrap_or(0))
            }

            async fn oldest_change(&self) -> Result<Option<i64>> {
                Ok(sqlx::query_scalar(sql::OLDEST_CHANGE).fetch_one(&self.follow).await?)
            }

            async fn changes_since(&self, seq: i64, limit: i64) -> Result<Vec<Change>> {
                let rows: Vec<ChangeRow> = sqlx::query_as(sql::CHANGES_SINCE)
                    .bind(seq)
                    .bind(limit)
                    .fetch_all(&self.follow)
                    .await?;
                rows.into_iter().map(Change::try_from).collect()
            }

            async fn token_auth(&self, id: i64) -> Result<Option<TokenAuth>> {
                let row: Option<TokenAuthRow> = sqlx::query_as(sql::TOKEN_AUTH_BY_ID)
                    .bind(id)
                    .fetch_optional(&self.follow)
                    .await?;
                row.map(TokenAuth::try_from).transpose()
            }

            async fn account_count(&self) -> Result<i64> {
                Ok(sqlx::query_scalar(sql::ACCOUNT_COUNT).fetch_one(&self.pool).await?)
            }

            async fn accounts(&self) -> Result<Vec<Account>> {
                let rows: Vec<AccountRow> = sqlx::query_as(sql::ALL_ACCOUNTS).fetch_all(&self.pool).await?;
                rows.into_iter().map(Account::try_from).collect()
            }

            async fn account(&self, id: i64) -> Result<Option<Account>> {
                let row: Option<AccountRow> = sqlx::query_as(sql::ACCOUNT_BY_ID)
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?;
                row.map(Account::try_from).transpose()
            }

            async fn account_by_subdomain(&self, subdomain: &str) -> Result<Option<Account>> {
                let row: Option<AccountRow> = sqlx::query_as(sql::ACCOUNT_BY_SUBDOMAIN)
                    .bind(subdomain)
                    .fetch_optional(&self.pool)
                    .await?;
                row.map(Account::try_from).transpose()
            }

            async fn user(&self, id: i64) -> Result<Option<User>> {
                let row: Option<UserRow> = sqlx::query_as(sql::USER_BY_ID)
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?;
                row.map(User::try_from).transpose()
            }

            async fn user_credentials(
                &self,
                account_id: i64,
                email_normalized: &str,
            ) -> Result<Option<(User, Option<String>)>> {
                let Some(row) = sqlx::query_as::<_, UserRow>(sql::LIVE_USER_BY_EMAIL)
                    .bind(account_id)
                    .bind(email_normalized)
                    .fetch_optional(&self.pool)
                    .await?
                else {
                    return Ok(None);
                };
                let user = User::try_from(row)?;
                let hash: Option<String> = sqlx::query_scalar(sql::PASSWORD_HASH)
                    .bind(user.id)
                    .fetch_one(&self.pool)
                    .await?;
                Ok(Some((user, hash)))
            }

            async fn users_page(
                &self,
                account_id: i64,
                after: Option<i64>,
                before: Option<i64>,
                limit: i64,
            ) -> Result<Vec<User>> {
                let rows: Vec<UserRow> = match before {
                    Some(before) => {
                        let mut rows: Vec<UserRow> = sqlx::query_as(sql::USERS_BEFORE)
                            .bind(account_id)
                            .bind(before)
                            .bind(limit)
                            .fetch_all(&self.pool)
                            .await?;
                        rows.reverse();
                        rows
                    }
                    None => {
                        sqlx::query_as(sql::USERS_AFTER)
                            .bind(account_id)
                            .bind(after.unwrap_or(0))
                            .bind(limit)
                            .fetch_all(&self.pool)
                            .await?
                    }
                };
                rows.into_iter().map(User::try_from).collect()
            }

            async fn token(&self, account_id: i64, id: i64) -> Result<Option<ApiToken>> {
                let row: Option<TokenRow> = sqlx::query_as(sql::ACCOUNT_TOKEN)
                    .bind(account_id)
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?;
                Ok(row.map(ApiToken::from))
            }

            async fn tokens(&self, account_id: i64) -> Result<Vec<ApiToken>> {
                let rows: Vec<TokenRow> = sqlx::query_as(sql::ACCOUNT_TOKENS)
                    .bind(account_id)
                    .fetch_all(&self.pool)
                    .await?;
                Ok(rows.into_iter().map(ApiToken::from).collect())
            }

            async fn audit_chain(&self, account_id: i64) -> Result<Vec<(AuditEvent, [u8; 32])>> {
                let rows: Vec<AuditRow> = sqlx::query_as(sql::AUDIT_CHAIN)
                    .bind(account_id)
                    .fetch_all(&self.pool)
                    .await?;
                rows.into_iter().map(<(AuditEvent, [u8; 32])>::try_from).collect()
            }

            async fn session(&self, id_hash: &[u8; 32]) -> Result<Option<SessionRecord>> {
                let row: Option<(Vec<u8>, i64, i64, String, i64, i64)> = sqlx::query_as(sql::SESSION_BY_HASH)
                    .bind(&id_hash[..])
                    .fetch_optional(&self.pool)
                    .await?;
                Ok(row.map(
                    |(_, account_id, user_id, csrf_token, created_at, last_seen_at)| SessionRecord {
                        id_hash: *id_hash,
                        account_id,
                        user_id,
                        csrf_token,
                        created_at,
                        last_seen_at,
                    },
                ))
            }

            async fn audit_events(&self, account_id: i64, filter: &AuditFilter, seek: &Seek) -> Result<Vec<AuditEvent>> {
                let (text, args) = audit_log::list_sql(account_id, filter, seek);
                let mut query = sqlx::query_as::<_, AuditRow>(&text);
                for arg in args {
                    query = match arg {
                        audit_log::Arg::Int(n) => query.bind(n),
                        audit_log::Arg::Text(s) => query.bind(s),
                    };
                }
                let rows = query.fetch_all(&self.pool).await?;
                rows.into_iter()
                    .map(|r| <(AuditEvent, [u8; 32])>::try_from(r).map(|(e, _)| e))
                    .collect()
            }

            async fn audit_event(&self, account_id: i64, id: i64) -> Result<Option<AuditEvent>> {
                let row: Option<AuditRow> = sqlx::query_as(&audit_log::event_sql())
                    .bind(account_id)
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?;
                row.map(|r| <(AuditEvent, [u8; 32])>::try_from(r).map(|(e, _)| e))
                    .transpose()
            }
        }
    };
}

pub(crate) use impl_backend;

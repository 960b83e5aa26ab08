//! Accounts, sessions, API tokens, invites and the registration mode.

use serde::Deserialize;

use super::{Actor, Chat, ChatError, ChatResult, now_ms};
use crate::{
    auth::{self, API_TOKEN_PREFIX},
    config::RegistrationMode,
    domain::{DomainError, Email, Password, PersonName, UserId, Username},
    hub::{Control, Envelope, Topic},
    store::{ApiTokenInfo, NameKind, NewUser, ProfileChange, StoreError, User},
};

/// How long an invite link stays valid.
const INVITE_TTL_MS: i64 = 7 * 24 * 3600 * 1000;
/// A session's last-use time is written at most this often.
const TOUCH_EVERY_MS: i64 = 60_000;

/// A sign-up form as received.
#[derive(Debug, Clone, Deserialize)]
pub struct NewAccount {
    pub first_name: String,
    pub last_name: String,
    pub email: String,
    pub username: String,
    pub password: String,
    #[serde(default)]
    pub invite: Option<String>,
}

/// Profile fields to change; absent fields stay.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ProfileUpdate {
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub email: Option<String>,
    pub username: Option<String>,
    /// Required to change the email (the way into the account).
    #[serde(default)]
    pub current_password: Option<String>,
}

/// A successful sign-in: the user, the new session token for the cookie, and a fresh
/// known-device cookie for this browser (see `auth::device`; `None` if one could not be
/// made, which only costs the exemption).
pub struct LoginOutcome {
    pub user: User,
    pub token: String,
    pub device: Option<String>,
}

/// The settings key of the known-device cookies' signing key (hex), shared by every
/// node through the database.
const DEVICE_KEY_SETTING: &str = "device_cookie_key";

fn internal(e: impl std::fmt::Display) -> ChatError {
    ChatError::Internal(e.to_string())
}

impl Chat {
    pub fn registration_mode(&self) -> RegistrationMode {
        *self.registration.read()
    }

    /// The mode a sign-up is judged by. With several nodes it is read from the store:
    /// the cached one learns of a change made on another node over Redis, a moment
    /// later, and a sign-up in that moment must not slip through a closed door (a
    /// sign-up hashes a password anyway: one read more is nothing).
    async fn registration_mode_now(&self) -> ChatResult<RegistrationMode> {
        if !self.bus.shared() {
            return Ok(self.registration_mode());
        }
        let stored = self.store.get_setting(super::REGISTRATION_KEY).await?;
        Ok(stored.as_deref().and_then(RegistrationMode::parse).unwrap_or_else(|| self.registration_mode()))
    }

    /// Creates an account. `by_admin` bypasses the registration mode (`rtm user add`,
    /// the admin API).
    pub async fn register(&self, a: NewAccount, by_admin: bool) -> ChatResult<User> {
        let email = Email::parse(&a.email)?;
        let username = Username::parse(&a.username)?;
        let first = PersonName::parse(&a.first_name, "first name")?;
        let last = PersonName::parse(&a.last_name, "last name")?;
        let password = Password::parse(&a.password)?;
        let skeleton = self.check_look_alike(NameKind::Username, username.as_str(), None).await?;
        let mut claimed_invite = None;
        if !by_admin {
            let mode = self.registration_mode_now().await?;
            match mode {
                RegistrationMode::Open => {}
                // Closed means nobody signs up on their own; an invite link is the
                // admin's deliberate act, so it works in closed mode too.
                RegistrationMode::Closed | RegistrationMode::Invite => {
                    let code = a.invite.as_deref().map(str::trim).filter(|c| !c.is_empty()).ok_or(
                        if mode == RegistrationMode::Closed {
                            ChatError::RegistrationClosed
                        } else {
                            ChatError::InvalidInvite
                        },
                    )?;
                    let hash = auth::hash_secret(code);
                    if !self.store.claim_invite(&hash, now_ms()).await? {
                        return Err(ChatError::InvalidInvite);
                    }
                    claimed_invite = Some(hash);
                }
            }
        }
        let hash = self.hasher.hash(password.expose()).await.map_err(internal)?;
        let result = self
            .store
            .create_user(NewUser {
                email_lc: email.folded(),
                email: email.into_inner(),
                username_lc: username.folded(),
                username: username.into_inner(),
                first_name: first.into_inner(),
                last_name: last.into_inner(),
                password_hash: hash,
                now: now_ms(),
            })
            .await;
        match result {
            Ok(user) => {
                tracing::info!(user_id = user.id, admin = user.is_admin, "account created");
                self.store.set_skeleton(NameKind::Username, user.id, &skeleton).await?;
                self.join_default_room(&user).await;
                Ok(user)
            }
            Err(e) => {
                // The sign-up failed (e.g. email taken): the invite is not spent.
                if let Some(h) = claimed_invite {
                    self.store.release_invite(&h).await?;
                }
                Err(e.into())
            }
        }
    }

    /// Signs in with email or username; a new session token every time. `device` is
    /// the browser's known-device cookie, if it sent one.
    ///
    /// Each attempt spends the account's back-off budget (`auth::backoff`) before the
    /// password is even looked at, so guesses from many addresses are slowed too; a
    /// waiting account answers `SignInDelayed` without checking the password. A browser
    /// with a valid known-device cookie for the account spends its own budget instead,
    /// so the person is not locked out by someone else's guessing; its success leaves
    /// the account's count as it is (it must not hand the guesser fresh attempts). A
    /// login that matches no account has a budget too (keyed by its hash), so being
    /// slowed down does not tell which logins exist.
    pub async fn login(&self, login: &str, password: &str, device: Option<&str>) -> ChatResult<LoginOutcome> {
        let account = self.account_for_login(login).await?;
        let budget = match &account {
            Some((user, _)) => match self.known_device(user.id, device).await? {
                Some(nonce) => format!("dev:{nonce}"),
                None => format!("acct:{}", user.id),
            },
            None => format!("login:{}", auth::hash_secret(&crate::domain::names::login_key(login))),
        };
        self.sign_in_budget(&budget, false).await?;
        let Some((user, hash)) = account else {
            self.hasher.verify_dummy(password).await;
            return Err(ChatError::BadCredentials);
        };
        if !self.hasher.verify(password, &hash).await.map_err(internal)? {
            tracing::info!(user_id = user.id, known_device = budget.starts_with("dev:"), "sign-in failed");
            return Err(ChatError::BadCredentials);
        }
        if user.disabled {
            return Err(ChatError::Disabled);
        }
        self.sign_in_budget(&budget, true).await?;
        let token = self.start_session(user.id).await?;
        let device = self.device_cookie(user.id).await;
        tracing::info!(user_id = user.id, "signed in");
        Ok(LoginOutcome { user, token, device })
    }

    /// A fresh known-device cookie for a browser that just proved it is `user`'s (a
    /// sign-in or the sign-up); `None` if the signing key cannot be had right now.
    pub async fn device_cookie(&self, user: UserId) -> Option<String> {
        match self.device_key().await {
            Ok(key) => auth::device::issue(&key, user),
            Err(e) => {
                tracing::warn!(error = %e, "no known-device cookie: the signing key is unavailable");
                None
            }
        }
    }

    /// The device id of a valid known-device cookie for `user`.
    async fn known_device(&self, user: UserId, cookie: Option<&str>) -> ChatResult<Option<String>> {
        let Some(cookie) = cookie else { return Ok(None) };
        let key = self.device_key().await?;
        Ok(auth::device::verify(&key, user, cookie).map(str::to_string))
    }

    /// The key that signs known-device cookies, made at first use. Read each time (a
    /// sign-in is rare and slow anyway): nodes that raced to make it all use the one
    /// stored last.
    async fn device_key(&self) -> ChatResult<Vec<u8>> {
        let stored = self.store.get_setting(DEVICE_KEY_SETTING).await?;
        if let Some(key) = stored.and_then(|k| hex::decode(k).ok()).filter(|k| k.len() == 32) {
            return Ok(key);
        }
        let fresh = auth::new_secret().map_err(internal)?;
        self.store.set_setting(DEVICE_KEY_SETTING, &fresh).await?;
        let stored = self.store.get_setting(DEVICE_KEY_SETTING).await?.unwrap_or(fresh);
        hex::decode(stored).map_err(internal)
    }

    /// Spends one attempt of a sign-in budget (`clear`: a success, the budget starts
    /// over): the count all nodes share, or this node's when there is none.
    async fn sign_in_budget(&self, key: &str, clear: bool) -> ChatResult<()> {
        let rule = self.policy.sign_in;
        let shared = if self.bus.shared() { self.bus.shared_backoff(key, &rule, clear).await } else { None };
        let verdict = match shared {
            Some(v) => {
                if clear {
                    self.sign_in_backoff.clear(key);
                }
                v
            }
            None if clear => {
                self.sign_in_backoff.clear(key);
                Ok(())
            }
            None => self.sign_in_backoff.attempt(key),
        };
        verdict.map_err(|wait| {
            let secs = wait.as_millis().div_ceil(1000).max(1) as u64;
            tracing::info!(budget = key.split(':').next().unwrap_or(""), wait_secs = secs, "sign-in delayed");
            ChatError::SignInDelayed(secs)
        })
    }

    /// Opens a session for a user already verified (sign-in, sign-up).
    pub async fn start_session(&self, user: UserId) -> ChatResult<String> {
        let token = auth::new_secret().map_err(internal)?;
        let now = now_ms();
        self.store.create_session(&auth::hash_secret(&token), user, now, now + self.policy.session_max_ms).await?;
        // The console's "last seen": written at sign-in and socket close, not per request.
        self.store.touch_last_seen(user, now).await?;
        Ok(token)
    }

    /// The actor behind a session cookie, if the session is live.
    pub async fn session_actor(&self, token: &str) -> ChatResult<Actor> {
        let hash = auth::hash_secret(token);
        let row = self.store.session(&hash).await?.ok_or(ChatError::Unauthenticated)?;
        let now = now_ms();
        if row.expires_at <= now || row.last_seen_at + self.policy.session_idle_ms <= now {
            self.store.delete_session(&hash).await?;
            return Err(ChatError::Unauthenticated);
        }
        if row.user.disabled {
            return Err(ChatError::Disabled);
        }
        // Write last use rarely (a write per request would be costly), but often enough
        // that a session in use never reaches its idle limit.
        if now - row.last_seen_at > TOUCH_EVERY_MS.min(self.policy.session_idle_ms / 4) {
            self.store.touch_session(&hash, now).await?;
        }
        Ok(Actor { user: row.user, session: Some(hash), token_id: None })
    }

    /// The actor behind an API token.
    pub async fn token_actor(&self, token: &str) -> ChatResult<Actor> {
        let (user, id) =
            self.store.api_token_user(&auth::hash_secret(token), now_ms()).await?.ok_or(ChatError::Unauthenticated)?;
        if user.disabled {
            return Err(ChatError::Disabled);
        }
        Ok(Actor { user, session: None, token_id: Some(id) })
    }

    /// Ends this session on the server and closes its sockets.
    pub async fn logout(&self, actor: &Actor) -> ChatResult<()> {
        if let Some(hash) = &actor.session {
            self.store.delete_session(hash).await?;
            self.end_sockets(actor.user.id, Control::EndSession(hash.clone())).await?;
        }
        Ok(())
    }

    async fn end_sockets(&self, user: UserId, control: Control) -> ChatResult<()> {
        self.bus.publish(Envelope::control(Topic::User(user), control, None)).await?;
        Ok(())
    }

    pub async fn update_profile(&self, actor: &Actor, u: ProfileUpdate) -> ChatResult<User> {
        let mut change = ProfileChange::default();
        if let Some(f) = u.first_name {
            change.first_name = Some(PersonName::parse(&f, "first name")?.into_inner());
        }
        if let Some(l) = u.last_name {
            change.last_name = Some(PersonName::parse(&l, "last name")?.into_inner());
        }
        if let Some(e) = u.email {
            let e = Email::parse(&e)?;
            let lc = e.folded();
            if lc != actor.user.email.to_lowercase() {
                self.check_current_password(actor, u.current_password.as_deref()).await?;
            }
            change.email = Some((e.into_inner(), lc));
        }
        let mut skeleton = None;
        if let Some(n) = u.username {
            let n = Username::parse(&n)?;
            skeleton = Some(self.check_look_alike(NameKind::Username, n.as_str(), Some(actor.user.id)).await?);
            let lc = n.folded();
            change.username = Some((n.into_inner(), lc));
        }
        let user = self.store.update_profile(actor.user.id, change).await?;
        if let Some(s) = skeleton {
            self.store.set_skeleton(NameKind::Username, user.id, &s).await?;
        }
        self.forget_user_in_rooms(actor.user.id);
        self.bus.publish(Envelope::control(Topic::Nodes, Control::UserChanged(actor.user.id), None)).await?;
        // Others see the new name live (the email is nobody else's business).
        let before = &actor.user;
        if (&user.username, &user.first_name, &user.last_name)
            != (&before.username, &before.first_name, &before.last_name)
        {
            self.announce_profile(&user).await?;
        }
        Ok(user)
    }

    /// Checks the actor's current password (email and password changes need it, so a
    /// borrowed session cannot take the account over).
    async fn check_current_password(&self, actor: &Actor, current: Option<&str>) -> ChatResult<()> {
        let Some(current) = current.filter(|c| !c.is_empty()) else {
            return Err(ChatError::Invalid(DomainError::new(
                "password_required",
                "enter your current password to change this",
            )));
        };
        let hash = self.store.password_hash(actor.user.id).await?.ok_or(ChatError::Unauthenticated)?;
        if !self.hasher.verify(current, &hash).await.map_err(internal)? {
            return Err(ChatError::Invalid(DomainError::new("wrong_password", "the current password is not right")));
        }
        Ok(())
    }

    /// Changes the password after checking the current one; every other session of the
    /// user ends (and its sockets close).
    pub async fn change_password(&self, actor: &Actor, current: &str, new: &str) -> ChatResult<()> {
        let new = Password::parse(new)?;
        self.check_current_password(actor, Some(current)).await?;
        let new_hash = self.hasher.hash(new.expose()).await.map_err(internal)?;
        self.store.set_password(actor.user.id, &new_hash).await?;
        self.store.delete_user_sessions(actor.user.id, actor.session.as_deref()).await?;
        self.end_sockets(actor.user.id, Control::EndSessionsExcept(actor.session.clone())).await?;
        tracing::info!(user_id = actor.user.id, "password changed; other sessions ended");
        Ok(())
    }

    /// Makes an API token for the actor: returns its id, its name as stored (trimmed,
    /// NFC) and the token itself, shown this once and never stored.
    pub async fn create_api_token(&self, user: UserId, name: &str) -> ChatResult<(i64, String, String)> {
        let cap = self.policy.max_api_tokens;
        if self.store.list_api_tokens(user).await?.len() >= cap {
            return Err(DomainError::new(
                "too_many_tokens",
                format!("an account has at most {cap} API tokens; revoke one first"),
            )
            .into());
        }
        // The same rule as people's names: 1 to 64 characters, no control characters.
        let name = crate::domain::PersonName::parse(name, "token name")?.into_inner();
        let token = format!("{API_TOKEN_PREFIX}{}", auth::new_secret().map_err(internal)?);
        let id = self.store.create_api_token(user, &name, &auth::hash_secret(&token), now_ms()).await?;
        Ok((id, name, token))
    }

    /// An API token made for someone from the shell (`rtm user token`): a credential
    /// into their account, so the audit log records it (its name, never the token).
    pub async fn cli_api_token(&self, user: &User, name: &str) -> ChatResult<String> {
        let (id, name, token) = self.create_api_token(user.id, name).await?;
        let detail = serde_json::json!({ "id": user.id, "token_id": id, "name": name });
        self.audit(None, "user.token", user.username.clone(), detail).await?;
        Ok(token)
    }

    pub async fn list_api_tokens(&self, actor: &Actor) -> ChatResult<Vec<ApiTokenInfo>> {
        Ok(self.store.list_api_tokens(actor.user.id).await?)
    }

    pub async fn revoke_api_token(&self, actor: &Actor, id: i64) -> ChatResult<()> {
        if self.store.delete_api_token(actor.user.id, id).await? {
            self.end_sockets(actor.user.id, Control::EndToken(id)).await?;
            Ok(())
        } else {
            Err(ChatError::NotFound("token"))
        }
    }

    fn require_admin(actor: &Actor) -> ChatResult<()> {
        if actor.user.is_admin { Ok(()) } else { Err(ChatError::Forbidden("only the admin may do this")) }
    }

    pub async fn set_registration_mode(&self, actor: &Actor, mode: RegistrationMode) -> ChatResult<()> {
        Self::require_admin(actor)?;
        self.store.set_setting("registration_mode", mode.as_str()).await?;
        *self.registration.write() = mode;
        self.bus.publish(Envelope::control(Topic::Nodes, Control::SettingsChanged, None)).await?;
        tracing::info!(mode = mode.as_str(), "registration mode changed");
        self.audit(Some(actor), "settings.registration", mode.as_str(), serde_json::json!({ "mode": mode.as_str() }))
            .await
    }

    /// Makes a single-use invite code (valid 7 days).
    pub async fn create_invite(&self, actor: &Actor) -> ChatResult<String> {
        Self::require_admin(actor)?;
        let code = auth::new_secret().map_err(internal)?;
        let now = now_ms();
        self.store.create_invite(&auth::hash_secret(&code), actor.user.id, now, now + INVITE_TTL_MS).await?;
        self.audit(Some(actor), "invite.create", "", serde_json::json!({ "expires_at": now + INVITE_TTL_MS })).await?;
        Ok(code)
    }

    /// Disables or re-enables an account (admin API and CLI). Disabling ends every
    /// session, revokes nothing else, and closes the user's sockets at once.
    /// Disables or re-enables an account. With `keep_last_admin` (an admin acting
    /// in the console) the last enabled admin cannot be disabled, and two admins
    /// disabling each other at once cannot both succeed; the operator's CLI may
    /// (and can enable the account again).
    pub async fn set_disabled(&self, user: UserId, disabled: bool, keep_last_admin: bool) -> ChatResult<()> {
        let not_found = |e| match e {
            StoreError::NotFound => ChatError::NotFound("user"),
            e => e.into(),
        };
        if disabled {
            if keep_last_admin {
                if !self.store.disable_unless_last_admin(user).await.map_err(not_found)? {
                    return Err(ChatError::LastAdmin);
                }
            } else {
                self.store.set_disabled(user, true).await.map_err(not_found)?;
            }
            self.store.delete_user_sessions(user, None).await?;
            self.end_sockets(user, Control::EndAll).await?;
        } else {
            self.store.set_disabled(user, false).await.map_err(not_found)?;
        }
        tracing::info!(user_id = user, disabled, "account status changed");
        Ok(())
    }

    /// Finds an account by username or email (CLI, invitations).
    pub async fn find_user(&self, login: &str) -> ChatResult<User> {
        Ok(self.account_for_login(login).await?.ok_or(ChatError::NotFound("user"))?.0)
    }

    /// The account (and password hash) a username or email names, ignoring case. A
    /// login no account could have (control characters) is unknown without asking
    /// the database, where PostgreSQL would refuse a NUL.
    async fn account_for_login(&self, login: &str) -> ChatResult<Option<(User, String)>> {
        if !crate::domain::plausible_login(login) {
            return Ok(None);
        }
        let key = crate::domain::names::login_key(login);
        let found = self.store.user_for_login(&key).await?;
        // An account made before emails were composed (NFC) keeps the form it was
        // typed in: it can still sign in as it always did.
        let typed = login.trim().to_lowercase();
        if found.is_none() && typed != key {
            return Ok(self.store.user_for_login(&typed).await?);
        }
        Ok(found)
    }

    pub async fn list_all_users(&self, limit: i64) -> ChatResult<Vec<User>> {
        Ok(self.store.list_users(None, limit, false).await?)
    }
}

//! HTTP basic authentication against `basic_auth_users` (bcrypt hashes).
//!
//! bcrypt is slow on purpose (~50-250 ms at the usual costs): checking it on every scrape
//! would make each scrape that slow and let a few clients keep a core busy. So, as
//! exporter-toolkit does, a successful verification is cached: the cache keeps, per user,
//! an HMAC of the last password that verified, under a key drawn at start. A later request
//! is accepted when its HMAC matches (compared in constant time by `ring::hmac::verify`);
//! anything else goes through bcrypt again (off the async thread), and a failure is never
//! cached, so a changed or guessed password costs a full bcrypt each time. The cache holds
//! at most one entry per configured user and no password in the clear.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex, PoisonError},
};

use base64::Engine as _;
use hyper::header::HeaderValue;
use ring::hmac;

/// The realm in `WWW-Authenticate`.
pub const CHALLENGE: &str = "Basic realm=\"portmon\"";

/// The configured users and the cache of verified passwords.
pub struct BasicAuth {
    users: BTreeMap<String, String>,
    /// A configured hash, checked for unknown users so that they cost the same bcrypt
    /// time as known ones (no user enumeration by timing).
    decoy: String,
    key: hmac::Key,
    verified: Mutex<HashMap<String, hmac::Tag>>,
}

impl std::fmt::Debug for BasicAuth {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("BasicAuth")
            .field("users", &self.users.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// Why the random cache key could not be drawn.
#[derive(Debug, thiserror::Error)]
#[error("drawing a random key for the authentication cache failed (is /dev/urandom readable?)")]
pub struct RandomError;

impl BasicAuth {
    /// `None` when `users` is empty (no authentication), as in exporter-toolkit.
    ///
    /// # Errors
    /// When the system's random generator fails.
    pub fn new(users: BTreeMap<String, String>) -> Result<Option<Self>, RandomError> {
        let Some(decoy) = users.values().next().cloned() else {
            return Ok(None);
        };
        let key = hmac::Key::generate(hmac::HMAC_SHA256, &ring::rand::SystemRandom::new())
            .map_err(|_| RandomError)?;
        Ok(Some(Self {
            users,
            decoy,
            key,
            verified: Mutex::new(HashMap::new()),
        }))
    }

    /// Whether the `Authorization` header carries a configured user and its password.
    pub async fn allows(self: &Arc<Self>, authorization: Option<&HeaderValue>) -> bool {
        let Some((user, password)) = authorization.and_then(credentials) else {
            return false;
        };
        if self.cached(&user, &password) {
            return true;
        }
        let this = Arc::clone(self);
        // bcrypt runs on the blocking pool: the endpoint's single async thread keeps
        // serving the other requests meanwhile.
        tokio::task::spawn_blocking(move || this.verify(user, &password))
            .await
            .unwrap_or(false)
    }

    fn cached(&self, user: &str, password: &str) -> bool {
        let verified = self.verified.lock().unwrap_or_else(PoisonError::into_inner);
        verified
            .get(user)
            .is_some_and(|tag| hmac::verify(&self.key, password.as_bytes(), tag.as_ref()).is_ok())
    }

    fn verify(&self, user: String, password: &str) -> bool {
        let (hash, known) = match self.users.get(&user) {
            Some(hash) => (hash.as_str(), true),
            None => (self.decoy.as_str(), false),
        };
        let matches = bcrypt::verify(password, hash).unwrap_or(false);
        if matches && known {
            let tag = hmac::sign(&self.key, password.as_bytes());
            self.verified
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(user, tag);
        }
        matches && known
    }
}

/// `Basic base64(user:password)` → (user, password).
fn credentials(header: &HeaderValue) -> Option<(String, String)> {
    let text = header.to_str().ok()?;
    let (scheme, encoded) = text.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

#[cfg(test)]
#[expect(clippy::expect_used, reason = "tests panic with what they expected")]
mod tests {
    use super::*;

    fn header(user: &str, password: &str) -> HeaderValue {
        let encoded =
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        HeaderValue::from_str(&format!("Basic {encoded}")).expect("a valid header")
    }

    #[tokio::test]
    async fn only_a_configured_user_with_its_password_passes() {
        let users = BTreeMap::from([(
            "alice".to_owned(),
            bcrypt::hash("right", 4).expect("bcrypt hashes"),
        )]);
        let auth = Arc::new(
            BasicAuth::new(users)
                .expect("random works")
                .expect("users configured"),
        );
        let garbage = HeaderValue::from_static("Basic %%%");
        let bearer = HeaderValue::from_static("Bearer abc");
        // (case, header, allowed)
        let cases: [(&str, Option<HeaderValue>, bool); 7] = [
            ("no header", None, false),
            ("wrong password", Some(header("alice", "wrong")), false),
            ("unknown user", Some(header("bob", "right")), false),
            ("right password", Some(header("alice", "right")), true),
            (
                "right again, from the cache",
                Some(header("alice", "right")),
                true,
            ),
            (
                "wrong after a cached right",
                Some(header("alice", "righ")),
                false,
            ),
            ("not base64", Some(garbage), false),
        ];
        for (case, value, allowed) in cases {
            assert_eq!(auth.allows(value.as_ref()).await, allowed, "{case}");
        }
        assert!(
            !auth.allows(Some(&bearer)).await,
            "another scheme is refused"
        );
        assert_eq!(
            auth.verified.lock().expect("not poisoned").len(),
            1,
            "only alice's success is cached"
        );
    }

    #[test]
    fn no_users_means_no_authentication() {
        assert!(
            BasicAuth::new(BTreeMap::new())
                .expect("random works")
                .is_none()
        );
    }
}

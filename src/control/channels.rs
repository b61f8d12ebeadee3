//! The alert channels at run time: the config file's `[[alerts]]` (read-only
//! through the API; a changed one needs a restart) and those made through
//! `/api/v1/alert-channels` (kept in the store, followed across nodes by
//! [`super::Registry::sync_once`]). The registry changes them; the alerts'
//! evaluator reads one snapshot per round ([`Channels::all`]), so a change
//! applies from its next round, without a restart.
//!
//! A channel is delivered through its destination `alerts.<name>`, which the
//! registry adds, changes and removes with it (`Origin::Channel` for one made
//! through the API: SSRF-guarded, never routed).

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::RwLock;

use crate::config::alerts::AlertChannel;
use crate::config::check::Problem;
use crate::store::StoreError;

/// The channels, by origin, and the snapshot the evaluator reads.
#[derive(Default)]
pub struct Channels {
    /// The config file's, in their order.
    file: RwLock<Vec<AlertChannel>>,
    /// Those made through the API, by name.
    api: RwLock<BTreeMap<String, AlertChannel>>,
    /// The file's, then the API's by name (a name in both is the file's).
    current: RwLock<Arc<Vec<AlertChannel>>>,
}

impl Channels {
    /// Every channel: the file's first, then the API's by name.
    pub fn all(&self) -> Arc<Vec<AlertChannel>> {
        self.current.read().clone()
    }

    /// The channel named `name`.
    pub fn get(&self, name: &str) -> Option<AlertChannel> {
        self.all().iter().find(|c| c.name == name).cloned()
    }

    /// Whether `name` is defined in the config file (read-only through the API).
    pub fn is_file(&self, name: &str) -> bool {
        self.file.read().iter().any(|c| c.name == name)
    }

    /// Whether `name` was made through the API (and is not shadowed by the file).
    pub fn is_api(&self, name: &str) -> bool {
        !self.is_file(name) && self.api.read().contains_key(name)
    }

    /// The names of the channels made through the API.
    pub(super) fn api_names(&self) -> Vec<String> {
        self.api.read().keys().cloned().collect()
    }

    /// Sets the config file's channels.
    pub(super) fn set_file(&self, channels: Vec<AlertChannel>) {
        *self.file.write() = channels;
        self.rebuild();
    }

    /// Adds or replaces a channel made through the API.
    pub(super) fn put_api(&self, c: AlertChannel) {
        self.api.write().insert(c.name.clone(), c);
        self.rebuild();
    }

    /// Removes a channel made through the API.
    pub(super) fn remove_api(&self, name: &str) {
        self.api.write().remove(name);
        self.rebuild();
    }

    fn rebuild(&self) {
        let file = self.file.read();
        let mut all = file.clone();
        all.extend(
            self.api
                .read()
                .values()
                .filter(|c| !file.iter().any(|f| f.name == c.name))
                .cloned(),
        );
        *self.current.write() = Arc::new(all);
    }
}

/// Why a change to an alert channel through the API was refused.
#[derive(Debug, thiserror::Error)]
pub enum ChannelChangeError {
    /// The definition has problems (every one, at its field).
    #[error("{}", .0.iter().map(|p| p.message.as_str()).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<Problem>),
    /// A channel of that name exists.
    #[error("an alert channel named `{0}` exists")]
    Exists(String),
    /// It is defined in the config file.
    #[error("this alert channel is defined in the config file; change it there (and restart)")]
    ReadOnly,
    /// No channel of that name was made through the API.
    #[error("alert channel not found")]
    NotFound,
    /// The store failed.
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for ChannelChangeError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => ChannelChangeError::NotFound,
            e => ChannelChangeError::Store(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn channel(name: &str, url: &str) -> AlertChannel {
        let obj = serde_json::json!({"name": name, "format": "slack", "url": url});
        crate::config::alerts::from_json(obj.as_object().unwrap()).unwrap()
    }

    #[test]
    fn the_file_wins_a_name_and_comes_first() {
        let c = Channels::default();
        c.put_api(channel("b", "http://127.0.0.1:1/b"));
        c.put_api(channel("a", "http://127.0.0.1:1/api"));
        c.set_file(vec![channel("a", "http://127.0.0.1:1/file")]);
        let all = c.all();
        let names: Vec<&str> = all.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(
            all[0].url.as_ref().unwrap().expose(),
            "http://127.0.0.1:1/file"
        );
        assert!(c.is_file("a") && !c.is_api("a") && c.is_api("b"));
        c.remove_api("b");
        assert!(c.get("b").is_none());
    }
}

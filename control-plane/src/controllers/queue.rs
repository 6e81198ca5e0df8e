//! A work queue of object keys: a key queued many times is reconciled once, and a key being
//! reconciled is not handed out twice.
use std::collections::{BTreeSet, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    pub namespace: Option<String>,
    pub name: String,
}

impl ObjectKey {
    pub fn new(namespace: Option<&str>, name: &str) -> ObjectKey {
        ObjectKey {
            namespace: namespace.map(str::to_owned),
            name: name.to_owned(),
        }
    }

    pub fn of(object: &serde_json::Value) -> ObjectKey {
        ObjectKey::new(
            crate::api::meta::namespace(object),
            crate::api::meta::name(object),
        )
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(namespace) => write!(formatter, "{namespace}/{}", self.name),
            None => write!(formatter, "{}", self.name),
        }
    }
}

#[derive(Default)]
struct State {
    order: VecDeque<ObjectKey>,
    queued: BTreeSet<ObjectKey>,
}

#[derive(Default)]
pub struct Queue {
    state: Mutex<State>,
    ready: Notify,
}

impl Queue {
    pub fn add(&self, key: ObjectKey) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        if state.queued.insert(key.clone()) {
            state.order.push_back(key);
            drop(state);
            self.ready.notify_one();
        }
    }

    pub fn add_after(self: &Arc<Self>, key: ObjectKey, delay: Duration) {
        let queue = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            queue.add(key);
        });
    }

    pub async fn next(&self) -> ObjectKey {
        loop {
            let notified = self.ready.notified();
            if let Ok(mut state) = self.state.lock()
                && let Some(key) = state.order.pop_front()
            {
                state.queued.remove(&key);
                return key;
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_key_queued_twice_is_handed_out_once() {
        let queue = Queue::default();
        queue.add(ObjectKey::new(Some("a"), "x"));
        queue.add(ObjectKey::new(Some("a"), "x"));
        queue.add(ObjectKey::new(None, "y"));
        assert_eq!(queue.next().await, ObjectKey::new(Some("a"), "x"));
        assert_eq!(queue.next().await.to_string(), "y");
        queue.add(ObjectKey::new(Some("a"), "x"));
        assert_eq!(queue.next().await.name, "x");
    }
}

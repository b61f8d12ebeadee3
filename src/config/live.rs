//! A value the gateway runs with that a reload replaces whole: readers take
//! the current one once (an `Arc`) and keep it for as long as their work
//! lasts, so a request in progress finishes with what it started with, and a
//! reader never waits for a writer longer than a pointer swap.

use std::sync::Arc;

use parking_lot::RwLock;

/// The current value of a setting, swapped whole.
pub struct Live<T>(RwLock<Arc<T>>);

impl<T> Live<T> {
    /// Starts with `value`.
    pub fn new(value: T) -> Self {
        Live(RwLock::new(Arc::new(value)))
    }

    /// The value in effect now.
    pub fn load(&self) -> Arc<T> {
        self.0.read().clone()
    }

    /// Replaces the value; readers holding the previous one keep it.
    pub fn store(&self, value: Arc<T>) {
        *self.0.write() = value;
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for Live<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Live").field(&*self.load()).finish()
    }
}

//! One cap on the bytes that shard readers hold in memory: every tar member is paid for
//! before it is read, and the payment travels with its [`crate::source::Sample`] until the
//! sample is dropped (after the CPU stage decoded it). So whatever the shards declare, the
//! raw bytes alive at once — members being read, samples in channels, samples being
//! prepared — never exceed [`Budget::cap`].
//!
//! A reader pays member by member, so it may wait while holding part of a sample. That
//! cannot deadlock as long as every reader's whole sample fits beside the others'
//! (`readers × per-sample limit ≤ cap`): when nothing downstream is left to release, the
//! partial samples hold at most `(readers - 1) × limit`, which leaves room for any one
//! member. [`ReadLimits::for_readers`] sizes the cap that way.

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// Default largest sample (all its members together) read into memory: far above any
/// photo of the datasets bgstream reads (ImageNet's largest validation JPEG is ~ 15 MB),
/// small enough that a few readers of lying headers cannot exhaust a machine.
pub const DEFAULT_SAMPLE_BYTES: u64 = 64 << 20;

/// The largest `--max-sample-mib` a run accepts (1 GiB), and so the largest image file
/// `bgstream shard` puts in a shard.
pub const MAX_SAMPLE_BYTES: u64 = 1 << 30;

/// Default cap on all raw sample bytes alive in a run at once.
pub const DEFAULT_BUFFERED_BYTES: u64 = 512 << 20;

/// Bytes that may be held at once, and how many are.
#[derive(Debug)]
pub struct Budget {
    cap: u64,
    used: Mutex<u64>,
    freed: Condvar,
}

impl Budget {
    pub fn new(cap: u64) -> Arc<Self> {
        Arc::new(Budget {
            cap,
            used: Mutex::new(0),
            freed: Condvar::new(),
        })
    }

    pub fn cap(&self) -> u64 {
        self.cap
    }

    /// Bytes held now.
    pub fn used(&self) -> u64 {
        *self.used.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until `bytes` fit under the cap and takes them; `None` when `stop()` turns
    /// true while waiting (checked every 50 ms) or when `bytes` can never fit.
    pub fn acquire(self: &Arc<Self>, bytes: u64, stop: &dyn Fn() -> bool) -> Option<Permit> {
        if bytes > self.cap {
            return None;
        }
        let mut used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        while used.saturating_add(bytes) > self.cap {
            if stop() {
                return None;
            }
            used = self
                .freed
                .wait_timeout(used, Duration::from_millis(50))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        *used += bytes;
        Some(Permit {
            budget: self.clone(),
            bytes,
        })
    }

    fn release(&self, bytes: u64) {
        let mut used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        *used = used.saturating_sub(bytes);
        self.freed.notify_all();
    }
}

/// Bytes taken from a [`Budget`], given back when dropped.
#[derive(Debug)]
pub struct Permit {
    budget: Arc<Budget>,
    bytes: u64,
}

impl Permit {
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Takes over `other`'s bytes (of the same budget), so one permit pays for a sample.
    pub fn absorb(&mut self, mut other: Permit) {
        debug_assert!(Arc::ptr_eq(&self.budget, &other.budget));
        self.bytes += std::mem::take(&mut other.bytes);
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if self.bytes > 0 {
            self.budget.release(self.bytes);
        }
    }
}

/// What a shard reader may hold: per sample, and all readers sharing `budget` together.
#[derive(Debug, Clone)]
pub struct ReadLimits {
    /// Largest sample (sum of its members' declared sizes) read into memory; a member that
    /// would take its sample past this is not read, and the sample is recorded
    /// `too_large`.
    pub sample_bytes: u64,
    pub budget: Arc<Budget>,
}

impl ReadLimits {
    /// Limits for `readers` concurrent readers sharing one budget of `buffered_bytes`,
    /// raised to `readers × sample_bytes` when lower (see the module docs: a smaller cap
    /// could leave every reader waiting on the others).
    pub fn for_readers(readers: usize, sample_bytes: u64, buffered_bytes: u64) -> Self {
        let floor = sample_bytes.saturating_mul(readers.max(1) as u64);
        ReadLimits {
            sample_bytes,
            budget: Budget::new(buffered_bytes.max(floor)),
        }
    }
}

impl Default for ReadLimits {
    /// One reader with the default sample limit and cap.
    fn default() -> Self {
        ReadLimits::for_readers(1, DEFAULT_SAMPLE_BYTES, DEFAULT_BUFFERED_BYTES)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permits_are_returned_on_drop_and_absorbed_whole() {
        let b = Budget::new(100);
        let never = || false;
        let mut p = b.acquire(60, &never).unwrap();
        let q = b.acquire(40, &never).unwrap();
        assert_eq!(b.used(), 100);
        p.absorb(q);
        assert_eq!((p.bytes(), b.used()), (100, 100));
        drop(p);
        assert_eq!(b.used(), 0);
        assert!(
            b.acquire(101, &never).is_none(),
            "more than the cap never fits"
        );
    }

    #[test]
    fn a_full_budget_waits_for_a_release_or_a_stop() {
        let b = Budget::new(10);
        let held = b.acquire(8, &|| false).unwrap();
        // Stopping ends the wait without taking anything.
        assert!(b.acquire(5, &|| true).is_none());
        let b2 = b.clone();
        let waiter = std::thread::spawn(move || b2.acquire(5, &|| false).map(|p| p.bytes()));
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(b.used(), 8, "the waiter has not got in");
        drop(held);
        assert_eq!(waiter.join().unwrap(), Some(5));
        assert_eq!(b.used(), 0);
    }

    #[test]
    fn the_cap_holds_every_readers_sample() {
        let l = ReadLimits::for_readers(16, 64 << 20, 512 << 20);
        assert_eq!(l.budget.cap(), 1 << 30);
        let l = ReadLimits::for_readers(2, 64 << 20, 512 << 20);
        assert_eq!(l.budget.cap(), 512 << 20);
    }
}

//! The run's shared control: one stop flag and the first fatal error, for every stage.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::task::JoinHandle;

use crate::error::{panic_message, FatalError};

#[derive(Debug, Default)]
struct Inner {
    stop: AtomicBool,
    abandon: AtomicBool,
    error: Mutex<Option<FatalError>>,
}

/// Cloned into every stage. The first fatal error (or panic) wins and sets `stop`: the
/// readers stop at once and everything downstream drains as its input closes.
#[derive(Debug, Clone, Default)]
pub struct Control(Arc<Inner>);

impl Control {
    pub fn stopped(&self) -> bool {
        self.0.stop.load(Ordering::SeqCst)
    }

    /// Stops reading (Ctrl-C, or a fatal error).
    pub fn stop(&self) {
        self.0.stop.store(true, Ordering::SeqCst);
    }

    /// Stops reading and drops the work in flight: CPU workers skip what is queued, and
    /// each inference worker stops at its next batch boundary without flushing partial
    /// batches. Nothing of an unfinished shard is written (`bgstream bench`'s time budget).
    pub fn abandon(&self) {
        self.0.abandon.store(true, Ordering::SeqCst);
        self.stop();
    }

    pub fn abandoned(&self) -> bool {
        self.0.abandon.load(Ordering::SeqCst)
    }

    /// Records `e` unless an earlier error was recorded, and stops the run.
    pub fn fail(&self, e: FatalError) {
        self.stop();
        let mut slot = self.0.error.lock().unwrap_or_else(|p| p.into_inner());
        slot.get_or_insert(e);
    }

    pub fn take_error(&self) -> Option<FatalError> {
        self.0
            .error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    /// Runs a blocking stage on tokio's blocking pool. A panic becomes the run's fatal
    /// error (and `None`), so a crashed stage stops the run instead of hanging it: its
    /// channels drop with it and the stages around it see their edges close.
    pub fn spawn<T: Send + 'static>(
        &self,
        stage: impl FnOnce() -> T + Send + 'static,
    ) -> JoinHandle<Option<T>> {
        let ctl = self.clone();
        tokio::task::spawn_blocking(move || match catch_unwind(AssertUnwindSafe(stage)) {
            Ok(v) => Some(v),
            Err(panic) => {
                ctl.fail(FatalError::Panic(panic_message(&*panic)));
                None
            }
        })
    }

    /// `n` copies of `stage`, each with its own clones of the channels it captured; the
    /// originals drop when this returns, so no stage waits on an edge nobody holds.
    pub fn spawn_n<T: Send + 'static>(
        &self,
        n: usize,
        stage: impl FnOnce() -> T + Clone + Send + 'static,
    ) -> Vec<JoinHandle<Option<T>>> {
        (0..n).map(|_| self.spawn(stage.clone())).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_panicking_stage_stops_the_run_with_its_message() {
        let ctl = Control::default();
        let out = ctl
            .spawn(|| -> u8 { panic!("stage blew up") })
            .await
            .unwrap();
        assert_eq!(out, None);
        assert!(ctl.stopped());
        let e = ctl.take_error().unwrap().to_string();
        assert!(e.contains("stage blew up"), "{e}");
        ctl.fail(FatalError::Config("second".into()));
        assert!(ctl.take_error().unwrap().to_string().contains("second"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn spawn_n_drops_the_original_channel_ends() {
        let ctl = Control::default();
        let (tx, rx) = async_channel::bounded::<u32>(4);
        let workers = ctl.spawn_n(3, move || {
            let _ = tx.send_blocking(1);
        });
        for w in workers {
            w.await.unwrap();
        }
        // Every sender is gone: the receiver sees the end after the three messages.
        let mut got = 0;
        while rx.recv().await.is_ok() {
            got += 1;
        }
        assert_eq!(got, 3);
        assert!(!ctl.stopped());
    }
}

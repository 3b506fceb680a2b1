//! CUDA streams and events, which tch does not expose, through a small C++ shim
//! (`streams.cpp`, compiled by build.rs against libtorch's headers). It uses c10's
//! device-generic interfaces only, so it builds without a CUDA toolkit; on a machine without
//! a GPU every call returns the error libtorch gives (tested on CPU).
//!
//! Chosen over raw CUDA runtime calls because the streams must be libtorch's own: tch runs
//! each op on the thread's *current* c10 stream, and only c10 can set it.

use std::ffi::{c_char, c_int, c_void, CStr};

extern "C" {
    fn bgs_last_error() -> *const c_char;
    fn bgs_cuda_device_count(out: *mut c_int) -> c_int;
    fn bgs_cuda_stream_from_pool(index: c_int, id: *mut i64) -> c_int;
    fn bgs_cuda_current_stream(index: c_int, id: *mut i64) -> c_int;
    fn bgs_cuda_set_stream(index: c_int, id: i64, previous: *mut i64) -> c_int;
    fn bgs_event_new(out: *mut *mut c_void) -> c_int;
    fn bgs_event_free(ev: *mut c_void);
    fn bgs_event_record(ev: *mut c_void, index: c_int, id: i64) -> c_int;
    fn bgs_event_block(ev: *mut c_void, index: c_int, id: i64) -> c_int;
    fn bgs_event_synchronize(ev: *mut c_void) -> c_int;
}

/// What libtorch said when a stream or event call failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("CUDA stream call failed: {0}")]
pub struct StreamError(pub String);

fn check(rc: c_int) -> Result<(), StreamError> {
    if rc == 0 {
        return Ok(());
    }
    // SAFETY: the shim returns a pointer to its thread-local, NUL-terminated message, valid
    // until its next call on this thread; it is copied at once.
    let message = unsafe { CStr::from_ptr(bgs_last_error()) };
    Err(StreamError(message.to_string_lossy().into_owned()))
}

/// CUDA devices libtorch sees (0 without a GPU).
pub fn cuda_devices() -> Result<usize, StreamError> {
    let mut n = 0;
    // SAFETY: `n` is a valid out pointer.
    check(unsafe { bgs_cuda_device_count(&mut n) })?;
    Ok(n.max(0) as usize)
}

/// A c10 CUDA stream: its device and its id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stream {
    device: c_int,
    id: i64,
}

impl Stream {
    /// A stream from libtorch's pool (never the default stream).
    pub fn from_pool(device: usize) -> Result<Self, StreamError> {
        Self::asked(device, bgs_cuda_stream_from_pool)
    }

    /// The thread's current stream on `device` (the default stream unless set).
    pub fn current(device: usize) -> Result<Self, StreamError> {
        Self::asked(device, bgs_cuda_current_stream)
    }

    /// The stream a shim call that writes a stream id gives for `device`.
    fn asked(
        device: usize,
        call: unsafe extern "C" fn(c_int, *mut i64) -> c_int,
    ) -> Result<Self, StreamError> {
        let device = device as c_int;
        let mut id = 0;
        // SAFETY: `call` is one of the shim's stream getters; `id` is a valid out pointer.
        check(unsafe { call(device, &mut id) })?;
        Ok(Stream { device, id })
    }

    /// Makes this the thread's current stream on its device until the guard drops: the ops
    /// tch queues meanwhile go to it.
    pub fn enter(self) -> Result<StreamGuard, StreamError> {
        let mut previous = 0;
        // SAFETY: `previous` is a valid out pointer.
        check(unsafe { bgs_cuda_set_stream(self.device, self.id, &mut previous) })?;
        Ok(StreamGuard {
            previous: Stream {
                device: self.device,
                id: previous,
            },
        })
    }
}

/// Restores the stream that was current before [`Stream::enter`].
pub struct StreamGuard {
    previous: Stream,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        let mut ignored = 0;
        // SAFETY: `ignored` is a valid out pointer. Setting back a stream that was current a
        // moment ago does not fail; if it did, ops would go on on the upload stream, which
        // is still correct, only not overlapped.
        if check(unsafe {
            bgs_cuda_set_stream(self.previous.device, self.previous.id, &mut ignored)
        })
        .is_err()
        {
            tracing::warn!("could not restore the CUDA stream; uploads and forwards now share one");
        }
    }
}

/// A CUDA event: a point in a stream's queue that other streams, or the host, can wait on.
pub struct Event(*mut c_void);

// SAFETY: a c10::Event is a CUDA event handle plus flags; CUDA allows recording, waiting on
// and destroying it from any thread, and `Event` is never shared between threads at once
// (`&mut` is not needed only because the shim's calls are thread-safe).
unsafe impl Send for Event {}

impl Event {
    pub fn new() -> Result<Self, StreamError> {
        let mut ev = std::ptr::null_mut();
        // SAFETY: `ev` is a valid out pointer; on success it owns a new c10::Event.
        check(unsafe { bgs_event_new(&mut ev) })?;
        Ok(Event(ev))
    }

    /// Marks the current end of `stream`'s queue.
    pub fn record(&self, stream: Stream) -> Result<(), StreamError> {
        // SAFETY: `self.0` is a live c10::Event this struct owns.
        check(unsafe { bgs_event_record(self.0, stream.device, stream.id) })
    }

    /// Work queued on `stream` from now on waits for this event (the host does not).
    pub fn block(&self, stream: Stream) -> Result<(), StreamError> {
        // SAFETY: as in `record`.
        check(unsafe { bgs_event_block(self.0, stream.device, stream.id) })
    }

    /// The host waits until the event completes.
    pub fn synchronize(&self) -> Result<(), StreamError> {
        // SAFETY: as in `record`.
        check(unsafe { bgs_event_synchronize(self.0) })
    }
}

impl Drop for Event {
    fn drop(&mut self) {
        // SAFETY: `self.0` came from `bgs_event_new` and is freed once, here. CUDA allows
        // destroying an event whose work is still queued.
        unsafe { bgs_event_free(self.0) }
    }
}

/// The two streams of one device's batcher: uploads on their own stream, forwards and
/// readbacks on the thread's stream from before (the default one).
#[derive(Debug, Clone, Copy)]
pub struct DeviceStreams {
    pub upload: Stream,
    pub compute: Stream,
}

impl DeviceStreams {
    pub fn open(device: usize) -> Result<Self, StreamError> {
        Ok(DeviceStreams {
            upload: Stream::from_pool(device)?,
            compute: Stream::current(device)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On a machine without a GPU the shim is linked and answers with libtorch's own error,
    /// not a crash: the batcher then falls back to the default stream.
    #[test]
    fn without_a_gpu_the_shim_reports_and_nothing_crashes() {
        if tch::Cuda::is_available() {
            eprintln!("SKIP: a GPU is present; this checks the path without one");
            return;
        }
        assert_eq!(cuda_devices().unwrap_or(0), 0);
        let err = DeviceStreams::open(0).unwrap_err();
        eprintln!("without a GPU: {err}");
        assert!(!err.0.is_empty(), "{err}");
        // An event is created lazily by c10 (no CUDA call yet); waiting on one never
        // recorded returns at once.
        if let Ok(ev) = Event::new() {
            assert!(ev.synchronize().is_ok());
        }
    }
}

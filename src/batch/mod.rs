//! The batcher and the inference loop: one thread owns the models and the device.
//!
//! Variant images are packed into fixed-size uint8 NHWC batches, one buffer pair per
//! preprocessing group. On CUDA the buffers (pixels and labels) are pinned host memory and
//! every copy is asynchronous: uploads go on their own stream, with an event the forwards
//! wait on, and each batch's results are copied back into pinned memory behind its
//! forwards, with an event the host waits on. So per batch N the device has forward N
//! queued while the host waits for N−1's results, builds its rows and fills N+1.
//!
//! The order of every step, and the rule that a buffer is refilled only once the batch that
//! used it was waited for, live in [`schedule`] (a pure state machine, tested on its own);
//! [`Inference`] carries its ops out. Without the stream shim (a CUDA build that refuses
//! it) the batcher falls back to [`Order::WaitFirst`]: one stream, N−1 read back before
//! forward N is queued.

pub mod schedule;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use tch::{Device, Kind, Tensor};

use crate::error::FatalError;
use crate::infer::model::{Collected, Model, PendingOutput, Prediction};
use crate::infer::streams::{DeviceStreams, Event, StreamError};
use crate::item::{ItemMeta, Prepared, Row, RowError, SinkMsg};
use crate::progress::Counters;
use schedule::{Op, Order, Schedule};

/// Threads that copy a batch's frames into its buffer: one memcpy thread cannot keep up
/// with a small model on a fast GPU (~6 GB/s of 224 px frames at 40k images/s).
const COPY_THREADS: usize = 4;
/// Below this many frames a batch is copied by the calling thread alone.
const PARALLEL_COPY_MIN: usize = 32;

/// One image of a batch: where its pixels are until the buffer is filled.
struct Frame {
    pixels: Arc<Vec<u8>>,
    offset: usize,
}

/// A host batch buffer: `[capacity, size, size, 3]` uint8 and `[capacity]` int64 labels,
/// both pinned on CUDA.
struct HostBuffer {
    pixels: Tensor,
    labels: Tensor,
    frame: usize,
    capacity: usize,
    /// (item, variant slot) per batch row.
    slots: Vec<(Arc<ItemMeta>, usize)>,
    /// Frames not yet copied into `pixels`, one per slot.
    frames: Vec<Frame>,
}

impl HostBuffer {
    fn new(capacity: usize, size: usize, device: Device) -> Self {
        let s = size as i64;
        let cap = capacity as i64;
        let pin = |t: Tensor| {
            if !device.is_cuda() {
                return t;
            }
            // `_pin_memory` first: `pin_memory(device)` warns that its argument is
            // deprecated. Unpinned memory still works (the copies are then synchronous).
            match t.f_internal_pin_memory(device) {
                Ok(pinned) => pinned,
                Err(e) => t.f_pin_memory(device).unwrap_or_else(|_| {
                    tracing::warn!("host batch buffers not pinned ({e}): uploads will block");
                    t
                }),
            }
        };
        HostBuffer {
            pixels: pin(Tensor::zeros([cap, s, s, 3], (Kind::Uint8, Device::Cpu))),
            labels: pin(Tensor::zeros([cap], (Kind::Int64, Device::Cpu))),
            frame: size * size * 3,
            capacity,
            slots: Vec::with_capacity(capacity),
            frames: Vec::with_capacity(capacity),
        }
    }

    fn is_full(&self) -> bool {
        self.slots.len() == self.capacity
    }

    fn push(&mut self, meta: &Arc<ItemMeta>, variant: usize, pixels: &Arc<Vec<u8>>) {
        debug_assert!(!self.is_full());
        self.slots.push((meta.clone(), variant));
        self.frames.push(Frame {
            pixels: pixels.clone(),
            offset: variant * self.frame,
        });
    }

    /// Copies the pending frames and labels into the buffer. Rows past `slots.len()` keep
    /// stale pixels and labels, whose outputs are ignored.
    fn fill(&mut self) {
        let (frame, n) = (self.frame, self.frames.len());
        // SAFETY: both tensors are contiguous CPU buffers of `capacity` rows that this
        // struct owns, and no upload from them is in flight (module docs, invariant).
        let (pixels, labels) = unsafe {
            (
                std::slice::from_raw_parts_mut(self.pixels.data_ptr() as *mut u8, n * frame),
                std::slice::from_raw_parts_mut(self.labels.data_ptr() as *mut i64, n),
            )
        };
        for (l, (meta, _)) in labels.iter_mut().zip(&self.slots) {
            *l = meta.label.unwrap_or(0);
        }
        let copy = |dst: &mut [u8], src: &[Frame]| {
            for (d, f) in dst.chunks_exact_mut(frame).zip(src) {
                d.copy_from_slice(&f.pixels[f.offset..f.offset + frame]);
            }
        };
        if n < PARALLEL_COPY_MIN {
            copy(pixels, &self.frames);
        } else {
            let per = n.div_ceil(COPY_THREADS);
            std::thread::scope(|s| {
                for (dst, src) in pixels.chunks_mut(per * frame).zip(self.frames.chunks(per)) {
                    s.spawn(move || copy(dst, src));
                }
            });
        }
        self.frames.clear();
    }
}

/// Writes each filled row of `buf` as raw RGB (see [`Inference::dump_inputs`]).
fn dump_frames(dir: &std::path::Path, buf: &HostBuffer) -> Result<(), FatalError> {
    let size = ((buf.frame / 3) as f64).sqrt().round() as usize;
    let n = buf.slots.len();
    // SAFETY: `fill` just wrote these `n` rows of the contiguous CPU tensor `buf` owns.
    let pixels =
        unsafe { std::slice::from_raw_parts(buf.pixels.data_ptr() as *const u8, n * buf.frame) };
    for ((meta, slot), frame) in buf.slots.iter().zip(pixels.chunks_exact(buf.frame)) {
        let d = dir.join(crate::item::file_stem(&meta.key));
        std::fs::create_dir_all(&d).map_err(|e| FatalError::output(&d, e))?;
        let path = d.join(format!("{slot:02}-{size}px.rgb"));
        std::fs::write(&path, frame).map_err(|e| FatalError::output(&path, e))?;
    }
    Ok(())
}

/// Writes the filled rows of a batch's `logits` to `dir/TAG.f32` (little-endian f32, rows x
/// classes) and `dir/TAG.json` (each row's key, slot, and frame file as `--dump-inputs`
/// names it).
fn dump_logits(
    dir: &std::path::Path,
    tag: &str,
    logits: &Tensor,
    slots: &[(Arc<ItemMeta>, usize)],
    size: usize,
) -> Result<(), FatalError> {
    std::fs::create_dir_all(dir).map_err(|e| FatalError::output(dir, e))?;
    let rows = logits
        .narrow(0, 0, slots.len() as i64)
        .to_device(Device::Cpu);
    let values = Vec::<f32>::try_from(rows.flatten(0, -1)).map_err(|e| FatalError::Inference {
        model: dir.display().to_string(),
        source: e.into(),
    })?;
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    let index = serde_json::json!({
        "rows": slots.len(),
        "classes": logits.size().get(1).copied().unwrap_or(0),
        "keys": slots.iter().map(|(m, _)| m.key.as_str()).collect::<Vec<_>>(),
        "slots": slots.iter().map(|(_, s)| s).collect::<Vec<_>>(),
        "frames": (slots.iter())
            .map(|(m, s)| format!("{}/{s:02}-{size}px.rgb", crate::item::file_stem(&m.key)))
            .collect::<Vec<_>>(),
    });
    for (path, data) in [
        (dir.join(format!("{tag}.f32")), bytes),
        (
            dir.join(format!("{tag}.json")),
            index.to_string().into_bytes(),
        ),
    ] {
        std::fs::write(&path, data).map_err(|e| FatalError::output(&path, e))?;
    }
    Ok(())
}

/// A batch on its way through the device.
struct InFlight {
    batch: u64,
    group: usize,
    slots: Vec<(Arc<ItemMeta>, usize)>,
    /// The device copies of its pixels and labels, kept until the batch is waited for: the
    /// caching allocator must not hand their memory to the next upload (on another stream)
    /// while the forwards may still read it.
    inputs: Option<(Tensor, Tensor)>,
    outputs: Vec<PendingOutput>,
    /// Recorded after the readback copies (CUDA with streams).
    done: Option<Event>,
}

/// Models sharing one preprocessing, with their two host buffers.
pub struct Group {
    pub models: Vec<Model>,
    buffers: [HostBuffer; 2],
    current: usize,
}

impl Group {
    pub fn new(models: Vec<Model>, batch_size: usize, device: Device) -> Self {
        let size = models[0].sidecar.input_size;
        Group {
            models,
            buffers: [0, 1].map(|_| HostBuffer::new(batch_size, size, device)),
            current: 0,
        }
    }
}

/// The inference stage state.
pub struct Inference {
    pub groups: Vec<Group>,
    /// Variant name per output slot (`worst_bg:K` repeats K times).
    variants: Vec<Arc<str>>,
    model_names: Vec<Vec<Arc<str>>>,
    device: Device,
    schedule: Schedule,
    /// Upload and compute streams (CUDA, when the shim could open them).
    streams: Option<DeviceStreams>,
    /// The batch being launched, then those launched and not yet waited for.
    launching: Option<InFlight>,
    in_flight: Vec<InFlight>,
    /// A batch waited for, its rows not yet emitted.
    ready: Option<ReadBack>,
    counters: Arc<Counters>,
    /// `--dump-inputs`: every batched frame is also written here.
    dump: Option<std::path::PathBuf>,
    /// `--dump-logits`: every batch's logits are also written here.
    dump_logits: Option<std::path::PathBuf>,
    /// Batches read back so far (names the logit files).
    read_backs: usize,
}

impl Inference {
    pub fn new(
        groups: Vec<Group>,
        variants: Vec<Arc<str>>,
        device: Device,
        counters: Arc<Counters>,
    ) -> Self {
        let model_names = groups
            .iter()
            .map(|g| {
                g.models
                    .iter()
                    .map(|m| Arc::<str>::from(m.name()))
                    .collect()
            })
            .collect();
        let streams = match device {
            Device::Cuda(i) => DeviceStreams::open(i)
                .inspect_err(|e| {
                    tracing::warn!("{e}: uploads share the default stream, and each batch is read back before the next forward is queued")
                })
                .ok(),
            _ => None,
        };
        let order = if device.is_cuda() && streams.is_none() {
            Order::WaitFirst
        } else {
            Order::Overlapped
        };
        Inference {
            groups,
            variants,
            model_names,
            device,
            schedule: Schedule::new(order),
            streams,
            launching: None,
            in_flight: Vec::new(),
            ready: None,
            counters,
            dump: None,
            dump_logits: None,
            read_backs: 0,
        }
    }

    /// Reads every batch back before the next is filled (no overlap): for tests that
    /// compare the two orders.
    pub fn without_overlap(mut self) -> Self {
        self.schedule = Schedule::new(Order::Serial);
        self
    }

    /// Writes every frame, as batched, to `dir/KEY/SLOT-SIZEpx.rgb` (`--dump-inputs`).
    pub fn dump_inputs(mut self, dir: Option<std::path::PathBuf>) -> Self {
        self.dump = dir;
        self
    }

    /// Writes every batch's logits under `dir` (`--dump-logits`).
    pub fn dump_logits(mut self, dir: Option<std::path::PathBuf>) -> Self {
        self.dump_logits = dir;
        self
    }

    /// On CUDA, runs every model a few times at the full batch shape (see
    /// [`Model::warm_up`]); on CPU there is nothing to settle that is worth the time.
    pub fn warm_up(&self) -> Result<(), FatalError> {
        if !self.device.is_cuda() {
            return Ok(());
        }
        for g in &self.groups {
            for m in &g.models {
                m.warm_up(g.buffers[0].capacity, 3)?;
            }
        }
        Ok(())
    }

    /// Handles one prepared item; completed rows go to `emit`.
    pub fn push(
        &mut self,
        item: Prepared,
        emit: &mut impl FnMut(SinkMsg) -> bool,
    ) -> Result<(), FatalError> {
        match item {
            Prepared::Filtered(meta) => {
                emit(SinkMsg::Filtered(meta.shard));
                Ok(())
            }
            Prepared::Failed(meta, err) => {
                let meta = Arc::new(meta);
                let e = RowError::from(&err);
                let rows = self.all_rows(&meta, |_| Err(e.clone()));
                emit(SinkMsg::Rows(rows));
                Ok(())
            }
            Prepared::Ready(meta, pixels) => {
                for (gi, group_pixels) in pixels.into_iter().enumerate() {
                    let frame = self.groups[gi].buffers[0].frame;
                    let variants = group_pixels.len() / frame;
                    let group_pixels = Arc::new(group_pixels);
                    for vi in 0..variants {
                        if let Some(e) = meta.slot_error(vi) {
                            // This slot has no image (no donor): its rows are errors.
                            let rows = self.model_names[gi]
                                .iter()
                                .map(|model| Row {
                                    meta: meta.clone(),
                                    slot: vi,
                                    variant: meta.variant_name(&self.variants[vi]),
                                    model: model.clone(),
                                    background: None,
                                    scoring: None,
                                    outcome: Err(e.clone()),
                                })
                                .collect();
                            emit(SinkMsg::Rows(rows));
                            continue;
                        }
                        let g = &mut self.groups[gi];
                        g.buffers[g.current].push(&meta, vi, &group_pixels);
                        if g.buffers[g.current].is_full() {
                            self.launch(gi, emit)?;
                        }
                    }
                }
                Ok(())
            }
        }
    }

    fn all_rows(
        &self,
        meta: &Arc<ItemMeta>,
        outcome: impl Fn(&str) -> Result<Prediction, RowError>,
    ) -> Vec<Row> {
        let mut rows = Vec::new();
        for names in &self.model_names {
            for model in names {
                for (slot, variant) in self.variants.iter().enumerate() {
                    rows.push(Row {
                        meta: meta.clone(),
                        slot,
                        variant: meta.variant_name(variant),
                        model: model.clone(),
                        background: None,
                        scoring: None,
                        outcome: outcome(model),
                    });
                }
            }
        }
        rows
    }

    /// Launches the current buffer of group `gi`: the ops [`Schedule::launch`] gives, in
    /// its order.
    fn launch(
        &mut self,
        gi: usize,
        emit: &mut impl FnMut(SinkMsg) -> bool,
    ) -> Result<(), FatalError> {
        let g = &self.groups[gi];
        if g.buffers[g.current].slots.is_empty() {
            return Ok(());
        }
        for op in self.schedule.launch(g.current) {
            self.run(op, gi, emit)?;
        }
        Ok(())
    }

    /// Carries out one op of the schedule for a batch of group `gi`.
    fn run(
        &mut self,
        op: Op,
        gi: usize,
        emit: &mut impl FnMut(SinkMsg) -> bool,
    ) -> Result<(), FatalError> {
        match op {
            Op::Fill { batch, buffer } => {
                let buf = &mut self.groups[gi].buffers[buffer];
                buf.fill();
                if let Some(dir) = &self.dump {
                    dump_frames(dir, buf)?;
                }
                self.launching = Some(InFlight {
                    batch,
                    group: gi,
                    slots: Vec::new(),
                    inputs: None,
                    outputs: Vec::new(),
                    done: None,
                });
            }
            Op::Upload { buffer, .. } => {
                let inputs = self.upload(gi, buffer)?;
                let g = &mut self.groups[gi];
                let b = self.launching.as_mut().expect("filled");
                b.slots = std::mem::take(&mut g.buffers[buffer].slots);
                b.inputs = Some(inputs);
                g.current ^= 1;
            }
            Op::Forward { .. } => {
                let b = self.launching.as_mut().expect("uploaded");
                let (input, labels) = b.inputs.as_ref().expect("uploaded");
                // Always the full batch shape, even for the last partial batch: kernels
                // chosen by batch size round differently, and a row must not depend on
                // which other images shared its batch.
                b.outputs = (self.groups[gi].models.iter())
                    .map(|m| m.launch_keeping(input, labels, self.dump_logits.is_some()))
                    .collect::<Result<Vec<_>, _>>()?;
            }
            Op::QueueReadback { .. } => {
                let mut b = self.launching.take().expect("computed");
                if let Some(s) = self.streams {
                    for (o, name) in b.outputs.iter_mut().zip(&self.model_names[b.group]) {
                        o.queue_readback(name)?;
                    }
                    let done = Event::new().map_err(stream_error)?;
                    done.record(s.compute).map_err(stream_error)?;
                    b.done = Some(done);
                }
                self.in_flight.push(b);
            }
            Op::Wait { batch } => {
                let i = (self.in_flight.iter().position(|b| b.batch == batch)).expect("launched");
                let b = self.in_flight.remove(i);
                if let Some(done) = &b.done {
                    done.synchronize().map_err(stream_error)?;
                }
                self.ready = Some(self.read_back(b)?);
            }
            Op::Emit { .. } => {
                let done = self.ready.take().expect("waited for");
                self.emit_rows(done, emit);
            }
        }
        Ok(())
    }

    /// The device copies of buffer `buffer` of group `gi` (on CPU, the buffer itself). With
    /// streams, the copies go on the upload stream and the compute stream waits for them.
    fn upload(&self, gi: usize, buffer: usize) -> Result<(Tensor, Tensor), FatalError> {
        let buf = &self.groups[gi].buffers[buffer];
        let device = self.device;
        if !device.is_cuda() {
            return Ok((buf.pixels.shallow_clone(), buf.labels.shallow_clone()));
        }
        let copy = || {
            (
                buf.pixels.to_device_(device, Kind::Uint8, true, false),
                buf.labels.to_device_(device, Kind::Int64, true, false),
            )
        };
        let Some(s) = self.streams else {
            return Ok(copy());
        };
        let guard = s.upload.enter().map_err(stream_error)?;
        let copies = copy();
        let uploaded = Event::new().map_err(stream_error)?;
        uploaded.record(s.upload).map_err(stream_error)?;
        drop(guard);
        uploaded.block(s.compute).map_err(stream_error)?;
        Ok(copies)
    }

    /// Reads a waited-for batch's outputs (one copy per model, or none when its readback
    /// was queued into pinned memory).
    fn read_back(&mut self, mut batch: InFlight) -> Result<ReadBack, FatalError> {
        if let Some(dir) = &self.dump_logits {
            let tag = format!("{:?}-{:06}", self.device, self.read_backs);
            let size = self.groups[batch.group].models[0].sidecar.input_size;
            for (pending, model) in batch.outputs.iter_mut().zip(&self.model_names[batch.group]) {
                if let Some(logits) = pending.logits.take() {
                    dump_logits(&dir.join(&**model), &tag, &logits, &batch.slots, size)?;
                }
            }
        }
        self.read_backs += 1;
        let names = &self.model_names[batch.group];
        let predictions = (batch.outputs.into_iter().zip(names))
            .map(|(pending, model)| pending.collect(model))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ReadBack {
            group: batch.group,
            slots: batch.slots,
            predictions,
        })
    }

    fn emit_rows(&self, done: ReadBack, emit: &mut impl FnMut(SinkMsg) -> bool) {
        let names = &self.model_names[done.group];
        let models = &self.groups[done.group].models;
        let mut rows = Vec::with_capacity(done.slots.len() * names.len());
        for ((got, model), m) in done.predictions.into_iter().zip(names).zip(models) {
            let read = done.slots.iter().take(got.predictions.len()).enumerate();
            for (i, (meta, vi)) in read {
                let (scoring, outcome) = match m.score(&got, i, meta.label, meta.label_space) {
                    Ok((p, s)) => (Some(s), Ok(p)),
                    Err(message) => (
                        None,
                        Err(RowError {
                            code: "label_space",
                            message,
                        }),
                    ),
                };
                rows.push(Row {
                    meta: meta.clone(),
                    slot: *vi,
                    variant: meta.variant_name(&self.variants[*vi]),
                    model: model.clone(),
                    background: meta.background(*vi),
                    scoring,
                    outcome,
                });
            }
        }
        self.counters
            .forwards
            .fetch_add(rows.len() as u64, Ordering::Relaxed);
        {
            let mut b = (self.counters.batches.lock()).unwrap_or_else(|p| p.into_inner());
            *b = (b.0 + 1, b.1 + rows.len() as u64);
        }
        emit(SinkMsg::Rows(rows));
    }

    /// Flushes partial batches and reads back everything in flight.
    pub fn finish(&mut self, emit: &mut impl FnMut(SinkMsg) -> bool) -> Result<(), FatalError> {
        for gi in 0..self.groups.len() {
            self.launch(gi, emit)?;
        }
        for op in self.schedule.finish() {
            self.run(op, 0, emit)?;
        }
        Ok(())
    }
}

fn stream_error(e: StreamError) -> FatalError {
    FatalError::Inference {
        model: "(the batcher's CUDA streams)".into(),
        source: e.into(),
    }
}

/// A batch read back, its rows not yet built.
struct ReadBack {
    group: usize,
    slots: Vec<(Arc<ItemMeta>, usize)>,
    /// One per model of the group.
    predictions: Vec<Collected>,
}

//! The batcher and the inference loop: one thread owns the models and the device.
//!
//! Variant images are packed into fixed-size uint8 NHWC batches, one buffer pair per
//! preprocessing group. On CUDA the buffers (pixels and labels) are pinned host memory and
//! every copy to the device is asynchronous. Per batch N, [`Inference::launch`] does, in
//! this order:
//!
//! 1. fill buffer N from the prepared images (several threads) and queue its upload;
//! 2. read back batch N−1, which waits only for the work queued before: forward N−1 and
//!    upload N;
//! 3. queue the forward passes of N, so that the device computes while
//! 4. the rows of N−1 are built and sent on, and batch N+1 is filled.
//!
//! Invariant (double buffering): a buffer is refilled only after a readback queued after
//! its upload has returned. Buffer N is next filled for batch N+2, after step 2 of batch
//! N+1 (which read back N, queued after upload N), so no copy can still be reading it.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use tch::{Device, Kind, Tensor};

use crate::error::FatalError;
use crate::infer::model::{Collected, Model, PendingOutput, Prediction};
use crate::item::{ItemMeta, Prepared, Row, RowError, SinkMsg};
use crate::progress::Counters;

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
    group: usize,
    slots: Vec<(Arc<ItemMeta>, usize)>,
    outputs: Vec<PendingOutput>,
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
    in_flight: Option<InFlight>,
    /// Read batch N back while N+1 is computed (the default); `false` reads every batch
    /// back right after launching it, the plain order the overlap must not change rows of.
    overlap: bool,
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
        Inference {
            groups,
            variants,
            model_names,
            device,
            in_flight: None,
            overlap: true,
            counters,
            dump: None,
            dump_logits: None,
            read_backs: 0,
        }
    }

    /// Reads every batch back before the next is filled (no overlap): for tests that
    /// compare the two orders.
    pub fn without_overlap(mut self) -> Self {
        self.overlap = false;
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

    /// Launches the current buffer of group `gi` in the order of the module docs.
    fn launch(
        &mut self,
        gi: usize,
        emit: &mut impl FnMut(SinkMsg) -> bool,
    ) -> Result<(), FatalError> {
        let device = self.device;
        let g = &mut self.groups[gi];
        let buf = &mut g.buffers[g.current];
        if buf.slots.is_empty() {
            return Ok(());
        }
        // 1. Fill and upload. Always the full batch shape, even for the last partial
        // batch: kernels chosen by batch size round differently, and a row must not depend
        // on which other images shared its batch (determinism across threads, shard order
        // and --resume).
        buf.fill();
        if let Some(dir) = &self.dump {
            dump_frames(dir, buf)?;
        }
        let (input, labels) = if device.is_cuda() {
            (
                buf.pixels.to_device_(device, Kind::Uint8, true, false),
                buf.labels.to_device_(device, Kind::Int64, true, false),
            )
        } else {
            (buf.pixels.shallow_clone(), buf.labels.shallow_clone())
        };
        let slots = std::mem::take(&mut buf.slots);
        g.current ^= 1;
        // 2. Read back N−1.
        let previous = match self.in_flight.take() {
            Some(batch) => Some(self.read_back(batch)?),
            None => None,
        };
        // 3. Queue the forwards of N.
        let g = &self.groups[gi];
        let outputs = (g.models.iter())
            .map(|m| m.launch_keeping(&input, &labels, self.dump_logits.is_some()))
            .collect::<Result<Vec<_>, _>>()?;
        let batch = InFlight {
            group: gi,
            slots,
            outputs,
        };
        // 4. Rows of N−1 (or, without overlap, of N at once).
        if let Some(done) = previous {
            self.emit_rows(done, emit);
        }
        if self.overlap {
            self.in_flight = Some(batch);
        } else {
            let done = self.read_back(batch)?;
            self.emit_rows(done, emit);
        }
        Ok(())
    }

    /// Waits for a batch's outputs (one copy per model).
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
                let (scoring, outcome) =
                    match got.scored(i, meta.label_space, m.sidecar.num_classes) {
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
        if let Some(batch) = self.in_flight.take() {
            let done = self.read_back(batch)?;
            self.emit_rows(done, emit);
        }
        Ok(())
    }
}

/// A batch read back, its rows not yet built.
struct ReadBack {
    group: usize,
    slots: Vec<(Arc<ItemMeta>, usize)>,
    /// One per model of the group.
    predictions: Vec<Collected>,
}

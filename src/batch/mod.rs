//! The batcher and the inference loop: one thread owns the models and the device.
//!
//! Variant images are packed into fixed-size uint8 NHWC batches, one batch buffer pair per
//! preprocessing group. On CUDA the buffers are pinned host memory and the copy to the
//! device is asynchronous; a launched batch is read back only after the next one has been
//! filled and launched, so filling batch N+1 overlaps the device's work on batch N (double
//! buffering). A buffer is refilled only after the batch that used it was read back, which
//! synchronises the stream, so no copy can still be reading it.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use tch::{Device, Kind, Tensor};

use crate::error::FatalError;
use crate::infer::model::{Model, PendingOutput};
use crate::item::{ItemMeta, Prepared, Row, RowError, SinkMsg};
use crate::progress::Counters;

/// A host batch buffer: `[capacity, size, size, 3]` uint8, pinned on CUDA.
struct HostBuffer {
    tensor: Tensor,
    frame: usize,
    capacity: usize,
    slots: Vec<(Arc<ItemMeta>, usize)>,
}

impl HostBuffer {
    fn new(capacity: usize, size: usize, device: Device) -> Self {
        let s = size as i64;
        let t = Tensor::zeros([capacity as i64, s, s, 3], (Kind::Uint8, Device::Cpu));
        let tensor = if device.is_cuda() {
            t.pin_memory(device)
        } else {
            t
        };
        HostBuffer {
            tensor,
            frame: size * size * 3,
            capacity,
            slots: Vec::with_capacity(capacity),
        }
    }

    fn is_full(&self) -> bool {
        self.slots.len() == self.capacity
    }

    fn push(&mut self, meta: &Arc<ItemMeta>, variant: usize, pixels: &[u8]) {
        debug_assert!(!self.is_full());
        let i = self.slots.len();
        // SAFETY: the tensor is a contiguous CPU uint8 buffer of capacity * frame bytes that
        // this struct owns; no batch launched from it is in flight (see module docs).
        let data = unsafe {
            std::slice::from_raw_parts_mut(
                self.tensor.data_ptr() as *mut u8,
                self.capacity * self.frame,
            )
        };
        data[i * self.frame..(i + 1) * self.frame].copy_from_slice(pixels);
        self.slots.push((meta.clone(), variant));
    }
}

/// A batch on its way through the device.
struct InFlight {
    slots: Vec<(Arc<ItemMeta>, usize)>,
    outputs: Vec<(usize, PendingOutput)>,
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
    group_of_in_flight: usize,
    counters: Arc<Counters>,
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
            group_of_in_flight: 0,
            counters,
        }
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
                for (gi, group_pixels) in pixels.iter().enumerate() {
                    let frame = self.groups[gi].buffers[0].frame;
                    for (vi, px) in group_pixels.chunks_exact(frame).enumerate() {
                        if let Some(e) = meta.slot_error(vi) {
                            // This slot has no image (no donor): its rows are errors.
                            let rows = self.model_names[gi]
                                .iter()
                                .map(|model| Row {
                                    meta: meta.clone(),
                                    slot: vi,
                                    variant: self.variants[vi].clone(),
                                    model: model.clone(),
                                    background: None,
                                    outcome: Err(e.clone()),
                                })
                                .collect();
                            emit(SinkMsg::Rows(rows));
                            continue;
                        }
                        let g = &mut self.groups[gi];
                        g.buffers[g.current].push(&meta, vi, px);
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
        outcome: impl Fn(&str) -> Result<crate::infer::model::Prediction, RowError>,
    ) -> Vec<Row> {
        let mut rows = Vec::new();
        for names in &self.model_names {
            for model in names {
                for (slot, variant) in self.variants.iter().enumerate() {
                    rows.push(Row {
                        meta: meta.clone(),
                        slot,
                        variant: variant.clone(),
                        model: model.clone(),
                        background: None,
                        outcome: outcome(model),
                    });
                }
            }
        }
        rows
    }

    /// Sends the current buffer of group `gi` to the device and runs its models, then reads
    /// back the previously launched batch.
    fn launch(
        &mut self,
        gi: usize,
        emit: &mut impl FnMut(SinkMsg) -> bool,
    ) -> Result<(), FatalError> {
        let device = self.device;
        let g = &mut self.groups[gi];
        let buf = &mut g.buffers[g.current];
        let n = buf.slots.len();
        if n == 0 {
            return Ok(());
        }
        // Always the full batch shape, even for the last partial batch: kernels chosen by
        // batch size round differently, and a row must not depend on which other images
        // shared its batch (determinism across threads, shard order and --resume). The
        // unused slots hold stale pixels whose outputs are ignored.
        let host = buf.tensor.shallow_clone();
        let input = if device.is_cuda() {
            host.to_device_(device, Kind::Uint8, true, false)
        } else {
            host
        };
        let mut labels: Vec<i64> = buf
            .slots
            .iter()
            .map(|(m, _)| m.label.unwrap_or(0))
            .collect();
        labels.resize(buf.capacity, 0);
        let labels = Tensor::from_slice(&labels).to_device(device);
        let mut outputs = Vec::with_capacity(g.models.len());
        for (mi, model) in g.models.iter().enumerate() {
            outputs.push((mi, model.launch(&input, &labels)?));
        }
        let slots = std::mem::take(&mut buf.slots);
        g.current ^= 1;
        let previous = self.in_flight.replace(InFlight { slots, outputs });
        let previous_group = std::mem::replace(&mut self.group_of_in_flight, gi);
        if let Some(batch) = previous {
            self.collect(previous_group, batch, emit)?;
        }
        Ok(())
    }

    fn collect(
        &mut self,
        gi: usize,
        batch: InFlight,
        emit: &mut impl FnMut(SinkMsg) -> bool,
    ) -> Result<(), FatalError> {
        let mut rows = Vec::with_capacity(batch.slots.len() * batch.outputs.len());
        for (mi, pending) in batch.outputs {
            let model = &self.model_names[gi][mi];
            let preds = pending.collect(model)?;
            for ((meta, vi), p) in batch.slots.iter().zip(preds) {
                rows.push(Row {
                    meta: meta.clone(),
                    slot: *vi,
                    variant: self.variants[*vi].clone(),
                    model: model.clone(),
                    background: meta.background(*vi),
                    outcome: Ok(p),
                });
            }
        }
        self.counters
            .forwards
            .fetch_add(rows.len() as u64, Ordering::Relaxed);
        emit(SinkMsg::Rows(rows));
        Ok(())
    }

    /// Flushes partial batches and reads back everything in flight.
    pub fn finish(&mut self, emit: &mut impl FnMut(SinkMsg) -> bool) -> Result<(), FatalError> {
        for gi in 0..self.groups.len() {
            self.launch(gi, emit)?;
        }
        if let Some(batch) = self.in_flight.take() {
            self.collect(self.group_of_in_flight, batch, emit)?;
        }
        Ok(())
    }
}

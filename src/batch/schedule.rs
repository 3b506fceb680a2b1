//! The order of the batcher's work, as a pure state machine: which batch is filled,
//! uploaded, computed, copied back, waited for and emitted, and when. [`Inference`] carries
//! the operations out in exactly this order, so the ordering rules are kept (and tested)
//! here, apart from tensors and devices.
//!
//! Rules, for every batch N (of any model group; one batch in flight):
//! - a group's host buffer is refilled only after the batch that last used it was waited
//!   for: its upload, queued before that batch's forward, is then complete;
//! - upload N -> forward N -> readback N (queued, into pinned memory) -> wait N -> emit N;
//! - batches are emitted in launch order, each once, all of them by [`Schedule::finish`];
//! - with [`Order::Overlapped`], forward N is queued *before* the host waits for N−1, so the
//!   device computes N while N−1's results come back and batch N+1 is filled (this needs an
//!   event per readback: the wait must not include forward N).
//!
//! [`Inference`]: super::Inference

/// One step of the batcher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Copy the pending frames into `buffer` of the batch's group.
    Fill { batch: u64, buffer: usize },
    /// Queue the buffer's copy to the device (on the upload stream, with an event that the
    /// compute stream waits on).
    Upload { batch: u64, buffer: usize },
    /// Queue the batch's forward passes.
    Forward { batch: u64 },
    /// Queue the copy of the batch's results into pinned host memory and an event after it.
    QueueReadback { batch: u64 },
    /// Block the host until the batch's results are in host memory.
    Wait { batch: u64 },
    /// Build and send the batch's rows.
    Emit { batch: u64 },
}

/// How batches overlap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// Forward N before waiting for N−1 (needs per-batch events: CUDA with the stream shim,
    /// or CPU, where every op is done when it returns).
    Overlapped,
    /// Wait for N−1 before forward N: the readback of N−1 shares the default stream, so it
    /// must be waited for before N's forward is queued behind it (no events available).
    WaitFirst,
    /// Every batch waited for and emitted before the next is filled (tests' plain order).
    Serial,
}

/// The state: the next batch number, and the batch in flight (launched, not yet waited).
#[derive(Debug)]
pub struct Schedule {
    order: Order,
    next: u64,
    in_flight: Option<u64>,
}

impl Schedule {
    pub fn new(order: Order) -> Self {
        Schedule {
            order,
            next: 0,
            in_flight: None,
        }
    }

    pub fn order(&self) -> Order {
        self.order
    }

    /// The ops of the next batch, which fills `buffer` of its group, in the order to run them.
    pub fn launch(&mut self, buffer: usize) -> Vec<Op> {
        let batch = self.next;
        self.next += 1;
        let previous = self.in_flight.take();
        let done = |b: u64| [Op::Wait { batch: b }, Op::Emit { batch: b }];
        let mut ops = vec![Op::Fill { batch, buffer }, Op::Upload { batch, buffer }];
        match self.order {
            Order::Overlapped => {
                ops.extend([Op::Forward { batch }, Op::QueueReadback { batch }]);
                ops.extend(previous.into_iter().flat_map(done));
                self.in_flight = Some(batch);
            }
            Order::WaitFirst => {
                ops.extend(previous.into_iter().flat_map(done));
                ops.extend([Op::Forward { batch }, Op::QueueReadback { batch }]);
                self.in_flight = Some(batch);
            }
            Order::Serial => {
                ops.extend([Op::Forward { batch }, Op::QueueReadback { batch }]);
                ops.extend(done(batch));
            }
        }
        ops
    }

    /// The ops that end the run: the batch in flight waited for and emitted.
    pub fn finish(&mut self) -> Vec<Op> {
        (self.in_flight.take().into_iter())
            .flat_map(|b| [Op::Wait { batch: b }, Op::Emit { batch: b }])
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};

    use proptest::prelude::*;

    use super::*;

    /// Runs `launches` (the group of each batch) through a schedule with two buffers per
    /// group, as `Inference` uses them, and checks the ops with [`verify`].
    fn check(order: Order, launches: &[usize]) -> Result<Vec<Op>, String> {
        let mut s = Schedule::new(order);
        let mut current: HashMap<usize, usize> = HashMap::new();
        let mut ops = Vec::new();
        for &g in launches {
            let b = current.entry(g).or_insert(0);
            let buffer = *b;
            *b ^= 1;
            ops.extend(s.launch(buffer));
        }
        ops.extend(s.finish());
        verify(&ops, launches)?;
        Ok(ops)
    }

    /// Every rule of the module docs, on a sequence of ops for batches of groups `groups`.
    fn verify(ops: &[Op], groups: &[usize]) -> Result<(), String> {
        // (group, buffer) -> the batch that last used it; batch -> its steps so far.
        let mut holder: HashMap<(usize, usize), u64> = HashMap::new();
        let mut seen: HashMap<u64, Vec<&'static str>> = HashMap::new();
        let mut waited = HashSet::new();
        let mut emitted = Vec::new();
        for (i, op) in ops.iter().enumerate() {
            let (batch, name, needs) = match *op {
                Op::Fill { batch, buffer } => {
                    let key = (groups[batch as usize], buffer);
                    if let Some(prev) = holder.insert(key, batch) {
                        if !waited.contains(&prev) {
                            return Err(format!(
                                "op {i}: buffer {key:?} refilled for {batch} before {prev} was waited for"
                            ));
                        }
                    }
                    (batch, "fill", None)
                }
                Op::Upload { batch, .. } => (batch, "upload", Some("fill")),
                Op::Forward { batch } => (batch, "forward", Some("upload")),
                Op::QueueReadback { batch } => (batch, "readback", Some("forward")),
                Op::Wait { batch } => {
                    waited.insert(batch);
                    (batch, "wait", Some("readback"))
                }
                Op::Emit { batch } => {
                    emitted.push(batch);
                    (batch, "emit", Some("wait"))
                }
            };
            let steps = seen.entry(batch).or_default();
            if steps.last().copied() != needs {
                return Err(format!("op {i}: {name} of {batch} after {steps:?}"));
            }
            steps.push(name);
        }
        let all: Vec<u64> = (0..groups.len() as u64).collect();
        if emitted != all {
            return Err(format!("emitted {emitted:?}, launched {all:?}"));
        }
        Ok(())
    }

    fn position(ops: &[Op], op: Op) -> usize {
        ops.iter().position(|o| *o == op).expect("present")
    }

    #[test]
    fn overlapped_queues_the_next_forward_before_waiting() {
        let ops = check(Order::Overlapped, &[0, 0, 0]).unwrap();
        for n in 1..3u64 {
            assert!(
                position(&ops, Op::Forward { batch: n })
                    < position(&ops, Op::Wait { batch: n - 1 }),
                "{ops:?}"
            );
        }
        // WaitFirst is the opposite, Serial waits for each batch before the next fill.
        let ops = check(Order::WaitFirst, &[0, 0, 0]).unwrap();
        assert!(position(&ops, Op::Wait { batch: 0 }) < position(&ops, Op::Forward { batch: 1 }));
        let ops = check(Order::Serial, &[0, 0]).unwrap();
        assert!(
            position(&ops, Op::Emit { batch: 0 })
                < position(
                    &ops,
                    Op::Fill {
                        batch: 1,
                        buffer: 1
                    }
                )
        );
    }

    #[test]
    fn the_checker_catches_a_refill_before_its_wait_and_a_lost_batch() {
        // Two batches in flight on two buffers: batch 2 refills batch 0's buffer before 0
        // was waited for. The schedule never does this; the checker must see it.
        let steps = |batch: u64, buffer: usize| {
            [
                Op::Fill { batch, buffer },
                Op::Upload { batch, buffer },
                Op::Forward { batch },
                Op::QueueReadback { batch },
            ]
        };
        let mut bad: Vec<Op> = [steps(0, 0), steps(1, 1), steps(2, 0)].concat();
        for b in 0..3 {
            bad.extend([Op::Wait { batch: b }, Op::Emit { batch: b }]);
        }
        let err = verify(&bad, &[0, 0, 0]).unwrap_err();
        assert!(err.contains("refilled for 2 before 0"), "{err}");
        // A batch never emitted.
        let mut lost = steps(0, 0).to_vec();
        lost.push(Op::Wait { batch: 0 });
        assert!(verify(&lost, &[0]).unwrap_err().contains("emitted []"));
    }

    proptest! {
        #[test]
        fn every_order_keeps_every_rule(
            launches in proptest::collection::vec(0usize..3, 0..40),
            order in prop_oneof![Just(Order::Overlapped), Just(Order::WaitFirst), Just(Order::Serial)],
        ) {
            prop_assert!(check(order, &launches).is_ok(), "{:?}", check(order, &launches));
        }
    }
}

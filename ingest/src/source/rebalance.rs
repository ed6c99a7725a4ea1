//! Consumer-group rebalances. Before partitions are revoked, everything polled
//! is handled and checkpointed, so their next owner starts exactly where this
//! instance's durable archive ends. When partitions are assigned, this instance
//! claims them in the ledger (fencing any previous owner) and reloads what every
//! instance has archived.

use super::consume::SourceState;
use super::{PartitionKey, lock};
use rdkafka::ClientContext;
use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// The consumer's context: runs inside `poll`, on the consumer thread.
pub struct IngestContext {
    pub(super) state: Arc<Mutex<SourceState>>,
    /// A rebalance step that failed, for the consume loop to stop with.
    pub(super) failure: Arc<Mutex<Option<String>>>,
    /// True while the group has given this instance its partitions (false during a rebalance).
    pub(super) assigned: Arc<AtomicBool>,
}

impl ClientContext for IngestContext {}

impl ConsumerContext for IngestContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            tracing::info!(partitions = tpl.count(), "revoking: checkpoint first");
            // Until the next assignment there is nothing to drain against.
            self.assigned.store(false, Ordering::Relaxed);
            let mut state = lock(&self.state);
            // Every message polled so far is archived (or dead-lettered) and covered
            // by this checkpoint, as if the messages had been handled one by one.
            if let Err(e) = state.settle().and_then(|()| state.checkpoint_now(consumer)) {
                tracing::error!(error = %e, "checkpoint before revoke failed");
                *lock(&self.failure) = Some(e.to_string());
            }
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            let parts: Vec<String> = tpl
                .elements()
                .iter()
                .map(|e| format!("{}:{}", e.topic(), e.partition()))
                .collect();
            tracing::info!(partitions = %parts.join(","), "assigned");
            self.assigned.store(true, Ordering::Relaxed);
            let assigned: Vec<PartitionKey> = tpl
                .elements()
                .iter()
                .map(|e| (e.topic().to_string(), e.partition()))
                .collect();
            let mut state = lock(&self.state);
            match state.checkpoint.reload(consumer, &assigned) {
                Ok(ledger) => state.trust.restore(ledger.sequences),
                Err(e) => {
                    tracing::error!(error = %e, "cannot reload the archive ledger after a rebalance");
                    *lock(&self.failure) = Some(e.to_string());
                }
            }
        }
    }
}

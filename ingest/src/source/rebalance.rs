//! Consumer-group rebalances. Before partitions are revoked, everything polled
//! is handled and checkpointed, so their next owner starts exactly where this
//! instance's durable archive ends. When partitions are assigned, this instance
//! claims them in the ledger (fencing any previous owner) and reloads what every
//! instance has archived. The context also turns librdkafka's statistics into
//! the consumer-lag gauge.

use super::consume::SourceState;
use super::{PartitionKey, lock};
use prometheus::IntGaugeVec;
use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance};
use rdkafka::{ClientContext, Statistics};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// The consumer's context: runs inside `poll`, on the consumer thread.
pub struct IngestContext {
    pub(super) state: Arc<Mutex<SourceState>>,
    /// A rebalance step that failed, for the consume loop to stop with.
    pub(super) failure: Arc<Mutex<Option<String>>>,
    /// True while the group has given this instance its partitions (false during a rebalance).
    pub(super) assigned: Arc<AtomicBool>,
    /// `larmor_kafka_consumer_lag_messages`, and the partitions it has a series for.
    pub(super) lag: IntGaugeVec,
    pub(super) lag_series: Mutex<BTreeSet<PartitionKey>>,
}

impl ClientContext for IngestContext {
    /// Every `statistics.interval.ms`: the lag of each partition this instance
    /// reads, as high watermark minus read position (the committed offset before
    /// the first read). A partition no longer assigned loses its series.
    fn stats(&self, statistics: Statistics) {
        let mut now = BTreeSet::new();
        for (topic, t) in &statistics.topics {
            for (&partition, p) in &t.partitions {
                let position = if p.app_offset >= 0 {
                    p.app_offset
                } else {
                    p.committed_offset
                };
                if partition < 0 || !p.desired || p.hi_offset < 0 || position < 0 {
                    continue;
                }
                let label = partition.to_string();
                self.lag
                    .with_label_values(&[topic.as_str(), label.as_str()])
                    .set((p.hi_offset - position).max(0));
                now.insert((topic.clone(), partition));
            }
        }
        let mut series = lock(&self.lag_series);
        for (topic, partition) in series.difference(&now) {
            let label = partition.to_string();
            let _ = self.lag.remove_label_values(&[topic.as_str(), label.as_str()]);
        }
        *series = now;
    }
}

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

//! The alerts' embedded ACID store (SQLite, WAL, fsync on commit), shared by
//! `larmor run` and the `larmor alerts` commands: alert state, silences, the
//! notification log and the delivery outbox (tables in
//! `larmor_datadir::alert_store`). Each thread opens its own connection.

use crate::alert::{Alert, AlertState};
use larmor_datadir::alert_store::{ALERT_STORE_SCHEMA, ALERT_STORE_VERSION};
use rusqlite::{Connection, OptionalExtension, params};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("alert store {path}: {source}")]
    Sql {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error(
        "alert store {path} is version {found}, this larmor uses version {want}: move the file aside (its alerts stay readable with the larmor that wrote it)"
    )]
    Version { path: PathBuf, found: i64, want: i64 },
    #[error("alert store {path}: a stored alert does not parse ({0})", path = .1.display())]
    Corrupt(String, PathBuf),
}

/// A silence: notifications of alerts whose labels match every matcher are not
/// sent between its start and end.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Silence {
    pub id: String,
    pub matchers: BTreeMap<String, String>,
    pub starts_at_ms: i64,
    pub ends_at_ms: i64,
    pub created_by: String,
    pub comment: String,
}

impl Silence {
    pub fn matches(&self, labels: &BTreeMap<&'static str, String>, now_ms: i64) -> bool {
        self.starts_at_ms <= now_ms
            && now_ms < self.ends_at_ms
            && self
                .matchers
                .iter()
                .all(|(k, v)| labels.get(k.as_str()).is_some_and(|l| l == v))
    }
}

/// What a channel was last told about a group.
#[derive(Debug, Clone, PartialEq)]
pub struct NflogEntry {
    pub alert_id: String,
    pub told: String,
    pub sent_at_ms: i64,
}

/// A notice to put in the outbox.
#[derive(Debug, Clone)]
pub struct OutboxRow {
    pub channel: String,
    pub idem_key: String,
    pub event_type: String,
    pub site: String,
    pub envelope: String,
}

/// A notice waiting for delivery.
#[derive(Debug, Clone)]
pub struct PendingDelivery {
    pub seq: i64,
    pub channel: String,
    pub idem_key: String,
    pub event_type: String,
    pub site: String,
    pub envelope: String,
    pub created_ms: i64,
    pub attempts: u32,
}

/// Outbox counts per state, for `larmor alerts list --outbox`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OutboxCounts {
    pub pending: u64,
    pub delivered: u64,
    pub dead: u64,
}

pub struct Store {
    conn: Connection,
    path: PathBuf,
}

impl Store {
    /// Opens (and creates) the store at `path`.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            let _ = std::fs::create_dir_all(dir);
        }
        let sql = |source| StoreError::Sql {
            path: path.to_path_buf(),
            source,
        };
        let conn = Connection::open(path).map_err(sql)?;
        conn.busy_timeout(Duration::from_secs(30)).map_err(sql)?;
        // WAL: readers (the CLI) never block the pipeline's writes; FULL: a commit survives a power cut.
        conn.pragma_update(None, "journal_mode", "WAL").map_err(sql)?;
        conn.pragma_update(None, "synchronous", "FULL").map_err(sql)?;
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(sql)?;
        if version != 0 && version != ALERT_STORE_VERSION {
            return Err(StoreError::Version {
                path: path.to_path_buf(),
                found: version,
                want: ALERT_STORE_VERSION,
            });
        }
        conn.execute_batch(ALERT_STORE_SCHEMA).map_err(sql)?;
        conn.pragma_update(None, "user_version", ALERT_STORE_VERSION)
            .map_err(sql)?;
        Ok(Store {
            conn,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Sql {
            path: self.path.clone(),
            source,
        }
    }

    fn parse(&self, body: &str) -> Result<Alert, StoreError> {
        serde_json::from_str(body).map_err(|e| StoreError::Corrupt(e.to_string(), self.path.clone()))
    }

    // --- alerts ---------------------------------------------------------------

    /// The group's alert that is not resolved, if any.
    pub fn open_alert(&self, group_key: &str) -> Result<Option<Alert>, StoreError> {
        let body: Option<String> = self
            .conn
            .query_row(
                "SELECT body FROM alerts WHERE group_key = ?1 AND state != 'resolved' ORDER BY starts_at_ms DESC LIMIT 1",
                [group_key],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))?;
        body.map(|b| self.parse(&b)).transpose()
    }

    /// Alerts not resolved whose last anomaly is older than `before_ms`.
    pub fn stale_alerts(&self, before_ms: i64) -> Result<Vec<Alert>, StoreError> {
        self.query_alerts(
            "SELECT body FROM alerts WHERE state != 'resolved' AND updated_at_ms < ?1 AND class != 'forecast'",
            params![before_ms],
        )
    }

    fn query_alerts(&self, sql: &str, p: impl rusqlite::Params) -> Result<Vec<Alert>, StoreError> {
        let mut st = self.conn.prepare_cached(sql).map_err(|e| self.err(e))?;
        let bodies: Vec<String> = st
            .query_map(p, |r| r.get(0))
            .and_then(|rows| rows.collect())
            .map_err(|e| self.err(e))?;
        bodies.iter().map(|b| self.parse(b)).collect()
    }

    /// Every alert of a machine that is not resolved.
    pub fn open_alerts_of(&self, machine_id: &str) -> Result<Vec<Alert>, StoreError> {
        self.query_alerts(
            "SELECT body FROM alerts WHERE machine_id = ?1 AND state != 'resolved'",
            params![machine_id],
        )
    }

    pub fn set_acked_by(&self, id: &str, by: &str) -> Result<(), StoreError> {
        self.conn
            .execute("UPDATE alerts SET acked_by = ?2 WHERE id = ?1", params![id, by])
            .map(drop)
            .map_err(|e| self.err(e))
    }

    pub fn put_alert(&self, a: &Alert) -> Result<(), StoreError> {
        put_alert(&self.conn, a).map_err(|e| self.err(e))
    }

    /// An alert by id or unique id prefix.
    pub fn find(&self, id: &str) -> Result<Option<Alert>, StoreError> {
        let found = self.query_alerts(
            "SELECT body FROM alerts WHERE id LIKE ?1 || '%' LIMIT 2",
            params![id.replace(['%', '_'], "")],
        )?;
        Ok(if found.len() == 1 {
            found.into_iter().next()
        } else {
            None
        })
    }

    /// Alerts, newest first; only those in `state` when given.
    pub fn list(&self, state: Option<AlertState>, limit: usize) -> Result<Vec<Alert>, StoreError> {
        match state {
            Some(s) => self.query_alerts(
                "SELECT body FROM alerts WHERE state = ?1 ORDER BY starts_at_ms DESC LIMIT ?2",
                params![s.as_str(), limit as i64],
            ),
            None => self.query_alerts(
                "SELECT body FROM alerts ORDER BY starts_at_ms DESC LIMIT ?1",
                params![limit as i64],
            ),
        }
    }

    /// Alerts that started or ended in `[from_ms, to_ms)`, or are still open.
    pub fn alerts_between(&self, from_ms: i64, to_ms: i64) -> Result<Vec<Alert>, StoreError> {
        self.query_alerts(
            "SELECT body FROM alerts WHERE (starts_at_ms >= ?1 AND starts_at_ms < ?2)
                OR (ends_at_ms >= ?1 AND ends_at_ms < ?2) OR state != 'resolved' ORDER BY starts_at_ms",
            params![from_ms, to_ms],
        )
    }

    // --- silences -------------------------------------------------------------

    pub fn add_silence(&self, s: &Silence) -> Result<(), StoreError> {
        let matchers = serde_json::to_string(&s.matchers).expect("a string map serializes");
        self.conn
            .execute(
                "INSERT INTO silences (id, matchers, starts_at_ms, ends_at_ms, created_by, comment)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT(id) DO UPDATE SET matchers = ?2, starts_at_ms = ?3, ends_at_ms = ?4,
                    created_by = ?5, comment = ?6",
                params![s.id, matchers, s.starts_at_ms, s.ends_at_ms, s.created_by, s.comment],
            )
            .map(drop)
            .map_err(|e| self.err(e))
    }

    /// Silences not yet expired at `now_ms` (active or in the future).
    pub fn silences(&self, now_ms: i64) -> Result<Vec<Silence>, StoreError> {
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT id, matchers, starts_at_ms, ends_at_ms, created_by, comment FROM silences
                 WHERE ends_at_ms > ?1 ORDER BY starts_at_ms",
            )
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map([now_ms], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                ))
            })
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(|e| self.err(e))?;
        Ok(rows
            .into_iter()
            .filter_map(|(id, m, starts_at_ms, ends_at_ms, created_by, comment)| {
                Some(Silence {
                    id,
                    matchers: serde_json::from_str(&m).ok()?,
                    starts_at_ms,
                    ends_at_ms,
                    created_by,
                    comment,
                })
            })
            .collect())
    }

    /// Ends a silence now. False when no silence has that id.
    pub fn expire_silence(&self, id: &str, now_ms: i64) -> Result<bool, StoreError> {
        self.conn
            .execute(
                "UPDATE silences SET ends_at_ms = min(ends_at_ms, ?2) WHERE id = ?1",
                params![id, now_ms],
            )
            .map(|n| n > 0)
            .map_err(|e| self.err(e))
    }

    /// Deletes silences that ended before `before_ms`.
    pub fn prune_silences(&self, before_ms: i64) -> Result<usize, StoreError> {
        self.conn
            .execute("DELETE FROM silences WHERE ends_at_ms < ?1", [before_ms])
            .map_err(|e| self.err(e))
    }

    // --- notification log -----------------------------------------------------

    pub fn nflog(&self, channel: &str, group_key: &str) -> Result<Option<NflogEntry>, StoreError> {
        self.conn
            .query_row(
                "SELECT alert_id, told, sent_at_ms FROM nflog WHERE channel = ?1 AND group_key = ?2",
                params![channel, group_key],
                |r| {
                    Ok(NflogEntry {
                        alert_id: r.get(0)?,
                        told: r.get(1)?,
                        sent_at_ms: r.get(2)?,
                    })
                },
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Deletes log entries older than `before_ms` (Alertmanager's retention).
    pub fn prune_nflog(&self, before_ms: i64) -> Result<usize, StoreError> {
        self.conn
            .execute("DELETE FROM nflog WHERE sent_at_ms < ?1", [before_ms])
            .map_err(|e| self.err(e))
    }

    /// In one transaction: the alert's new state, the notices for the outbox, and
    /// the notification log entries saying they were sent. A crash leaves all or
    /// none: a notice is never logged as sent without being in the outbox.
    pub fn commit_notices(
        &mut self,
        alert: Option<&Alert>,
        notices: &[(OutboxRow, Option<(String, NflogEntry)>)],
        now_ms: i64,
    ) -> Result<Vec<bool>, StoreError> {
        self.commit(alert, notices, None, now_ms)
    }

    /// In one transaction: a digest's notices and its run at `run_ms` (the cron
    /// time), so a crash neither skips nor repeats it.
    pub fn commit_digest(
        &mut self,
        name: &str,
        run_ms: i64,
        notices: &[(OutboxRow, Option<(String, NflogEntry)>)],
        now_ms: i64,
    ) -> Result<Vec<bool>, StoreError> {
        self.commit(None, notices, Some((name, run_ms)), now_ms)
    }

    fn commit(
        &mut self,
        alert: Option<&Alert>,
        notices: &[(OutboxRow, Option<(String, NflogEntry)>)],
        digest_run: Option<(&str, i64)>,
        now_ms: i64,
    ) -> Result<Vec<bool>, StoreError> {
        let path = self.path.clone();
        let err = |source| StoreError::Sql {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(err)?;
        if let Some(a) = alert {
            put_alert(&tx, a).map_err(err)?;
        }
        let mut inserted = Vec::with_capacity(notices.len());
        for (row, log) in notices {
            let n = tx
                .execute(
                    "INSERT INTO outbox (channel, idem_key, event_type, site, envelope, created_ms, next_attempt_ms, state)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, 'pending') ON CONFLICT(channel, idem_key) DO NOTHING",
                    params![row.channel, row.idem_key, row.event_type, row.site, row.envelope, now_ms],
                )
                .map_err(err)?;
            inserted.push(n > 0);
            if let Some((group_key, e)) = log {
                tx.execute(
                    "INSERT INTO nflog (channel, group_key, alert_id, told, sent_at_ms) VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT(channel, group_key) DO UPDATE SET alert_id = ?3, told = ?4, sent_at_ms = ?5",
                    params![row.channel, group_key, e.alert_id, e.told, e.sent_at_ms],
                )
                .map_err(err)?;
            }
        }
        if let Some((name, run_ms)) = digest_run {
            tx.execute(
                "INSERT INTO digests (name, last_run_ms) VALUES (?1, ?2)
                 ON CONFLICT(name) DO UPDATE SET last_run_ms = ?2",
                params![name, run_ms],
            )
            .map_err(err)?;
        }
        tx.commit().map_err(err)?;
        Ok(inserted)
    }

    // --- outbox ---------------------------------------------------------------

    /// Pending notices of `channel` due at `now_ms`, oldest first.
    pub fn due(&self, channel: &str, now_ms: i64, limit: usize) -> Result<Vec<PendingDelivery>, StoreError> {
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT seq, channel, idem_key, event_type, site, envelope, created_ms, attempts FROM outbox
                 WHERE channel = ?1 AND state = 'pending' AND next_attempt_ms <= ?2 ORDER BY seq LIMIT ?3",
            )
            .map_err(|e| self.err(e))?;
        st.query_map(params![channel, now_ms, limit as i64], |r| {
            Ok(PendingDelivery {
                seq: r.get(0)?,
                channel: r.get(1)?,
                idem_key: r.get(2)?,
                event_type: r.get(3)?,
                site: r.get(4)?,
                envelope: r.get(5)?,
                created_ms: r.get(6)?,
                attempts: r.get(7)?,
            })
        })
        .and_then(|rows| rows.collect())
        .map_err(|e| self.err(e))
    }

    /// When the channel's next pending notice is due.
    pub fn next_due(&self, channel: &str) -> Result<Option<i64>, StoreError> {
        self.conn
            .query_row(
                "SELECT min(next_attempt_ms) FROM outbox WHERE channel = ?1 AND state = 'pending'",
                [channel],
                |r| r.get(0),
            )
            .map_err(|e| self.err(e))
    }

    pub fn mark_delivered(&self, seq: i64, now_ms: i64) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE outbox SET state = 'delivered', delivered_ms = ?2, attempts = attempts + 1 WHERE seq = ?1",
                params![seq, now_ms],
            )
            .map(drop)
            .map_err(|e| self.err(e))
    }

    /// Records a failed attempt: retried at `next_attempt_ms`, or dead when `None`.
    /// Sends dead notices (of one channel, or all) again from now, with their
    /// attempts reset; how many.
    pub fn requeue_dead(&self, channel: Option<&str>, now_ms: i64) -> Result<usize, StoreError> {
        self.conn
            .execute(
                "UPDATE outbox SET state = 'pending', attempts = 0, next_attempt_ms = ?2, created_ms = ?2
                 WHERE state = 'dead' AND (?1 IS NULL OR channel = ?1)",
                params![channel, now_ms],
            )
            .map_err(|e| self.err(e))
    }

    pub fn mark_failed(&self, seq: i64, error: &str, next_attempt_ms: Option<i64>) -> Result<(), StoreError> {
        let (state, next) = match next_attempt_ms {
            Some(t) => ("pending", t),
            None => ("dead", i64::MAX),
        };
        self.conn
            .execute(
                "UPDATE outbox SET state = ?2, next_attempt_ms = ?3, attempts = attempts + 1, last_error = ?4 WHERE seq = ?1",
                params![seq, state, next, error],
            )
            .map(drop)
            .map_err(|e| self.err(e))
    }

    /// The channels with notices waiting (pending), so a restart resumes them.
    pub fn channels_with_pending(&self) -> Result<Vec<String>, StoreError> {
        let mut st = self
            .conn
            .prepare_cached("SELECT DISTINCT channel FROM outbox WHERE state = 'pending' ORDER BY channel")
            .map_err(|e| self.err(e))?;
        st.query_map([], |r| r.get(0))
            .and_then(|rows| rows.collect())
            .map_err(|e| self.err(e))
    }

    pub fn outbox_counts(&self, channel: Option<&str>) -> Result<OutboxCounts, StoreError> {
        let mut st = self
            .conn
            .prepare_cached("SELECT state, count(*) FROM outbox WHERE ?1 IS NULL OR channel = ?1 GROUP BY state")
            .map_err(|e| self.err(e))?;
        let rows: Vec<(String, i64)> = st
            .query_map([channel], |r| Ok((r.get(0)?, r.get(1)?)))
            .and_then(|rows| rows.collect())
            .map_err(|e| self.err(e))?;
        let mut c = OutboxCounts::default();
        for (s, n) in rows {
            match s.as_str() {
                "pending" => c.pending = n as u64,
                "delivered" => c.delivered = n as u64,
                "dead" => c.dead = n as u64,
                _ => {}
            }
        }
        Ok(c)
    }

    /// Deletes delivered notices older than `before_ms` (dead ones stay for inspection).
    pub fn prune_delivered(&self, before_ms: i64) -> Result<usize, StoreError> {
        self.conn
            .execute(
                "DELETE FROM outbox WHERE state = 'delivered' AND delivered_ms < ?1",
                [before_ms],
            )
            .map_err(|e| self.err(e))
    }

    // --- digests --------------------------------------------------------------

    pub fn digest_last_run(&self, name: &str) -> Result<Option<i64>, StoreError> {
        self.conn
            .query_row("SELECT last_run_ms FROM digests WHERE name = ?1", [name], |r| r.get(0))
            .optional()
            .map_err(|e| self.err(e))
    }

    pub fn set_digest_last_run(&self, name: &str, at_ms: i64) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT INTO digests (name, last_run_ms) VALUES (?1, ?2)
                 ON CONFLICT(name) DO UPDATE SET last_run_ms = ?2",
                params![name, at_ms],
            )
            .map(drop)
            .map_err(|e| self.err(e))
    }
}

fn put_alert(conn: &Connection, a: &Alert) -> rusqlite::Result<()> {
    let body = serde_json::to_string(a).expect("alerts serialize");
    conn.execute(
        "INSERT INTO alerts (id, group_key, state, site, vendor, machine_id, severity, class, mode,
            starts_at_ms, updated_at_ms, ends_at_ms, body)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)
         ON CONFLICT(id) DO UPDATE SET state = ?3, severity = ?7, mode = ?9, updated_at_ms = ?11,
            ends_at_ms = ?12, body = ?13",
        params![
            a.id,
            a.key(),
            a.state.as_str(),
            a.site,
            a.vendor,
            a.machine_id,
            a.severity.as_str(),
            a.class.as_str(),
            a.mode.map(|m| m.slug()).unwrap_or(""),
            a.starts_at_ms,
            a.updated_at_ms,
            a.ends_at_ms,
            body
        ],
    )
    .map(drop)
}

//! Local outboxes: one directory per party, one JSON line per notice. Admin notices
//! go to `admin/`, a manufacturer's to `manufacturer/<slug>/`; no party's
//! directory ever receives another party's notices.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Who receives a notice.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Party {
    /// The hospital administrators: everything about their site.
    Admin,
    /// A manufacturer's service team: its own machines' health only.
    Manufacturer(String),
}

impl Party {
    /// The delivery channel's name, used in metrics and as the outbox path.
    pub fn channel_name(&self) -> String {
        match self {
            Party::Admin => "admin".into(),
            Party::Manufacturer(m) => format!("manufacturer/{m}"),
        }
    }
}

/// A delivery channel for one party.
pub trait Channel: Send {
    fn party(&self) -> &Party;
    fn deliver(&mut self, notice: &dyn erased::Notice) -> std::io::Result<()>;
}

/// Notices are serialized by the channel; this keeps `Channel` object-safe.
pub mod erased {
    pub trait Notice {
        fn to_json_line(&self) -> String;
    }
    impl<T: serde::Serialize> Notice for T {
        fn to_json_line(&self) -> String {
            serde_json::to_string(self).expect("notices serialize")
        }
    }
}

/// Appends JSON lines to `<root>/<channel>/alerts.jsonl`.
pub struct OutboxChannel {
    party: Party,
    path: PathBuf,
    file: Option<File>,
}

impl OutboxChannel {
    pub fn new(root: &Path, party: Party) -> Self {
        let path = root.join(party.channel_name()).join("alerts.jsonl");
        OutboxChannel {
            party,
            path,
            file: None,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Channel for OutboxChannel {
    fn party(&self) -> &Party {
        &self.party
    }

    fn deliver(&mut self, notice: &dyn erased::Notice) -> std::io::Result<()> {
        if self.file.is_none() {
            if let Some(dir) = self.path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            self.file = Some(OpenOptions::new().create(true).append(true).open(&self.path)?);
        }
        let f = self.file.as_mut().expect("opened above");
        let mut line = notice.to_json_line();
        line.push('\n');
        f.write_all(line.as_bytes())?;
        f.flush()
    }
}

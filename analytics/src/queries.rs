//! The standard fleet queries (`analytics/queries/*.sql`), built into the binary
//! so `larmor query --standard NAME` runs them against any data directory.

/// A named, documented query.
#[derive(Debug, Clone, Copy)]
pub struct StandardQuery {
    pub name: &'static str,
    /// The SQL text, starting with its documentation comment.
    pub sql: &'static str,
}

impl StandardQuery {
    /// The first line of the documentation comment.
    pub fn title(&self) -> &'static str {
        self.sql
            .lines()
            .next()
            .map(|l| l.trim_start_matches("--").trim())
            .unwrap_or("")
    }
}

macro_rules! standard {
    ($($name:literal),* $(,)?) => {
        &[$(StandardQuery { name: $name, sql: include_str!(concat!("../queries/", $name, ".sql")) }),*]
    };
}

/// Every standard query, in the order the documentation lists them.
pub const STANDARD: &[StandardQuery] = standard![
    "daily_stats",
    "most_anomalous_machines",
    "helium_boiloff",
    "monthly_uptime",
    "vendor_model_comparison",
];

/// A standard query by name.
pub fn standard(name: &str) -> Option<&'static StandardQuery> {
    STANDARD.iter().find(|q| q.name == name)
}

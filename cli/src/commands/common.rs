//! Helpers shared by the commands.

use larmor::config::LarmorConfig;
use std::path::PathBuf;
use std::time::Duration;

pub fn load_config(path: &Option<PathBuf>) -> anyhow::Result<LarmorConfig> {
    match path {
        Some(p) => LarmorConfig::load(p),
        None => Ok(LarmorConfig::default()),
    }
}

/// Resolves when Ctrl-C is pressed or `duration` has passed.
pub async fn until_stopped(duration: Option<Duration>) {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    match duration {
        Some(d) => tokio::select! { _ = ctrl_c => {}, _ = tokio::time::sleep(d) => {} },
        None => ctrl_c.await,
    }
}

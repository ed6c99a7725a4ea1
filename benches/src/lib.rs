//! Helpers the bench binaries in `benches/` share: settings from the environment
//! and the process's own CPU time.

/// `name` from the environment, parsed; `default` when unset or not valid (said on stderr).
pub fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(v) => v.parse().unwrap_or_else(|_| {
            eprintln!("{name}={v:?} is not valid; using the default");
            default
        }),
        Err(_) => default,
    }
}

/// CPU time of this process so far (user + system, every thread), from
/// `/proc/self/stat`; 0 where unavailable.
pub fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the command name (which may hold spaces): utime is field 14, stime 15.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return 0.0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // USER_HZ is 100 on every Linux architecture Rust targets.
    (ticks(11) + ticks(12)) / 100.0
}

//! The process's own limits, set once at start: the open-files soft limit raised to the hard
//! one (every caller's connection is a descriptor, and two or three when proxied: a distro's
//! default soft limit of 1,024 would cap runoff near 500 connections), and logged.
//!
//! Must not: fail the start (a limit it cannot raise is logged and left as it is).

use nix::sys::resource::{getrlimit, setrlimit, Resource};

/// Raise the open-files soft limit to the hard limit; what was done, for the log.
pub(super) fn raise_open_files() -> String {
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => {
                format!("open files: soft limit raised from {soft} to {hard} (the hard limit)")
            }
            Err(e) => format!("open files: soft limit {soft}, cannot raise it to {hard}: {e}"),
        },
        Ok((soft, _)) => format!("open files: limit {soft} (soft = hard)"),
        Err(e) => format!("open files: cannot read the limit: {e}"),
    }
}

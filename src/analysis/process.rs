//! Sampling a backend's process tree from `/proc`: CPU seconds and resident memory, so a
//! same-host trial can report CPU per request, the fair efficiency figure.
//!
//! Lives here: resolving the target (a pid, or a pid file re-read on every sample so a restarted
//! backend is followed), finding the root's descendants (Node cluster workers, a Go binary's
//! helpers) by one scan of `/proc`, and folding per-process tick counters into one total that
//! never decreases. Must not: block the proxy, or fail the run when a process is missing.
//! A sample is a few small synchronous reads per process on the host (measured: 1.4 ms with 70
//! processes, so tens of ms on a host running thousands): call [`Sampler::sample`] from a
//! blocking thread or `spawn_blocking`, never on a proxy worker. A missing process or pid file
//! is a [`Reading`] with `alive: false` and a `problem`; the next sample simply tries again.
//!
//! Accounting. For every pid of the tree the sampler remembers the last utime+stime it saw
//! (with the process's start time, so a reused pid is a new process) and adds the positive
//! difference at each sample. A process counts from its first sighting, so `cpu_seconds` starts
//! at 0 and a new root (pid file rewritten) adds to the total kept so far. What this misses, by
//! design: CPU a process used before its first sighting (a child forked between two samples
//! loses what it used before the next one), and the last slice of a child that exits between
//! two samples (the root's own last slice is kept while it is a zombie). Sample at a steady,
//! short interval (about a second) and the losses are small next to a trial's total.

use std::collections::{HashMap, HashSet};
use std::fs::OpenOptions;
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use procfs::process::{all_processes, Process, Stat};
use procfs::ProcError;

use crate::config::ProcessSpec;

/// Processes looked at per scan of `/proc`; past this, descendants may be missed (never hit on
/// a sane host, but the work of one sample stays bounded).
const MAX_SCAN: usize = 100_000;
/// A pid file is a number and a newline; reading stops here whatever the file holds.
const MAX_PID_FILE_BYTES: u64 = 4096;
/// How much of a garbled pid file a problem text quotes.
const SHOWN_CHARS: usize = 40;

/// One sample of a process tree.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Reading {
    /// The root process is running (a zombie counts as exited).
    pub alive: bool,
    /// Why not alive, in clear text naming the pid file or the pid.
    pub problem: Option<String>,
    /// The root and its living descendants, sorted; empty when not alive.
    pub pids: Vec<u32>,
    /// CPU seconds (user + system) the tree used since the sampler first saw it, summed over
    /// every root it followed; never decreases, kept as is while the process is missing.
    pub cpu_seconds: f64,
    /// Resident memory of the tree now, in bytes; 0 when not alive.
    pub resident_memory_bytes: u64,
}

/// Samples one target again and again, keeping the CPU accounting between samples.
#[derive(Debug)]
pub struct Sampler {
    target: ProcessSpec,
    ticks_per_second: u64,
    page_size: u64,
    /// Last reading per pid of the tree (pruned to the tree at each full sample).
    seen: HashMap<u32, Seen>,
    /// Clock ticks accumulated so far, over every process ever followed.
    total_ticks: u64,
    /// For `ProcessSpec::Pid`: the root's start time at its first sighting. A later process given
    /// the same pid is not the target (a pid file, by contrast, is followed wherever it points).
    pinned_start: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Seen {
    /// Start time (ticks after boot): a pid with another start time is another process.
    starttime: u64,
    /// utime + stime at the last sample, in clock ticks.
    ticks: u64,
}

/// What one `/proc/<pid>/stat` said, kept after the file is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Snap {
    pid: u32,
    ppid: u32,
    starttime: u64,
    ticks: u64,
    zombie: bool,
}

impl Snap {
    fn from_stat(stat: &Stat) -> Option<Snap> {
        Some(Snap {
            pid: u32::try_from(stat.pid).ok()?,
            ppid: u32::try_from(stat.ppid).unwrap_or(0),
            starttime: stat.starttime,
            ticks: stat.utime.saturating_add(stat.stime),
            zombie: matches!(stat.state, 'Z' | 'X' | 'x'),
        })
    }
}

impl Sampler {
    pub fn new(target: ProcessSpec) -> Sampler {
        Sampler {
            target,
            ticks_per_second: procfs::ticks_per_second().max(1),
            page_size: procfs::page_size(),
            seen: HashMap::new(),
            total_ticks: 0,
            pinned_start: None,
        }
    }

    /// Take one reading now (reads /proc; cheap; never panics).
    pub fn sample(&mut self) -> Reading {
        match self.read_tree() {
            Ok(tree) => {
                let mut pids: Vec<u32> = tree.iter().filter(|s| !s.zombie).map(|s| s.pid).collect();
                pids.sort_unstable();
                let pages = pids
                    .iter()
                    .fold(0u64, |sum, pid| sum.saturating_add(resident_pages(*pid)));
                Reading {
                    alive: true,
                    problem: None,
                    pids,
                    cpu_seconds: self.cpu_seconds(),
                    resident_memory_bytes: pages.saturating_mul(self.page_size),
                }
            }
            Err(problem) => Reading {
                alive: false,
                problem: Some(problem),
                pids: Vec::new(),
                cpu_seconds: self.cpu_seconds(),
                resident_memory_bytes: 0,
            },
        }
    }

    fn cpu_seconds(&self) -> f64 {
        self.total_ticks as f64 / self.ticks_per_second as f64
    }

    /// The root's tree, accounted; or why there is none.
    fn read_tree(&mut self) -> Result<Vec<Snap>, String> {
        let pid = match &self.target {
            ProcessSpec::Pid(pid) => *pid,
            ProcessSpec::PidFile(path) => read_pid_file(path)?,
        };
        let proc_pid = i32::try_from(pid)
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("{pid} is not a process id"))?;
        let root = match Process::new(proc_pid).and_then(|p| p.stat()) {
            Ok(stat) => {
                Snap::from_stat(&stat).ok_or_else(|| format!("{pid} is not a process id"))?
            }
            Err(e) => return Err(process_problem(pid, self.seen.contains_key(&pid), &e)),
        };
        if let ProcessSpec::Pid(_) = self.target {
            match self.pinned_start {
                Some(start) if start != root.starttime => {
                    return Err(format!(
                        "process {pid} has exited (the pid now belongs to another process)"
                    ));
                }
                Some(_) => {}
                None => self.pinned_start = Some(root.starttime),
            }
        }
        if root.zombie {
            // Exited, not yet reaped: its counters are final, so take its last slice.
            self.account(&[root]);
            return Err(exited(pid, true));
        }
        let tree = match all_processes() {
            Ok(procs) => {
                let others = procs
                    .take(MAX_SCAN)
                    // A process that vanished or can't be read mid-scan is skipped.
                    .filter_map(|p| p.ok()?.stat().ok())
                    .filter_map(|stat| Snap::from_stat(&stat));
                build_tree(root, others)
            }
            // No listing of /proc: the root alone is still worth reporting.
            Err(_) => vec![root],
        };
        self.account(&tree);
        let members: HashSet<u32> = tree.iter().map(|s| s.pid).collect();
        self.seen.retain(|pid, _| members.contains(pid));
        Ok(tree)
    }

    /// Adds each process's positive tick difference since its last sighting (none on the first).
    fn account(&mut self, snaps: &[Snap]) {
        for snap in snaps {
            let ticks = match self.seen.get(&snap.pid) {
                Some(prev) if prev.starttime == snap.starttime => {
                    let delta = snap.ticks.saturating_sub(prev.ticks);
                    self.total_ticks = self.total_ticks.saturating_add(delta);
                    // Keep the high-water mark: a counter that steps back is never counted twice.
                    prev.ticks.max(snap.ticks)
                }
                // First sighting, or the pid now belongs to another process: the base is now.
                _ => snap.ticks,
            };
            self.seen.insert(
                snap.pid,
                Seen {
                    starttime: snap.starttime,
                    ticks,
                },
            );
        }
    }
}

/// Resident pages of one process from `/proc/<pid>/statm` (the kernel's precise sum on recent
/// kernels; `stat`'s rss field is an approximate per-CPU read that can show 0 for a small process);
/// 0 if it vanished since the scan.
fn resident_pages(pid: u32) -> u64 {
    i32::try_from(pid)
        .ok()
        .and_then(|pid| Process::new(pid).and_then(|p| p.statm()).ok())
        .map_or(0, |statm| statm.resident)
}

/// The root followed by every process whose parent chain leads to it (the root's own entry in
/// `others` is ignored: the root's reading is the one taken first). Each parent is expanded once,
/// so a garbled listing can't loop.
fn build_tree(root: Snap, others: impl Iterator<Item = Snap>) -> Vec<Snap> {
    let mut by_parent: HashMap<u32, Vec<Snap>> = HashMap::new();
    for snap in others.filter(|s| s.pid != root.pid) {
        by_parent.entry(snap.ppid).or_default().push(snap);
    }
    let mut tree = vec![root];
    let mut next = 0;
    while let Some(parent) = tree.get(next).map(|s| s.pid) {
        if let Some(children) = by_parent.remove(&parent) {
            tree.extend(children);
        }
        next += 1;
    }
    tree
}

/// Read a pid file: a regular file only, opened without blocking (a FIFO or a device named
/// as a pid file must not stall the sampler).
fn read_pid_file(path: &Path) -> Result<u32, String> {
    let problem = |e: &io::Error| format!("pid file {}: {}", path.display(), io_text(e));
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| problem(&e))?;
    let meta = file.metadata().map_err(|e| problem(&e))?;
    if !meta.is_file() {
        return Err(format!("pid file {} is not a regular file", path.display()));
    }
    let mut bytes = Vec::new();
    file.take(MAX_PID_FILE_BYTES)
        .read_to_end(&mut bytes)
        .map_err(|e| problem(&e))?;
    parse_pid_file(path, &String::from_utf8_lossy(&bytes))
}

/// The pid on the first line of a pid file (surrounding whitespace ignored), or why not.
fn parse_pid_file(path: &Path, contents: &str) -> Result<u32, String> {
    let line = contents.trim_start().lines().next().unwrap_or("").trim();
    if line.is_empty() {
        return Err(format!("pid file {} is empty", path.display()));
    }
    match line.parse::<u32>() {
        Ok(pid) if pid > 0 && i32::try_from(pid).is_ok() => Ok(pid),
        _ => {
            let mut shown: String = line.chars().take(SHOWN_CHARS).collect();
            if line.chars().nth(SHOWN_CHARS).is_some() {
                shown.push('…');
            }
            Err(format!(
                "pid file {} contains `{}`, not a process id",
                path.display(),
                shown.escape_debug()
            ))
        }
    }
}

/// An I/O error as people read it: "No such file or directory", without " (os error 2)".
fn io_text(e: &io::Error) -> String {
    let text = e.to_string();
    match text.rfind(" (os error ") {
        Some(at) if text.ends_with(')') => text.get(..at).unwrap_or(&text).to_string(),
        _ => text,
    }
}

fn exited(pid: u32, was_seen: bool) -> String {
    if was_seen {
        format!("process {pid} has exited")
    } else {
        format!("process {pid} is not running")
    }
}

fn process_problem(pid: u32, was_seen: bool, e: &ProcError) -> String {
    match e {
        ProcError::NotFound(_) => exited(pid, was_seen),
        ProcError::PermissionDenied(_) => {
            format!("process {pid}: permission denied reading /proc/{pid}")
        }
        other => format!("process {pid}: {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(pid: u32, ppid: u32, ticks: u64) -> Snap {
        Snap {
            pid,
            ppid,
            starttime: 1000 + u64::from(pid),
            ticks,
            zombie: false,
        }
    }

    #[test]
    fn pid_file_parsing() {
        let p = Path::new("/run/app.pid");
        assert_eq!(parse_pid_file(p, "1234\n"), Ok(1234));
        assert_eq!(parse_pid_file(p, "  42  "), Ok(42));
        assert_eq!(parse_pid_file(p, "\n77\nextra lines\n"), Ok(77));
        assert_eq!(
            parse_pid_file(p, "abc\n"),
            Err("pid file /run/app.pid contains `abc`, not a process id".to_string())
        );
        assert_eq!(
            parse_pid_file(p, "12 34"),
            Err("pid file /run/app.pid contains `12 34`, not a process id".to_string())
        );
        assert_eq!(
            parse_pid_file(p, "0"),
            Err("pid file /run/app.pid contains `0`, not a process id".to_string())
        );
        assert_eq!(
            parse_pid_file(p, "-5"),
            Err("pid file /run/app.pid contains `-5`, not a process id".to_string())
        );
        assert_eq!(
            parse_pid_file(p, "3000000000"),
            Err("pid file /run/app.pid contains `3000000000`, not a process id".to_string())
        );
        assert_eq!(
            parse_pid_file(p, " \n\t"),
            Err("pid file /run/app.pid is empty".to_string())
        );
        let long = "x".repeat(100);
        let err = parse_pid_file(p, &long).err().unwrap_or_default();
        assert!(
            err.contains(&format!("`{}…`", "x".repeat(SHOWN_CHARS))),
            "{err}"
        );
        let err = parse_pid_file(p, "a\tb").err().unwrap_or_default();
        assert!(err.contains("`a\\tb`"), "{err}");
    }

    #[test]
    fn error_texts() {
        let missing = io::Error::from_raw_os_error(2);
        assert_eq!(io_text(&missing), "No such file or directory");
        let custom = io::Error::other("odd (thing)");
        assert_eq!(io_text(&custom), "odd (thing)");
        assert_eq!(
            read_pid_file(Path::new("/nonexistent/runoff-test.pid")),
            Err("pid file /nonexistent/runoff-test.pid: No such file or directory".to_string())
        );
        assert_eq!(
            read_pid_file(Path::new("/dev/null")),
            Err("pid file /dev/null is not a regular file".to_string())
        );
        assert_eq!(exited(1234, true), "process 1234 has exited");
        assert_eq!(exited(1234, false), "process 1234 is not running");
        assert_eq!(
            process_problem(9, true, &ProcError::NotFound(None)),
            "process 9 has exited"
        );
        assert_eq!(
            process_problem(9, false, &ProcError::PermissionDenied(None)),
            "process 9: permission denied reading /proc/9"
        );
    }

    #[test]
    fn sampling_a_bad_target_is_a_reading_not_a_failure() {
        let mut sampler = Sampler::new(ProcessSpec::Pid(0));
        let reading = sampler.sample();
        assert!(!reading.alive);
        assert_eq!(reading.problem.as_deref(), Some("0 is not a process id"));
        let mut sampler = Sampler::new(ProcessSpec::Pid(u32::MAX));
        assert_eq!(
            sampler.sample().problem,
            Some(format!("{} is not a process id", u32::MAX))
        );
    }

    #[test]
    fn tree_follows_parent_chains_only() {
        let others = vec![
            snap(10, 1, 0),  // the root again: ignored
            snap(11, 10, 0), // child
            snap(12, 11, 0), // grandchild
            snap(13, 12, 0), // great-grandchild
            snap(20, 1, 0),  // unrelated
            snap(21, 20, 0), // unrelated child
            snap(30, 31, 0), // a cycle not reaching the root
            snap(31, 30, 0),
        ];
        let tree = build_tree(snap(10, 1, 5), others.into_iter());
        let mut pids: Vec<u32> = tree.iter().map(|s| s.pid).collect();
        pids.sort_unstable();
        assert_eq!(pids, vec![10, 11, 12, 13]);
        assert_eq!(
            tree.first().map(|s| s.ticks),
            Some(5),
            "root's own reading kept"
        );
    }

    #[test]
    fn accounting_counts_from_first_sighting_and_never_decreases() {
        let mut s = Sampler::new(ProcessSpec::Pid(1));
        s.ticks_per_second = 100;
        s.account(&[snap(10, 1, 500), snap(11, 10, 300)]);
        assert_eq!(s.total_ticks, 0, "first sighting is the base");
        s.account(&[snap(10, 1, 550), snap(11, 10, 320)]);
        assert_eq!(s.total_ticks, 70);
        assert!((s.cpu_seconds() - 0.7).abs() < 1e-9);
        // A counter stepping back adds nothing, and isn't counted again when it recovers.
        s.account(&[snap(10, 1, 540)]);
        assert_eq!(s.total_ticks, 70);
        s.account(&[snap(10, 1, 555)]);
        assert_eq!(s.total_ticks, 75);
        // Pid 11 reused by another process (other start time): new base, no negative delta.
        let mut reused = snap(11, 10, 5);
        reused.starttime += 1;
        s.account(&[reused]);
        assert_eq!(s.total_ticks, 75);
        reused.ticks = 25;
        s.account(&[reused]);
        assert_eq!(s.total_ticks, 95);
        // A new root: counted from its first sighting, added to the total.
        s.account(&[snap(40, 1, 10_000)]);
        assert_eq!(s.total_ticks, 95);
        s.account(&[snap(40, 1, 10_010)]);
        assert_eq!(s.total_ticks, 105);
    }

    #[test]
    fn sampling_this_very_process() {
        let mut me = Sampler::new(ProcessSpec::Pid(std::process::id()));
        let reading = me.sample();
        assert!(reading.alive, "{reading:?}");
        assert!(reading.pids.contains(&std::process::id()));
        assert!(reading.resident_memory_bytes > 0);
        assert_eq!(reading.cpu_seconds, 0.0);
        assert!(me.sample().alive);

        // Same pid, another start time: for a fixed pid, that is another process.
        me.pinned_start = me.pinned_start.map(|start| start + 1);
        let reused = me.sample();
        assert!(!reused.alive);
        assert_eq!(
            reused.problem,
            Some(format!(
                "process {} has exited (the pid now belongs to another process)",
                std::process::id()
            ))
        );
    }
}

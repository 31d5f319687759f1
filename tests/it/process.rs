//! Process sampling on real processes: a tree of busy loops is found with its children, its CPU
//! grows and never decreases, its death is a reading (not a failure), and a pid file that moves
//! to another process keeps the accounting going.

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use runoff::analysis::process::{Reading, Sampler};
use runoff::config::ProcessSpec;

/// A Python busy loop for `BURN_SECONDS` of wall time (bounded whatever the machine).
const BURN: &str = "import os, time\n\
    t = time.time()\n\
    while time.time() - t < float(os.environ['BURN_SECONDS']): pass\n";
const POLL: Duration = Duration::from_millis(100);
const PATIENCE: Duration = Duration::from_secs(15);

/// A spawned process leading its own process group; dropping it kills the whole group.
struct Group(Child);

impl Group {
    /// `sh -c script` with `$BURN` set to the busy loop.
    fn spawn(script: &str, burn_seconds: f64) -> Group {
        let child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .env("BURN", BURN)
            .env("BURN_SECONDS", burn_seconds.to_string())
            .stdin(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("spawn sh");
        Group(child)
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }

    fn kill(&self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.pid())])
            .stderr(Stdio::null())
            .status();
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.kill();
        let _ = self.0.wait();
    }
}

/// Samples every `POLL` until `done` says so; panics past `PATIENCE`. Checks monotonic CPU.
fn sample_until(
    sampler: &mut Sampler,
    last_cpu: &mut f64,
    mut done: impl FnMut(&Reading) -> bool,
) -> Reading {
    let start = Instant::now();
    loop {
        let reading = sampler.sample();
        assert!(
            reading.cpu_seconds >= *last_cpu,
            "cpu went from {last_cpu} down to {}",
            reading.cpu_seconds
        );
        *last_cpu = reading.cpu_seconds;
        if done(&reading) {
            return reading;
        }
        assert!(
            start.elapsed() < PATIENCE,
            "gave up; last reading {reading:?}"
        );
        sleep(POLL);
    }
}

#[test]
fn a_busy_tree_is_sampled_with_its_children_until_it_dies() {
    let tree = Group::spawn(
        // After the loops, `sh` becomes a lone `sleep` (same pid) until killed.
        r#"python3 -c "$BURN" & python3 -c "$BURN" & wait; exec sleep 60"#,
        1.5,
    );
    let pid = tree.pid();
    let mut sampler = Sampler::new(ProcessSpec::Pid(pid));

    let first = sampler.sample();
    assert!(first.alive, "{first:?}");
    assert_eq!(first.problem, None);
    assert!(first.pids.contains(&pid));
    assert_eq!(
        first.cpu_seconds, 0.0,
        "counting starts at the first sighting"
    );
    let mut cpu = 0.0;

    // Both loops running: sh and two python3 children.
    let running = sample_until(&mut sampler, &mut cpu, |r| r.pids.len() >= 3);
    assert!(running.alive);
    assert!(running.pids.contains(&pid));
    assert!(
        running.pids.windows(2).all(|w| w[0] < w[1]),
        "sorted: {:?}",
        running.pids
    );
    assert!(running.resident_memory_bytes > 0);

    // Until both loops end (only the root is left), CPU only grows.
    let ended = sample_until(&mut sampler, &mut cpu, |r| r.pids == [pid]);
    assert!(ended.alive, "{ended:?}");
    assert!(
        ended.cpu_seconds > 0.3,
        "two busy loops of 1.5 s counted only {} s",
        ended.cpu_seconds
    );
    assert!(ended.resident_memory_bytes > 0);

    // Killed: a zombie until reaped, then gone; either way a reading naming the pid.
    tree.kill();
    let dead = sample_until(&mut sampler, &mut cpu, |r| !r.alive);
    assert!(dead.pids.is_empty());
    assert_eq!(dead.resident_memory_bytes, 0);
    assert_eq!(dead.problem, Some(format!("process {pid} has exited")));
    drop(tree); // reaps it
    let gone = sampler.sample();
    assert!(!gone.alive);
    assert_eq!(gone.problem, Some(format!("process {pid} has exited")));
    assert!(gone.cpu_seconds >= cpu, "{} < {cpu}", gone.cpu_seconds);
}

#[test]
fn a_pid_file_that_moves_to_another_process_keeps_the_count_going() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("backend.pid");
    let mut sampler = Sampler::new(ProcessSpec::PidFile(pid_file.clone()));
    let mut cpu = 0.0;

    let missing = sampler.sample();
    assert!(!missing.alive);
    assert_eq!(
        missing.problem,
        Some(format!(
            "pid file {}: No such file or directory",
            pid_file.display()
        ))
    );
    assert_eq!(missing.cpu_seconds, 0.0);

    let first = Group::spawn(r#"exec python3 -c "$BURN""#, 5.0);
    std::fs::write(&pid_file, format!("{}\n", first.pid())).unwrap();
    // (`python3` may be a shim that runs helpers before it execs: wait for the lone process.)
    let a = sample_until(&mut sampler, &mut cpu, |r| {
        r.cpu_seconds > 0.05 && r.pids == [first.pid()]
    });
    assert!(a.alive);

    // The backend "restarts": a new process writes its pid.
    let second = Group::spawn(r#"exec python3 -c "$BURN""#, 5.0);
    std::fs::write(&pid_file, format!("{}\n", second.pid())).unwrap();
    let switched = sampler.sample();
    assert!(switched.alive, "{switched:?}");
    assert!(switched.pids.contains(&second.pid()), "{switched:?}");
    assert!(!switched.pids.contains(&first.pid()), "{switched:?}");
    assert!(switched.cpu_seconds >= cpu);
    cpu = switched.cpu_seconds;
    let base = cpu;
    sample_until(&mut sampler, &mut cpu, |r| {
        r.cpu_seconds > base + 0.05 && r.pids == [second.pid()]
    });
    drop(first);

    // Garbage in the file: a clear problem, the total kept.
    std::fs::write(&pid_file, "abc\n").unwrap();
    let garbled = sampler.sample();
    assert!(!garbled.alive);
    assert_eq!(
        garbled.problem,
        Some(format!(
            "pid file {} contains `abc`, not a process id",
            pid_file.display()
        ))
    );
    assert_eq!(garbled.cpu_seconds, cpu);

    // Fixed again: the same process continues, CPU used during the gap included.
    std::fs::write(&pid_file, second.pid().to_string()).unwrap();
    let base = cpu;
    let back = sample_until(&mut sampler, &mut cpu, |r| r.cpu_seconds > base);
    assert!(back.alive);
    assert!(back.pids.contains(&second.pid()), "{back:?}");
}

#[test]
fn a_pid_that_never_ran_here_is_not_running() {
    let mut done = Command::new("true").spawn().expect("spawn true");
    let pid = done.id();
    done.wait().unwrap();
    let reading = Sampler::new(ProcessSpec::Pid(pid)).sample();
    assert!(!reading.alive);
    assert_eq!(
        reading.problem,
        Some(format!("process {pid} is not running"))
    );
    assert_eq!(reading.cpu_seconds, 0.0);
}

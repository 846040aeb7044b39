//! The environment of a run, recorded in every report: the CPU (model,
//! governor, SMT, cores), the data disk (model, queues, I/O scheduler, write
//! cache), the data directory's filesystem and mount options, and the git
//! commit. Every field says `unknown` rather than failing the run.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::Serialize;

const UNKNOWN: &str = "unknown";

/// Where and on what a run happened.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Machine {
    pub cpu_model: String,
    pub cpus: usize,
    /// `/sys/devices/system/cpu/smt/active`: 1 when SMT siblings are online.
    pub smt_active: String,
    pub governor: String,
    pub kernel: String,
    pub disk: String,
    pub disk_model: String,
    /// Hardware queues of the disk (blk-mq).
    pub disk_queues: usize,
    pub io_scheduler: String,
    pub write_cache: String,
    pub filesystem: String,
    pub mount_point: String,
    pub mount_options: String,
    pub git_commit: String,
}

fn read_trimmed(path: impl AsRef<Path>) -> String {
    fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| UNKNOWN.into())
}

fn cpu_model() -> String {
    fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, model)| model.trim().to_string())
        })
        .unwrap_or_else(|| UNKNOWN.into())
}

fn governor() -> String {
    let path = "/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor";
    match fs::read_to_string(path) {
        Ok(text) => text.trim().to_string(),
        Err(_) => "none (no cpufreq)".into(),
    }
}

/// The scheduler in use: the bracketed word of `none [mq-deadline] kyber`.
pub fn active_scheduler(text: &str) -> String {
    text.split_whitespace()
        .find_map(|w| w.strip_prefix('[')?.strip_suffix(']'))
        .unwrap_or(UNKNOWN)
        .to_string()
}

/// The block device (whole disk) holding `dir`, as its sysfs directory.
pub fn disk_of(dir: &Path) -> Result<PathBuf, String> {
    let dev = fs::metadata(dir)
        .map_err(|e| format!("stat {}: {e}", dir.display()))?
        .dev();
    let link = format!("/sys/dev/block/{}:{}", libc::major(dev), libc::minor(dev));
    let mut device = fs::canonicalize(&link).map_err(|e| format!("{link}: {e}"))?;
    if device.join("partition").exists() {
        device.pop(); // a partition: its disk is the parent
    }
    Ok(device)
}

fn disk_model(device: &Path) -> String {
    let model = read_trimmed(device.join("device/model"));
    if model != UNKNOWN {
        return model;
    }
    let driver = fs::read_link(device.join("device/driver"))
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| UNKNOWN.into());
    format!(
        "driver {driver}, vendor {}",
        read_trimmed(device.join("device/vendor"))
    )
}

/// The mount holding `dir` in /proc/self/mountinfo text: (mount point,
/// filesystem type, mount options + super options), by the longest
/// mount point that is a prefix of `dir`.
pub fn mount_of(mountinfo: &str, dir: &Path) -> Option<(String, String, String)> {
    mountinfo
        .lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let left: Vec<&str> = left.split_whitespace().collect();
            let right: Vec<&str> = right.split_whitespace().collect();
            let (point, options) = (*left.get(4)?, *left.get(5)?);
            let (fs_type, super_options) = (*right.first()?, *right.get(2)?);
            dir.starts_with(point).then(|| {
                (
                    point.to_string(),
                    fs_type.to_string(),
                    format!("{options},{super_options}"),
                )
            })
        })
        .max_by_key(|(point, _, _)| point.len())
}

/// `git rev-parse --short HEAD`, with `-dirty` when the tree has changes.
fn git_commit() -> String {
    let run = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    match (
        run(&["rev-parse", "--short", "HEAD"]),
        run(&["status", "--porcelain"]),
    ) {
        (Some(commit), Some(changes)) if !changes.is_empty() => format!("{commit}-dirty"),
        (Some(commit), _) => commit,
        _ => UNKNOWN.into(),
    }
}

impl Machine {
    /// Reads everything for a run whose data lives in `data_dir`.
    pub fn probe(data_dir: &Path) -> Machine {
        let mut machine = Machine {
            cpu_model: cpu_model(),
            cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
            smt_active: read_trimmed("/sys/devices/system/cpu/smt/active"),
            governor: governor(),
            kernel: read_trimmed("/proc/sys/kernel/osrelease"),
            git_commit: git_commit(),
            ..Machine::default()
        };
        if let Ok(device) = disk_of(data_dir) {
            machine.disk = device
                .file_name()
                .map_or(UNKNOWN.into(), |n| n.to_string_lossy().into_owned());
            machine.disk_model = disk_model(&device);
            machine.disk_queues = fs::read_dir(device.join("mq")).map_or(0, |d| d.count());
            machine.io_scheduler = active_scheduler(&read_trimmed(device.join("queue/scheduler")));
            machine.write_cache = read_trimmed(device.join("queue/write_cache"));
        }
        let dir = fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_path_buf());
        let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        if let Some((point, fs_type, options)) = mount_of(&mountinfo, &dir) {
            machine.mount_point = point;
            machine.filesystem = fs_type;
            machine.mount_options = options;
        }
        machine
    }

    /// The report's lines about the machine.
    pub fn lines(&self) -> Vec<String> {
        vec![
            format!(
                "CPU: {} x {}, SMT active {}, governor {}; kernel {}",
                self.cpus, self.cpu_model, self.smt_active, self.governor, self.kernel
            ),
            format!(
                "disk: {} ({}), {} queue(s), scheduler {}, write cache {}",
                self.disk, self.disk_model, self.disk_queues, self.io_scheduler, self.write_cache
            ),
            format!(
                "data directory: {} on {} ({})",
                self.filesystem, self.mount_point, self.mount_options
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bracketed_scheduler_is_the_active_one() {
        assert_eq!(
            active_scheduler("none [mq-deadline] kyber bfq"),
            "mq-deadline"
        );
        assert_eq!(active_scheduler("[none]"), "none");
        assert_eq!(active_scheduler(""), UNKNOWN);
    }

    #[test]
    fn the_longest_mount_point_above_the_directory_wins() {
        let info = "\
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,errors=remount-ro
30 27 0:30 / /tmp rw,nosuid - tmpfs tmpfs rw,size=100k
31 27 254:1 / /data rw,noatime - xfs /dev/vdb rw,logbsize=256k
";
        let (point, fs_type, options) = mount_of(info, Path::new("/data/bench")).unwrap();
        assert_eq!((point.as_str(), fs_type.as_str()), ("/data", "xfs"));
        assert_eq!(options, "rw,noatime,rw,logbsize=256k");
        assert_eq!(mount_of(info, Path::new("/home/x")).unwrap().1, "ext4");
        assert_eq!(mount_of(info, Path::new("/tmpfoo")).unwrap().1, "ext4");
    }
}

//! Which CPUs exist, how they group into NUMA nodes and physical cores.
//!
//! Shards are pinned one per CPU, so the engine must know the machine before
//! it starts any executor: an offline CPU, a missing NUMA node or more shards
//! than CPUs must be refused with a clear message, not discovered as a failed
//! `sched_setaffinity` inside a shard thread. Linux publishes all of it in
//! sysfs as "cpu lists" (`0-3,8,10-11`); parsing them takes a few lines, so
//! there is no crate for it. The parsers are pure and unit-tested; the readers
//! around them are thin, and [`Topology`] can be built by hand in tests.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::Path;

/// Where the kernel publishes the topology.
const SYSFS: &str = "/sys";
const CPU_DIR: &str = "devices/system/cpu";
const NODE_DIR: &str = "devices/system/node";

/// Parses the kernel's cpu-list syntax (`"0-3,8,10-11"`, possibly empty) into
/// a sorted list without duplicates.
pub(crate) fn parse_cpu_list(text: &str) -> Result<Vec<usize>, String> {
    let mut cpus = Vec::new();
    for part in text.trim().split(',').filter(|p| !p.trim().is_empty()) {
        let part = part.trim();
        let number = |s: &str| {
            s.trim()
                .parse::<usize>()
                .map_err(|_| format!("bad cpu list {text:?}: {s:?} is not a number"))
        };
        match part.split_once('-') {
            None => cpus.push(number(part)?),
            Some((first, last)) => {
                let (first, last) = (number(first)?, number(last)?);
                if first > last {
                    return Err(format!("bad cpu list {text:?}: range {part} is reversed"));
                }
                cpus.extend(first..=last);
            }
        }
    }
    cpus.sort_unstable();
    cpus.dedup();
    Ok(cpus)
}

/// Formats CPUs in cpu-list syntax (`[0, 1, 2, 3, 8]` → `"0-3,8"`), for
/// messages. An empty list is `"none"`.
pub(crate) fn format_cpu_list(cpus: &[usize]) -> String {
    let mut sorted = cpus.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < sorted.len() {
        let mut j = i;
        while j + 1 < sorted.len() && sorted[j + 1] == sorted[j] + 1 {
            j += 1;
        }
        parts.push(if i == j {
            sorted[i].to_string()
        } else {
            format!("{}-{}", sorted[i], sorted[j])
        });
        i = j + 1;
    }
    if parts.is_empty() {
        "none".to_string()
    } else {
        parts.join(",")
    }
}

/// Orders `cpus` so that consecutive entries land on different physical cores
/// as long as possible: the first hardware thread of every core (cores in
/// ascending order), then the second thread of every core, and so on. Taking
/// a prefix of the result spreads shards over cores before doubling up on
/// SMT siblings, whatever numbering scheme the machine uses (`0,4` or `0,1`).
/// `core_of` maps a CPU to an identifier of its physical core.
pub(crate) fn spread_over_cores(cpus: &[usize], core_of: impl Fn(usize) -> usize) -> Vec<usize> {
    let mut by_core: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for &cpu in cpus {
        by_core.entry(core_of(cpu)).or_default().push(cpu);
    }
    let threads_max = by_core.values().map(Vec::len).max().unwrap_or(0);
    (0..threads_max)
        .flat_map(|thread| {
            by_core
                .values()
                .filter_map(move |threads| threads.get(thread).copied())
        })
        .collect()
}

/// Keeps the first CPU (in the given order) of each physical core and drops
/// its SMT siblings.
pub(crate) fn first_per_core(cpus: &[usize], core_of: impl Fn(usize) -> usize) -> Vec<usize> {
    let mut seen = Vec::new();
    cpus.iter()
        .copied()
        .filter(|&cpu| {
            let core = core_of(cpu);
            let new = !seen.contains(&core);
            seen.push(core);
            new
        })
        .collect()
}

/// What the engine needs to know about the machine to place shards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Topology {
    /// Online CPUs, sorted.
    pub online: Vec<usize>,
    /// CPUs this process may run on (its affinity mask: `taskset`, cgroup
    /// cpuset), sorted; `None` if it could not be read.
    pub allowed: Option<Vec<usize>>,
    /// NUMA node → its CPUs. Empty on kernels without NUMA information.
    pub nodes: BTreeMap<usize, Vec<usize>>,
    /// CPU → its physical core, named by the lowest CPU among its SMT
    /// siblings. A CPU missing here is a core of its own.
    pub core_of: BTreeMap<usize, usize>,
}

impl Topology {
    /// Reads the topology of this machine from sysfs, with this process's
    /// affinity mask.
    pub fn read() -> Result<Topology, String> {
        let topology = Topology {
            allowed: allowed_cpus(),
            ..Topology::read_from(Path::new(SYSFS))?
        };
        topology.log_fallbacks();
        Ok(topology)
    }

    /// Reads the topology from a sysfs tree rooted at `sysfs` (`/sys`, or a
    /// recorded copy of another machine's in tests). No affinity mask.
    pub fn read_from(sysfs: &Path) -> Result<Topology, String> {
        let cpu_dir = sysfs.join(CPU_DIR);
        let node_dir = sysfs.join(NODE_DIR);
        let online_path = cpu_dir.join("online");
        let online = read_cpu_list(&online_path).map_err(|e| {
            format!(
                "cannot read the online CPUs from {}: {e}",
                online_path.display()
            )
        })?;
        let mut nodes = BTreeMap::new();
        // A kernel without NUMA support has no node directory: no nodes.
        if let Ok(node_ids) = read_cpu_list(&node_dir.join("online")) {
            for node in node_ids {
                let path = node_dir.join(format!("node{node}/cpulist"));
                let cpus = read_cpu_list(&path)
                    .map_err(|e| format!("cannot read the CPUs of NUMA node {node}: {e}"))?;
                nodes.insert(node, cpus);
            }
        }
        let mut core_of = BTreeMap::new();
        for &cpu in &online {
            let path = cpu_dir.join(format!("cpu{cpu}/topology/thread_siblings_list"));
            // Without topology information every CPU counts as its own core.
            if let Some(&first) = read_cpu_list(&path).unwrap_or_default().first() {
                core_of.insert(cpu, first);
            }
        }
        Ok(Topology {
            online,
            allowed: None,
            nodes,
            core_of,
        })
    }

    /// Logs what the placement assumes for what sysfs or the kernel did
    /// not say.
    fn log_fallbacks(&self) {
        if self.allowed.is_none() {
            tracing::warn!(
                "cannot read this process's affinity mask: every online CPU counts as allowed"
            );
        }
        if self.nodes.is_empty() {
            tracing::info!("no NUMA nodes in sysfs: `numa_node` placements cannot be used");
        }
        if self.core_of.is_empty() {
            tracing::info!("no SMT topology in sysfs: every CPU counts as a core of its own");
        }
        tracing::debug!(
            online = %format_cpu_list(&self.online),
            allowed = ?self.allowed.as_deref().map(format_cpu_list),
            "CPU topology read"
        );
    }

    /// The physical core of `cpu`.
    pub fn core(&self, cpu: usize) -> usize {
        self.core_of.get(&cpu).copied().unwrap_or(cpu)
    }

    /// Whether this process may be pinned to `cpu`.
    pub fn is_allowed(&self, cpu: usize) -> bool {
        match &self.allowed {
            Some(allowed) => allowed.contains(&cpu),
            None => true,
        }
    }
}

fn read_cpu_list(path: &Path) -> io::Result<Vec<usize>> {
    let text = fs::read_to_string(path)?;
    parse_cpu_list(&text).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// The CPUs in this process's affinity mask (`sched_getaffinity`), or `None`
/// if the mask does not fit a `cpu_set_t` (more than 1024 CPUs).
fn allowed_cpus() -> Option<Vec<usize>> {
    // SAFETY: cpu_set_t is plain data; all-zero is a valid (empty) set, and
    // the kernel writes at most `size_of::<cpu_set_t>()` bytes into it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let rc =
        unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if rc != 0 {
        return None;
    }
    let cpus = (0..libc::CPU_SETSIZE as usize)
        // SAFETY: `cpu` is below CPU_SETSIZE, inside the set.
        .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
        .collect();
    Some(cpus)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn parses_cpu_lists() {
        assert_eq!(
            parse_cpu_list("0-3,8,10-11\n").unwrap(),
            vec![0, 1, 2, 3, 8, 10, 11]
        );
        assert_eq!(parse_cpu_list("0").unwrap(), vec![0]);
        assert_eq!(parse_cpu_list("").unwrap(), Vec::<usize>::new());
        assert_eq!(parse_cpu_list("\n").unwrap(), Vec::<usize>::new());
        assert_eq!(parse_cpu_list("4,0,2-3,3").unwrap(), vec![0, 2, 3, 4]);
        assert_eq!(parse_cpu_list(" 1 - 2 , 5 ").unwrap(), vec![1, 2, 5]);
    }

    #[test]
    fn rejects_bad_cpu_lists() {
        assert!(parse_cpu_list("a").unwrap_err().contains("not a number"));
        assert!(parse_cpu_list("3-1").unwrap_err().contains("reversed"));
        assert!(parse_cpu_list("1-").is_err());
        assert!(parse_cpu_list("-1").is_err());
    }

    #[test]
    fn formats_cpu_lists() {
        assert_eq!(format_cpu_list(&[0, 1, 2, 3, 8, 10, 11]), "0-3,8,10-11");
        assert_eq!(format_cpu_list(&[5]), "5");
        assert_eq!(format_cpu_list(&[3, 1, 2]), "1-3");
        assert_eq!(format_cpu_list(&[]), "none");
        for text in ["0-3,8,10-11", "0", "0,2,4-5"] {
            assert_eq!(format_cpu_list(&parse_cpu_list(text).unwrap()), text);
        }
    }

    /// Siblings `n` and `n + 4`, as on a 4-core, 8-thread Intel machine.
    fn intel(cpu: usize) -> usize {
        cpu % 4
    }

    /// Siblings `2n` and `2n + 1`, as on many AMD machines.
    fn amd(cpu: usize) -> usize {
        cpu / 2
    }

    #[test]
    fn spreads_over_cores_before_siblings() {
        let all: Vec<usize> = (0..8).collect();
        assert_eq!(spread_over_cores(&all, intel), vec![0, 1, 2, 3, 4, 5, 6, 7]);
        assert_eq!(spread_over_cores(&all, amd), vec![0, 2, 4, 6, 1, 3, 5, 7]);
        assert_eq!(spread_over_cores(&[1, 2, 3], amd), vec![1, 2, 3]);
        assert_eq!(spread_over_cores(&[], amd), Vec::<usize>::new());
    }

    #[test]
    fn keeps_one_cpu_per_core() {
        let all: Vec<usize> = (0..8).collect();
        assert_eq!(first_per_core(&all, intel), vec![0, 1, 2, 3]);
        assert_eq!(first_per_core(&all, amd), vec![0, 2, 4, 6]);
        assert_eq!(first_per_core(&[5, 4, 0], intel), vec![5, 4]);
    }

    #[test]
    fn reads_this_machine() {
        let topology = Topology::read().unwrap();
        assert!(!topology.online.is_empty());
        for cpu in &topology.online {
            assert!(
                topology.core(*cpu) <= *cpu,
                "a core is named by its lowest CPU"
            );
        }
        let allowed = topology.allowed.clone().unwrap();
        assert!(allowed.iter().any(|cpu| topology.online.contains(cpu)));
    }

    /// Writes a sysfs tree as Linux lays it out: `cpu/online`, each CPU's
    /// `topology/thread_siblings_list`, `node/online` and each node's
    /// `cpulist`. `siblings[i]` are the hardware threads of core `i`;
    /// `nodes[n]` the cores of node `n`.
    fn record_sysfs(tag: &str, siblings: &[Vec<usize>], nodes: &[Vec<usize>]) -> PathBuf {
        let root =
            std::env::temp_dir().join(format!("shardblob-sysfs-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let write = |path: PathBuf, text: String| {
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, text + "\n").unwrap();
        };
        let cpu_dir = root.join(CPU_DIR);
        let node_dir = root.join(NODE_DIR);
        let all: Vec<usize> = siblings.iter().flatten().copied().collect();
        write(cpu_dir.join("online"), format_cpu_list(&all));
        for threads in siblings {
            for cpu in threads {
                let path = cpu_dir.join(format!("cpu{cpu}/topology/thread_siblings_list"));
                write(path, format_cpu_list(threads));
            }
        }
        let ids: Vec<usize> = (0..nodes.len()).collect();
        write(node_dir.join("online"), format_cpu_list(&ids));
        for (node, cores) in nodes.iter().enumerate() {
            let cpus: Vec<usize> = cores.iter().flat_map(|&c| siblings[c].clone()).collect();
            write(
                node_dir.join(format!("node{node}/cpulist")),
                format_cpu_list(&cpus),
            );
        }
        root
    }

    /// Two sockets of 32 cores with 2 threads each, numbered as on Intel
    /// servers: core `c` of socket `s` is CPU `32 s + c` and its sibling
    /// `64 + 32 s + c`; one NUMA node per socket.
    fn two_socket_smt() -> (PathBuf, Topology) {
        let siblings: Vec<Vec<usize>> = (0..64).map(|core| vec![core, core + 64]).collect();
        let nodes = vec![(0..32).collect(), (32..64).collect()];
        let root = record_sysfs("2s64c", &siblings, &nodes);
        let topology = Topology::read_from(&root).unwrap();
        (root, topology)
    }

    /// Four NUMA nodes of 8 cores without SMT (CPUs 0-31).
    fn four_nodes() -> (PathBuf, Topology) {
        let siblings: Vec<Vec<usize>> = (0..32).map(|core| vec![core]).collect();
        let nodes = (0..4)
            .map(|n| (8 * n..8 * n + 8).collect())
            .collect::<Vec<_>>();
        let root = record_sysfs("4n", &siblings, &nodes);
        let topology = Topology::read_from(&root).unwrap();
        (root, topology)
    }

    fn place(text: &str, topology: &Topology) -> Vec<usize> {
        let config = crate::Config::from_toml_str(text).unwrap();
        config.resolve_on(topology).unwrap().shard_cpus
    }

    #[test]
    fn reads_a_recorded_two_socket_smt_machine() {
        let (root, t) = two_socket_smt();
        assert_eq!(t.online, (0..128).collect::<Vec<_>>());
        assert_eq!(t.nodes[&1].len(), 64);
        assert!(t.nodes[&1].contains(&32) && t.nodes[&1].contains(&127));
        assert_eq!((t.core(100), t.core(36)), (36, 36));
        // All CPUs: every physical core before any sibling.
        let all = place("", &t);
        assert_eq!(all.len(), 128);
        assert_eq!(&all[..64], &(0..64).collect::<Vec<_>>()[..]);
        assert_eq!(place("shards = 3", &t), vec![0, 1, 2]);
        assert_eq!(
            place("physical_cores_only = true", &t),
            (0..64).collect::<Vec<_>>()
        );
        // A CPU list, with and without siblings.
        assert_eq!(
            place("placement = { cpus = [96, 0, 64] }", &t),
            vec![96, 0, 64]
        );
        let cores = "placement = { cpus = [96, 0, 64] }\nphysical_cores_only = true";
        assert_eq!(place(cores, &t), vec![96, 0]);
        // One node: its cores first, then their siblings.
        let node1 = place("placement = { numa_node = 1 }", &t);
        assert_eq!(node1.len(), 64);
        assert_eq!(&node1[..32], &(32..64).collect::<Vec<_>>()[..]);
        let node1_cores = "placement = { numa_node = 1 }\nphysical_cores_only = true";
        assert_eq!(place(node1_cores, &t), (32..64).collect::<Vec<_>>());
        fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn reads_a_recorded_four_node_machine() {
        let (root, t) = four_nodes();
        assert_eq!(t.nodes.len(), 4);
        assert_eq!(t.nodes[&3], (24..32).collect::<Vec<_>>());
        assert_eq!(place("", &t), (0..32).collect::<Vec<_>>());
        assert_eq!(place("physical_cores_only = true", &t).len(), 32);
        assert_eq!(place("placement = { cpus = [31, 8] }", &t), vec![31, 8]);
        assert_eq!(
            place("placement = { numa_node = 2 }\nshards = 4", &t),
            vec![16, 17, 18, 19]
        );
        let config = crate::Config::from_toml_str("placement = { numa_node = 4 }").unwrap();
        let error = config.resolve_on(&t).unwrap_err().to_string();
        assert!(
            error.contains("NUMA node 4 does not exist (nodes: 0-3)"),
            "{error}"
        );
        fs::remove_dir_all(root).unwrap();
    }
}

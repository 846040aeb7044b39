//! Which CPU takes the disk's completion interrupts.
//!
//! A device completion runs its interrupt handler on one CPU, which then
//! wakes the thread waiting for it. When that thread is pinned elsewhere the
//! wake-up is a cross-CPU interrupt: on a VM a trip through the hypervisor,
//! tens of µs per op at depth 1. fio's thread is not pinned, so the scheduler
//! moves it next to the interrupts; the engine's shards are pinned, so the
//! benchmark measures the shard on the interrupts' CPU, as an operator would
//! place a latency-critical shard (or steer the interrupts to it). A disk
//! with a queue per CPU (NVMe) completes each I/O on the CPU that issued it,
//! so there the choice hardly matters and the busiest CPU is as good as any.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

/// The interrupts of the block device holding a directory.
#[derive(Clone, Debug)]
pub struct DiskIrqs {
    pub disk: String,
    pub irqs: Vec<u32>,
}

impl DiskIrqs {
    /// The MSI interrupts of the disk holding `dir`, or why they cannot be told.
    pub fn of(dir: &Path) -> Result<DiskIrqs, String> {
        let device = crate::machine::disk_of(dir)?;
        let disk = device
            .file_name()
            .map_or_else(|| "disk".into(), |n| n.to_string_lossy().into_owned());
        let irqs =
            msi_irqs(&device).ok_or_else(|| format!("{disk}: no MSI interrupts in sysfs"))?;
        Ok(DiskIrqs { disk, irqs })
    }

    /// Interrupts so far per CPU.
    pub fn per_cpu(&self) -> Vec<u64> {
        let text = fs::read_to_string("/proc/interrupts").unwrap_or_default();
        interrupts_per_cpu(&text, &self.irqs)
    }

    /// Interrupts so far, summed over CPUs.
    pub fn total(&self) -> u64 {
        self.per_cpu().iter().sum()
    }
}

/// The CPU that has taken the most interrupts of the block device holding
/// `dir`, with the device's name; or why it cannot be told.
pub fn completion_cpu(dir: &Path) -> Result<(usize, String), String> {
    let disk = DiskIrqs::of(dir)?;
    disk.per_cpu()
        .iter()
        .enumerate()
        .max_by_key(|&(_, count)| *count)
        .filter(|&(_, count)| *count > 0)
        .map(|(cpu, _)| (cpu, disk.disk.clone()))
        .ok_or_else(|| {
            format!(
                "{}: its interrupts {:?} have not fired yet",
                disk.disk, disk.irqs
            )
        })
}

/// The MSI interrupt numbers of the first ancestor of `device` that has any
/// (the PCI function of a virtio or NVMe disk).
fn msi_irqs(device: &Path) -> Option<Vec<u32>> {
    let mut dir: Option<PathBuf> = Some(device.to_path_buf());
    while let Some(path) = dir {
        if let Ok(entries) = fs::read_dir(path.join("msi_irqs")) {
            let irqs: Vec<u32> = entries
                .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect();
            return (!irqs.is_empty()).then_some(irqs);
        }
        dir = path.parent().map(Path::to_path_buf);
    }
    None
}

/// Interrupts per CPU summed over `irqs`, from the text of /proc/interrupts.
fn interrupts_per_cpu(text: &str, irqs: &[u32]) -> Vec<u64> {
    let mut lines = text.lines();
    let cpus = lines
        .next()
        .map_or(0, |header| header.split_whitespace().count());
    let mut totals: BTreeMap<usize, u64> = BTreeMap::new();
    for line in lines {
        let mut fields = line.split_whitespace();
        let Some(irq) = fields
            .next()
            .and_then(|f| f.strip_suffix(':')?.parse::<u32>().ok())
        else {
            continue; // NMI, LOC and other named rows
        };
        if !irqs.contains(&irq) {
            continue;
        }
        for (cpu, field) in fields.take(cpus).enumerate() {
            *totals.entry(cpu).or_default() += field.parse::<u64>().unwrap_or(0);
        }
    }
    (0..cpus)
        .map(|cpu| totals.get(&cpu).copied().unwrap_or(0))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const INTERRUPTS: &str = "           CPU0       CPU1
 35:          0          1  PCI-MSIX-0000:00:02.0   0-edge      virtio1-config
 36:         20   15319989  PCI-MSIX-0000:00:02.0   1-edge      virtio1-req.0
 37:     900000          0  PCI-MSIX-0000:00:03.0   0-edge      virtio2-config
NMI:          0          0   Non-maskable interrupts
";

    #[test]
    fn counts_only_the_devices_interrupts() {
        assert_eq!(
            interrupts_per_cpu(INTERRUPTS, &[35, 36]),
            vec![20, 15319990]
        );
        assert_eq!(interrupts_per_cpu(INTERRUPTS, &[37]), vec![900000, 0]);
        assert_eq!(interrupts_per_cpu(INTERRUPTS, &[99]), vec![0, 0]);
    }

    #[test]
    fn msi_interrupts_come_from_the_nearest_ancestor_that_has_them() {
        let root = std::env::temp_dir().join(format!("irq-test-{}", std::process::id()));
        let disk = root.join("0000:00:02.0/virtio1/block/vda");
        fs::create_dir_all(&disk).unwrap();
        fs::create_dir_all(root.join("0000:00:02.0/msi_irqs/35")).unwrap();
        fs::create_dir_all(root.join("0000:00:02.0/msi_irqs/36")).unwrap();
        let mut irqs = msi_irqs(&disk).unwrap();
        irqs.sort();
        assert_eq!(irqs, vec![35, 36]);
        fs::remove_dir_all(root.join("0000:00:02.0/msi_irqs")).unwrap();
        assert_eq!(msi_irqs(&disk), None);
        fs::remove_dir_all(&root).unwrap();
    }
}

//! [`Limits`], the plain data a container's resource settings arrive as, and [`Write`], the
//! effect of one setting on one cgroup file; the conversions Docker and runc use (`cpus` → quota
//! and period, shares → weight).

use std::fmt;

use super::Error;

/// The default CFS period (100 ms), as Docker uses for `cpus`.
pub const DEFAULT_CPU_PERIOD: u64 = 100_000;

/// A container's resource limits. `None` leaves a setting untouched (the kernel's default on
/// create); for memory, memory+swap, cpu quota and pids a value `<= 0` means unlimited, as in
/// Docker. An empty cpuset string is ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Limits {
    /// Hard memory limit in bytes (`mem_limit`, `--memory`).
    pub memory: Option<i64>,
    /// Soft limit / protection in bytes (`mem_reservation`).
    pub memory_reservation: Option<i64>,
    /// Memory plus swap in bytes (`memswap_limit`); -1 is unlimited swap. Needs `memory`.
    pub memory_swap: Option<i64>,
    /// CFS quota in microseconds per period.
    pub cpu_quota: Option<i64>,
    /// CFS period in microseconds.
    pub cpu_period: Option<u64>,
    /// Relative cpu weight in v1 units (2..=262144, default 1024); converted on v2.
    pub cpu_shares: Option<u64>,
    /// Allowed cpus, e.g. `0-2,4`.
    pub cpuset_cpus: Option<String>,
    /// Allowed memory nodes.
    pub cpuset_mems: Option<String>,
    /// Maximum number of tasks.
    pub pids_limit: Option<i64>,
}

impl Limits {
    /// Sets quota and period from Compose's `cpus` (`1.5` → 150000 per 100000). `0` removes the
    /// quota; a negative or non-finite value is refused.
    pub fn set_cpus(&mut self, cpus: f64) -> Result<(), Error> {
        let (quota, period) = cpus_to_quota(cpus).ok_or_else(|| {
            Error::InvalidLimits(format!("cpus must be a number >= 0, not {cpus}"))
        })?;
        self.cpu_quota = Some(quota);
        self.cpu_period = Some(period);
        Ok(())
    }

    /// Checks the combinations the kernel would refuse or misread.
    pub fn validate(&self) -> Result<(), Error> {
        let memory = self.memory.filter(|m| *m > 0);
        if let Some(swap) = self.memory_swap.filter(|s| *s > 0) {
            match memory {
                None => {
                    return Err(Error::InvalidLimits(
                        "memory_swap needs a memory limit too".into(),
                    ));
                }
                Some(m) if swap < m => {
                    return Err(Error::InvalidLimits(format!(
                        "memory_swap {swap} is smaller than memory {m}"
                    )));
                }
                Some(_) => {}
            }
        }
        if let (Some(m), Some(r)) = (memory, self.memory_reservation.filter(|r| *r > 0))
            && r > m
        {
            return Err(Error::InvalidLimits(format!(
                "memory_reservation {r} is larger than memory {m}"
            )));
        }
        if self.cpu_period == Some(0) {
            return Err(Error::InvalidLimits("cpu_period must be > 0".into()));
        }
        Ok(())
    }
}

/// Compose's `cpus` as (quota, period) in microseconds; `0` is (-1, period): no quota.
pub fn cpus_to_quota(cpus: f64) -> Option<(i64, u64)> {
    if !cpus.is_finite() || cpus < 0.0 {
        return None;
    }
    if cpus == 0.0 {
        return Some((-1, DEFAULT_CPU_PERIOD));
    }
    let quota = (cpus * DEFAULT_CPU_PERIOD as f64).round();
    if quota >= i64::MAX as f64 {
        return None;
    }
    Some(((quota as i64).max(1), DEFAULT_CPU_PERIOD))
}

/// v1 cpu shares → v2 cpu.weight, as runc converts them: `1 + ((shares - 2) * 9999) / 262142`,
/// shares clamped to 2..=262144 (so 2 → 1, 1024 → 39, 262144 → 10000).
pub fn shares_to_weight(shares: u64) -> u64 {
    let shares = shares.clamp(2, 262_144);
    1 + ((shares - 2) * 9999) / 262_142
}

/// One write to a cgroup file: the effect a limit has, as a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    /// The controller owning the file (`memory`, `cpu`, `cpuset`, `pids`).
    pub controller: &'static str,
    /// The file name inside the cgroup directory.
    pub file: &'static str,
    /// What is written.
    pub value: String,
}

impl Write {
    pub(super) fn new(controller: &'static str, file: &'static str, value: impl ToString) -> Write {
        Write {
            controller,
            file,
            value: value.to_string(),
        }
    }
}

impl fmt::Display for Write {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{} = {}", self.controller, self.file, self.value)
    }
}

/// Fixtures shared by the v1 and v2 rendering tests.
#[cfg(test)]
pub(super) mod fixtures {
    use super::*;

    /// Every limit set, with `cpus: 1.5`.
    pub fn full() -> Limits {
        let mut limits = Limits {
            memory: Some(512 << 20),
            memory_reservation: Some(256 << 20),
            memory_swap: Some(1 << 30),
            cpu_shares: Some(512),
            cpuset_cpus: Some("0-1".into()),
            cpuset_mems: Some("0".into()),
            pids_limit: Some(100),
            ..Limits::default()
        };
        if let Err(e) = limits.set_cpus(1.5) {
            panic!("1.5 cpus: {e}");
        }
        limits
    }

    /// Writes as `controller/file = value` lines.
    pub fn lines(writes: &[Write]) -> Vec<String> {
        writes.iter().map(ToString::to_string).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpus_convert_like_docker() {
        assert_eq!(cpus_to_quota(1.5), Some((150_000, 100_000)));
        assert_eq!(cpus_to_quota(0.5), Some((50_000, 100_000)));
        assert_eq!(cpus_to_quota(0.0), Some((-1, 100_000)));
        assert_eq!(cpus_to_quota(-1.0), None);
        assert_eq!(cpus_to_quota(f64::NAN), None);
        let mut l = Limits::default();
        l.set_cpus(2.0).unwrap();
        assert_eq!((l.cpu_quota, l.cpu_period), (Some(200_000), Some(100_000)));
        assert!(l.set_cpus(f64::INFINITY).is_err());
    }

    #[test]
    fn shares_convert_like_runc() {
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(262_144), 10_000);
        assert_eq!(shares_to_weight(0), 1);
        assert_eq!(shares_to_weight(1_000_000), 10_000);
    }

    #[test]
    fn validation_catches_bad_combinations() {
        let swap_only = Limits {
            memory_swap: Some(1 << 30),
            ..Limits::default()
        };
        assert!(swap_only.validate().is_err());
        let swap_small = Limits {
            memory: Some(1 << 30),
            memory_swap: Some(1 << 20),
            ..Limits::default()
        };
        assert!(
            swap_small
                .validate()
                .unwrap_err()
                .to_string()
                .contains("smaller than memory")
        );
        let reservation_big = Limits {
            memory: Some(1 << 20),
            memory_reservation: Some(1 << 30),
            ..Limits::default()
        };
        assert!(reservation_big.validate().is_err());
        let unlimited_swap = Limits {
            memory: Some(1 << 20),
            memory_swap: Some(-1),
            ..Limits::default()
        };
        assert!(unlimited_swap.validate().is_ok());
        let zero_period = Limits {
            cpu_period: Some(0),
            ..Limits::default()
        };
        assert!(zero_period.validate().is_err());
    }
}

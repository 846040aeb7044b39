//! The environment overlay: `SHARDBLOB_<FIELD>` variables over a
//! configuration, so a deployment can change a setting without a file.
//!
//! Rules (README, Configuration):
//! - A variable's name is `SHARDBLOB_` and a field's name in upper case:
//!   `SHARDBLOB_DATA_DIR`, `SHARDBLOB_RING_DEPTH`. A field of a block is
//!   named after the block: `SHARDBLOB_IO_SCHEDULER_DEPTH_MAX`; it is set in
//!   the base's block, whose other fields stay as they are. A block given
//!   whole (`SHARDBLOB_IO_SCHEDULER='{ queue_max = 64 }'`) is merged into
//!   the base's block the same way.
//! - Only variables that name a field are read; every other `SHARDBLOB_`
//!   variable is ignored. The prefix is not the configuration's alone: the
//!   project's tests and tools read knobs such as `SHARDBLOB_SEED`, and an
//!   application started from a shell that exports one must still start.
//!   The price is that a misspelt name (`SHARDBLOB_SHARD`) is ignored, not
//!   refused: check the effective configuration (`{config:?}`) when in
//!   doubt.
//! - Its value is what follows `field = ` in TOML: `4`, `true`,
//!   `{ cpus = [0, 2] }`. Text that is not a TOML value is taken as a
//!   string, so paths and `all` need no quotes; a string that reads as a
//!   number must be quoted (`SHARDBLOB_DATA_DIR='"2024"'`).
//! - A value of the wrong type, or outside the field's bounds, is an error
//!   that names the variable and the value.
//!
//! The overlay goes through the configuration's TOML form, so it parses a
//! value exactly as a file would, and needs no code per field.

use std::ffi::OsStr;

use shardblob_shards::Error;

use super::Config;

/// The prefix of the variables [`Config::overlay_env`] reads.
pub const ENV_PREFIX: &str = "SHARDBLOB_";

/// The fields that are blocks of fields (TOML tables of a struct), so that
/// a variable may set one field of theirs. `placement` is a table too, but
/// one of its shapes, so it is replaced whole.
const BLOCKS: [&str; 1] = ["io_scheduler"];

impl Config {
    /// Overlays this process's `SHARDBLOB_*` environment variables; see
    /// [`Config::overlay`] for the rules.
    pub fn overlay_env(self) -> Result<Config, Error> {
        self.overlay(std::env::vars_os())
    }

    /// Overlays the `SHARDBLOB_<FIELD>` variables among `vars` (name, value
    /// pairs; variables that name no field are skipped, so the whole
    /// environment may be passed). `SHARDBLOB_SHARDS=2` sets `shards = 2`,
    /// `SHARDBLOB_IO_SCHEDULER_QUEUE_MAX=64` sets `queue_max` of
    /// `[io_scheduler]`; a value that is not a TOML value is a string
    /// (`SHARDBLOB_DATA_DIR=/srv/blobs`). A value of the wrong type or out
    /// of the field's bounds is an [`Error::ConfigEnv`] naming the variable
    /// and the value.
    ///
    /// ```
    /// use shardblob::Config;
    ///
    /// let config = Config::default()
    ///     .overlay([("SHARDBLOB_DATA_DIR", "/srv/blobs"), ("SHARDBLOB_SHARDS", "2"), ("HOME", "/root")])?;
    /// assert_eq!((config.data_dir.to_str(), config.shards), (Some("/srv/blobs"), 2));
    /// let error = Config::default().overlay([("SHARDBLOB_RING_DEPTH", "3")]).unwrap_err();
    /// assert!(error.to_string().contains("SHARDBLOB_RING_DEPTH=\"3\""));
    /// let tuned = Config::default().overlay([("SHARDBLOB_IO_SCHEDULER_DEPTH_MAX", "16")])?;
    /// assert_eq!(tuned.io_scheduler.depth_max, 16);
    /// let ignored = Config::default().overlay([("SHARDBLOB_SEED", "4242")])?;
    /// assert_eq!(ignored, Config::default());
    /// # shardblob::Result::Ok(())
    /// ```
    pub fn overlay<K, V>(self, vars: impl IntoIterator<Item = (K, V)>) -> Result<Config, Error>
    where
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        let mut config = self;
        for (name, value) in vars {
            let name = name.as_ref().to_string_lossy();
            if let Some(field) = name.strip_prefix(ENV_PREFIX) {
                config = config.overlay_one(&name, field, value.as_ref())?;
            }
        }
        Ok(config)
    }

    /// Sets the field `name` (the variable's name without its prefix)
    /// names to `value`; a `name` that names no field changes nothing.
    fn overlay_one(self, variable: &str, name: &str, value: &OsStr) -> Result<Config, Error> {
        let env_error = |reason: String| Error::ConfigEnv {
            variable: variable.to_string(),
            value: value.to_string_lossy().into_owned(),
            reason,
        };
        let mut table = match toml::Value::try_from(&self) {
            Ok(toml::Value::Table(table)) => table,
            other => {
                return Err(env_error(format!(
                    "the configuration has no TOML form to overlay ({other:?})"
                )))
            }
        };
        let Some(field) = field_named(&table, &name.to_ascii_lowercase()) else {
            return Ok(self);
        };
        let text = value
            .to_str()
            .ok_or_else(|| env_error("the value is not UTF-8".to_string()))?;
        field.set(&mut table, toml_value(text));
        let config: Config = toml::Value::Table(table)
            .try_into()
            .map_err(|e| env_error(e.to_string().trim_end().to_string()))?;
        match config.check_values() {
            Err(Error::ConfigValue { field: bad, reason }) if field.covers(bad) => {
                Err(env_error(reason))
            }
            // Another field's problem is the base configuration's, reported
            // when it is validated.
            _ => Ok(config),
        }
    }
}

/// The field a variable names: a top-level field, or a field of a block.
struct Field {
    top: String,
    inner: Option<String>,
}

/// The field `name` (a variable's name without its prefix, in lower case)
/// names in `table` (a configuration's TOML form), if any.
fn field_named(table: &toml::Table, name: &str) -> Option<Field> {
    if table.contains_key(name) {
        return Some(Field {
            top: name.to_string(),
            inner: None,
        });
    }
    BLOCKS.iter().find_map(|&block| {
        let inner = name.strip_prefix(block)?.strip_prefix('_')?;
        table
            .get(block)?
            .as_table()?
            .contains_key(inner)
            .then(|| Field {
                top: block.to_string(),
                inner: Some(inner.to_string()),
            })
    })
}

impl Field {
    /// Sets this field of `table` to `value`; a table given to a block is
    /// merged into it.
    fn set(&self, table: &mut toml::Table, value: toml::Value) {
        let slot = table.get_mut(&self.top).expect("field_named found it");
        match (&self.inner, slot, value) {
            (Some(inner), toml::Value::Table(block), value) => {
                block.insert(inner.clone(), value);
            }
            (None, toml::Value::Table(block), toml::Value::Table(given))
                if BLOCKS.contains(&self.top.as_str()) =>
            {
                block.extend(given);
            }
            (_, slot, value) => *slot = value,
        }
    }

    /// Whether a value error of `field` (`data_dir`,
    /// `io_scheduler.depth_max`) is this variable's.
    fn covers(&self, field: &str) -> bool {
        let own = match &self.inner {
            Some(inner) => format!("{}.{inner}", self.top),
            None => self.top.clone(),
        };
        field == own
            || field
                .strip_prefix(&own)
                .is_some_and(|rest| rest.starts_with('.'))
    }
}

/// `text` as the TOML value after `field = `, or as a string if it is none.
fn toml_value(text: &str) -> toml::Value {
    format!("value = {text}")
        .parse::<toml::Table>()
        .ok()
        .filter(|table| table.len() == 1)
        .and_then(|mut table| table.remove("value"))
        .unwrap_or_else(|| toml::Value::String(text.to_string()))
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::config::Placement;

    fn env_error(vars: &[(&str, &str)]) -> (String, String, String) {
        match Config::default().overlay(vars.iter().copied()) {
            Err(Error::ConfigEnv {
                variable,
                value,
                reason,
            }) => (variable, value, reason),
            other => panic!("expected ConfigEnv for {vars:?}, got {other:?}"),
        }
    }

    #[test]
    fn variables_set_their_fields() {
        let config = Config::default()
            .overlay([
                ("PATH", "/bin"),
                ("SHARDBLOB_DATA_DIR", "/srv/blobs"),
                ("SHARDBLOB_SHARDS", "2"),
                ("SHARDBLOB_PLACEMENT", "{ cpus = [0, 1] }"),
                ("SHARDBLOB_SYNC_INLINE_WHEN_IDLE", "false"),
                ("SHARDBLOB_QUEUE_BYTES_PER_SHARD_MAX", "1_048_576"),
            ])
            .unwrap();
        let expected = Config {
            data_dir: PathBuf::from("/srv/blobs"),
            shards: 2,
            placement: Placement::Cpus(vec![0, 1]),
            sync_inline_when_idle: false,
            queue_bytes_per_shard_max: 1 << 20,
            ..Config::default()
        };
        assert_eq!(config, expected);
        let all = config.overlay([("SHARDBLOB_PLACEMENT", "all")]).unwrap();
        assert_eq!(all.placement, Placement::All);
        let quoted = Config::default()
            .overlay([("SHARDBLOB_DATA_DIR", "\"2024\"")])
            .unwrap();
        assert_eq!(quoted.data_dir, PathBuf::from("2024"));
        assert_eq!(
            Config::default()
                .overlay(Vec::<(&str, &str)>::new())
                .unwrap(),
            Config::default()
        );
    }

    #[test]
    fn bad_variables_are_named_with_their_value() {
        let (variable, value, reason) = env_error(&[("SHARDBLOB_SHARDS", "two")]);
        assert_eq!(
            (variable.as_str(), value.as_str()),
            ("SHARDBLOB_SHARDS", "two")
        );
        assert!(reason.contains("invalid type"), "{reason}");
        let (variable, value, reason) = env_error(&[("SHARDBLOB_RING_DEPTH", "3")]);
        assert_eq!(
            (variable.as_str(), value.as_str()),
            ("SHARDBLOB_RING_DEPTH", "3")
        );
        assert!(
            reason.contains("ring_depth = 3 is outside 8..=32768"),
            "{reason}"
        );
        let (_, _, reason) = env_error(&[("SHARDBLOB_SPIN_BEFORE_PARK_US", "5000000")]);
        assert!(reason.contains("0..=10000"), "{reason}");
        let (_, _, reason) = env_error(&[("SHARDBLOB_PLACEMENT", "some")]);
        assert!(reason.contains("unknown variant `some`"), "{reason}");
        let message = Config::default()
            .overlay([("SHARDBLOB_SHARDS", "-1")])
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("environment variable SHARDBLOB_SHARDS=\"-1\""),
            "{message}"
        );
    }

    #[test]
    fn variables_naming_no_field_are_ignored() {
        let vars = [
            ("SHARDBLOB_SEED", "4242"),
            ("SHARDBLOB_SIM_SEEDS", "1000000"),
            ("SHARDBLOB_SHARD", "2"),
            ("SHARDBLOB_", "x"),
            ("SHARDBLOB_IO_SCHEDULER_DEPTH", "4"),
            ("SHARDBLOB_PLACEMENT_CPUS", "[0]"),
        ];
        assert_eq!(Config::default().overlay(vars).unwrap(), Config::default());
        use std::os::unix::ffi::OsStrExt;
        let not_utf8 = OsStr::from_bytes(b"\xff");
        let knob = Config::default().overlay([("SHARDBLOB_SEED_BASE", not_utf8)]);
        assert_eq!(knob.unwrap(), Config::default());
    }

    #[test]
    fn block_fields_overlay_the_base_block() {
        let mut base = Config::default();
        base.io_scheduler.depth_max = 16;
        let config = base
            .clone()
            .overlay([("SHARDBLOB_IO_SCHEDULER_QUEUE_MAX", "64")])
            .unwrap();
        assert_eq!(
            (config.io_scheduler.depth_max, config.io_scheduler.queue_max),
            (16, 64)
        );
        let config = base
            .clone()
            .overlay([("SHARDBLOB_IO_SCHEDULER", "{ queue_max = 32 }")])
            .unwrap();
        assert_eq!(
            (config.io_scheduler.depth_max, config.io_scheduler.queue_max),
            (16, 32)
        );
        let config = Config::default()
            .overlay([("SHARDBLOB_IO_SCHEDULER_DEPTH_MAX", "16")])
            .unwrap();
        assert_eq!(config.io_scheduler.depth_max, 16);
        let (variable, value, reason) = env_error(&[("SHARDBLOB_IO_SCHEDULER_QUEUE_MAX", "0")]);
        assert_eq!(
            (variable.as_str(), value.as_str()),
            ("SHARDBLOB_IO_SCHEDULER_QUEUE_MAX", "0")
        );
        assert!(reason.contains("io_scheduler.queue_max = 0"), "{reason}");
        let (_, _, reason) = env_error(&[("SHARDBLOB_IO_SCHEDULER", "{ depth = 4 }")]);
        assert!(reason.contains("depth"), "{reason}");
        let (_, _, reason) = env_error(&[("SHARDBLOB_IO_SCHEDULER", "{ throughput_every = 0 }")]);
        assert!(reason.contains("io_scheduler.throughput_every"), "{reason}");
    }

    #[test]
    fn a_bad_base_is_left_to_validation() {
        let base = Config {
            ring_depth: 3,
            ..Config::default()
        };
        let config = base.overlay([("SHARDBLOB_SHARDS", "1")]).unwrap();
        assert!(matches!(
            config.check_values(),
            Err(Error::ConfigValue {
                field: "ring_depth",
                ..
            })
        ));
    }
}

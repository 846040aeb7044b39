//! Startup problems are errors that say what to change, never panics.

use shardblob::{Config, Engine, Error, Placement};

fn start_error(tune: impl FnOnce(&mut Config)) -> String {
    let dir = std::env::temp_dir().join(format!("shardblob-startup-{}", std::process::id()));
    let mut config = Config {
        data_dir: dir,
        ..Config::default()
    };
    tune(&mut config);
    match Engine::start(config) {
        Ok(_) => panic!("engine started with an impossible configuration"),
        Err(e @ (Error::ConfigValue { .. } | Error::Placement { .. } | Error::DataDir { .. })) => {
            e.to_string()
        }
        Err(e) => panic!("unexpected error kind: {e:?}"),
    }
}

#[test]
fn impossible_configurations_say_what_to_change() {
    let cpus = std::thread::available_parallelism().unwrap().get();
    let too_many = start_error(|c| c.shards = cpus + 1);
    assert!(too_many.contains("shards"), "{too_many}");
    let offline = start_error(|c| c.placement = Placement::Cpus(vec![4096]));
    assert!(offline.contains("4096"), "{offline}");
    let no_memory = start_error(|c| c.io_memory_bytes = 0);
    assert!(no_memory.contains("io_memory_bytes"), "{no_memory}");
    let no_numa = start_error(|c| c.placement = Placement::NumaNode(999));
    assert!(no_numa.contains("999"), "{no_numa}");
    let bad_dir = start_error(|c| c.data_dir = "/proc/self/status/data".into());
    assert!(bad_dir.contains("/proc/self/status/data"), "{bad_dir}");
}

#[test]
fn unknown_fields_are_named() {
    let error = Config::from_toml_str("shards = 1\nshard_count = 2\n")
        .unwrap_err()
        .to_string();
    assert!(error.contains("shard_count"), "{error}");
}

#[test]
fn volatile_data_dirs_are_refused_by_default() {
    assert!(!Config::default().allow_volatile_data_dir);
    let config = Config::from_toml_str("allow_volatile_data_dir = true\n").unwrap();
    assert!(config.allow_volatile_data_dir);
}

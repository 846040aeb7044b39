//! Logs (issue 15, item 5): the engine reports its startup decisions, its
//! shutdown steps and a poisoned blob through `tracing`.
//!
//! Shards run on threads of their own, so a thread-local subscriber would
//! miss their events: this binary installs a global one that collects every
//! event (one per process, hence a test binary of its own). The tests run
//! in parallel and share it: each looks for events that name what it made.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::{Mutex, Once};

use futures_lite::future::block_on;
use shardblob::sim::{Faults, SimFs};
use shardblob::{Blob, Config, Engine, Error, Storage};
use tracing::field::{Field, Visit};
use tracing::{span, Event, Level, Metadata, Subscriber};

/// One event as the capturing subscriber saw it.
#[derive(Debug, Clone)]
struct Captured {
    level: Level,
    /// Its fields, `message` included, as text.
    fields: BTreeMap<String, String>,
}

impl Captured {
    fn field(&self, name: &str) -> &str {
        self.fields.get(name).map_or("", String::as_str)
    }
}

static EVENTS: Mutex<Vec<Captured>> = Mutex::new(Vec::new());

/// Collects every event into `EVENTS`; spans are ignored.
struct Capture;

#[derive(Default)]
struct Fields(BTreeMap<String, String>);

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_string(), value.to_string());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        self.0
            .insert(field.name().to_string(), format!("{value:?}"));
    }
}

impl Subscriber for Capture {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }

    fn new_span(&self, _: &span::Attributes<'_>) -> span::Id {
        span::Id::from_u64(1)
    }

    fn record(&self, _: &span::Id, _: &span::Record<'_>) {}

    fn record_follows_from(&self, _: &span::Id, _: &span::Id) {}

    fn event(&self, event: &Event<'_>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let captured = Captured {
            level: *event.metadata().level(),
            fields: fields.0,
        };
        EVENTS.lock().unwrap().push(captured);
    }

    fn enter(&self, _: &span::Id) {}

    fn exit(&self, _: &span::Id) {}
}

fn capture() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        tracing::subscriber::set_global_default(Capture).expect("the only subscriber");
    });
}

/// The events captured so far that `wanted` accepts.
fn events(wanted: impl Fn(&Captured) -> bool) -> Vec<Captured> {
    EVENTS
        .lock()
        .unwrap()
        .iter()
        .filter(|e| wanted(e))
        .cloned()
        .collect()
}

fn config() -> Config {
    Config {
        shards: 1,
        io_memory_bytes: 256 << 10,
        spin_before_park_us: 0,
        ..Config::default()
    }
}

#[test]
fn startup_logs_the_placement_and_each_executor() {
    capture();
    let engine = Engine::start_simulated(config(), SimFs::new(1)).expect("an engine");
    let placement =
        events(|e| e.level == Level::INFO && e.field("message").starts_with("placement resolved"));
    assert!(!placement.is_empty(), "no placement event");
    assert!(placement[0].field("cpus").starts_with('['), "{placement:?}");
    let executors = events(|e| {
        e.level == Level::INFO
            && e.field("message").starts_with("shard executor started")
            && e.field("shard") == "0"
    });
    assert!(!executors.is_empty(), "no executor event");
    for field in ["cpu", "io_memory_bytes", "ring_depth"] {
        assert!(!executors[0].field(field).is_empty(), "{executors:?}");
    }
    engine.shutdown().expect("a clean shutdown");
    let stopped =
        events(|e| e.level == Level::DEBUG && e.field("message") == "shutdown: shard stopped");
    assert!(!stopped.is_empty(), "no shutdown event");
}

#[test]
fn a_poisoned_blob_is_a_warning_naming_it() {
    capture();
    let disk = SimFs::new(2);
    let engine = Engine::start_simulated(config(), disk.clone()).expect("an engine");
    let client = engine.client();
    block_on(async {
        let (blob, _) = client.open("logs", b"poisoned").await.expect("open");
        blob.write_at(0, b"some bytes").await.expect("write");
        disk.set_faults(Faults::random(1_000_000));
        let synced = blob.sync().await;
        disk.set_faults(Faults::default());
        assert!(synced.is_err(), "the sync failed");
        let again = blob.sync().await;
        assert!(
            matches!(again, Err(Error::BlobPoisoned { .. })),
            "{again:?}"
        );
    });
    let poisoned = events(|e| {
        e.level == Level::WARN
            && e.field("message").starts_with("blob poisoned")
            && e.field("partition") == "logs"
    });
    assert_eq!(poisoned.len(), 1, "one warning, when it is poisoned");
    // The name as in file names and errors: hex of b"poisoned".
    assert_eq!(poisoned[0].field("name"), "706f69736f6e6564");
    assert!(!poisoned[0].field("error").is_empty(), "{poisoned:?}");
    engine.shutdown().expect("a clean shutdown");
}

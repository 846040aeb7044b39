//! A small per-core key-value server over TCP (loopback only).
//!
//! The point of a thread-per-core engine is that a request is handled on the
//! core that owns its data, start to finish. This server shows one way:
//!
//! - **Data layout.** A key lives in one of 64 partitions, `kv-0` .. `kv-63`,
//!   chosen by a stable hash of the key (FNV-1a, see [`partition_of`]). Each
//!   key is one blob in that partition; the blob's name is the key's bytes
//!   and its content is the value. The engine hashes each partition to a
//!   shard (`shard_of`), so every key has one owning shard.
//! - **One listener per shard.** Every shard runs its own glommio
//!   `TcpListener` on its own port, and serves the connections it accepts on
//!   its own core (`client.on_all_shards`).
//! - **Shard-aware clients never hop.** A client that sends each key to the
//!   port of the key's shard gets every request served by direct calls on
//!   that core: no channel, no thread hop, no copy inside the engine. It
//!   finds the shard with `shardblob::shard_of(&partition_of(key), shards)`
//!   (Rust, same build) or by asking any shard `SHARD <key>`.
//! - **Any client is still correct.** A request that arrives at the wrong
//!   shard is run whole on the owner (`client.spawn_on(owner, ..)`): one hop
//!   there, one back. Running it whole there, rather than forwarding each
//!   storage call, keeps all the work on one key on one thread, where the
//!   per-key lock below lives. `STATS` counts both kinds.
//! - **Metrics.** `METRICS` answers with the engine's per-shard statistics
//!   (`Client::stats`) in the Prometheus text format: operations, bytes,
//!   errors and latencies by kind, queue depths, open blobs.
//!
//! Per shard, in thread-local state (each shard is one thread):
//! - an index of the keys that exist, built at start by scanning the
//!   partitions the shard owns, so `GET`/`DEL` of a missing key touch no disk
//!   and never create an empty blob;
//! - a lock per key with a request in progress, so concurrent `SET`s of one
//!   key never interleave, and a blob is never opened twice (the engine
//!   refuses a second open of a live blob with `BlobAlreadyOpen`). A blob is
//!   opened for each request and closed before its lock is released.
//!
//! Durability: `SET` returns `OK` once the value is durable (a data-sync
//! write, or write + resize + sync when the value shrinks), `DEL` once the
//! removal is. A `SET` is not atomic across a crash: a key may come back with
//! a torn or empty value. A production store would add a log or write new
//! values to new blobs.
//!
//! Protocol: one request per line (`\n`, an optional `\r` before it is
//! ignored), one reply line each (`METRICS` adds a body of the length its
//! line gives). Keys are 1..=127 bytes without spaces;
//! values are the rest of the line (spaces allowed, no newline). Commands are
//! case-insensitive.
//!
//! ```text
//! SET <key> <value>   -> OK
//! GET <key>           -> VALUE <value> | NOT_FOUND
//! DEL <key>           -> DELETED | NOT_FOUND
//! SHARD <key>         -> SHARD <index> <address of that shard's listener>
//! STATS               -> STATS shard=<i> local=<n> forwarded=<m>   (this shard)
//! METRICS             -> METRICS <n>, then <n> bytes of Prometheus text
//!                        (every shard of the engine)
//! QUIT                -> BYE, then the server closes the connection
//! anything else       -> ERR <reason>   (the connection stays open)
//! ```
//!
//! A line longer than 64 KiB gets `ERR line too long`; its bytes are skipped
//! as they arrive, never buffered. Each shard serves at most 1024
//! connections at once and closes further ones at once.
//!
//! Run it:
//! - `cargo run -p shardblob --example kv_server` (or `-- --self-test`):
//!   starts the server on ephemeral loopback ports, drives it with a client
//!   (routing, forwarding, concurrency, bad input, a restart), exits 0.
//! - `cargo run -p shardblob --example kv_server -- --serve`: serves until
//!   Enter is pressed or stdin closes; try it with `nc 127.0.0.1 <port>`.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};

use std::io::{self, BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::rc::Rc;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures_lite::future::{block_on, or};
use futures_lite::{AsyncBufReadExt, AsyncWriteExt};
use glommio::net::{Preallocated, TcpListener, TcpStream};
use glommio::sync::{Gate, Semaphore, StaticPermit};
use shardblob::{
    shard_of, Blob, Client, Config, Engine, Error, ShardStorage, Storage, WriteOptions,
};

// kv_server uses the error type and the data directory, not the checks.
#[allow(dead_code)]
#[path = "support/mod.rs"]
mod support;
use support::{BoxError, TempDataDir};

/// Partitions `kv-0 .. kv-{PARTITIONS-1}`. Fixed: changing it re-homes keys.
const PARTITIONS: u64 = 64;
/// Longest request line, in bytes.
const MAX_LINE: usize = 64 * 1024;
/// Longest key: a blob name becomes a hex file name of at most 255 bytes.
const MAX_KEY: usize = 127;
/// Connections one shard serves at once.
const MAX_CONNECTIONS: u64 = 1024;
/// A client that does not take its reply within this time is dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

fn main() -> ExitCode {
    support::init_logs();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match args[..] {
        [] | ["--self-test"] => self_test(),
        ["--serve"] => serve_until_stdin_closes(),
        _ => {
            eprintln!("usage: kv_server [--self-test | --serve]");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kv_server: FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}

// ---------------------------------------------------------------------------
// Keys, partitions, shards

/// The partition that holds `key`: 64-bit FNV-1a of its bytes, modulo
/// [`PARTITIONS`]. Any hash works if it never changes (and clients in other
/// languages can compute this one in a few lines).
fn partition_of(key: &[u8]) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &byte in key {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    partition_name(hash % PARTITIONS)
}

fn partition_name(index: u64) -> String {
    format!("kv-{index}")
}

// ---------------------------------------------------------------------------
// The server: one listener per shard

/// A running server: one listener on each shard of an engine.
struct Server {
    /// The listener address of each shard, in shard order.
    addrs: Arc<Vec<SocketAddr>>,
    /// Dropping it closes the channel: that tells every shard to stop.
    stop: Option<async_channel::Sender<()>>,
    /// The thread awaiting the shards' serving tasks.
    running: Option<std::thread::JoinHandle<Result<(), String>>>,
}

impl Server {
    /// Loads every shard's key index, then starts a listener on each shard
    /// on an ephemeral loopback port.
    fn start(engine: &Engine) -> Result<Server, BoxError> {
        let client = engine.client();

        // Phase 1: each shard indexes the keys of the partitions it owns.
        // Done everywhere before any shard accepts, so that no request can
        // reach a shard whose index is not ready.
        let loaded = block_on(
            client.on_all_shards(|storage| async move { load_shard_index(&storage).await }),
        )?;
        let mut keys = 0;
        for count in loaded {
            keys += count?;
        }

        // Phase 2: the listeners. Each shard binds, reports its address,
        // and serves until `stop` closes. The serving tasks live as long as
        // the server, so a plain thread awaits them, all at once.
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = async_channel::bounded::<()>(1);
        let map: Arc<OnceLock<Arc<Vec<SocketAddr>>>> = Arc::new(OnceLock::new());
        let serving: Vec<_> = (0..engine.shard_count())
            .map(|shard| {
                let (client2, map, addr_tx, stop) = (
                    client.clone(),
                    map.clone(),
                    addr_tx.clone(),
                    stop_rx.clone(),
                );
                client.spawn_on(shard, move |storage| {
                    serve_shard(storage, client2, map, addr_tx, stop)
                })
            })
            .collect();
        drop((addr_tx, stop_rx));
        let running = std::thread::Builder::new()
            .name("kv-server".into())
            .spawn(move || {
                let mut first_error = Ok(());
                for served in block_on(futures::future::join_all(serving)) {
                    let served = served.map_err(|e| e.to_string()).and_then(|r| r);
                    if first_error.is_ok() {
                        first_error = served;
                    }
                }
                first_error
            })?;
        let mut server = Server {
            addrs: Arc::new(Vec::new()),
            stop: Some(stop_tx),
            running: Some(running),
        };

        let mut addrs = vec![None; engine.shard_count()];
        for _ in 0..engine.shard_count() {
            let (shard, addr): (usize, Result<SocketAddr, String>) = addr_rx
                .recv_timeout(Duration::from_secs(30))
                .map_err(|_| "a shard did not report its listener")?;
            addrs[shard] = Some(addr.map_err(|e| format!("shard {shard}: {e}"))?);
        }
        let addrs: Vec<SocketAddr> = addrs.into_iter().flatten().collect();
        server.addrs = Arc::new(addrs);
        let _ = map.set(server.addrs.clone());
        for (shard, addr) in server.addrs.iter().enumerate() {
            println!("kv_server: shard {shard} listening on {addr}");
        }
        println!("kv_server: {keys} keys on disk");
        Ok(server)
    }

    /// Stops every listener, waits for open connections to finish their
    /// current request, and reports the first error of any shard.
    fn stop(mut self) -> Result<(), BoxError> {
        self.stop_and_join()
    }

    fn stop_and_join(&mut self) -> Result<(), BoxError> {
        drop(self.stop.take());
        match self.running.take() {
            Some(thread) => Ok(thread.join().map_err(|_| "the server thread panicked")??),
            None => Ok(()),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.stop_and_join();
    }
}

/// One shard's listener: binds, reports, accepts until `stop` closes, then
/// waits for its connections.
async fn serve_shard(
    storage: ShardStorage,
    client: Client,
    map: Arc<OnceLock<Arc<Vec<SocketAddr>>>>,
    addr_tx: std::sync::mpsc::Sender<(usize, Result<SocketAddr, String>)>,
    stop: async_channel::Receiver<()>,
) -> Result<(), String> {
    let shard = storage.shard();
    let bound = TcpListener::bind("127.0.0.1:0").and_then(|l| Ok((l.local_addr()?, l)));
    let listener = match bound {
        Ok((addr, listener)) => {
            let _ = addr_tx.send((shard, Ok(addr)));
            listener
        }
        Err(e) => {
            let reason = format!("cannot listen on 127.0.0.1: {e}");
            let _ = addr_tx.send((shard, Err(reason.clone())));
            return Err(reason);
        }
    };
    drop(addr_tx);

    let connections = Gate::new();
    let slots = Rc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let accepted = or(async { Some(listener.accept().await) }, async {
            let _ = stop.recv().await;
            None
        })
        .await;
        match accepted {
            None => break,
            Some(Ok(stream)) => {
                let Ok(slot) = slots.try_acquire_static_permit(1) else {
                    // Full: close it at once (the client sees EOF).
                    drop(stream);
                    continue;
                };
                let connection = Connection {
                    storage: storage.clone(),
                    client: client.clone(),
                    map: map.clone(),
                    stop: stop.clone(),
                };
                if let Ok(task) = connections.spawn(connection.serve(stream, slot)) {
                    task.detach();
                }
            }
            Some(Err(e)) => {
                // For example out of file descriptors: back off briefly.
                eprintln!("kv_server: shard {shard}: accept failed: {e}");
                glommio::timer::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    drop(listener);
    connections.close().await.map_err(|e| e.to_string())
}

// ---------------------------------------------------------------------------
// Connections

/// What a connection task needs: all of it lives on the accepting shard.
struct Connection {
    storage: ShardStorage,
    client: Client,
    map: Arc<OnceLock<Arc<Vec<SocketAddr>>>>,
    stop: async_channel::Receiver<()>,
}

enum Line {
    /// A complete line (without its `\n`) is in the buffer.
    Complete,
    /// Longer than [`MAX_LINE`]: skipped up to and including its `\n`.
    TooLong,
    /// The peer closed the connection (a partial last line is dropped).
    Eof,
}

impl Connection {
    async fn serve(self, stream: TcpStream, _slot: StaticPermit) {
        let _ = stream.set_nodelay(true);
        let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
        let mut stream = stream.buffered();
        let mut line = Vec::new();
        loop {
            // Wait for a request, or for the server to stop. A request that
            // has begun runs to the end: a stop never cuts a SET in half.
            let read = or(
                async { Some(read_line(&mut stream, &mut line).await) },
                async {
                    let _ = self.stop.recv().await;
                    None
                },
            )
            .await;
            let (reply, close) = match read {
                None | Some(Err(_)) | Some(Ok(Line::Eof)) => return,
                Some(Ok(Line::TooLong)) => (error_reply("line too long"), false),
                Some(Ok(Line::Complete)) => self.handle(&line).await,
            };
            if stream.write_all(&reply).await.is_err() || close {
                return;
            }
        }
    }

    /// Answers one request line; `true` closes the connection.
    async fn handle(&self, line: &[u8]) -> (Vec<u8>, bool) {
        match parse(line) {
            Err(reason) => (error_reply(&reason), false),
            Ok(Command::Quit) => (b"BYE\n".to_vec(), true),
            Ok(Command::Stats) => {
                let (local, forwarded) = STATS.with(|s| (s.0.get(), s.1.get()));
                let reply = format!(
                    "STATS shard={} local={local} forwarded={forwarded}\n",
                    self.storage.shard()
                );
                (reply.into_bytes(), false)
            }
            Ok(Command::Metrics) => match self.client.stats().await {
                Ok(stats) => {
                    let text = stats.prometheus_text();
                    let reply = format!("METRICS {}\n{text}", text.len());
                    (reply.into_bytes(), false)
                }
                Err(e) => (error_reply(&e.to_string()), false),
            },
            Ok(Command::Shard { key }) => {
                let owner = self.storage.shard_of(&partition_of(&key));
                let addr = self.map.get().and_then(|addrs| addrs.get(owner));
                let reply = match addr {
                    Some(addr) => format!("SHARD {owner} {addr}\n"),
                    None => format!("SHARD {owner}\n"),
                };
                (reply.into_bytes(), false)
            }
            Ok(Command::Op(op)) => (self.run(op).await, false),
        }
    }

    /// Runs a storage request on the shard that owns its key: right here
    /// when that is this shard (the hot path), else whole on the owner.
    async fn run(&self, op: Op) -> Vec<u8> {
        let partition = partition_of(op.key());
        let owner = self.storage.shard_of(&partition);
        if owner == self.storage.shard() {
            STATS.with(|s| s.0.set(s.0.get() + 1));
            return execute(&self.storage, &partition, op).await;
        }
        STATS.with(|s| s.1.set(s.1.get() + 1));
        let forwarded = self
            .client
            .spawn_on(owner, move |storage| async move {
                execute(&storage, &partition, op).await
            })
            .await;
        forwarded.unwrap_or_else(|e| error_reply(&e.to_string()))
    }
}

/// Reads one line into `line` (without the `\n`) from the socket's receive
/// buffer, keeping at most [`MAX_LINE`] bytes: the rest of a longer line is
/// skipped, so the next request still starts on a line boundary.
async fn read_line(stream: &mut TcpStream<Preallocated>, line: &mut Vec<u8>) -> io::Result<Line> {
    line.clear();
    let mut too_long = false;
    loop {
        let buf = stream.fill_buf().await?;
        if buf.is_empty() {
            return Ok(Line::Eof);
        }
        let (take, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(end) => (end, true),
            None => (buf.len(), false),
        };
        if !too_long && line.len() + take > MAX_LINE {
            too_long = true;
            line.clear();
        }
        if !too_long {
            line.extend_from_slice(&buf[..take]);
        }
        stream.consume(take + usize::from(done));
        if done {
            return Ok(if too_long {
                Line::TooLong
            } else {
                Line::Complete
            });
        }
    }
}

// ---------------------------------------------------------------------------
// Requests

enum Command {
    Op(Op),
    Shard { key: Vec<u8> },
    Stats,
    Metrics,
    Quit,
}

/// A storage request: owned bytes, so it can travel to another shard.
enum Op {
    Set { key: Vec<u8>, value: Vec<u8> },
    Get { key: Vec<u8> },
    Del { key: Vec<u8> },
}

impl Op {
    fn key(&self) -> &[u8] {
        match self {
            Op::Set { key, .. } | Op::Get { key } | Op::Del { key } => key,
        }
    }
}

/// Parses one request line. Never panics: whatever is wrong becomes the
/// reason of an `ERR` reply.
fn parse(line: &[u8]) -> Result<Command, String> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let (verb, rest) = split_word(line);
    match verb.to_ascii_uppercase().as_slice() {
        b"SET" => {
            let usage = "usage: SET <key> <value>";
            let (key, value) = split_word(rest.ok_or(usage)?);
            let value = value.ok_or(usage)?;
            Ok(Command::Op(Op::Set {
                key: checked_key(key, usage)?,
                value: value.to_vec(),
            }))
        }
        b"GET" => Ok(Command::Op(Op::Get {
            key: only_key(rest, "usage: GET <key>")?,
        })),
        b"DEL" => Ok(Command::Op(Op::Del {
            key: only_key(rest, "usage: DEL <key>")?,
        })),
        b"SHARD" => Ok(Command::Shard {
            key: only_key(rest, "usage: SHARD <key>")?,
        }),
        b"STATS" if rest.is_none() => Ok(Command::Stats),
        b"METRICS" if rest.is_none() => Ok(Command::Metrics),
        b"QUIT" if rest.is_none() => Ok(Command::Quit),
        b"STATS" | b"METRICS" | b"QUIT" => Err(format!(
            "{} takes no arguments",
            String::from_utf8_lossy(verb)
        )),
        b"" => Err("empty request; commands: SET GET DEL SHARD STATS METRICS QUIT".into()),
        _ => Err(format!(
            "unknown command {:?}; commands: SET GET DEL SHARD STATS METRICS QUIT",
            String::from_utf8_lossy(&verb[..verb.len().min(32)])
        )),
    }
}

/// Splits at the first space: the word, and the rest if there was a space.
fn split_word(bytes: &[u8]) -> (&[u8], Option<&[u8]>) {
    match bytes.iter().position(|&b| b == b' ') {
        Some(space) => (&bytes[..space], Some(&bytes[space + 1..])),
        None => (bytes, None),
    }
}

/// The single key argument of GET, DEL and SHARD.
fn only_key(rest: Option<&[u8]>, usage: &str) -> Result<Vec<u8>, String> {
    match rest.map(split_word) {
        Some((key, None)) => checked_key(key, usage),
        _ => Err(usage.into()),
    }
}

fn checked_key(key: &[u8], usage: &str) -> Result<Vec<u8>, String> {
    if key.is_empty() {
        Err(usage.into())
    } else if key.len() > MAX_KEY {
        Err(format!("key longer than {MAX_KEY} bytes"))
    } else {
        Ok(key.to_vec())
    }
}

fn error_reply(reason: &str) -> Vec<u8> {
    // One line, whatever the message holds.
    format!("ERR {}\n", reason.replace(['\r', '\n'], " ")).into_bytes()
}

// ---------------------------------------------------------------------------
// Execution, on the shard that owns the key

/// The state of this server on one shard. A shard is one thread, so it is
/// thread-local: any task on the shard, including one `spawn_on` sent here
/// from another shard, finds it.
struct KvShard {
    /// Keys that exist in the partitions this shard owns.
    keys: RefCell<HashSet<Vec<u8>>>,
    /// One lock per key with a request in progress.
    locks: RefCell<HashMap<Vec<u8>, Rc<Semaphore>>>,
}

thread_local! {
    static KV: RefCell<Option<Rc<KvShard>>> = const { RefCell::new(None) };
    /// Storage requests served on this shard: (local, forwarded to another).
    static STATS: (Cell<u64>, Cell<u64>) = const { (Cell::new(0), Cell::new(0)) };
}

/// Builds this shard's key index from the partitions it owns.
async fn load_shard_index(storage: &ShardStorage) -> shardblob::Result<usize> {
    let mut keys = HashSet::new();
    for index in 0..PARTITIONS {
        let partition = partition_name(index);
        if storage.shard_of(&partition) != storage.shard() {
            continue;
        }
        match storage.scan(&partition).await {
            Ok(names) => keys.extend(names),
            Err(Error::PartitionMissing(_)) => {}
            Err(e) => return Err(e),
        }
    }
    let count = keys.len();
    let shard = KvShard {
        keys: RefCell::new(keys),
        locks: RefCell::new(HashMap::new()),
    };
    KV.with(|kv| *kv.borrow_mut() = Some(Rc::new(shard)));
    Ok(count)
}

/// Holds a key's lock; dropping it lets the next request on the key go.
struct KeyGuard {
    permit: Option<StaticPermit>,
    lock: Rc<Semaphore>,
    key: Vec<u8>,
    shard: Rc<KvShard>,
}

impl KvShard {
    async fn lock(self: &Rc<Self>, key: &[u8]) -> Result<KeyGuard, String> {
        let lock = self
            .locks
            .borrow_mut()
            .entry(key.to_vec())
            .or_insert_with(|| Rc::new(Semaphore::new(1)))
            .clone();
        let permit = lock
            .acquire_static_permit(1)
            .await
            .map_err(|e| e.to_string())?;
        Ok(KeyGuard {
            permit: Some(permit),
            lock,
            key: key.to_vec(),
            shard: self.clone(),
        })
    }
}

impl Drop for KeyGuard {
    fn drop(&mut self) {
        drop(self.permit.take());
        // Held by the map and by us only: nobody waits, forget the lock so
        // the map holds just the keys in use.
        if Rc::strong_count(&self.lock) == 2 {
            self.shard.locks.borrow_mut().remove(&self.key);
        }
    }
}

/// Runs `op` on this shard, which must own `partition`; returns the reply.
async fn execute(storage: &ShardStorage, partition: &str, op: Op) -> Vec<u8> {
    let Some(kv) = KV.with(|kv| kv.borrow().clone()) else {
        return error_reply("this shard has no key index (server not started)");
    };
    let _guard = match kv.lock(op.key()).await {
        Ok(guard) => guard,
        Err(e) => return error_reply(&e),
    };
    // The blob opened inside `apply` is closed when it returns, before the
    // guard releases the key.
    match apply(storage, &kv, partition, &op).await {
        Ok(reply) => reply,
        Err(e) => error_reply(&e.to_string()),
    }
}

async fn apply(
    storage: &ShardStorage,
    kv: &KvShard,
    partition: &str,
    op: &Op,
) -> shardblob::Result<Vec<u8>> {
    match op {
        Op::Get { key } => {
            if !kv.keys.borrow().contains(key) {
                return Ok(b"NOT_FOUND\n".to_vec());
            }
            let (blob, len) = storage.open(partition, key).await?;
            if len > MAX_LINE as u64 {
                // Not written by this server (values come in one line).
                return Ok(error_reply("stored value larger than a reply line"));
            }
            // On the owning shard this is a view of the DMA buffer; it is
            // copied once, into the reply.
            let value = blob.read_at(0, len as usize).await?;
            let mut reply = Vec::with_capacity(value.len() + 7);
            reply.extend_from_slice(b"VALUE ");
            reply.extend_from_slice(&value);
            reply.push(b'\n');
            Ok(reply)
        }
        Op::Set { key, value } => {
            let (blob, old_len) = storage.open(partition, key).await?;
            // From here on the blob exists on disk: index it even if a write
            // fails, so that the key's state stays visible to GET and DEL.
            kv.keys.borrow_mut().insert(key.clone());
            if (value.len() as u64) < old_len {
                // Shrinking: write, cut the tail, then make both durable.
                blob.write_at(0, value).await?;
                blob.resize(value.len() as u64).await?;
                blob.sync().await?;
            } else if !value.is_empty() {
                // Same size or growing: one data-sync write does it all.
                blob.write_vectored_at(0, &[value.as_slice()], WriteOptions::SYNC)
                    .await?;
            }
            Ok(b"OK\n".to_vec())
        }
        Op::Del { key } => {
            if !kv.keys.borrow().contains(key) {
                return Ok(b"NOT_FOUND\n".to_vec());
            }
            match storage.remove(partition, Some(key)).await {
                Ok(()) => {
                    kv.keys.borrow_mut().remove(key);
                    Ok(b"DELETED\n".to_vec())
                }
                // Removed behind the server's back: gone all the same.
                Err(Error::BlobMissing { .. }) => {
                    kv.keys.borrow_mut().remove(key);
                    Ok(b"NOT_FOUND\n".to_vec())
                }
                Err(e) => Err(e),
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Running it

fn start_engine(data_dir: &Path) -> Result<Engine, BoxError> {
    Ok(Engine::start(Config {
        data_dir: data_dir.to_path_buf(),
        // Two shards, or one on a single-CPU machine. (`Config::default()`
        // has `shards = 0`: one per CPU.)
        shards: std::thread::available_parallelism().map_or(1, |n| n.get().min(2)),
        ..Config::default()
    })?)
}

/// `--serve`: runs until Enter is pressed or stdin closes.
fn serve_until_stdin_closes() -> Result<(), BoxError> {
    let data_dir = TempDataDir::new("kv_server");
    let engine = start_engine(data_dir.path())?;
    let server = Server::start(&engine)?;
    println!(
        "kv_server: try `nc {}` and type `SET a 1`, `GET a`, `SHARD a`; Enter here stops",
        server.addrs[0].to_string().replace(':', " ")
    );
    let _ = io::stdin().lock().read_line(&mut String::new());
    server.stop()?;
    engine.shutdown()?;
    Ok(())
}

/// A blocking line client, as any program in any language could write it.
struct Conn {
    reader: BufReader<std::net::TcpStream>,
    writer: std::net::TcpStream,
}

impl Conn {
    fn connect(addr: SocketAddr) -> Result<Conn, BoxError> {
        let stream = std::net::TcpStream::connect(addr)?;
        stream.set_read_timeout(Some(Duration::from_secs(20)))?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            reader: BufReader::new(stream.try_clone()?),
            writer: stream,
        })
    }

    /// Sends one request line and returns the reply line.
    fn call(&mut self, request: &[u8]) -> Result<Vec<u8>, BoxError> {
        let mut line = request.to_vec();
        line.push(b'\n');
        self.writer.write_all(&line)?;
        self.reply()
    }

    fn reply(&mut self) -> Result<Vec<u8>, BoxError> {
        let mut reply = Vec::new();
        self.reader.read_until(b'\n', &mut reply)?;
        if reply.pop() != Some(b'\n') {
            return Err("connection closed before a full reply".into());
        }
        Ok(reply)
    }

    /// Sends `METRICS` and returns the Prometheus text that follows its
    /// reply line.
    fn metrics(&mut self) -> Result<String, BoxError> {
        let reply = self.call(b"METRICS")?;
        let length = reply
            .strip_prefix(b"METRICS ")
            .and_then(|n| std::str::from_utf8(n).ok()?.parse::<usize>().ok())
            .ok_or_else(|| format!("METRICS got {:?}", String::from_utf8_lossy(&reply)))?;
        let mut text = vec![0; length];
        io::Read::read_exact(&mut self.reader, &mut text)?;
        Ok(String::from_utf8(text)?)
    }

    /// Sends `request` and fails unless the reply is `expected`.
    fn expect(&mut self, request: &[u8], expected: &[u8]) -> Result<(), BoxError> {
        let reply = self.call(request)?;
        if reply != expected {
            return Err(format!(
                "{:?} got {:?}, expected {:?}",
                String::from_utf8_lossy(request),
                String::from_utf8_lossy(&reply),
                String::from_utf8_lossy(expected)
            )
            .into());
        }
        Ok(())
    }
}

fn cmd(parts: &[&[u8]]) -> Vec<u8> {
    parts.join(&b' ')
}

fn value_reply(value: &[u8]) -> Vec<u8> {
    cmd(&[b"VALUE", value])
}

/// The bounded demo: every command, every path, a restart.
fn self_test() -> Result<(), BoxError> {
    const KEYS: usize = 60;
    let data_dir = TempDataDir::new("kv_server");
    let mut requests = 0usize;

    // The values the server must hold.
    let mut model: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
    {
        let engine = start_engine(data_dir.path())?;
        let server = Server::start(&engine)?;
        let shards = engine.shard_count();
        let owner = |key: &[u8]| shard_of(&partition_of(key), shards);
        // Storage requests each shard should count: (local, forwarded).
        let mut expected_stats = vec![(0u64, 0u64); shards];

        // A shard-aware client: one connection per shard, each key sent to
        // the shard that owns it.
        let mut conns = server
            .addrs
            .iter()
            .map(|addr| Conn::connect(*addr))
            .collect::<Result<Vec<_>, _>>()?;
        let mut aware = |key: &[u8], request: &[u8], expected: &[u8]| {
            let shard = owner(key);
            expected_stats[shard].0 += 1;
            requests += 1;
            conns[shard].expect(request, expected)
        };
        for k in 0..KEYS {
            let key = format!("user:{k}").into_bytes();
            let value = format!("value of {k} {}", "x".repeat(k * 50)).into_bytes();
            aware(&key, &cmd(&[b"SET", &key, &value]), b"OK")?;
            model.insert(key, value);
        }
        for k in 0..KEYS {
            let key = format!("user:{k}").into_bytes();
            aware(&key, &cmd(&[b"GET", &key]), &value_reply(&model[&key]))?;
        }
        // Overwrite with shorter values (the truncating path), then longer.
        for k in (0..KEYS).step_by(3) {
            let key = format!("user:{k}").into_bytes();
            for value in [b"short".as_slice(), b"a much longer value than short"] {
                aware(&key, &cmd(&[b"SET", &key, value]), b"OK")?;
                aware(&key, &cmd(&[b"GET", &key]), &value_reply(value))?;
                model.insert(key.clone(), value.to_vec());
            }
        }
        // Deletes, and the missing-key replies.
        for k in (0..KEYS).step_by(4) {
            let key = format!("user:{k}").into_bytes();
            aware(&key, &cmd(&[b"DEL", &key]), b"DELETED")?;
            aware(&key, &cmd(&[b"GET", &key]), b"NOT_FOUND")?;
            aware(&key, &cmd(&[b"DEL", &key]), b"NOT_FOUND")?;
            model.remove(&key);
        }
        // Spaces in values, an empty value, binary keys and values.
        for (key, value) in [
            (
                b"greeting".as_slice(),
                b"hello, world  with  spaces".as_slice(),
            ),
            (b"empty", b""),
            (b"\xff\x00bin", b"\x01\x02\xfe"),
        ] {
            aware(key, &cmd(&[b"SET", key, value]), b"OK")?;
            aware(key, &cmd(&[b"GET", key]), &value_reply(value))?;
            model.insert(key.to_vec(), value.to_vec());
        }
        println!("kv_server: shard-aware client: {requests} requests, all answered right");

        // Every shard agrees where a key lives.
        for k in 0..10 {
            let key = format!("user:{k}").into_bytes();
            let shard = owner(&key);
            let expected = format!("SHARD {shard} {}", server.addrs[shard]);
            conns[k % shards].expect(&cmd(&[b"SHARD", &key]), expected.as_bytes())?;
        }

        // A naive client sends everything to shard 0; keys that live
        // elsewhere are run on their owner, and the answers are the same.
        let mut naive = Conn::connect(server.addrs[0])?;
        for k in 0..KEYS {
            let key = format!("user:{k}").into_bytes();
            let expected = match model.get(&key) {
                Some(value) => value_reply(value),
                None => b"NOT_FOUND".to_vec(),
            };
            naive.expect(&cmd(&[b"get", &key]), &expected)?;
            match owner(&key) {
                0 => expected_stats[0].0 += 1,
                _ => expected_stats[0].1 += 1,
            }
            requests += 1;
        }
        let key = b"naive:written";
        naive.expect(&cmd(&[b"SET", key, b"via shard 0"]), b"OK")?;
        match owner(key) {
            0 => expected_stats[0].0 += 1,
            _ => expected_stats[0].1 += 1,
        }
        requests += 1;
        model.insert(key.to_vec(), b"via shard 0".to_vec());

        // The shards' own counts: the shard-aware client never hopped.
        for (shard, (local, forwarded)) in expected_stats.iter().enumerate() {
            let expected = format!("STATS shard={shard} local={local} forwarded={forwarded}");
            conns[shard].expect(b"STATS", expected.as_bytes())?;
            println!("kv_server: {expected}");
        }

        check_metrics(&mut conns[0], shards)?;

        // Bad input gets an error reply, and the connection goes on.
        let long_key = vec![b'k'; MAX_KEY + 1];
        let bad: [&[u8]; 12] = [
            b"",
            b"FOO bar",
            b"\xff\xfe\xfd",
            b"SET",
            b"SET onlykey",
            b"GET",
            b"GET a b",
            b"DEL ",
            b"STATS now",
            b"METRICS all",
            b"SHARD",
            &cmd(&[b"SET", &long_key, b"v"]),
        ];
        for request in bad {
            let reply = naive.call(request)?;
            if !reply.starts_with(b"ERR ") {
                return Err(format!(
                    "{:?} got {:?}, expected ERR",
                    String::from_utf8_lossy(request),
                    String::from_utf8_lossy(&reply)
                )
                .into());
            }
        }
        naive.expect(b"GET greeting", b"VALUE hello, world  with  spaces")?;
        // A line over the limit is skipped with an error; the next works.
        naive.expect(&vec![b'x'; 3 * MAX_LINE], b"ERR line too long")?;
        naive.expect(b"GET empty", b"VALUE ")?;
        println!("kv_server: bad input answered with ERR, no crash");

        // Concurrency: clients on both paths hammer one key; each SET is
        // atomic with respect to the others, and every GET sees one whole
        // value.
        let hot = b"hot".to_vec();
        let workers: Vec<_> = (0..4)
            .map(|t| {
                // Half on the owner, half on another shard (forwarded).
                let addr = server.addrs[(owner(&hot) + t) % shards];
                let hot = hot.clone();
                std::thread::spawn(move || -> Result<(), BoxError> {
                    let mut conn = Conn::connect(addr)?;
                    for i in 0..20 {
                        let value = hot_value(t, i);
                        conn.expect(&cmd(&[b"SET", &hot, &value]), b"OK")?;
                        let reply = conn.call(&cmd(&[b"GET", &hot]))?;
                        let ok = reply.strip_prefix(b"VALUE ").is_some_and(is_hot_value);
                        if !ok {
                            return Err(format!(
                                "torn or wrong value: {:?}",
                                String::from_utf8_lossy(&reply)
                            )
                            .into());
                        }
                    }
                    conn.expect(b"QUIT", b"BYE")
                })
            })
            .collect();
        for worker in workers {
            worker.join().map_err(|_| "a client thread panicked")??;
            requests += 41;
        }
        let last = naive.call(b"GET hot")?;
        match last.strip_prefix(b"VALUE ") {
            Some(value) if is_hot_value(value) => model.insert(hot, value.to_vec()),
            _ => return Err("the hot key lost its value".into()),
        };
        println!("kv_server: 4 clients on 2 paths, 160 requests on one key, no torn value");

        naive.expect(b"QUIT", b"BYE")?;
        server.stop()?;
        engine.shutdown()?;
    }

    // A restart: a new engine on the same directory, a new server; every
    // acknowledged SET and DEL is there.
    let engine = start_engine(data_dir.path())?;
    let server = Server::start(&engine)?;
    let mut conns = server
        .addrs
        .iter()
        .map(|addr| Conn::connect(*addr))
        .collect::<Result<Vec<_>, _>>()?;
    let mut keys: HashSet<Vec<u8>> = model.keys().cloned().collect();
    keys.extend((0..KEYS).map(|k| format!("user:{k}").into_bytes()));
    for key in keys {
        let expected = match model.get(&key) {
            Some(value) => value_reply(value),
            None => b"NOT_FOUND".to_vec(),
        };
        let shard = shard_of(&partition_of(&key), engine.shard_count());
        conns[shard].expect(&cmd(&[b"GET", &key]), &expected)?;
        requests += 1;
    }
    println!("kv_server: after a restart, every acknowledged write is there");
    server.stop()?;
    engine.shutdown()?;
    println!("kv_server: self-test passed ({requests} requests)");
    Ok(())
}

/// Fetches `METRICS` and checks that every shard reports, with the writes
/// the self-test made counted.
fn check_metrics(conn: &mut Conn, shards: usize) -> Result<(), BoxError> {
    let text = conn.metrics()?;
    let writes: u64 = text
        .lines()
        .filter_map(|line| line.strip_prefix("shardblob_ops_total{"))
        .filter(|series| series.contains("op=\"write\""))
        .filter_map(|series| series.rsplit_once(' ')?.1.parse::<u64>().ok())
        .sum();
    for shard in 0..shards {
        if !text.contains(&format!("{{shard=\"{shard}\"")) {
            return Err(format!("METRICS has no series of shard {shard}").into());
        }
    }
    if writes == 0 {
        return Err("METRICS counts no write".into());
    }
    println!(
        "kv_server: METRICS served {} lines for {shards} shards, {writes} writes counted",
        text.lines().count()
    );
    Ok(())
}

/// The values the concurrency check writes: recognisable when whole.
fn hot_value(thread: usize, i: usize) -> Vec<u8> {
    let mut value = format!("t{thread}-i{i}-").into_bytes();
    value.resize(value.len() + (thread * 20 + i) % 7 * 300, b'z');
    value.push(b'!');
    value
}

fn is_hot_value(value: &[u8]) -> bool {
    (0..4).any(|t| (0..20).any(|i| value == hot_value(t, i)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_map_to_fixed_partitions() {
        // Pinned (64-bit FNV-1a, modulo 64): a change re-homes every key.
        assert_eq!(partition_of(b""), "kv-37");
        let got: Vec<String> = [b"a".as_slice(), b"user:1", b"\xff"]
            .iter()
            .map(|k| partition_of(k))
            .collect();
        assert_eq!(got, PINNED);
    }

    const PINNED: [&str; 3] = ["kv-12", "kv-43", "kv-46"];

    #[test]
    fn bad_lines_are_errors_not_panics() {
        let long_key = [b"GET ".as_slice(), &[b'k'; MAX_KEY + 1]].concat();
        for line in [
            b"".as_slice(),
            b"\r",
            b" ",
            b"SET",
            b"SET k",
            b"SET  v",
            b"GET",
            b"GET ",
            b"GET a b",
            b"DEL",
            b"QUIT now",
            b"\xff\xfe",
            &long_key,
        ] {
            assert!(parse(line).is_err(), "{:?}", String::from_utf8_lossy(line));
        }
    }

    #[test]
    fn good_lines_parse() {
        let Ok(Command::Op(Op::Set { key, value })) = parse(b"set k a  b\r") else {
            panic!("SET parses");
        };
        assert_eq!(
            (key.as_slice(), value.as_slice()),
            (b"k".as_slice(), b"a  b".as_slice())
        );
        assert!(
            matches!(parse(b"SET k "), Ok(Command::Op(Op::Set { value, .. })) if value.is_empty())
        );
        assert!(matches!(parse(b"Get k"), Ok(Command::Op(Op::Get { .. }))));
        assert!(matches!(parse(b"DEL k"), Ok(Command::Op(Op::Del { .. }))));
        assert!(matches!(parse(b"SHARD k"), Ok(Command::Shard { .. })));
        assert!(matches!(parse(b"STATS"), Ok(Command::Stats)));
        assert!(matches!(parse(b"metrics"), Ok(Command::Metrics)));
        assert!(matches!(parse(b"quit"), Ok(Command::Quit)));
        let key = vec![b'k'; MAX_KEY];
        assert!(parse(&[b"GET ".as_slice(), &key].concat()).is_ok());
    }
}

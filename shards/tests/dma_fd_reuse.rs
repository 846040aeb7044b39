//! A blocking call handed off by a DMA file must act on that file, even
//! when its future was dropped and the file closed before the call ran.
//!
//! glommio queues a `spawn_blocking` job when the future is first polled,
//! and dropping the future does not withdraw it. A job that carried only
//! the raw descriptor number could then run after the file was closed and
//! the number reused by another blob's file, and truncate that file. This
//! test forces the order: the executor's one blocking thread is held busy,
//! a truncate of file A is queued behind it and dropped, A is closed, B is
//! opened on the same descriptor number, and only then is the blocking
//! thread released. Before the fix B came out truncated.

use std::path::PathBuf;
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use futures_lite::future::poll_once;
use glommio::{LocalExecutorBuilder, Placement, PoolPlacement};
use shardblob_shards::fs::dma::DmaFs;
use shardblob_shards::fs::{File, FileSystem, WriteBuf, BLOCK_SIZE};
use shardblob_shards::DataDir;

fn fresh_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("shardblob-fd-reuse-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[test]
fn a_dropped_handed_off_truncate_never_touches_a_file_that_reuses_its_descriptor() {
    let dir = fresh_dir();
    let data_dir = DataDir::lock(&dir).unwrap();
    let executor = LocalExecutorBuilder::new(Placement::Unbound)
        .blocking_thread_pool_placement(PoolPlacement::Unbound(1))
        .io_memory(1 << 20)
        .make()
        .unwrap();
    executor.run(async move {
        // Every blocking call is handed off.
        let fs = DmaFs::new(data_dir)
            .await
            .unwrap()
            .sync_inline_when_idle(false);
        let page = |fill: u8, file: &<DmaFs as FileSystem>::File| {
            let mut buf = file.alloc(4 * BLOCK_SIZE as usize);
            buf.bytes_mut().fill(fill);
            buf
        };
        let a = fs.open_file(&dir.join("a"), true).await.unwrap();
        a.write_at(page(1, &a), 0, false).await.unwrap();

        // Hold the only blocking thread until B exists.
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let release_rx = Arc::new(Mutex::new(release_rx));
        let blocker = glommio::executor().spawn_blocking(move || {
            let _ = release_rx
                .lock()
                .unwrap()
                .recv_timeout(Duration::from_secs(30));
        });
        let mut blocker = Box::pin(blocker);
        assert!(poll_once(blocker.as_mut()).await.is_none());

        // A truncate of A, queued behind the blocker, then dropped.
        let mut truncate = Box::pin(a.set_len(0));
        assert!(poll_once(truncate.as_mut()).await.is_none(), "queued");
        drop(truncate);
        drop(a);
        // glommio closes a dropped DmaFile on a later reactor pass.
        glommio::timer::sleep(Duration::from_millis(5)).await;

        let b = fs.open_file(&dir.join("b"), true).await.unwrap();
        b.write_at(page(2, &b), 0, false).await.unwrap();
        let b_fd = b_fd_of(&dir);
        release_tx.send(()).unwrap();
        blocker.await;
        // Let any queued job run to its end.
        glommio::executor().spawn_blocking(|| ()).await;
        let b_len = std::fs::metadata(dir.join("b")).unwrap().len();
        assert_eq!(
            b_len,
            4 * BLOCK_SIZE,
            "B (fd {b_fd:?}) was truncated by A's dropped call"
        );
        let _ = b.sync_data().await;
        std::fs::remove_dir_all(&dir).unwrap();
    });

    /// The descriptor number of `<dir>/b` in this process, for the message.
    fn b_fd_of(dir: &std::path::Path) -> Option<i32> {
        std::fs::read_dir("/proc/self/fd").ok()?.find_map(|e| {
            let e = e.ok()?;
            let target = std::fs::read_link(e.path()).ok()?;
            (target == dir.join("b")).then(|| e.file_name().to_str()?.parse().ok())?
        })
    }
}

//! The disk thread: it assembles, hashes and writes a torrent's incoming pieces, so that
//! the torrent actor only parses and decides.
//!
//! The actor hands over each new block; the thread holds a piece's blocks until it is
//! complete (see [`PieceAssembler`]), then hashes it (paired with the next complete
//! piece when one follows closely) and writes it, and only then reports it. A piece the
//! actor hears is good is therefore on disk, which is what resume state relies on.
//!
//! Flow control: the actor's queue to the thread is bounded, so a slow disk blocks the
//! actor, which stops reading sockets, which slows the peers (as a synchronous write in
//! the actor did). The thread never waits for the actor: its reports go through an
//! unbounded channel, bounded in practice by the pieces in flight.

use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use shoal_core::{Block, Metainfo};
use shoal_storage::{PieceAssembler, StorageError, TorrentFiles};
use tokio::sync::mpsc;

/// Batches queued for the thread before the actor waits. A batch is the blocks of one
/// read from one socket (at most 256 KiB, usually far less).
const QUEUE: usize = 16;
/// Block data held in memory by pieces being assembled, at least (two pieces always fit).
const MIN_HELD: usize = 4 * 1024 * 1024;
const MAX_HELD: usize = 64 * 1024 * 1024;
/// How long a complete piece waits for a partner to be hashed with. At full speed the
/// next piece completes within a few milliseconds; at a trickle it is not worth waiting.
const PARTNER_WAIT: Duration = Duration::from_millis(5);

/// What the disk thread reports.
#[derive(Debug)]
pub enum DiskResult {
    /// A piece is on disk and was hashed: `good` if it matched the torrent's hash.
    Piece { piece: u32, good: bool },
    /// A write failed (a full disk, a file removed from under us): the torrent cannot go on.
    Failed(StorageError),
}

/// The actor's handle on its disk thread.
pub struct Disk {
    jobs: Option<SyncSender<Vec<Job>>>,
    /// Blocks not handed over yet: the actor hands them over in batches, since waking
    /// the thread for every 16 KiB block costs more than the block's write.
    pending: Vec<Job>,
    thread: Option<std::thread::JoinHandle<()>>,
}

struct Job {
    block: Block,
    data: Bytes,
    /// The last block of its piece to arrive.
    completes: bool,
}

impl Disk {
    pub fn spawn(
        files: Arc<TorrentFiles>,
        metainfo: Arc<Metainfo>,
        results: mpsc::UnboundedSender<DiskResult>,
    ) -> Self {
        let (jobs, queue) = sync_channel(QUEUE);
        let piece_length = metainfo.info.piece_length as usize;
        let held = (2 * piece_length).clamp(MIN_HELD, MAX_HELD);
        let thread = std::thread::Builder::new()
            .name("shoal-disk".into())
            .spawn(move || {
                run(
                    &files,
                    &metainfo,
                    PieceAssembler::new(held),
                    &queue,
                    &results,
                )
            })
            .expect("spawning a thread");
        Disk {
            jobs: Some(jobs),
            pending: Vec::new(),
            thread: Some(thread),
        }
    }

    /// Queues a newly received block for the thread (see [`flush`](Self::flush)).
    pub fn write(&mut self, block: Block, data: Bytes, completes: bool) {
        self.pending.push(Job {
            block,
            data,
            completes,
        });
    }

    /// Hands the queued blocks to the thread; waits while the thread is behind.
    pub fn flush(&mut self) {
        if let (Some(jobs), false) = (&self.jobs, self.pending.is_empty()) {
            // An error means the thread has stopped after a failure it already reported.
            let _ = jobs.send(std::mem::take(&mut self.pending));
        }
    }

    /// Lets the thread finish the complete pieces it holds and waits for it; their
    /// results are in the results channel when this returns.
    pub fn finish(&mut self) {
        self.flush();
        self.jobs = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Disk {
    fn drop(&mut self) {
        self.finish();
    }
}

fn run(
    files: &TorrentFiles,
    metainfo: &Metainfo,
    mut assembler: PieceAssembler,
    queue: &Receiver<Vec<Job>>,
    results: &mpsc::UnboundedSender<DiskResult>,
) {
    let report = |finished: Vec<shoal_storage::Finished>| -> bool {
        for (piece, hash) in finished {
            let result = match hash {
                Ok(hash) => DiskResult::Piece {
                    piece,
                    good: metainfo.info.piece_matches(piece as usize, &hash),
                },
                Err(e @ StorageError::Io { .. }) => {
                    let _ = results.send(DiskResult::Failed(e));
                    return false;
                }
                // The data could not be read back as written: as good as corrupt.
                Err(_) => DiskResult::Piece { piece, good: false },
            };
            let _ = results.send(result);
            // Best effort: a failure here only means a longer sync later.
            let length = u64::from(metainfo.info.piece_size(piece as usize));
            let _ = files.start_writeback(
                u64::from(piece) * u64::from(metainfo.info.piece_length),
                length,
            );
        }
        true
    };
    loop {
        let batch = if assembler.ready() == 0 {
            queue.recv().map_err(|_| RecvTimeoutError::Disconnected)
        } else {
            queue.recv_timeout(PARTNER_WAIT)
        };
        let force = match batch {
            Ok(batch) => {
                for job in batch {
                    let block = job.block;
                    if let Err(e) = assembler.add_block(files, block.piece, block.offset, job.data)
                    {
                        let _ = results.send(DiskResult::Failed(e));
                        return;
                    }
                    if job.completes {
                        assembler.piece_complete(block.piece);
                    }
                }
                false
            }
            Err(RecvTimeoutError::Timeout) => true,
            Err(RecvTimeoutError::Disconnected) => {
                report(assembler.finish_ready(files, true));
                return;
            }
        };
        if !report(assembler.finish_ready(files, force)) {
            return;
        }
    }
}

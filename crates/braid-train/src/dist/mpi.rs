//! [`Collective`] over MPI through the `mpi` crate (rsmpi, `examples/reduce.rs` and
//! `examples/broadcast.rs` show the calls used): `MPI_Allreduce` with `MPI_SUM` on f32
//! buckets and `MPI_Bcast` from rank 0. Only the thread that initialised MPI calls it
//! (`MPI_THREAD_FUNNELED` is all it asks for); a watchdog thread stops this rank with a
//! message when a collective has waited longer than `BRAID_DIST_TIMEOUT` seconds (default
//! 1,800), so that a job whose peer died unnoticed by the launcher ends instead of hanging.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use braid_core::{Error, Result};
use mpi::collective::SystemOperation;
use mpi::environment::Universe;
use mpi::topology::SimpleCommunicator;
use mpi::traits::{Communicator as _, CommunicatorCollectives, Root};

use super::Collective;

/// Seconds a collective may wait for the other ranks before this rank gives up.
const DEFAULT_TIMEOUT_S: u64 = 1_800;

/// The MPI world of this job (`MPI_COMM_WORLD`); MPI is finalised when it is dropped.
pub struct Mpi {
    world: SimpleCommunicator,
    rank: usize,
    size: usize,
    /// Since when, and in what, this rank waits for the others (`None` outside a collective).
    waiting: Arc<Mutex<Option<(Instant, &'static str)>>>,
    // Dropped last: finalises MPI.
    _universe: Universe,
}

impl std::fmt::Debug for Mpi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Mpi {{ rank: {}, size: {} }}", self.rank, self.size)
    }
}

impl Mpi {
    /// Initialises MPI (once per process) and starts the watchdog.
    pub fn init() -> Result<Self> {
        let universe = mpi::initialize()
            .ok_or_else(|| Error::Invalid("MPI was already initialised in this process".into()))?;
        let world = universe.world();
        let (rank, size) = (world.rank() as usize, world.size() as usize);
        let timeout = match std::env::var("BRAID_DIST_TIMEOUT") {
            Ok(v) => v.trim().parse::<u64>().ok().filter(|&s| s > 0).ok_or_else(|| {
                Error::config("BRAID_DIST_TIMEOUT", format!("{v:?} is not a number of seconds > 0"))
            })?,
            Err(_) => DEFAULT_TIMEOUT_S,
        };
        let waiting = Arc::new(Mutex::new(None::<(Instant, &'static str)>));
        let watched = Arc::clone(&waiting);
        std::thread::Builder::new()
            .name("braid-dist-watchdog".into())
            .spawn(move || loop {
                std::thread::sleep(Duration::from_millis(500));
                let since = watched.lock().ok().and_then(|w| *w);
                if let Some((t0, what)) = since {
                    if t0.elapsed() > Duration::from_secs(timeout) {
                        eprintln!(
                            "braid: rank {rank} of {size}: no answer from the other ranks in \
                             {what} for {timeout} s (BRAID_DIST_TIMEOUT): a rank died or hangs; \
                             stopping. Continue the run with `braid train RECIPE --resume`."
                        );
                        std::process::exit(70);
                    }
                }
            })
            .map_err(|e| Error::Invalid(format!("starting the MPI watchdog thread: {e}")))?;
        Ok(Self { world, rank, size, waiting, _universe: universe })
    }

    fn watched<T>(&self, what: &'static str, f: impl FnOnce() -> T) -> T {
        if let Ok(mut w) = self.waiting.lock() {
            *w = Some((Instant::now(), what));
        }
        let out = f();
        if let Ok(mut w) = self.waiting.lock() {
            *w = None;
        }
        out
    }
}

impl Collective for Mpi {
    fn rank(&self) -> usize {
        self.rank
    }

    fn size(&self) -> usize {
        self.size
    }

    fn engine(&self) -> &'static str {
        "mpi"
    }

    fn all_reduce_sum(&self, buf: &mut [f32]) -> Result<()> {
        let send = buf.to_vec();
        self.watched("an all-reduce", || {
            self.world.all_reduce_into(&send[..], buf, SystemOperation::sum())
        });
        Ok(())
    }

    fn broadcast_f32(&self, buf: &mut [f32]) -> Result<()> {
        self.watched("a broadcast", || self.world.process_at_rank(0).broadcast_into(buf));
        Ok(())
    }

    fn broadcast_bytes(&self, bytes: &mut Vec<u8>) -> Result<()> {
        let mut len = [bytes.len() as u64];
        self.watched("a broadcast", || self.world.process_at_rank(0).broadcast_into(&mut len[..]));
        let len = usize::try_from(len[0])
            .map_err(|_| Error::Invalid(format!("broadcast of {} bytes", len[0])))?;
        bytes.resize(len, 0);
        self.watched("a broadcast", || {
            self.world.process_at_rank(0).broadcast_into(&mut bytes[..])
        });
        Ok(())
    }

    fn abort(&self, code: i32) -> ! {
        self.world.abort(code)
    }
}

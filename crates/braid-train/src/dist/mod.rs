//! Data-parallel training across processes, as PyTorch's DistributedDataParallel does it
//! (`torch/nn/parallel/distributed.py`): every rank holds the whole model, reads its own
//! shard of each global batch from the one seeded order, and the ranks' gradients are
//! summed by an all-reduce before an optimiser step that is then identical everywhere.
//! The collective itself is an existing engine behind [`Collective`]: MPI (the `mpi`
//! feature, through the `mpi` crate over the system's OpenMPI / MPICH), launched by
//! `mpirun` or `srun`.
//!
//! Exactness: a shard's loss is the mean over what it holds (examples, or learnt tokens:
//! [`crate::Task::weighted_loss`]), so each rank sends its gradient and loss times that
//! count, plus the count; after the sum, dividing by the total count gives the gradient of
//! the whole micro-batch's mean loss, the one a single process computes (up to the order
//! of float additions). Variables that got no gradient on any rank stay without one, as in
//! a single process.

#[cfg(feature = "mpi")]
mod mpi;
#[cfg(feature = "nccl")]
mod nccl;

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use braid_core::{Error, Result};
use candle_core::{DType, Tensor, Var};

use crate::Grads;

#[cfg(feature = "mpi")]
pub use self::mpi::Mpi;
#[cfg(feature = "nccl")]
pub use self::nccl::Nccl;

/// Floats per all-reduce call: gradients go in buckets of at most this many (16 MiB of
/// f32), so that the engine's own buffers stay bounded for any model size.
pub const BUCKET: usize = 4 << 20;

/// A group of processes that train one model together.
pub trait Collective: Debug {
    /// This process's rank, `0..size()`; rank 0 writes the run's files.
    fn rank(&self) -> usize;
    /// Processes in the group.
    fn size(&self) -> usize;
    /// What carries the messages (`"mpi"`).
    fn engine(&self) -> &'static str;
    /// Element-wise sum of `buf` over every rank, in place, identical on every rank.
    fn all_reduce_sum(&self, buf: &mut [f32]) -> Result<()>;
    /// Rank 0's `buf` copied into every rank's (same length everywhere).
    fn broadcast_f32(&self, buf: &mut [f32]) -> Result<()>;
    /// Rank 0's bytes on every rank (the others pass anything; lengths may differ).
    fn broadcast_bytes(&self, bytes: &mut Vec<u8>) -> Result<()>;
    /// Stops every rank of the job (after an error on this one, so that no rank waits
    /// for it in a collective).
    fn abort(&self, code: i32) -> !;
}

/// The collective a run trains under, shared by the loop and the command (MPI is called
/// from the thread that initialised it only, so not `Send`).
pub type Shared = Rc<dyn Collective>;

/// How the processes of a job were launched, read from the launcher's environment:
/// `(rank, size, launcher)`, or `None` outside a launcher (or for a job of one).
pub fn launched() -> Option<(usize, usize, &'static str)> {
    let read = |k: &str| std::env::var(k).ok().and_then(|v| v.trim().parse::<usize>().ok());
    let known = [
        ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "mpirun (Open MPI)"),
        ("PMI_RANK", "PMI_SIZE", "mpirun (MPICH / PMI)"),
        ("PMIX_RANK", "SLURM_NTASKS", "srun (PMIx)"),
        ("SLURM_PROCID", "SLURM_NTASKS", "srun"),
    ];
    known.iter().find_map(|(r, s, who)| {
        let (rank, size) = (read(r)?, read(s)?);
        (size > 1).then_some((rank, size, *who))
    })
}

/// The job's collective when this process was started as one rank of several by `mpirun`
/// or `srun`; `None` for a single process. `BRAID_DIST_ENGINE=nccl` picks NCCL for the
/// all-reduce (the `nccl` feature), MPI otherwise. Started by a launcher without the `mpi`
/// feature built in, an error that says how to build it (rather than N processes each
/// training alone and overwriting one another's files).
pub fn from_env() -> Result<Option<Shared>> {
    let Some((rank, size, who)) = launched() else { return Ok(None) };
    #[cfg(feature = "mpi")]
    {
        let _ = (rank, size, who);
        let engine = std::env::var("BRAID_DIST_ENGINE").unwrap_or_else(|_| "mpi".into());
        match engine.as_str() {
            "mpi" => Ok(Some(Rc::new(Mpi::init()?))),
            #[cfg(feature = "nccl")]
            "nccl" => Ok(Some(Rc::new(Nccl::init(Mpi::init()?)?))),
            #[cfg(not(feature = "nccl"))]
            "nccl" => Err(Error::config(
                "BRAID_DIST_ENGINE",
                "this braid was built without NCCL (build with --features nccl)",
            )),
            other => Err(Error::config(
                "BRAID_DIST_ENGINE",
                format!("{other:?} is not an engine: mpi or nccl"),
            )),
        }
    }
    #[cfg(not(feature = "mpi"))]
    Err(Error::Invalid(format!(
        "started by {who} as rank {rank} of {size}, but this braid was built without MPI; \
         build it with `cargo install --path crates/braid-cli --features mpi` \
         (needs `apt-get install openmpi-bin libopenmpi-dev libclang-dev`)"
    )))
}

/// Rank `rank`'s part of a global batch of `indices` split over `size` ranks: contiguous,
/// sizes differing by at most one (the first `len % size` ranks take one more).
pub fn shard(indices: &[usize], rank: usize, size: usize) -> &[usize] {
    let size = size.max(1);
    let (base, extra) = (indices.len() / size, indices.len() % size);
    let start = rank * base + rank.min(extra);
    let len = base + usize::from(rank < extra);
    &indices[start.min(indices.len())..(start + len).min(indices.len())]
}

/// One micro-batch's contribution of this rank before the all-reduce.
pub struct Partial {
    /// Gradients of the shard's mean loss (absent for an empty shard).
    pub grads: Grads,
    /// The shard's mean loss.
    pub loss: f64,
    /// What the mean is over (examples or tokens); 0 for an empty shard.
    pub weight: f64,
}

/// Sums every rank's weighted gradients and losses and divides by the summed weight: the
/// gradients and loss of the whole micro-batch. `vars` fixes the layout (every rank lists
/// the same variables in the same order). Returns the time spent in the collective too.
pub fn reduce(
    coll: &dyn Collective,
    vars: &[(String, Var)],
    part: &Partial,
) -> Result<(Grads, f64, std::time::Duration)> {
    // Layout: every variable's gradient times the weight, one "has a gradient" flag per
    // variable, the weighted loss, the weight.
    let sizes: Vec<usize> = vars.iter().map(|(_, v)| v.elem_count()).collect();
    let total: usize = sizes.iter().sum();
    let mut buf = vec![0f32; total + vars.len() + 2];
    let mut at = 0;
    for (k, ((name, _), &n)) in vars.iter().zip(&sizes).enumerate() {
        if let Some(g) = part.grads.get(name) {
            let g = (g.to_dtype(DType::F32)?.flatten_all()? * part.weight)?.to_vec1::<f32>()?;
            buf[at..at + n].copy_from_slice(&g);
            buf[total + k] = 1.0;
        }
        at += n;
    }
    buf[total + vars.len()] = (part.loss * part.weight) as f32;
    buf[total + vars.len() + 1] = part.weight as f32;
    let t0 = std::time::Instant::now();
    for bucket in buf.chunks_mut(BUCKET) {
        coll.all_reduce_sum(bucket)?;
    }
    let spent = t0.elapsed();
    let weight = f64::from(buf[total + vars.len() + 1]);
    if weight <= 0.0 {
        return Err(Error::Invalid("data-parallel step: every rank's shard was empty".into()));
    }
    let mut map = BTreeMap::new();
    let mut at = 0;
    for (k, ((name, var), &n)) in vars.iter().zip(&sizes).enumerate() {
        if buf[total + k] > 0.0 {
            let g = Tensor::from_slice(&buf[at..at + n], var.shape(), var.device())?;
            map.insert(name.clone(), (g / weight)?.to_dtype(var.dtype())?);
        }
        at += n;
    }
    let loss = f64::from(buf[total + vars.len()]) / weight;
    Ok((Grads::from_map(map), loss, spent))
}

/// Rank 0's values of `vars` on every rank (DDP's broadcast of the module at start).
pub fn broadcast_vars(coll: &dyn Collective, vars: &[(String, Var)]) -> Result<()> {
    for (_, var) in vars {
        let mut buf = var.as_tensor().to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        for bucket in buf.chunks_mut(BUCKET) {
            coll.broadcast_f32(bucket)?;
        }
        let t = Tensor::from_slice(&buf, var.shape(), var.device())?.to_dtype(var.dtype())?;
        var.set(&t)?;
    }
    Ok(())
}

/// Rank 0's checkpoint directory `dir` (its files, not sub-folders) copied to every other
/// rank, which writes them into `into` (a folder it creates; the caller removes it).
/// Returns where the checkpoint now is on this rank: `dir` on rank 0, `into` elsewhere.
pub fn broadcast_dir(coll: &dyn Collective, dir: Option<&Path>, into: &Path) -> Result<PathBuf> {
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    let root = coll.rank() == 0;
    if root {
        let dir = dir.ok_or_else(|| Error::Invalid("rank 0 has no checkpoint to send".into()))?;
        for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
            let entry = entry.map_err(|e| Error::io(dir, e))?;
            if entry.file_type().map_err(|e| Error::io(entry.path(), e))?.is_file() {
                let bytes = std::fs::read(entry.path()).map_err(|e| Error::io(entry.path(), e))?;
                files.push((entry.file_name().to_string_lossy().into_owned(), bytes));
            }
        }
    } else {
        std::fs::create_dir_all(into).map_err(|e| Error::io(into, e))?;
    }
    let mut count = (files.len() as u64).to_le_bytes().to_vec();
    coll.broadcast_bytes(&mut count)?;
    let count = u64::from_le_bytes(
        count
            .try_into()
            .map_err(|_| Error::Invalid("checkpoint broadcast: a malformed file count".into()))?,
    ) as usize;
    for k in 0..count {
        let (name, mut bytes) = files.get(k).cloned().unwrap_or_default();
        let mut name = name.into_bytes();
        coll.broadcast_bytes(&mut name)?;
        coll.broadcast_bytes(&mut bytes)?;
        if !root {
            let name = String::from_utf8(name)
                .ok()
                .filter(|n| !n.contains(['/', '\\']) && n != ".." && n != "." && !n.is_empty())
                .ok_or_else(|| Error::Invalid("checkpoint broadcast: a bad file name".into()))?;
            let path = into.join(name);
            std::fs::write(&path, &bytes).map_err(|e| Error::io(&path, e))?;
        }
    }
    Ok(match (root, dir) {
        (true, Some(d)) => d.to_path_buf(),
        _ => into.to_path_buf(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_cover_the_batch_in_order() {
        let idx: Vec<usize> = (0..10).collect();
        let parts: Vec<&[usize]> = (0..3).map(|r| shard(&idx, r, 3)).collect();
        assert_eq!(parts, vec![&[0, 1, 2, 3][..], &[4, 5, 6], &[7, 8, 9]]);
        assert_eq!(shard(&idx[..1], 1, 2), &[] as &[usize]);
        assert_eq!(shard(&idx, 0, 1), &idx[..]);
    }
}

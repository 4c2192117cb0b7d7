//! [`Collective`] whose gradient all-reduce runs on NVIDIA GPUs through NCCL (cudarc's
//! `nccl::safe::Comm`, `ncclAllReduce` with `ncclSum` on f32), one GPU per rank (the
//! launcher's local rank, modulo the GPUs the node has). MPI launches the job and
//! bootstraps it, as NCCL's own examples do: rank 0 draws the `ncclUniqueId` and
//! `MPI_Bcast` hands it to the others; broadcasts and `abort` stay on MPI.
//!
//! The loop's tensors are on the CPU until Braid has a CUDA build (issue 23), so each
//! bucket is copied to the GPU, reduced there and copied back. CUDA and NCCL are loaded
//! when the job starts (cudarc's dynamic loading): building needs no CUDA toolkit, and a
//! machine without them gets an error naming what is missing.

use std::sync::Arc;

use braid_core::{Error, Result};
use cudarc::driver::{CudaContext, CudaStream};
use cudarc::nccl::safe::{Comm, Id, ReduceOp};

use super::{Collective, Mpi};

/// NCCL for the all-reduce, MPI for the rest.
pub struct Nccl {
    mpi: Mpi,
    comm: Comm,
    stream: Arc<CudaStream>,
}

impl std::fmt::Debug for Nccl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Nccl {{ rank: {}, size: {} }}", self.mpi.rank(), self.mpi.size())
    }
}

/// This process's index among the ranks on its node.
fn local_rank() -> usize {
    ["OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "SLURM_LOCALID"]
        .iter()
        .find_map(|k| std::env::var(k).ok()?.trim().parse().ok())
        .unwrap_or(0)
}

fn cuda_err(what: &str, e: impl std::fmt::Debug) -> Error {
    Error::Invalid(format!("NCCL backend: {what}: {e:?}"))
}

impl Nccl {
    /// Opens this rank's GPU and joins the job's NCCL communicator.
    pub fn init(mpi: Mpi) -> Result<Self> {
        // cudarc panics when libcuda cannot be loaded; that becomes an error here.
        let opened = std::panic::catch_unwind(|| {
            let gpus = CudaContext::device_count()?.max(1) as usize;
            CudaContext::new(local_rank() % gpus)
        });
        let ctx = match opened {
            Ok(ctx) => ctx.map_err(|e| cuda_err("opening the GPU", e))?,
            Err(_) => {
                return Err(Error::Invalid(
                    "NCCL backend: the CUDA driver (libcuda.so) could not be loaded; \
                     use the MPI backend (unset BRAID_DIST_ENGINE) on machines without GPUs"
                        .into(),
                ))
            }
        };
        let stream = ctx.default_stream();
        let mut id: Vec<u8> = if mpi.rank() == 0 {
            let id = std::panic::catch_unwind(Id::new)
                .map_err(|_| Error::Invalid("NCCL backend: libnccl.so could not be loaded".into()))?
                .map_err(|e| cuda_err("ncclGetUniqueId", e))?;
            id.internal().iter().map(|&c| c as u8).collect()
        } else {
            Vec::new()
        };
        mpi.broadcast_bytes(&mut id)?;
        let mut internal = [0 as std::ffi::c_char; 128];
        if id.len() != internal.len() {
            return Err(Error::Invalid(format!("NCCL backend: a unique id of {} bytes", id.len())));
        }
        for (dst, &src) in internal.iter_mut().zip(&id) {
            *dst = src as std::ffi::c_char;
        }
        let comm = Comm::from_rank(stream.clone(), mpi.rank(), mpi.size(), Id::uninit(internal))
            .map_err(|e| cuda_err("ncclCommInitRank", e))?;
        Ok(Self { mpi, comm, stream })
    }
}

impl Collective for Nccl {
    fn rank(&self) -> usize {
        self.mpi.rank()
    }

    fn size(&self) -> usize {
        self.mpi.size()
    }

    fn engine(&self) -> &'static str {
        "nccl"
    }

    fn all_reduce_sum(&self, buf: &mut [f32]) -> Result<()> {
        let mut dev = self.stream.memcpy_stod(buf).map_err(|e| cuda_err("copy to GPU", e))?;
        self.comm
            .all_reduce_in_place(&mut dev, &ReduceOp::Sum)
            .map_err(|e| cuda_err("ncclAllReduce", e))?;
        let host = self.stream.memcpy_dtov(&dev).map_err(|e| cuda_err("copy from GPU", e))?;
        buf.copy_from_slice(&host);
        Ok(())
    }

    fn broadcast_f32(&self, buf: &mut [f32]) -> Result<()> {
        self.mpi.broadcast_f32(buf)
    }

    fn broadcast_bytes(&self, bytes: &mut Vec<u8>) -> Result<()> {
        self.mpi.broadcast_bytes(bytes)
    }

    fn abort(&self, code: i32) -> ! {
        self.mpi.abort(code)
    }
}

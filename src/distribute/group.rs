//! Several processes, one per machine (or per GPU), training one model together: each
//! knows its rank (0, 1, ...) and the world size, and they agree on NCCL's 128-byte id
//! before joining. Rank 0 makes the id and writes it to a file every process can read (a
//! shared folder); the others wait for it. Then every process builds its NCCL
//! communicator with `ncclCommInitRank` and trains on its shard of each global batch.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::{Error, Result};

/// The size of NCCL's unique id.
pub const ID_BYTES: usize = 128;

/// This process's place among the processes that train together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessGroup {
    /// This process's number, 0 to `world_size - 1`; rank 0 makes the id.
    pub rank: usize,
    /// How many processes train together.
    pub world_size: usize,
    /// Where rank 0 writes the id and the others read it: a fresh path for every run,
    /// in a folder all of them see.
    pub id_file: PathBuf,
    /// How long ranks other than 0 wait for the file.
    pub timeout: Duration,
}

impl ProcessGroup {
    /// Checks the numbers: a rank below the world size, a world of at least one.
    pub fn new(rank: usize, world_size: usize, id_file: impl AsRef<Path>) -> Result<Self> {
        if world_size == 0 || rank >= world_size {
            return Err(Error::Device {
                spec: format!("rank {rank} of {world_size}"),
                detail: "the rank must be below the world size".into(),
                fix: "number the processes 0 to world size - 1 (--rank 0 --world-size 2 on the first machine, --rank 1 --world-size 2 on the second)".into(),
            });
        }
        Ok(ProcessGroup {
            rank,
            world_size,
            id_file: id_file.as_ref().to_path_buf(),
            timeout: Duration::from_secs(300),
        })
    }

    /// The shared id: rank 0 makes it with `make` and writes it (refusing a file left
    /// by an earlier run, which would make the others join the wrong run); the others
    /// wait for the file, up to `timeout`.
    pub fn share_id(
        &self,
        make: impl FnOnce() -> Result<[u8; ID_BYTES]>,
    ) -> Result<[u8; ID_BYTES]> {
        if self.rank == 0 {
            if self.id_file.exists() {
                return Err(Error::Device {
                    spec: self.id_file.display().to_string(),
                    detail: "the id file is already there, perhaps from an earlier run".into(),
                    fix: "delete it, or give every process of this run a new --nccl-id path".into(),
                });
            }
            let id = make()?;
            crate::io::write_bytes_atomic(&self.id_file, &id)?;
            return Ok(id);
        }
        let start = Instant::now();
        loop {
            // The file appears whole or not at all: rank 0 writes it atomically.
            if let Ok(bytes) = std::fs::read(&self.id_file) {
                return bytes.try_into().map_err(|bytes: Vec<u8>| Error::Device {
                    spec: self.id_file.display().to_string(),
                    detail: format!("{} bytes where NCCL's id has {ID_BYTES}", bytes.len()),
                    fix: "point every process at the file rank 0 of this run writes".into(),
                });
            }
            if start.elapsed() > self.timeout {
                return Err(Error::Device {
                    spec: self.id_file.display().to_string(),
                    detail: format!(
                        "rank {} waited {:.0} s and rank 0 never wrote the id",
                        self.rank,
                        self.timeout.as_secs_f64()
                    ),
                    fix: "start rank 0 with the same --nccl-id path, in a folder both machines see"
                        .into(),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Which shards of a global batch cut into `world_size * local` shards belong to
    /// this process's `local` replicas.
    pub fn shards(&self, local: usize) -> std::ops::Range<usize> {
        self.rank * local..(self.rank + 1) * local
    }
}

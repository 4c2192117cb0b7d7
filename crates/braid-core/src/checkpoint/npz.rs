//! NumPy `.npz` archives: a zip of `.npy` files, read in archive order and written
//! deflate-compressed (like `np.savez_compressed`) through a `.tmp` file renamed into place.

use std::io::{Read, Write};
use std::path::Path;

use super::npy::{atomic_write, encode_npy, parse_npy, NpyArray};
use crate::{Error, Result};

/// Reads every array of a `.npz` archive, keys without `.npy`, in archive order.
pub fn read_npz(path: impl AsRef<Path>) -> Result<Vec<(String, NpyArray)>> {
    let path = path.as_ref();
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let zerr = |e: zip::result::ZipError| Error::format(path, format!("bad .npz archive: {e}"));
    let mut archive = zip::ZipArchive::new(std::io::BufReader::new(file)).map_err(zerr)?;
    let mut out = Vec::with_capacity(archive.len());
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i).map_err(zerr)?;
        let name = entry.name().to_string();
        let mut bytes = Vec::with_capacity(usize::try_from(entry.size()).unwrap_or(0).min(1 << 30));
        entry
            .read_to_end(&mut bytes)
            .map_err(|e| Error::format(path, format!("entry `{name}`: {e}")))?;
        let array =
            parse_npy(&bytes).map_err(|m| Error::format(path, format!("entry `{name}`: {m}")))?;
        let key = name.strip_suffix(".npy").unwrap_or(&name).to_string();
        out.push((key, array));
    }
    Ok(out)
}

/// Writes a deflate-compressed `.npz` archive (through `path.tmp`, renamed into place).
pub fn write_npz(path: impl AsRef<Path>, arrays: &[(String, NpyArray)]) -> Result<()> {
    let path = path.as_ref();
    let mut encoded = Vec::with_capacity(arrays.len());
    for (name, a) in arrays {
        let bytes =
            encode_npy(a).map_err(|m| Error::format(path, format!("array `{name}`: {m}")))?;
        encoded.push((format!("{name}.npy"), bytes));
    }
    atomic_write(path, |f| {
        let mut zip = zip::ZipWriter::new(f);
        for (name, bytes) in &encoded {
            let opts = zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Deflated)
                .large_file(bytes.len() as u64 >= u64::from(u32::MAX));
            zip.start_file(name.as_str(), opts).map_err(std::io::Error::other)?;
            zip.write_all(bytes)?;
        }
        zip.finish().map_err(std::io::Error::other)?;
        Ok(())
    })
}

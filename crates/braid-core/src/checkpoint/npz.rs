//! NumPy `.npz` archives: a zip of `.npy` files, read in archive order and written
//! deflate-compressed (like `np.savez_compressed`) through a `.tmp` file renamed into place.

use std::io::{Read, Write};
use std::path::Path;

use super::npy::{atomic_write, encode_npy, header_end, parse_npy_header, NpyArray, PREFIX_LEN};
use crate::{limits, Error, Result};

/// Reads every array of a `.npz` archive, keys without `.npy`, in archive order.
///
/// A zip states each entry's uncompressed size; their sum must be within
/// [`limits::NPZ_BYTES`] before anything is decompressed, an entry may not decompress to
/// more than it states (a zip bomb), and each `.npy` header's shape must fit in its
/// entry before the data buffer is allocated.
pub fn read_npz(path: impl AsRef<Path>) -> Result<Vec<(String, NpyArray)>> {
    let path = path.as_ref();
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let zerr = |e: zip::result::ZipError| Error::format(path, format!("bad .npz archive: {e}"));
    let mut archive = zip::ZipArchive::new(std::io::BufReader::new(file)).map_err(zerr)?;
    let mut declared = Some(0u64);
    for i in 0..archive.len() {
        let size = archive.by_index_raw(i).map_err(zerr)?.size();
        declared = declared.and_then(|t| t.checked_add(size));
    }
    limits::NPZ_BYTES
        .check_opt(declared, "decompressing the archive's entries")
        .map_err(|m| Error::format(path, m))?;
    let mut out = Vec::with_capacity(archive.len());
    for i in 0..archive.len() {
        let entry = archive.by_index(i).map_err(zerr)?;
        let (name, size) = (entry.name().to_string(), entry.size());
        let array = read_entry(entry, size)
            .map_err(|m| Error::format(path, format!("entry `{name}`: {m}")))?;
        let key = name.strip_suffix(".npy").unwrap_or(&name).to_string();
        out.push((key, array));
    }
    Ok(out)
}

/// Decompresses one entry: header first, then exactly the data its shape needs (checked
/// against the entry's stated size), then whatever is left, never past the stated size.
fn read_entry(entry: impl Read, declared: u64) -> std::result::Result<NpyArray, String> {
    let mut entry = Entry { inner: entry, declared, read: 0 };
    let mut head = entry.read(PREFIX_LEN.min(entry.left() as usize))?;
    let end = header_end(&head)?;
    if end as u64 > declared {
        return Err(format!("header of {end} bytes does not fit the entry's {declared} bytes"));
    }
    head.extend(entry.read(end.saturating_sub(head.len()))?);
    let header = parse_npy_header(&head)?;
    let data_from_head = head.get(header.data_start..).map_or(0, <[u8]>::len);
    if (header.data_start as u64).saturating_add(header.data_len as u64) > declared {
        return Err(format!(
            "truncated: shape {:?} needs {} bytes of data, the entry holds {}",
            header.shape,
            header.data_len,
            declared.saturating_sub(header.data_start as u64)
        ));
    }
    let mut body = head.split_off(header.data_start.min(head.len()));
    body.extend(entry.read(header.data_len.saturating_sub(data_from_head))?);
    entry.finish()?;
    header.decode(&body)
}

/// An entry's decompressed stream, read at most to its stated size.
struct Entry<R> {
    inner: R,
    declared: u64,
    read: u64,
}

impl<R: Read> Entry<R> {
    fn left(&self) -> u64 {
        self.declared.saturating_sub(self.read)
    }

    /// Exactly `n` more bytes (`n` within what is left), in a buffer reserved fallibly.
    fn read(&mut self, n: usize) -> std::result::Result<Vec<u8>, String> {
        let mut buf = Vec::new();
        buf.try_reserve_exact(n).map_err(|_| format!("cannot allocate {n} bytes"))?;
        let got =
            (&mut self.inner).take(n as u64).read_to_end(&mut buf).map_err(|e| e.to_string())?;
        self.read += got as u64;
        if got < n {
            return Err(format!(
                "truncated: decompressed {} bytes, stated {}",
                self.read, self.declared
            ));
        }
        Ok(buf)
    }

    /// Reads what is left after the array, erroring on more than the stated size.
    fn finish(mut self) -> std::result::Result<(), String> {
        let left = self.left();
        let rest = std::io::copy(&mut (&mut self.inner).take(left + 1), &mut std::io::sink())
            .map_err(|e| e.to_string())?;
        if rest > left {
            return Err(format!(
                "decompresses to more than its stated {} bytes (a zip bomb or a corrupt archive)",
                self.declared
            ));
        }
        Ok(())
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::npy::{read_npy, NpyData};

    /// A stored-size field `at` bytes past each header signature `sig`, set to `size`.
    fn patch_sizes(zip: &mut [u8], sig: &[u8; 4], at: usize, size: u32) {
        let starts: Vec<usize> =
            zip.windows(4).enumerate().filter(|(_, w)| w == sig).map(|(i, _)| i).collect();
        for s in starts {
            zip[s + at..s + at + 4].copy_from_slice(&size.to_le_bytes());
        }
    }

    /// An archive of one deflated array of `n` zero floats, its stated sizes set to `size`.
    fn zeros_claiming(n: usize, size: Option<u32>) -> Result<Vec<u8>> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
        let p = dir.path().join("z.npz");
        let a = NpyArray { shape: vec![n], data: NpyData::F32(vec![0.0; n]) };
        write_npz(&p, &[("a".into(), a.clone()), ("b".into(), a)])?;
        let mut zip = std::fs::read(&p).map_err(|e| Error::io(&p, e))?;
        if let Some(size) = size {
            patch_sizes(&mut zip, b"PK\x03\x04", 22, size); // local headers
            patch_sizes(&mut zip, b"PK\x01\x02", 24, size); // central directory
        }
        Ok(zip)
    }

    fn read_err(name: &str, bytes: &[u8]) -> Result<String> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).map_err(|e| Error::io(&p, e))?;
        Ok(read_npz(&p).err().map(|e| e.to_string()).unwrap_or_default())
    }

    #[test]
    fn alloc_npz_zip_bomb_past_its_stated_size() -> Result<()> {
        // 4 MB of zeros stated as 200 bytes.
        let msg = read_err("bomb.npz", &zeros_claiming(1 << 20, Some(200))?)?;
        assert!(msg.contains("bomb.npz") && msg.contains("entry `a.npy`"), "{msg}");
        assert!(!msg.contains('\n'), "{msg}");
        assert!(read_npz_bytes(&zeros_claiming(1 << 10, None)?)?.len() == 2);
        // A consistent header and size over 4 MB of trailing zeros: the stream is cut.
        let a = NpyArray { shape: vec![10], data: NpyData::F32(vec![0.0; 10]) };
        let mut npy = encode_npy(&a).map_err(Error::Invalid)?;
        let stated = npy.len() as u32;
        npy.resize(4 << 20, 0);
        let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        zip.start_file("t.npy", opts).map_err(|e| Error::Invalid(e.to_string()))?;
        zip.write_all(&npy).map_err(|e| Error::io("zip", e))?;
        let mut zip = zip.finish().map_err(|e| Error::Invalid(e.to_string()))?.into_inner();
        patch_sizes(&mut zip, b"PK\x03\x04", 22, stated);
        patch_sizes(&mut zip, b"PK\x01\x02", 24, stated);
        let msg = read_err("trailing.npz", &zip)?;
        assert!(
            msg.contains("trailing.npz") && msg.contains("more than its stated 168 bytes"),
            "{msg}"
        );
        Ok(())
    }

    fn read_npz_bytes(bytes: &[u8]) -> Result<Vec<(String, NpyArray)>> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
        let p = dir.path().join("ok.npz");
        std::fs::write(&p, bytes).map_err(|e| Error::io(&p, e))?;
        read_npz(&p)
    }

    #[test]
    fn alloc_npz_stated_sizes_over_the_budget() -> Result<()> {
        // Two entries stating 4 GiB - 1 each: 8 GiB in all, over BRAID_MAX_NPZ_BYTES.
        let msg = read_err("huge.npz", &zeros_claiming(16, Some(u32::MAX))?)?;
        assert!(msg.contains("huge.npz") && msg.contains("BRAID_MAX_NPZ_BYTES"), "{msg}");
        Ok(())
    }

    #[test]
    fn alloc_npy_shape_larger_than_its_data() -> Result<()> {
        // A .npy header claiming 10^9 floats over 4 bytes of data, alone and in an archive.
        let h = "{'descr': '<f4', 'fortran_order': False, 'shape': (1000000000,), }\n";
        let mut npy = b"\x93NUMPY\x01\x00".to_vec();
        npy.extend_from_slice(&(h.len() as u16).to_le_bytes());
        npy.extend_from_slice(h.as_bytes());
        npy.extend_from_slice(&1f32.to_le_bytes());
        let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
        let p = dir.path().join("claim.npy");
        std::fs::write(&p, &npy).map_err(|e| Error::io(&p, e))?;
        let msg = read_npy(&p).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(msg.contains("claim.npy") && msg.contains("needs 4000000000 bytes"), "{msg}");
        let zp = dir.path().join("claim.npz");
        let zf = std::fs::File::create(&zp).map_err(|e| Error::io(&zp, e))?;
        let mut zip = zip::ZipWriter::new(zf);
        let opts = zip::write::SimpleFileOptions::default();
        zip.start_file("w.npy", opts).map_err(|e| Error::Invalid(e.to_string()))?;
        zip.write_all(&npy).map_err(|e| Error::io(&zp, e))?;
        zip.finish().map_err(|e| Error::Invalid(e.to_string()))?;
        let msg = read_npz(&zp).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(msg.contains("claim.npz") && msg.contains("entry `w.npy`"), "{msg}");
        assert!(msg.contains("needs 4000000000 bytes of data, the entry holds 4"), "{msg}");
        Ok(())
    }
}

//! A safe pickle reader: decodes protocol 0-5 opcodes into a [`Value`] tree and executes
//! nothing. Globals (`module.name`) are accepted only from the caller's allow-list, so a
//! malicious file cannot name `os.system`; calls stay [`Value::Reduce`] nodes for the caller
//! to interpret. Reference: CPython `Lib/pickletools.py` (opcode table) and `Lib/pickle.py`.
//!
//! Legacy (non-zip) PyTorch checkpoints are a sequence of pickles (magic number, protocol,
//! sys info, the state dict with storages as [`Value::PersistentId`]) followed by raw
//! storage bytes; [`loads_prefix`] returns where each pickle ends so a reader can walk them.
//! Interpreting persistent ids is left to that reader.
//!
//! Reading is bounded: the machine is a loop over opcodes (no recursion), objects are
//! shared by id rather than copied on DUP / GET, dicts are filled through a hash index,
//! and the tree handed back is measured before it is built, within
//! [`crate::limits::PICKLE_OBJECTS`], [`crate::limits::PICKLE_BYTES`] and
//! [`crate::limits::PICKLE_DEPTH`].

mod graph;
mod machine;
mod reader;
mod resolve;
mod value;

use std::path::Path;

pub use value::Value;

use crate::{Error, Result};

/// A global a pickle may name: `(module, name)`, as spelled in the file (`copy_reg`,
/// `__builtin__` for Python 2 pickles).
pub type Global<'a> = (&'a str, &'a str);

/// Decodes one pickle from `data`, allowing only the globals in `allow`.
/// Trailing bytes after STOP are an error; see [`loads_prefix`] to read a sequence.
pub fn loads(data: &[u8], allow: &[Global<'_>]) -> Result<Value> {
    let (v, end) = loads_prefix(data, allow, Path::new("<pickle>"))?;
    if end != data.len() {
        return Err(Error::format("<pickle>", format!("{} bytes after STOP", data.len() - end)));
    }
    Ok(v)
}

/// Decodes the pickle that starts at `data[0]`; returns it and the offset just past its
/// STOP. Errors are [`Error::Format`] naming `origin` and the byte offset.
pub fn loads_prefix(data: &[u8], allow: &[Global<'_>], origin: &Path) -> Result<(Value, usize)> {
    let mut r = reader::Reader::new(data);
    let mut m = machine::Machine::new(allow, crate::limits::PICKLE_OBJECTS.get());
    let root = m
        .run(&mut r)
        .map_err(|msg| Error::format(origin, format!("pickle byte {}: {msg}", r.pos())))?;
    let end = r.pos();
    let v = resolve::tree(m.graph, root)
        .map_err(|msg| Error::format(origin, format!("pickle: {msg}")))?;
    Ok((v, end))
}

/// Reads and decodes the pickle file at `path` (uncompressed).
pub fn load(path: &Path, allow: &[Global<'_>]) -> Result<Value> {
    let data = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let (v, end) = loads_prefix(&data, allow, path)?;
    if end != data.len() {
        return Err(Error::format(
            path,
            format!("{} bytes after the pickle's STOP", data.len() - end),
        ));
    }
    Ok(v)
}

#[cfg(test)]
mod tests;

//! A bounds-checked cursor over pickle bytes: fixed-width little-endian integers
//! (BININT, LONG_BINPUT, ...), big-endian BINFLOAT, and newline-terminated text arguments
//! of the protocol-0 opcodes (INT, GLOBAL, PUT, ...). See CPython `Lib/pickletools.py`.

/// Cursor over the pickle; errors are plain messages, positioned by the caller.
pub(super) struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(super) fn new(data: &'a [u8]) -> Self {
        Self { data, pos: 0 }
    }

    /// Offset of the next unread byte.
    pub(super) fn pos(&self) -> usize {
        self.pos
    }

    pub(super) fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.data.len()).ok_or_else(|| {
            format!("truncated: needs {n} bytes, {} left", self.data.len() - self.pos)
        })?;
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    pub(super) fn u8(&mut self) -> Result<u8, String> {
        Ok(self.array::<1>()?[0])
    }

    pub(super) fn u16(&mut self) -> Result<u16, String> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    pub(super) fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    pub(super) fn i32(&mut self) -> Result<i32, String> {
        Ok(i32::from_le_bytes(self.array()?))
    }

    pub(super) fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    pub(super) fn f64_be(&mut self) -> Result<f64, String> {
        Ok(f64::from_be_bytes(self.array()?))
    }

    /// A length given as u64, checked against what is left.
    pub(super) fn len_u64(&mut self) -> Result<usize, String> {
        let n = self.u64()?;
        usize::try_from(n).map_err(|_| format!("length {n} too large"))
    }

    /// A byte string preceded by its length, `width` bytes little-endian (1, 4 or 8).
    pub(super) fn sized(&mut self, width: u8) -> Result<&'a [u8], String> {
        let n = match width {
            1 => usize::from(self.u8()?),
            4 => self.u32()? as usize,
            _ => self.len_u64()?,
        };
        self.take(n)
    }

    /// Text up to (not including) the next `\n`, which is consumed.
    pub(super) fn line(&mut self) -> Result<&'a str, String> {
        let rest = &self.data[self.pos..];
        let n = rest.iter().position(|&b| b == b'\n').ok_or("truncated: missing newline")?;
        self.pos += n + 1;
        std::str::from_utf8(&rest[..n]).map_err(|_| "argument is not UTF-8 text".to_string())
    }
}

/// Parses a protocol-0 decimal argument (INT, LONG, PUT, GET).
pub(super) fn parse_decimal(s: &str) -> Result<i64, String> {
    let t = s.trim_end_matches('L');
    t.parse::<i64>().map_err(|_| format!("integer argument `{s}` unsupported"))
}

/// Decodes the body of a STRING argument (a Python `repr` of a byte string).
pub(super) fn unquote(s: &str) -> Result<Vec<u8>, String> {
    let b = s.as_bytes();
    let ok = b.len() >= 2 && (b[0] == b'\'' || b[0] == b'"') && b[b.len() - 1] == b[0];
    if !ok {
        return Err(format!("STRING argument `{s}` is not quoted"));
    }
    let mut out = Vec::with_capacity(b.len());
    let mut i = 1;
    while i < b.len() - 1 {
        if b[i] != b'\\' || i + 1 >= b.len() - 1 {
            out.push(b[i]);
            i += 1;
            continue;
        }
        let (byte, used) = match b[i + 1] {
            b'n' => (b'\n', 2),
            b't' => (b'\t', 2),
            b'r' => (b'\r', 2),
            b'0' => (0, 2),
            b'x' if i + 3 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 2..i + 4]).map_err(|e| e.to_string())?;
                (u8::from_str_radix(hex, 16).map_err(|e| e.to_string())?, 4)
            }
            c => (c, 2),
        };
        out.push(byte);
        i += used;
    }
    Ok(out)
}

/// Decodes a UNICODE argument (Python's `raw-unicode-escape`: latin-1 bytes plus
/// `\uXXXX` / `\UXXXXXXXX` escapes).
pub(super) fn raw_unicode_escape(b: &[u8]) -> Result<String, String> {
    let mut out = String::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let width = match (b[i], b.get(i + 1)) {
            (b'\\', Some(b'u')) => 4,
            (b'\\', Some(b'U')) => 8,
            _ => 0,
        };
        if width == 0 || i + 2 + width > b.len() {
            out.push(char::from(b[i]));
            i += 1;
            continue;
        }
        let hex = std::str::from_utf8(&b[i + 2..i + 2 + width]).map_err(|e| e.to_string())?;
        let cp = u32::from_str_radix(hex, 16).map_err(|e| e.to_string())?;
        out.push(char::from_u32(cp).ok_or_else(|| format!("bad code point {cp:#x}"))?);
        i += 2 + width;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_arguments() {
        assert_eq!(unquote(r"'a\x00\n\\'").ok(), Some(vec![b'a', 0, b'\n', b'\\']));
        assert_eq!(raw_unicode_escape(br"caf\u00e9 \xff").ok().as_deref(), Some("café \\xff"));
        assert_eq!(parse_decimal("12L").ok(), Some(12));
        let mut r = Reader::new(b"ab\ncd");
        assert_eq!(r.line().ok(), Some("ab"));
        assert!(r.line().is_err());
        assert!(r.take(3).is_err());
    }
}

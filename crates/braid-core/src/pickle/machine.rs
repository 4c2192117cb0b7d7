//! The pickle virtual machine, minus execution: opcodes build a [`Value`] tree on a stack,
//! MARK opens a new stack frame (as CPython's `metastack`), and the memo holds values by
//! slot. A memoised value is moved into the memo and the stack keeps a [`Value::MemoRef`],
//! so APPENDS / SETITEMS / BUILD applied later through any reference mutate the one shared
//! object, as in Python. Opcode table: CPython `Lib/pickletools.py`.

use std::collections::HashMap;

use super::reader::{parse_decimal, raw_unicode_escape, unquote, Reader};
use super::Value;

/// Parser state; `allow` lists the `(module, name)` globals that may appear.
pub(super) struct Machine<'a> {
    allow: &'a [(&'a str, &'a str)],
    pub(super) stack: Vec<Value>,
    meta: Vec<Vec<Value>>,
    pub(super) memo: HashMap<u32, Value>,
}

type Step = Result<bool, String>;

impl<'a> Machine<'a> {
    pub(super) fn new(allow: &'a [(&'a str, &'a str)]) -> Self {
        Self { allow, stack: Vec::new(), meta: Vec::new(), memo: HashMap::new() }
    }

    /// Runs until STOP; returns the top of the stack (still holding memo references).
    pub(super) fn run(&mut self, r: &mut Reader<'_>) -> Result<Value, String> {
        loop {
            let op = r.u8()?;
            if op == b'.' {
                return self.pop();
            }
            let handled = self.scalar(op, r)? || self.container(op)? || self.memo_op(op, r)?;
            if !(handled || self.object(op, r)?) {
                return Err(format!("unsupported opcode {op:#04x} ({:?})", char::from(op)));
            }
        }
    }

    fn pop(&mut self) -> Result<Value, String> {
        self.stack.pop().ok_or_else(|| "stack underflow".to_string())
    }

    fn pop_mark(&mut self) -> Result<Vec<Value>, String> {
        let outer = self.meta.pop().ok_or("MARK expected but none is open")?;
        Ok(std::mem::replace(&mut self.stack, outer))
    }

    fn top_mut(&mut self) -> Result<&mut Value, String> {
        // Follow memo references: the mutation must reach the shared object.
        let mut id = match self.stack.last_mut().ok_or("stack underflow")? {
            Value::MemoRef(id) => *id,
            _ => return self.stack.last_mut().ok_or_else(|| "stack underflow".into()),
        };
        for _ in 0..64 {
            match self.memo.get(&id) {
                Some(Value::MemoRef(next)) => id = *next,
                Some(_) => break,
                None => return Err(format!("memo slot {id} is empty")),
            }
        }
        self.memo.get_mut(&id).ok_or_else(|| format!("memo slot {id} is empty"))
    }

    /// Opcodes that push a scalar or string.
    fn scalar(&mut self, op: u8, r: &mut Reader<'_>) -> Step {
        let v = match op {
            b'N' => Value::None,
            0x88 => Value::Bool(true),
            0x89 => Value::Bool(false),
            b'J' => Value::Int(i64::from(r.i32()?)),
            b'K' => Value::Int(i64::from(r.u8()?)),
            b'M' => Value::Int(i64::from(r.u16()?)),
            b'I' => match r.line()? {
                "00" => Value::Bool(false),
                "01" => Value::Bool(true),
                s => Value::Int(parse_decimal(s)?),
            },
            b'L' => Value::Int(parse_decimal(r.line()?)?),
            0x8a => long(r.sized(1)?),
            0x8b => long(r.sized(4)?),
            b'F' => Value::Float(r.line()?.parse().map_err(|_| "bad FLOAT argument")?),
            b'G' => Value::Float(r.f64_be()?),
            _ => return self.string(op, r),
        };
        self.stack.push(v);
        Ok(true)
    }

    /// Opcodes that push text or bytes.
    fn string(&mut self, op: u8, r: &mut Reader<'_>) -> Step {
        let v = match op {
            b'X' => text(r.sized(4)?)?,
            0x8c => text(r.sized(1)?)?,
            0x8d => text(r.sized(8)?)?,
            b'V' => Value::Str(raw_unicode_escape(r.line()?.as_bytes())?),
            b'S' => Value::Bytes(unquote(r.line()?)?),
            b'T' | b'B' => Value::Bytes(r.sized(4)?.to_vec()),
            b'U' | b'C' => Value::Bytes(r.sized(1)?.to_vec()),
            0x8e => Value::Bytes(r.sized(8)?.to_vec()),
            _ => return Ok(false),
        };
        self.stack.push(v);
        Ok(true)
    }

    /// Opcodes that make or fill lists, tuples, dicts and sets.
    fn container(&mut self, op: u8) -> Step {
        match op {
            b'(' => self.meta.push(std::mem::take(&mut self.stack)),
            b'0' => drop(self.pop()?),
            b'1' => drop(self.pop_mark()?),
            b'2' => {
                let top = self.stack.last().ok_or("stack underflow")?.clone();
                self.stack.push(top);
            }
            b']' => self.stack.push(Value::List(Vec::new())),
            b'}' => self.stack.push(Value::Dict(Vec::new())),
            b')' => self.stack.push(Value::Tuple(Vec::new())),
            0x8f => self.stack.push(Value::Set(Vec::new())),
            b'l' => {
                let items = self.pop_mark()?;
                self.stack.push(Value::List(items));
            }
            b't' => {
                let items = self.pop_mark()?;
                self.stack.push(Value::Tuple(items));
            }
            0x91 => {
                let items = self.pop_mark()?;
                self.stack.push(Value::Set(items));
            }
            0x85..=0x87 => {
                let n = usize::from(op - 0x84);
                let at = self.stack.len().checked_sub(n).ok_or("stack underflow")?;
                let items = self.stack.split_off(at);
                self.stack.push(Value::Tuple(items));
            }
            b'd' => {
                let items = self.pop_mark()?;
                self.stack.push(Value::Dict(Vec::new()));
                set_items(self.top_mut()?, items)?;
            }
            _ => return self.fill(op),
        }
        Ok(true)
    }

    /// APPEND(S), SETITEM(S), ADDITEMS: add to the container below the items.
    fn fill(&mut self, op: u8) -> Step {
        let items = match op {
            b'a' => vec![self.pop()?],
            b's' => {
                let v = self.pop()?;
                vec![self.pop()?, v]
            }
            b'e' | b'u' | 0x90 => self.pop_mark()?,
            _ => return Ok(false),
        };
        let target = self.top_mut()?;
        match (op, target) {
            (b'a' | b'e', Value::List(l)) | (0x90, Value::Set(l)) => l.extend(items),
            (b's' | b'u', d) => set_items(d, items)?,
            (_, t) => return Err(format!("cannot append to a {}", t.kind())),
        }
        Ok(true)
    }

    /// PUT/GET family and MEMOIZE.
    fn memo_op(&mut self, op: u8, r: &mut Reader<'_>) -> Step {
        let slot = match op {
            b'p' | b'g' => {
                let n = parse_decimal(r.line()?)?;
                u32::try_from(n).map_err(|_| format!("bad memo slot {n}"))?
            }
            b'q' | b'h' => u32::from(r.u8()?),
            b'r' | b'j' => r.u32()?,
            0x94 => u32::try_from(self.memo.len()).map_err(|_| "memo too large")?,
            _ => return Ok(false),
        };
        if matches!(op, b'g' | b'h' | b'j') {
            if !self.memo.contains_key(&slot) {
                return Err(format!("memo slot {slot} read before it was written"));
            }
            self.stack.push(Value::MemoRef(slot));
        } else {
            let top = self.stack.last_mut().ok_or("stack underflow")?;
            let v = std::mem::replace(top, Value::MemoRef(slot));
            if v == Value::MemoRef(slot) {
                return Err(format!("memo slot {slot} refers to itself"));
            }
            self.memo.insert(slot, v);
        }
        Ok(true)
    }

    /// Globals, calls, BUILD, persistent ids, protocol and framing.
    fn object(&mut self, op: u8, r: &mut Reader<'_>) -> Step {
        let v = match op {
            0x80 => {
                let proto = r.u8()?;
                if proto > 5 {
                    return Err(format!("pickle protocol {proto} is not supported"));
                }
                return Ok(true);
            }
            0x95 => {
                r.u64()?; // FRAME length: frames need no handling when reading from memory.
                return Ok(true);
            }
            b'c' => {
                let (module, name) = (r.line()?, r.line()?);
                self.global(module, name)?
            }
            0x93 => {
                let name = self.pop_text()?;
                let module = self.pop_text()?;
                self.global(&module, &name)?
            }
            b'R' => {
                let args = Box::new(self.pop()?);
                Value::Reduce { callable: Box::new(self.pop()?), args }
            }
            0x81 | 0x92 => {
                let kwargs = Box::new(if op == 0x92 { self.pop()? } else { Value::None });
                let args = Box::new(self.pop()?);
                Value::NewObj { cls: Box::new(self.pop()?), args, kwargs }
            }
            b'b' => {
                let state = Box::new(self.pop()?);
                let target = self.top_mut()?;
                let obj = Box::new(std::mem::replace(target, Value::None));
                *target = Value::Build { obj, state };
                return Ok(true);
            }
            b'Q' => Value::PersistentId(Box::new(self.pop()?)),
            b'P' => Value::PersistentId(Box::new(Value::Str(r.line()?.to_string()))),
            _ => return Ok(false),
        };
        self.stack.push(v);
        Ok(true)
    }

    fn global(&self, module: &str, name: &str) -> Result<Value, String> {
        if !self.allow.iter().any(|&(m, n)| m == module && n == name) {
            return Err(format!("global `{module}.{name}` is not in the allow-list"));
        }
        Ok(Value::Global { module: module.to_string(), name: name.to_string() })
    }

    /// Pops a string for STACK_GLOBAL, looking through a memo reference.
    fn pop_text(&mut self) -> Result<String, String> {
        let v = self.pop()?;
        let v = match v {
            Value::MemoRef(id) => self.memo.get(&id).cloned().unwrap_or(Value::None),
            v => v,
        };
        match v {
            Value::Str(s) => Ok(s),
            v => Err(format!("STACK_GLOBAL needs strings, got a {}", v.kind())),
        }
    }
}

/// Adds `[k0, v0, k1, v1, ...]` to a dict, replacing equal keys as Python does.
fn set_items(target: &mut Value, items: Vec<Value>) -> Result<(), String> {
    let Value::Dict(d) = target else {
        return Err(format!("cannot set items on a {}", target.kind()));
    };
    if items.len() % 2 != 0 {
        return Err("odd number of items for SETITEMS".into());
    }
    let mut it = items.into_iter();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        match d.iter_mut().find(|(old, _)| *old == k) {
            Some(slot) => slot.1 = v,
            None => d.push((k, v)),
        }
    }
    Ok(())
}

fn text(b: &[u8]) -> Result<Value, String> {
    String::from_utf8(b.to_vec()).map(Value::Str).map_err(|_| "string is not UTF-8".to_string())
}

/// LONG1 / LONG4 payload: little-endian two's complement.
fn long(b: &[u8]) -> Value {
    if b.is_empty() {
        return Value::Int(0);
    }
    if b.len() > 8 {
        return Value::BigInt(b.to_vec());
    }
    let fill = if b[b.len() - 1] & 0x80 != 0 { 0xff } else { 0 };
    let mut a = [fill; 8];
    a[..b.len()].copy_from_slice(b);
    Value::Int(i64::from_le_bytes(a))
}

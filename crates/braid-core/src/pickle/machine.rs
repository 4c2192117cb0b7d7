//! The pickle virtual machine, minus execution: opcodes build an object [`Graph`] with a
//! stack of node ids, MARK opens a new stack frame (as CPython's `metastack`), and the memo
//! maps slots to node ids. DUP and GET push the same id, so APPENDS / SETITEMS / BUILD
//! applied through any reference mutate the one shared object, as in Python, and nothing
//! is copied while reading. The loop is iterative: nesting costs no native stack.
//! Opcode table: CPython `Lib/pickletools.py`.

use std::collections::HashMap;

use super::graph::{Dict, Graph, Id, Node};
use super::reader::{parse_decimal, raw_unicode_escape, unquote, Reader};
use super::Value;

/// Parser state; `allow` lists the `(module, name)` globals that may appear.
pub(super) struct Machine<'a> {
    allow: &'a [(&'a str, &'a str)],
    pub(super) graph: Graph,
    stack: Vec<Id>,
    meta: Vec<Vec<Id>>,
    memo: HashMap<u32, Id>,
}

type Step = Result<bool, String>;

impl<'a> Machine<'a> {
    /// A machine whose graph may hold `max_objects` nodes.
    pub(super) fn new(allow: &'a [(&'a str, &'a str)], max_objects: u64) -> Self {
        let graph = Graph::new(max_objects);
        Self { allow, graph, stack: Vec::new(), meta: Vec::new(), memo: HashMap::new() }
    }

    /// Runs until STOP; returns the id of the object on top of the stack.
    pub(super) fn run(&mut self, r: &mut Reader<'_>) -> Result<Id, String> {
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

    fn push(&mut self, n: Node) -> Result<(), String> {
        let id = self.graph.add(n)?;
        self.stack.push(id);
        Ok(())
    }

    fn pop(&mut self) -> Result<Id, String> {
        self.stack.pop().ok_or_else(|| "stack underflow".to_string())
    }

    fn top(&self) -> Result<Id, String> {
        self.stack.last().copied().ok_or_else(|| "stack underflow".to_string())
    }

    fn pop_mark(&mut self) -> Result<Vec<Id>, String> {
        let outer = self.meta.pop().ok_or("MARK expected but none is open")?;
        Ok(std::mem::replace(&mut self.stack, outer))
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
        self.push(Node::Leaf(v))?;
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
        self.push(Node::Leaf(v))?;
        Ok(true)
    }

    /// Opcodes that make or fill lists, tuples, dicts and sets.
    fn container(&mut self, op: u8) -> Step {
        match op {
            b'(' => self.meta.push(std::mem::take(&mut self.stack)),
            b'0' => drop(self.pop()?),
            b'1' => drop(self.pop_mark()?),
            b'2' => self.stack.push(self.top()?),
            b']' => self.push(Node::List(Vec::new()))?,
            b'}' => self.push(Node::Dict(Dict::default()))?,
            b')' => self.push(Node::Tuple(Vec::new()))?,
            0x8f => self.push(Node::Set(Vec::new()))?,
            b'l' => {
                let items = self.pop_mark()?;
                self.push(Node::List(items))?;
            }
            b't' => {
                let items = self.pop_mark()?;
                self.push(Node::Tuple(items))?;
            }
            0x91 => {
                let items = self.pop_mark()?;
                self.push(Node::Set(items))?;
            }
            0x85..=0x87 => {
                let n = usize::from(op - 0x84);
                let at = self.stack.len().checked_sub(n).ok_or("stack underflow")?;
                let items = self.stack.split_off(at);
                self.push(Node::Tuple(items))?;
            }
            b'd' => {
                let items = self.pop_mark()?;
                self.push(Node::Dict(Dict::default()))?;
                self.graph.set_items(self.top()?, &items)?;
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
        let target = self.top()?;
        if matches!(op, b's' | b'u') {
            self.graph.set_items(target, &items)?;
            return Ok(true);
        }
        match (op, self.graph.get_mut(target)) {
            (b'a' | b'e', Node::List(l)) | (0x90, Node::Set(l)) => l.extend(items),
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
            let id = self
                .memo
                .get(&slot)
                .copied()
                .ok_or_else(|| format!("memo slot {slot} read before it was written"))?;
            self.stack.push(id);
        } else {
            let id = self.top()?;
            self.memo.insert(slot, id);
        }
        Ok(true)
    }

    /// Globals, calls, BUILD, persistent ids, protocol and framing.
    fn object(&mut self, op: u8, r: &mut Reader<'_>) -> Step {
        let n = match op {
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
                Node::Leaf(self.global(module, name)?)
            }
            0x93 => {
                let (name, module) = (self.pop()?, self.pop()?);
                let (name, module) = (self.graph.text(name)?, self.graph.text(module)?);
                Node::Leaf(self.global(&module, &name)?)
            }
            b'R' => {
                let args = self.pop()?;
                Node::Reduce(self.pop()?, args)
            }
            0x81 | 0x92 => {
                let kwargs = match op {
                    0x92 => self.pop()?,
                    _ => self.graph.add(Node::Leaf(Value::None))?,
                };
                let args = self.pop()?;
                Node::NewObj(self.pop()?, args, kwargs)
            }
            b'b' => {
                // The object becomes `Build(old object, state)` in place, so every
                // reference to it sees the built object.
                let state = self.pop()?;
                let target = self.top()?;
                let old = self.graph.add(Node::Leaf(Value::None))?;
                let content = self.graph.take(target);
                *self.graph.get_mut(old) = content;
                *self.graph.get_mut(target) = Node::Build(old, state);
                return Ok(true);
            }
            b'Q' => Node::PersistentId(self.pop()?),
            b'P' => {
                let id = self.graph.add(Node::Leaf(Value::Str(r.line()?.to_string())))?;
                Node::PersistentId(id)
            }
            _ => return Ok(false),
        };
        self.push(n)?;
        Ok(true)
    }

    fn global(&self, module: &str, name: &str) -> Result<Value, String> {
        if !self.allow.iter().any(|&(m, n)| m == module && n == name) {
            return Err(format!("global `{module}.{name}` is not in the allow-list"));
        }
        Ok(Value::Global { module: module.to_string(), name: name.to_string() })
    }
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

//! Replaces every [`Value::MemoRef`] by the value it names, so callers see a plain tree.
//! Each memo slot is resolved once; each reference to it in the raw graph is visited once,
//! so the last visit moves the value instead of cloning it (large array payloads are
//! usually referenced once).

use std::collections::HashMap;

use super::Value;

const MAX_DEPTH: usize = 1000;

pub(super) struct Resolver {
    raw: HashMap<u32, Value>,
    done: HashMap<u32, Value>,
    uses: HashMap<u32, usize>,
    busy: Vec<u32>,
}

impl Resolver {
    pub(super) fn new(memo: HashMap<u32, Value>, root: &Value) -> Self {
        let mut uses = HashMap::new();
        count(root, &mut uses);
        memo.values().for_each(|v| count(v, &mut uses));
        Self { raw: memo, done: HashMap::new(), uses, busy: Vec::new() }
    }

    pub(super) fn resolve(&mut self, v: Value, depth: usize) -> Result<Value, String> {
        if depth > MAX_DEPTH {
            return Err(format!("nesting deeper than {MAX_DEPTH}"));
        }
        let d = depth + 1;
        Ok(match v {
            Value::MemoRef(id) => self.slot(id, depth)?,
            Value::List(items) => Value::List(self.all(items, d)?),
            Value::Tuple(items) => Value::Tuple(self.all(items, d)?),
            Value::Set(items) => Value::Set(self.all(items, d)?),
            Value::Dict(pairs) => {
                let mut out = Vec::with_capacity(pairs.len());
                for (k, v) in pairs {
                    out.push((self.resolve(k, d)?, self.resolve(v, d)?));
                }
                Value::Dict(out)
            }
            Value::Reduce { callable, args } => {
                Value::Reduce { callable: self.boxed(*callable, d)?, args: self.boxed(*args, d)? }
            }
            Value::NewObj { cls, args, kwargs } => Value::NewObj {
                cls: self.boxed(*cls, d)?,
                args: self.boxed(*args, d)?,
                kwargs: self.boxed(*kwargs, d)?,
            },
            Value::Build { obj, state } => {
                Value::Build { obj: self.boxed(*obj, d)?, state: self.boxed(*state, d)? }
            }
            Value::PersistentId(p) => Value::PersistentId(self.boxed(*p, d)?),
            leaf => leaf,
        })
    }

    fn boxed(&mut self, v: Value, depth: usize) -> Result<Box<Value>, String> {
        Ok(Box::new(self.resolve(v, depth)?))
    }

    fn all(&mut self, items: Vec<Value>, depth: usize) -> Result<Vec<Value>, String> {
        items.into_iter().map(|v| self.resolve(v, depth)).collect()
    }

    fn slot(&mut self, id: u32, depth: usize) -> Result<Value, String> {
        if !self.done.contains_key(&id) {
            if self.busy.contains(&id) {
                return Err(format!(
                    "memo slot {id} contains itself (recursive objects are not supported)"
                ));
            }
            let raw = self.raw.remove(&id).ok_or_else(|| format!("memo slot {id} is empty"))?;
            self.busy.push(id);
            let v = self.resolve(raw, depth + 1)?;
            self.busy.pop();
            self.done.insert(id, v);
        }
        let left = self.uses.entry(id).or_insert(1);
        *left = left.saturating_sub(1);
        let v = if *left == 0 { self.done.remove(&id) } else { self.done.get(&id).cloned() };
        v.ok_or_else(|| format!("memo slot {id} used more often than counted"))
    }
}

/// Counts memo references in a raw (unresolved) value.
fn count(v: &Value, uses: &mut HashMap<u32, usize>) {
    match v {
        Value::MemoRef(id) => *uses.entry(*id).or_insert(0) += 1,
        Value::List(items) | Value::Tuple(items) | Value::Set(items) => {
            items.iter().for_each(|x| count(x, uses))
        }
        Value::Dict(pairs) => pairs.iter().for_each(|(k, x)| {
            count(k, uses);
            count(x, uses);
        }),
        Value::Reduce { callable: a, args: b } | Value::Build { obj: a, state: b } => {
            count(a, uses);
            count(b, uses);
        }
        Value::NewObj { cls, args, kwargs } => {
            count(cls, uses);
            count(args, uses);
            count(kwargs, uses);
        }
        Value::PersistentId(p) => count(p, uses),
        _ => {}
    }
}

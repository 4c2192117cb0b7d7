//! The object graph a pickle builds while it is read: every object is one arena node,
//! and the stack, the memo and containers hold node ids. DUP, GET and a memoised value
//! used twice therefore share one node (as Python shares one object) instead of copying
//! a subtree, so a few bytes of DUP / GET cannot make the reader copy an exponential tree
//! (a tree is only made by [`super::resolve`], after its size is checked).

use std::collections::HashMap;

use super::Value;

/// Index of a node in the [`Graph`].
pub(super) type Id = u32;

/// One object; children are node ids.
pub(super) enum Node {
    /// A scalar, string, bytes or global: a [`Value`] without children.
    Leaf(Value),
    List(Vec<Id>),
    Tuple(Vec<Id>),
    Set(Vec<Id>),
    Dict(Dict),
    Reduce(Id, Id),
    NewObj(Id, Id, Id),
    Build(Id, Id),
    PersistentId(Id),
}

/// A dict in insertion order, with a hash index of its keys so filling it is linear.
#[derive(Default)]
pub(super) struct Dict {
    pub(super) pairs: Vec<(Id, Id)>,
    index: HashMap<Key, usize>,
}

/// What two dict keys are compared by: the value for scalars, strings, globals and small
/// tuples of those; identity for anything else (as Python compares objects without
/// `__eq__`). Pickles written by Python never repeat a key, so this only decides which
/// of a crafted file's duplicates wins.
#[derive(Hash, PartialEq, Eq)]
enum Key {
    None,
    Bool(bool),
    Int(i64),
    Big(Vec<u8>),
    Float(u64),
    Str(String),
    Bytes(Vec<u8>),
    Global(String, String),
    Tuple(Vec<Key>),
    Object(Id),
}

/// Nodes a tuple key may hold before it is compared by identity instead (bounds the
/// work one SETITEM can cost).
const KEY_FUEL: usize = 64;

/// The arena; `limit` is the most nodes it may hold.
pub(super) struct Graph {
    nodes: Vec<Node>,
    limit: u64,
}

impl Graph {
    pub(super) fn new(limit: u64) -> Self {
        Self { nodes: Vec::new(), limit }
    }

    pub(super) fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Adds a node; an error once the graph holds `limit` nodes.
    pub(super) fn add(&mut self, n: Node) -> Result<Id, String> {
        let id = self.nodes.len() as u64;
        if id >= self.limit {
            return Err(crate::limits::PICKLE_OBJECTS
                .check(id.saturating_add(1), "reading the pickle")
                .err()
                .unwrap_or_default());
        }
        self.nodes.push(n);
        u32::try_from(id).map_err(|_| "more than 2^32 pickle objects".to_string())
    }

    pub(super) fn get(&self, id: Id) -> &Node {
        // Ids are only made by `add`, so every id indexes a node.
        &self.nodes[id as usize]
    }

    pub(super) fn get_mut(&mut self, id: Id) -> &mut Node {
        &mut self.nodes[id as usize]
    }

    /// Takes a node's content out (leaving an empty tuple), for the final tree.
    pub(super) fn take(&mut self, id: Id) -> Node {
        std::mem::replace(self.get_mut(id), Node::Tuple(Vec::new()))
    }

    /// The text of a string node, for STACK_GLOBAL.
    pub(super) fn text(&self, id: Id) -> Result<String, String> {
        match self.get(id) {
            Node::Leaf(Value::Str(s)) => Ok(s.clone()),
            n => Err(format!("STACK_GLOBAL needs strings, got a {}", n.kind())),
        }
    }

    /// Adds `[k0, v0, k1, v1, ...]` to the dict `target`, replacing equal keys in place as
    /// Python does.
    pub(super) fn set_items(&mut self, target: Id, items: &[Id]) -> Result<(), String> {
        if items.len() % 2 != 0 {
            return Err("odd number of items for SETITEMS".into());
        }
        let keys: Vec<Key> = items
            .chunks(2)
            .map(|kv| {
                let mut fuel = KEY_FUEL;
                self.key(kv[0], &mut fuel)
            })
            .collect();
        let Node::Dict(d) = self.get_mut(target) else {
            return Err(format!("cannot set items on a {}", self.get(target).kind()));
        };
        for (key, kv) in keys.into_iter().zip(items.chunks(2)) {
            match d.index.get(&key) {
                Some(&i) => d.pairs[i].1 = kv[1],
                None => {
                    d.index.insert(key, d.pairs.len());
                    d.pairs.push((kv[0], kv[1]));
                }
            }
        }
        Ok(())
    }

    fn key(&self, id: Id, fuel: &mut usize) -> Key {
        *fuel = fuel.saturating_sub(1);
        match self.get(id) {
            Node::Leaf(v) => match v {
                Value::None => Key::None,
                Value::Bool(b) => Key::Bool(*b),
                Value::Int(i) => Key::Int(*i),
                Value::BigInt(b) => Key::Big(b.clone()),
                Value::Float(f) => Key::Float(f.to_bits()),
                Value::Str(s) => Key::Str(s.clone()),
                Value::Bytes(b) => Key::Bytes(b.clone()),
                Value::Global { module, name } => Key::Global(module.clone(), name.clone()),
                _ => Key::Object(id),
            },
            Node::Tuple(items) if items.len() <= *fuel => {
                let keys: Vec<Key> = items.iter().map(|&c| self.key(c, fuel)).collect();
                if *fuel == 0 {
                    Key::Object(id)
                } else {
                    Key::Tuple(keys)
                }
            }
            _ => Key::Object(id),
        }
    }
}

impl Node {
    /// Appends this node's children to `out`, in the order the tree lists them.
    pub(super) fn children(&self, out: &mut Vec<Id>) {
        match self {
            Node::Leaf(_) => {}
            Node::List(items) | Node::Tuple(items) | Node::Set(items) => out.extend(items),
            Node::Dict(d) => d.pairs.iter().for_each(|&(k, v)| out.extend([k, v])),
            Node::Reduce(a, b) | Node::Build(a, b) => out.extend([*a, *b]),
            Node::NewObj(a, b, c) => out.extend([*a, *b, *c]),
            Node::PersistentId(a) => out.push(*a),
        }
    }

    /// Payload bytes of a leaf (strings, bytes, big integers), for the byte budget.
    pub(super) fn payload(&self) -> u64 {
        match self {
            Node::Leaf(Value::Str(s)) => s.len() as u64,
            Node::Leaf(Value::Bytes(b) | Value::BigInt(b)) => b.len() as u64,
            Node::Leaf(Value::Global { module, name }) => (module.len() + name.len()) as u64,
            _ => 0,
        }
    }

    pub(super) fn kind(&self) -> &'static str {
        match self {
            Node::Leaf(v) => v.kind(),
            Node::List(_) => "list",
            Node::Tuple(_) => "tuple",
            Node::Set(_) => "set",
            Node::Dict(_) => "dict",
            Node::Reduce(..) => "reduce",
            Node::NewObj(..) => "newobj",
            Node::Build(..) => "build",
            Node::PersistentId(_) => "persistent id",
        }
    }
}

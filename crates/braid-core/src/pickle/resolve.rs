//! Turns the object graph into the plain [`Value`] tree callers see. A shared object
//! becomes one copy per reference, so the tree can be exponentially larger than the file
//! (each DUP + TUPLE2 doubles it); its size, payload bytes and depth are therefore
//! computed on the graph first, without recursion, and checked against
//! [`crate::limits`] before any of it is built. The last reference to an object moves it
//! instead of cloning (large array payloads are usually referenced once).

use super::graph::{Graph, Id, Node};
use super::Value;
use crate::limits::{self, Limit};

/// What the tree under one node costs.
#[derive(Clone, Copy, Default)]
struct Size {
    objects: u64,
    bytes: u64,
    depth: u64,
}

/// Builds the tree under `root`, or says which budget it would break.
pub(super) fn tree(mut g: Graph, root: Id) -> Result<Value, String> {
    let order = post_order(&g, root)?;
    let sizes = measure(&g, &order);
    let top = sizes.get(root as usize).copied().unwrap_or_default();
    within(limits::PICKLE_DEPTH, top.depth, "the pickle's nesting")?;
    within(
        limits::PICKLE_OBJECTS,
        top.objects,
        "the pickle's objects, shared ones counted per use",
    )?;
    within(limits::PICKLE_BYTES, top.bytes, "the pickle's strings, shared ones counted per use")?;
    build(&mut g, &order, root)
}

fn within(limit: Limit, n: u64, what: &str) -> Result<(), String> {
    if n == u64::MAX {
        return limit.check_opt(None, what);
    }
    limit.check(n, what)
}

/// Every node reachable from `root`, children before parents; an error on a cycle
/// (an object containing itself, which a tree cannot hold).
fn post_order(g: &Graph, root: Id) -> Result<Vec<Id>, String> {
    // 0: unseen, 1: on the path being explored, 2: done.
    let mut state = vec![0u8; g.len()];
    let mut order = Vec::new();
    let mut kids = Vec::new();
    // (node, children pushed yet)
    let mut stack = vec![(root, false)];
    while let Some((id, expanded)) = stack.pop() {
        let i = id as usize;
        if expanded {
            state[i] = 2;
            order.push(id);
            continue;
        }
        match state[i] {
            2 => continue,
            1 => {
                return Err(format!(
                    "object {id} contains itself (recursive objects are not supported)"
                ))
            }
            _ => {}
        }
        state[i] = 1;
        stack.push((id, true));
        kids.clear();
        g.get(id).children(&mut kids);
        for &c in kids.iter().rev() {
            match state[c as usize] {
                2 => {}
                1 => {
                    return Err(format!(
                        "object {c} contains itself (recursive objects are not supported)"
                    ))
                }
                _ => stack.push((c, false)),
            }
        }
    }
    Ok(order)
}

/// The tree size under each node in `order` (saturating at `u64::MAX`).
fn measure(g: &Graph, order: &[Id]) -> Vec<Size> {
    let mut sizes = vec![Size::default(); g.len()];
    let mut kids = Vec::new();
    for &id in order {
        let n = g.get(id);
        let mut s = Size { objects: 1, bytes: n.payload(), depth: 1 };
        kids.clear();
        n.children(&mut kids);
        for &c in &kids {
            let k = sizes[c as usize];
            s.objects = s.objects.saturating_add(k.objects);
            s.bytes = s.bytes.saturating_add(k.bytes);
            s.depth = s.depth.max(k.depth.saturating_add(1));
        }
        sizes[id as usize] = s;
    }
    sizes
}

/// Builds each node's value once, children first; a child referenced again later is
/// cloned, its last reference moves it.
fn build(g: &mut Graph, order: &[Id], root: Id) -> Result<Value, String> {
    let mut uses = vec![0u32; g.len()];
    let mut kids = Vec::new();
    for &id in order {
        kids.clear();
        g.get(id).children(&mut kids);
        kids.iter().for_each(|&c| uses[c as usize] = uses[c as usize].saturating_add(1));
    }
    let mut built: Vec<Option<Value>> = Vec::new();
    built.resize_with(g.len(), || None);
    for &id in order {
        let mut take = |c: Id| -> Result<Value, String> {
            let i = c as usize;
            uses[i] = uses[i].saturating_sub(1);
            let v = if uses[i] == 0 { built[i].take() } else { built[i].clone() };
            v.ok_or_else(|| format!("object {c} used before it was built"))
        };
        let v = match g.take(id) {
            Node::Leaf(v) => v,
            Node::List(items) => {
                Value::List(items.into_iter().map(&mut take).collect::<Result<_, _>>()?)
            }
            Node::Tuple(items) => {
                Value::Tuple(items.into_iter().map(&mut take).collect::<Result<_, _>>()?)
            }
            Node::Set(items) => {
                Value::Set(items.into_iter().map(&mut take).collect::<Result<_, _>>()?)
            }
            Node::Dict(d) => Value::Dict(
                d.pairs
                    .into_iter()
                    .map(|(k, v)| Ok((take(k)?, take(v)?)))
                    .collect::<Result<_, String>>()?,
            ),
            Node::Reduce(c, a) => {
                Value::Reduce { callable: Box::new(take(c)?), args: Box::new(take(a)?) }
            }
            Node::NewObj(c, a, k) => Value::NewObj {
                cls: Box::new(take(c)?),
                args: Box::new(take(a)?),
                kwargs: Box::new(take(k)?),
            },
            Node::Build(o, s) => {
                Value::Build { obj: Box::new(take(o)?), state: Box::new(take(s)?) }
            }
            Node::PersistentId(p) => Value::PersistentId(Box::new(take(p)?)),
        };
        built[id as usize] = Some(v);
    }
    built.get_mut(root as usize).and_then(Option::take).ok_or_else(|| "the pickle is empty".into())
}

//! The value tree a pickle decodes to. Nothing is executed: a call such as
//! `numpy.core.multiarray._reconstruct(...)` stays a [`Value::Reduce`] node that the caller
//! interprets. Opcode meanings follow CPython's `Lib/pickletools.py`.

/// One node of a decoded pickle.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `None`.
    None,
    /// `True` / `False`.
    Bool(bool),
    /// An integer that fits in `i64`.
    Int(i64),
    /// A larger integer: little-endian two's-complement bytes (LONG1/LONG4), e.g. the
    /// magic number that opens a legacy PyTorch checkpoint.
    BigInt(Vec<u8>),
    /// A float.
    Float(f64),
    /// A text string (`str`; also Python 2 `unicode`).
    Str(String),
    /// A byte string (`bytes`; also Python 2 `str` from STRING/BINSTRING opcodes).
    Bytes(Vec<u8>),
    /// A list.
    List(Vec<Value>),
    /// A tuple.
    Tuple(Vec<Value>),
    /// A dict, in insertion order.
    Dict(Vec<(Value, Value)>),
    /// A set or frozenset.
    Set(Vec<Value>),
    /// A global reference (`module.name`) that passed the caller's allow-list.
    Global {
        /// Module path as written in the pickle (`copy_reg`, `numpy.core.multiarray`).
        module: String,
        /// Attribute name.
        name: String,
    },
    /// `callable(*args)` (REDUCE), not executed.
    Reduce {
        /// Usually a [`Value::Global`].
        callable: Box<Value>,
        /// Usually a [`Value::Tuple`].
        args: Box<Value>,
    },
    /// `cls.__new__(cls, *args)` (NEWOBJ / NEWOBJ_EX), not executed.
    NewObj {
        /// The class, usually a [`Value::Global`].
        cls: Box<Value>,
        /// Positional arguments, usually a [`Value::Tuple`].
        args: Box<Value>,
        /// Keyword arguments (NEWOBJ_EX), else `None`.
        kwargs: Box<Value>,
    },
    /// `obj.__setstate__(state)` (BUILD), not executed.
    Build {
        /// The object being built.
        obj: Box<Value>,
        /// Its state.
        state: Box<Value>,
    },
    /// A persistent id (PERSID / BINPERSID). Legacy PyTorch checkpoints name their tensor
    /// storages this way (`('storage', torch.FloatStorage, key, location, numel)`); the
    /// caller maps the id to data stored beside the pickle.
    PersistentId(Box<Value>),
}

impl Value {
    /// The string, if this is a [`Value::Str`].
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The integer, if this is an [`Value::Int`] (or a [`Value::Bool`], as in Python).
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            Value::Bool(b) => Some(i64::from(*b)),
            _ => None,
        }
    }

    /// The items, if this is a [`Value::Tuple`] or a [`Value::List`].
    pub fn as_seq(&self) -> Option<&[Value]> {
        match self {
            Value::Tuple(v) | Value::List(v) => Some(v),
            _ => None,
        }
    }

    /// The pairs, if this is a [`Value::Dict`].
    pub fn as_dict(&self) -> Option<&[(Value, Value)]> {
        match self {
            Value::Dict(d) => Some(d),
            _ => None,
        }
    }

    /// The value stored under the string key `key`, if this is a dict that has it.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.as_dict()?.iter().find(|(k, _)| k.as_str() == Some(key)).map(|(_, v)| v)
    }

    /// `(module, name)`, if this is a [`Value::Global`].
    pub fn as_global(&self) -> Option<(&str, &str)> {
        match self {
            Value::Global { module, name } => Some((module, name)),
            _ => None,
        }
    }

    /// True if this is the global `module.name`.
    pub fn is_global(&self, module: &str, name: &str) -> bool {
        self.as_global() == Some((module, name))
    }

    /// Bytes of a latin-1 text string: Python 2 byte strings read by Python 3 with
    /// `encoding="latin1"` arrive as `str` whose code points are the bytes. `None` if a code
    /// point is above 255.
    pub fn latin1_bytes(&self) -> Option<Vec<u8>> {
        let s = self.as_str()?;
        s.chars().map(|c| u8::try_from(u32::from(c)).ok()).collect()
    }

    /// A short name of the variant, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool(_) => "bool",
            Value::Int(_) | Value::BigInt(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "str",
            Value::Bytes(_) => "bytes",
            Value::List(_) => "list",
            Value::Tuple(_) => "tuple",
            Value::Dict(_) => "dict",
            Value::Set(_) => "set",
            Value::Global { .. } => "global",
            Value::Reduce { .. } => "reduce",
            Value::NewObj { .. } => "newobj",
            Value::Build { .. } => "build",
            Value::PersistentId(_) => "persistent id",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accessors() {
        let d = Value::Dict(vec![(Value::Str("a".into()), Value::Int(3))]);
        assert_eq!(d.get("a"), Some(&Value::Int(3)));
        assert_eq!(d.get("b"), None);
        assert_eq!(Value::Bool(true).as_int(), Some(1));
        let s = Value::Str("\u{0}\u{ff}A".into());
        assert_eq!(s.latin1_bytes(), Some(vec![0, 255, 65]));
        assert_eq!(Value::Str("\u{100}".into()).latin1_bytes(), None);
        assert!(Value::Global { module: "m".into(), name: "n".into() }.is_global("m", "n"));
    }
}

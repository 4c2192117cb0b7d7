//! Hand-made opcode strings, plus small pickles written by CPython 3.11 / numpy 2.4
//! (`fixtures/hub/pickle/`, protocols 2 and 4).

use super::*;

fn s(x: &str) -> Value {
    Value::Str(x.into())
}

#[test]
fn scalars_and_containers() -> Result<()> {
    // PROTO 2, MARK, BININT1 7, BININT2 300, BININT -5, INT "01", NONE, BINUNICODE "ab",
    // BINFLOAT 1.0, TUPLE, STOP
    let mut p = vec![0x80, 2, b'(', b'K', 7, b'M', 0x2c, 0x01, b'J'];
    p.extend((-5i32).to_le_bytes());
    p.extend(b"I01\nN");
    p.extend([b'X', 2, 0, 0, 0, b'a', b'b', b'G']);
    p.extend(1.0f64.to_be_bytes());
    p.extend(b"t.");
    let v = loads(&p, &[])?;
    let want = Value::Tuple(vec![
        Value::Int(7),
        Value::Int(300),
        Value::Int(-5),
        Value::Bool(true),
        Value::None,
        s("ab"),
        Value::Float(1.0),
    ]);
    assert_eq!(v, want);
    Ok(())
}

#[test]
fn memo_shares_mutations() -> Result<()> {
    // d = {}; memo[0] = d; l = [d, d]; then d["k"] = 1 set through BINGET after the list.
    // EMPTY_DICT BINPUT 0 POP  EMPTY_LIST MARK BINGET 0 BINGET 0 APPENDS
    // BINGET 0 BINUNICODE k BININT1 1 SETITEM POP STOP
    let p = b"}q\x000](h\x00h\x00eh\x00X\x01\x00\x00\x00kK\x01s0.";
    let v = loads(p, &[])?;
    let d = Value::Dict(vec![(s("k"), Value::Int(1))]);
    assert_eq!(v, Value::List(vec![d.clone(), d]));
    Ok(())
}

#[test]
fn build_through_memo_and_long_opcodes() -> Result<()> {
    // GLOBAL m f, EMPTY_TUPLE, REDUCE, LONG_BINPUT 300, LONG_BINGET 300, BININT1 2, BUILD,
    // POP, LONG_BINGET 300 -> the built object, STOP
    let mut p = b"cm\nf\n)R".to_vec();
    p.push(b'r');
    p.extend(300u32.to_le_bytes());
    p.push(b'j');
    p.extend(300u32.to_le_bytes());
    p.extend(b"K\x02b0j");
    p.extend(300u32.to_le_bytes());
    p.push(b'.');
    let v = loads(&p, &[("m", "f")])?;
    let f = Value::Global { module: "m".into(), name: "f".into() };
    let obj = Value::Reduce { callable: Box::new(f), args: Box::new(Value::Tuple(vec![])) };
    assert_eq!(v, Value::Build { obj: Box::new(obj), state: Box::new(Value::Int(2)) });
    Ok(())
}

#[test]
fn globals_outside_the_allow_list_are_refused() {
    let p = b"cos\nsystem\n(X\x02\x00\x00\x00lstR.";
    let e = loads(p, &[("numpy", "dtype")]).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(e.contains("`os.system` is not in the allow-list"), "{e}");
}

#[test]
fn malformed_input_is_an_error_not_a_panic() {
    for p in [&b""[..], b"K", b"X\xff\xff\xff\xff", b"h\x05.", b"(e.", b"0.", b"\xfe.", b"N"] {
        assert!(loads(p, &[]).is_err(), "{p:?}");
    }
    assert!(loads(b"N.N", &[]).is_err(), "trailing bytes");
}

#[test]
fn persistent_ids_are_kept_for_the_caller() -> Result<()> {
    let p = b"(X\x07\x00\x00\x00storageK\x03tQ.";
    let v = loads(p, &[])?;
    let want = Value::PersistentId(Box::new(Value::Tuple(vec![s("storage"), Value::Int(3)])));
    assert_eq!(v, want);
    let (first, end) = loads_prefix(b"K\x01.K\x02.", &[], Path::new("x"))?;
    assert_eq!((first, end), (Value::Int(1), 3));
    Ok(())
}

fn check_plain(v: &Value) {
    let ints = v.get("ints").and_then(Value::as_seq).unwrap_or_default();
    let got: Vec<Option<i64>> = ints.iter().map(Value::as_int).collect();
    let want = [0, 1, 255, 256, 65535, 65536, -1, -(1 << 31), 1 << 40, i64::MIN];
    assert_eq!(&got[..10], want.map(Some).as_slice());
    // 2**80: LONG1 with 11 little-endian bytes.
    let mut big = vec![0u8; 10];
    big.push(1);
    assert_eq!(ints[10], Value::BigInt(big));
    assert_eq!(v.get("floats"), Some(&Value::Tuple(vec![Value::Float(1.5), Value::Float(-0.0)])));
    assert_eq!(v.get("text"), Some(&s("héllo")));
    let flags = Value::Tuple(vec![Value::Bool(true), Value::Bool(false), Value::None]);
    assert_eq!(v.get("flags"), Some(&flags));
    let nested = v.get("nested").cloned().unwrap_or(Value::None);
    assert_eq!(
        nested.get("t3"),
        Some(&Value::Tuple(vec![Value::Int(1), Value::Int(2), Value::Int(3)]))
    );
    assert_eq!(nested.get("empty"), Some(&Value::Tuple(vec![])));
    assert_eq!(v.get("shared"), Some(&Value::List(vec![nested.clone(), nested])));
}

#[test]
fn cpython_protocol_2() -> Result<()> {
    let data = include_bytes!("../../../../fixtures/hub/pickle/plain_p2.pkl");
    let v = loads(data, &[("_codecs", "encode"), ("__builtin__", "set")])?;
    check_plain(&v);
    // Protocol 2 writes bytes as `_codecs.encode("\x00\xff\x10", "latin1")`.
    let Some(Value::Reduce { callable, args }) = v.get("bytes") else {
        return Err(Error::Invalid(format!("bytes: {v:?}")));
    };
    assert!(callable.is_global("_codecs", "encode"));
    assert_eq!(args.as_seq().map(|a| a[0].latin1_bytes()), Some(Some(vec![0, 255, 16])));
    Ok(())
}

#[test]
fn cpython_protocol_4() -> Result<()> {
    let data = include_bytes!("../../../../fixtures/hub/pickle/plain_p4.pkl");
    let v = loads(data, &[])?;
    check_plain(&v);
    assert_eq!(v.get("bytes"), Some(&Value::Bytes(vec![0, 255, 16])));
    assert_eq!(v.get("set"), Some(&Value::Set(vec![Value::Int(3)])));
    Ok(())
}

#[test]
fn numpy_arrays_protocol_2() -> Result<()> {
    let data = include_bytes!("../../../../fixtures/hub/pickle/ndarray_p2.pkl");
    let allow = [
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
    ];
    let v = loads(data, &allow)?;
    // ndarray state: (version, shape, dtype, fortran, data)
    let Some(Value::Build { state, .. }) = v.get("a") else {
        return Err(Error::Invalid(format!("a: {v:?}")));
    };
    let st = state.as_seq().unwrap_or_default();
    assert_eq!(st[1], Value::Tuple(vec![Value::Int(2), Value::Int(3)]));
    let Value::Reduce { args, .. } = &st[4] else {
        return Err(Error::Invalid(format!("data: {:?}", st[4])));
    };
    let raw = args.as_seq().and_then(|a| a[0].latin1_bytes()).unwrap_or_default();
    let floats: Vec<f64> =
        raw.chunks(8).map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8]))).collect();
    assert_eq!(floats, [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
    assert_eq!(v.get("again"), v.get("a"));
    let short = loads(data, &allow[1..]).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(short.contains("numpy._core.multiarray._reconstruct"), "{short}");
    Ok(())
}

fn err(p: &[u8]) -> String {
    loads(p, &[]).err().map(|e| e.to_string()).unwrap_or_default()
}

#[test]
fn dup_shares_the_object_as_python_does() -> Result<()> {
    // EMPTY_LIST DUP BININT1 1 APPEND POP STOP: the list appended through the copy.
    assert_eq!(loads(b"]2K\x01a0.", &[])?, Value::List(vec![Value::Int(1)]));
    Ok(())
}

#[test]
fn alloc_pickle_exponential_dup_84_bytes() {
    // PROTO 2, EMPTY_LIST, then 40 x (DUP, TUPLE2): 2^41 objects as a tree.
    let mut p = vec![0x80, 2, b']'];
    (0..40).for_each(|_| p.extend([b'2', 0x86]));
    p.push(b'.');
    assert_eq!(p.len(), 84);
    let t = std::time::Instant::now();
    let e = err(&p);
    assert!(e.contains("BRAID_MAX_PICKLE_OBJECTS") && e.contains("<pickle>"), "{e}");
    assert!(t.elapsed().as_secs() < 5, "{:?}", t.elapsed());
}

#[test]
fn alloc_pickle_exponential_memo_get() {
    // EMPTY_LIST BINPUT 0, then 48 x (BINGET 0, DUP, TUPLE2, BINPUT 0).
    let mut p = b"]q\x00".to_vec();
    (0..48).for_each(|_| p.extend(b"h\x002\x86q\x00"));
    p.push(b'.');
    let e = err(&p);
    assert!(e.contains("BRAID_MAX_PICKLE_OBJECTS"), "{e}");
    // The same with a big string: the payload budget, not only the object count.
    let mut p = vec![b'B'];
    p.extend(1_000_000u32.to_le_bytes());
    p.extend(vec![b'x'; 1_000_000]);
    p.extend(b"q\x00");
    (0..12).for_each(|_| p.extend(b"h\x002\x86q\x00"));
    p.push(b'.');
    let e = err(&p);
    assert!(e.contains("BRAID_MAX_PICKLE_BYTES"), "{e}");
}

#[test]
fn panic_pickle_deep_nesting() {
    // 200,000 EMPTY_LISTs, each APPENDed into the one below: lists nested 200,000 deep.
    // Run on a small stack: reading must not recurse.
    let n = 200_000;
    let mut p = vec![b']'; n];
    p.extend(vec![b'a'; n - 1]);
    p.push(b'.');
    let deep = std::thread::Builder::new().stack_size(256 << 10).spawn(move || err(&p));
    let e = deep.map(|h| h.join().unwrap_or_default()).unwrap_or_default();
    assert!(
        e.contains("nesting needs 200000 levels") && e.contains("BRAID_MAX_PICKLE_DEPTH"),
        "{e}"
    );
    // A cycle (a list appended to itself) is refused, not followed.
    let e = err(b"]q\x00h\x00a.");
    assert!(e.contains("contains itself"), "{e}");
    // Nesting within the limit still reads.
    let mut p = vec![b']'; 500];
    p.extend(vec![b'a'; 499]);
    p.push(b'.');
    assert!(loads(&p, &[]).is_ok());
}

#[test]
fn hang_pickle_quadratic_dict_fill() -> Result<()> {
    // EMPTY_DICT MARK (BININT i, BININT1 0) x 200,000 SETITEMS, then key 7 again.
    let n = 200_000i32;
    let mut p = b"}(".to_vec();
    for i in 0..n {
        p.push(b'J');
        p.extend(i.to_le_bytes());
        p.extend(b"K\x00");
    }
    p.extend(b"uJ\x07\x00\x00\x00K\x09s.");
    let t = std::time::Instant::now();
    let v = loads(&p, &[])?;
    assert!(t.elapsed().as_secs() < 10, "{:?}", t.elapsed());
    let d = v.as_dict().unwrap_or_default();
    assert_eq!(d.len(), n as usize);
    assert_eq!(d[7], (Value::Int(7), Value::Int(9)), "an equal key replaces in place");
    Ok(())
}

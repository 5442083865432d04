//! The values a restricted unpickle builds ([`Value`], in an arena: a [`Pickle`]), the globals a
//! state dict may name (tags, never callables), and what calling them means: REDUCE on
//! `collections.OrderedDict()` makes an empty dict, on `torch._utils._rebuild_tensor_v2` a
//! tensor record, on `torch._utils._rebuild_parameter` the tensor it wraps; BINPERSID on
//! `('storage', torch.FloatStorage, key, location, numel)` a storage record. Nothing else.

/// An object's place in [`Pickle::objects`].
pub type Id = usize;

/// What a pickled tensor's storage holds, as the storage class names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StorageDtype {
    F32,
    F16,
    Bf16,
    /// A storage class of another element type (`torch.DoubleStorage`, ...): inert, but its
    /// tensors cannot be read. Holds torch's dtype name.
    Other(&'static str),
}

/// The globals a state dict may name; each is a tag, never a callable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Global {
    /// `collections.OrderedDict`
    OrderedDict,
    /// `torch._utils._rebuild_tensor_v2`
    RebuildTensorV2,
    /// `torch._utils._rebuild_parameter`
    RebuildParameter,
    /// `torch.FloatStorage`, `torch.HalfStorage`, `torch.BFloat16Storage`, ...
    Storage(StorageDtype),
}

/// The storage classes torch writes into a tensor's persistent id, by name.
const STORAGES: [(&str, StorageDtype); 12] = [
    ("FloatStorage", StorageDtype::F32),
    ("HalfStorage", StorageDtype::F16),
    ("BFloat16Storage", StorageDtype::Bf16),
    ("DoubleStorage", StorageDtype::Other("float64")),
    ("LongStorage", StorageDtype::Other("int64")),
    ("IntStorage", StorageDtype::Other("int32")),
    ("ShortStorage", StorageDtype::Other("int16")),
    ("CharStorage", StorageDtype::Other("int8")),
    ("ByteStorage", StorageDtype::Other("uint8")),
    ("BoolStorage", StorageDtype::Other("bool")),
    ("ComplexFloatStorage", StorageDtype::Other("complex64")),
    ("ComplexDoubleStorage", StorageDtype::Other("complex128")),
];

impl Global {
    /// The name the pickle used.
    pub fn python_name(self) -> String {
        match self {
            Global::OrderedDict => "collections.OrderedDict".into(),
            Global::RebuildTensorV2 => "torch._utils._rebuild_tensor_v2".into(),
            Global::RebuildParameter => "torch._utils._rebuild_parameter".into(),
            Global::Storage(d) => format!("torch.{}", STORAGES.iter().find(|(_, x)| *x == d).map_or("?", |(n, _)| n)),
        }
    }
}

/// The allowed global `module.name`, if it is one.
pub fn resolve(module: &str, name: &str) -> Option<Global> {
    match (module, name) {
        ("collections", "OrderedDict") => Some(Global::OrderedDict),
        ("torch._utils", "_rebuild_tensor_v2") => Some(Global::RebuildTensorV2),
        ("torch._utils", "_rebuild_parameter") => Some(Global::RebuildParameter),
        ("torch", _) => STORAGES.iter().find(|(n, _)| *n == name).map(|&(_, d)| Global::Storage(d)),
        _ => None,
    }
}

/// A storage that a persistent id names: a file `data/<key>` of the archive.
#[derive(Clone, Debug, PartialEq)]
pub struct StorageRef {
    pub dtype: StorageDtype,
    pub key: String,
    /// Elements the pickle says the storage has.
    pub numel: u64,
}

/// What `_rebuild_tensor_v2` was called with (validated later, for the tensors that are read).
#[derive(Clone, Debug, PartialEq)]
pub struct TensorRef {
    pub storage: Id,
    pub offset: u64,
    pub shape: Vec<u64>,
    pub stride: Vec<u64>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    /// An integer outside i64 (LONG1/LONG4): kept only as a fact.
    BigInt,
    Float(f64),
    Str(String),
    Tuple(Vec<Id>),
    List(Vec<Id>),
    /// Items in insertion order; a later equal key wins, as in Python.
    Dict(Vec<(Id, Id)>),
    Global(Global),
    Storage(StorageRef),
    Tensor(TensorRef),
}

impl Value {
    /// A short type name for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool(_) => "bool",
            Value::Int(_) | Value::BigInt => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "str",
            Value::Tuple(_) => "tuple",
            Value::List(_) => "list",
            Value::Dict(_) => "dict",
            Value::Global(_) => "global",
            Value::Storage(_) => "storage",
            Value::Tensor(_) => "tensor",
        }
    }
}

/// An unpickled object graph: every object in an arena, the result at `root`.
#[derive(Debug)]
pub struct Pickle {
    pub objects: Vec<Value>,
    pub root: Id,
}

impl Pickle {
    pub fn get(&self, id: Id) -> &Value {
        &self.objects[id]
    }

    /// The string at `id`, if it is one.
    pub fn str(&self, id: Id) -> Option<&str> {
        match &self.objects[id] {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }
}

fn int(objects: &[Value], id: Id, what: &str) -> Result<u64, String> {
    match objects[id] {
        Value::Int(v) if v >= 0 => Ok(v as u64),
        _ => Err(format!("{what} is not a non-negative integer")),
    }
}

fn ints(objects: &[Value], id: Id, what: &str) -> Result<Vec<u64>, String> {
    match &objects[id] {
        Value::Tuple(items) => items.iter().map(|&i| int(objects, i, what)).collect(),
        other => Err(format!("{what} is a {}, not a tuple", other.kind())),
    }
}

/// REDUCE of `f` on `args`: the three calls a state dict makes, building a new object in
/// `objects` (or returning an existing one); anything else is refused.
pub fn call(objects: &mut Vec<Value>, f: Id, args: Id) -> Result<Id, String> {
    let Value::Tuple(a) = &objects[args] else {
        return Err("REDUCE arguments are not a tuple".to_string());
    };
    let a = a.clone();
    match objects[f] {
        Value::Global(Global::OrderedDict) if a.is_empty() => Ok(new_obj(objects, Value::Dict(Vec::new()))),
        Value::Global(Global::RebuildTensorV2) if a.len() == 6 || a.len() == 7 => {
            let Value::Storage(_) = objects[a[0]] else {
                return Err("_rebuild_tensor_v2: the first argument is not a storage".to_string());
            };
            let offset = int(objects, a[1], "a tensor's storage offset")?;
            let shape = ints(objects, a[2], "a tensor's size")?;
            let stride = ints(objects, a[3], "a tensor's stride")?;
            if shape.len() != stride.len() {
                return Err(format!("_rebuild_tensor_v2: size has {} dimensions, stride {}", shape.len(), stride.len()));
            }
            Ok(new_obj(objects, Value::Tensor(TensorRef { storage: a[0], offset, shape, stride })))
        }
        Value::Global(Global::RebuildParameter) if a.len() == 3 => match objects[a[0]] {
            Value::Tensor(_) => Ok(a[0]),
            _ => Err("_rebuild_parameter: the first argument is not a tensor".to_string()),
        },
        Value::Global(g) => Err(format!("refused call of `{}` with {} arguments", g.python_name(), a.len())),
        ref other => Err(format!("REDUCE on a {} (only the allowed globals may be called)", other.kind())),
    }
}

/// BINPERSID: torch's `('storage', storage class, key, location, numel)` → the storage it names.
pub fn persistent(objects: &[Value], pid: Id) -> Result<StorageRef, String> {
    let Value::Tuple(t) = &objects[pid] else {
        return Err("a persistent id that is not a tuple".to_string());
    };
    let bad = || "a persistent id that is not ('storage', storage class, key, location, numel)".to_string();
    let [tag, class, key, _location, numel] = t.as_slice() else { return Err(bad()) };
    match (&objects[*tag], &objects[*class], &objects[*key]) {
        (Value::Str(s), Value::Global(Global::Storage(dtype)), Value::Str(k)) if s == "storage" => {
            Ok(StorageRef { dtype: *dtype, key: k.clone(), numel: int(objects, *numel, "a storage's size")? })
        }
        _ => Err(bad()),
    }
}

fn new_obj(objects: &mut Vec<Value>, v: Value) -> Id {
    objects.push(v);
    objects.len() - 1
}

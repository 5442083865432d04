//! A restricted unpickler: a small pickle machine for the opcodes that `torch.save` writes for
//! a state dict (protocols 2–5), building inert values. Globals resolve against a fixed list of
//! names to tags ([`Global`](super::objects::Global)); calling one (REDUCE) builds a dict, a tensor or a parameter and
//! nothing else. Any other global, opcode or call is an error that names it: nothing is ever
//! imported or executed.
//!
//! Every allocation is bounded by the input: each opcode adds at most one object to the arena
//! and one entry to the stack or memo, strings are slices of the input, and container items are
//! moved from the stack. No recursion, so no input can overflow the call stack.

use super::objects::{call, persistent, resolve, Id, Pickle, Value};
use crate::error::{Error, Result};
use std::collections::HashMap;

/// Reads the input and keeps the machine's state.
struct Machine<'a> {
    bytes: &'a [u8],
    pos: usize,
    /// Where the current opcode starts, for messages.
    at: usize,
    objects: Vec<Value>,
    stack: Vec<Id>,
    marks: Vec<usize>,
    memo: HashMap<u64, Id>,
}

/// Parses a pickle, refusing everything a state dict does not need.
pub fn parse(bytes: &[u8]) -> Result<Pickle> {
    let mut m = Machine { bytes, pos: 0, at: 0, objects: Vec::new(), stack: Vec::new(), marks: Vec::new(), memo: HashMap::new() };
    loop {
        m.at = m.pos;
        let op = m.take(1)?[0];
        if op == b'.' {
            let root = m.pop()?;
            return Ok(Pickle { objects: m.objects, root });
        }
        m.step(op)?;
    }
}

impl<'a> Machine<'a> {
    fn err(&self, msg: impl std::fmt::Display) -> Error {
        Error::new(format!("pickle byte {}: {msg}", self.at))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.bytes.len()).ok_or_else(|| self.err("the pickle ends early (truncated data.pkl?)"))?;
        let s = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn arg<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    /// A length argument, checked against what is left of the input before anything is allocated.
    fn len_arg(&mut self, n: u64) -> Result<usize> {
        let left = (self.bytes.len() - self.pos) as u64;
        if n > left {
            return Err(self.err(format!("a length of {n} bytes runs past the end of the pickle")));
        }
        Ok(n as usize)
    }

    fn line(&mut self) -> Result<&'a str> {
        let rest = &self.bytes[self.pos..];
        let n = rest.iter().position(|&b| b == b'\n').ok_or_else(|| self.err("GLOBAL without a newline"))?;
        self.pos += n + 1;
        std::str::from_utf8(&rest[..n]).map_err(|_| self.err("GLOBAL name is not UTF-8"))
    }

    fn new_obj(&mut self, v: Value) -> Id {
        self.objects.push(v);
        self.objects.len() - 1
    }

    fn push(&mut self, v: Value) {
        let id = self.new_obj(v);
        self.stack.push(id);
    }

    fn pop(&mut self) -> Result<Id> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() <= floor {
            return Err(self.err("stack underflow"));
        }
        Ok(self.stack.pop().expect("checked above"))
    }

    fn top(&self) -> Result<Id> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() <= floor {
            return Err(self.err("stack underflow"));
        }
        Ok(self.stack[self.stack.len() - 1])
    }

    /// The items pushed since the last MARK, which is removed.
    fn pop_mark(&mut self) -> Result<Vec<Id>> {
        let mark = self.marks.pop().ok_or_else(|| self.err("no MARK to pop to"))?;
        Ok(self.stack.split_off(mark))
    }

    fn string(&mut self, n: u64) -> Result<()> {
        let n = self.len_arg(n)?;
        let raw = self.take(n)?;
        let s = std::str::from_utf8(raw).map_err(|_| self.err("a string is not UTF-8"))?;
        self.push(Value::Str(s.to_string()));
        Ok(())
    }

    /// A little-endian two's-complement integer of `n` bytes (LONG1, LONG4).
    fn long(&mut self, n: u64) -> Result<()> {
        let n = self.len_arg(n)?;
        let raw = self.take(n)?;
        let v = if n == 0 {
            Value::Int(0)
        } else if n <= 8 {
            let fill = if raw[n - 1] & 0x80 != 0 { 0xff } else { 0 };
            let mut b = [fill; 8];
            b[..n].copy_from_slice(raw);
            Value::Int(i64::from_le_bytes(b))
        } else {
            Value::BigInt
        };
        self.push(v);
        Ok(())
    }

    fn memo_put(&mut self, key: u64) -> Result<()> {
        let top = self.top()?;
        self.memo.insert(key, top);
        Ok(())
    }

    fn memo_get(&mut self, key: u64) -> Result<()> {
        let id = *self.memo.get(&key).ok_or_else(|| self.err(format!("memo entry {key} was never stored")))?;
        self.stack.push(id);
        Ok(())
    }

    fn global(&mut self, module: &str, name: &str) -> Result<()> {
        match resolve(module, name) {
            Some(g) => {
                self.push(Value::Global(g));
                Ok(())
            }
            None => Err(self.err(format!(
                "refused pickle global `{module}.{name}`: a state dict needs only collections.OrderedDict, \
                 torch._utils._rebuild_tensor_v2 / _rebuild_parameter and torch storage classes (nothing was imported or run)"
            ))),
        }
    }

    /// The target object of SETITEM(S) / APPEND(S): the stack entry below `above` items.
    fn container(&self) -> Result<Id> {
        self.top()
    }

    fn step(&mut self, op: u8) -> Result<()> {
        match op {
            0x80 => {
                let [v] = self.arg::<1>()?;
                if v > 5 {
                    return Err(self.err(format!("pickle protocol {v} (this reader knows 2 to 5)")));
                }
            }
            0x95 => {
                self.arg::<8>()?; // FRAME: a length hint only
            }
            b'(' => self.marks.push(self.stack.len()),
            b'0' => drop(self.pop()?),
            b'1' => drop(self.pop_mark()?),
            b'2' => {
                let t = self.top()?;
                self.stack.push(t);
            }
            b'N' => self.push(Value::None),
            0x88 => self.push(Value::Bool(true)),
            0x89 => self.push(Value::Bool(false)),
            b'J' => {
                let v = i32::from_le_bytes(self.arg::<4>()?);
                self.push(Value::Int(v as i64));
            }
            b'K' => {
                let [v] = self.arg::<1>()?;
                self.push(Value::Int(v as i64));
            }
            b'M' => {
                let v = u16::from_le_bytes(self.arg::<2>()?);
                self.push(Value::Int(v as i64));
            }
            0x8a => {
                let [n] = self.arg::<1>()?;
                self.long(n as u64)?;
            }
            0x8b => {
                let n = i32::from_le_bytes(self.arg::<4>()?);
                if n < 0 {
                    return Err(self.err("LONG4 with a negative length"));
                }
                self.long(n as u64)?;
            }
            b'G' => {
                let v = f64::from_be_bytes(self.arg::<8>()?);
                self.push(Value::Float(v));
            }
            0x8c => {
                let [n] = self.arg::<1>()?;
                self.string(n as u64)?;
            }
            b'X' => {
                let n = u32::from_le_bytes(self.arg::<4>()?);
                self.string(n as u64)?;
            }
            0x8d => {
                let n = u64::from_le_bytes(self.arg::<8>()?);
                self.string(n)?;
            }
            b'}' => self.push(Value::Dict(Vec::new())),
            b']' => self.push(Value::List(Vec::new())),
            b')' => self.push(Value::Tuple(Vec::new())),
            b't' => {
                let items = self.pop_mark()?;
                self.push(Value::Tuple(items));
            }
            0x85..=0x87 => {
                let n = (op - 0x84) as usize;
                let floor = self.marks.last().copied().unwrap_or(0);
                if self.stack.len() < floor + n {
                    return Err(self.err("stack underflow"));
                }
                let items = self.stack.split_off(self.stack.len() - n);
                self.push(Value::Tuple(items));
            }
            b'q' => {
                let [i] = self.arg::<1>()?;
                self.memo_put(i as u64)?;
            }
            b'r' => {
                let i = u32::from_le_bytes(self.arg::<4>()?);
                self.memo_put(i as u64)?;
            }
            0x94 => {
                let i = self.memo.len() as u64;
                self.memo_put(i)?;
            }
            b'h' => {
                let [i] = self.arg::<1>()?;
                self.memo_get(i as u64)?;
            }
            b'j' => {
                let i = u32::from_le_bytes(self.arg::<4>()?);
                self.memo_get(i as u64)?;
            }
            b'c' => {
                let module = self.line()?;
                let name = self.line()?;
                self.global(module, name)?;
            }
            0x93 => {
                let name = self.pop()?;
                let module = self.pop()?;
                match (&self.objects[module], &self.objects[name]) {
                    (Value::Str(m), Value::Str(n)) => {
                        let (m, n) = (m.clone(), n.clone());
                        self.global(&m, &n)?;
                    }
                    _ => return Err(self.err("STACK_GLOBAL needs two strings")),
                }
            }
            b's' => {
                let v = self.pop()?;
                let k = self.pop()?;
                let d = self.container()?;
                self.dict_extend(d, vec![k, v])?;
            }
            b'u' => {
                let items = self.pop_mark()?;
                let d = self.container()?;
                if items.len() % 2 != 0 {
                    return Err(self.err("SETITEMS with an odd number of items"));
                }
                self.dict_extend(d, items)?;
            }
            b'a' => {
                let v = self.pop()?;
                let l = self.container()?;
                self.list_extend(l, vec![v])?;
            }
            b'e' => {
                let items = self.pop_mark()?;
                let l = self.container()?;
                self.list_extend(l, items)?;
            }
            b'R' => {
                let args = self.pop()?;
                let f = self.pop()?;
                let v = call(&mut self.objects, f, args).map_err(|e| self.err(e))?;
                self.stack.push(v);
            }
            b'b' => {
                let _state = self.pop()?;
                let target = self.top()?;
                // An OrderedDict's attributes (nn.Module.state_dict()'s `_metadata`): ignored.
                if !matches!(self.objects[target], Value::Dict(_)) {
                    return Err(self.err(format!("BUILD on a {} (only a dict's attributes may be set)", self.objects[target].kind())));
                }
            }
            b'Q' => {
                let pid = self.pop()?;
                let s = persistent(&self.objects, pid).map_err(|e| self.err(e))?;
                self.push(Value::Storage(s));
            }
            _ => return Err(self.err(format!("unsupported pickle opcode 0x{op:02x} (not one a torch state dict uses)"))),
        }
        Ok(())
    }

    fn dict_extend(&mut self, d: Id, items: Vec<Id>) -> Result<()> {
        let kind = self.objects[d].kind();
        match &mut self.objects[d] {
            Value::Dict(pairs) => {
                pairs.extend(items.chunks_exact(2).map(|p| (p[0], p[1])));
                Ok(())
            }
            _ => Err(self.err(format!("SETITEM on a {kind}"))),
        }
    }

    fn list_extend(&mut self, l: Id, items: Vec<Id>) -> Result<()> {
        let kind = self.objects[l].kind();
        match &mut self.objects[l] {
            Value::List(v) => {
                v.extend(items);
                Ok(())
            }
            _ => Err(self.err(format!("APPEND on a {kind}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(bytes: &[u8]) -> String {
        parse(bytes).unwrap_err().0
    }

    #[test]
    fn builds_dicts_lists_and_numbers() {
        // {'a': [1, -3, 2**64], 'b': (0.5, None, True)} at protocol 2, hand-assembled
        let mut p = vec![0x80, 2, b'}', b'q', 0, b'(', b'X', 1, 0, 0, 0, b'a', b']', b'(', b'K', 1, b'J'];
        p.extend_from_slice(&(-3i32).to_le_bytes());
        p.extend_from_slice(&[0x8a, 9, 0, 0, 0, 0, 0, 0, 0, 0, 1, b'e', 0x8c, 1, b'b', b'G']);
        p.extend_from_slice(&0.5f64.to_be_bytes());
        p.extend_from_slice(&[b'N', 0x88, 0x87, b'u', b'.']);
        let pk = parse(&p).unwrap();
        let Value::Dict(items) = pk.get(pk.root) else { panic!() };
        assert_eq!(items.len(), 2);
        let Value::List(l) = pk.get(items[0].1) else { panic!() };
        assert_eq!([pk.get(l[0]), pk.get(l[1]), pk.get(l[2])], [&Value::Int(1), &Value::Int(-3), &Value::BigInt]);
        let Value::Tuple(t) = pk.get(items[1].1) else { panic!() };
        assert_eq!([pk.get(t[0]), pk.get(t[1]), pk.get(t[2])], [&Value::Float(0.5), &Value::None, &Value::Bool(true)]);
    }

    #[test]
    fn refuses_other_globals_naming_them() {
        let e = err(b"\x80\x02cos\nsystem\nq\x00X\x02\x00\x00\x00hi\x85R.");
        assert!(e.contains("refused pickle global `os.system`"), "{e}");
        let e = err(b"\x80\x04\x8c\x08builtins\x8c\x04eval\x93.");
        assert!(e.contains("`builtins.eval`"), "{e}");
        let e = err(b"\x80\x02ctorch\nload\n.");
        assert!(e.contains("`torch.load`"), "{e}");
    }

    #[test]
    fn refuses_calls_other_than_the_state_dict_ones() {
        let e = err(b"\x80\x02ctorch\nFloatStorage\n)R.");
        assert!(e.contains("refused call of `torch.FloatStorage`"), "{e}");
        let e = err(b"\x80\x02ccollections\nOrderedDict\n)b.");
        assert!(e.contains("BUILD on a global"), "{e}");
        let e = err(b"\x80\x02K\x01)R.");
        assert!(e.contains("REDUCE on a int"), "{e}");
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        for bytes in [&b""[..], b"\x80", b"\x80\x02", b"0", b"t", b"\x85", b"h\x05", b"X\xff\xff\xff\xff", b"\x8d\xff\xff\xff\xff\xff\xff\xff\xff", b"\x80\x06.", b"\xff", b"(u.", b"](K\x01K\x02u."] {
            assert!(parse(bytes).is_err(), "{bytes:?}");
        }
        assert!(err(b"X\x10\x00\x00\x00ab").contains("runs past the end"));
        assert!(err(b"\x80\x02").contains("ends early"));
    }

    #[test]
    fn mark_bounds_pops() {
        // MARK then POP must not reach below the mark
        assert!(err(b"K\x01(0").contains("underflow"));
        assert!(err(b"K\x01(\x85").contains("underflow"));
    }
}

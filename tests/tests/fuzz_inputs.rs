//! Corpus-driven fuzzing of everything that parses user files: safetensors checkpoints and
//! inputs, model configs and training configs. Tens of thousands of mutated files; every one must
//! give Ok or an error message, never a panic.

use mvdit_model::checkpoint::{from_tensor_file, parse_config};
use mvdit_model::TensorFile;
use mvdit_tests::golden_dir;
use std::panic::catch_unwind;

struct Mutator(u64);

impl Mutator {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 17
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    /// One random corruption: bit flip, byte set, truncation, splice or header-length change.
    fn mutate(&mut self, seed: &[u8]) -> Vec<u8> {
        let mut b = seed.to_vec();
        for _ in 0..1 + self.below(3) {
            match self.below(6) {
                0 if !b.is_empty() => {
                    let i = self.below(b.len());
                    b[i] ^= 1 << self.below(8);
                }
                1 if !b.is_empty() => {
                    let i = self.below(b.len().min(400));
                    b[i] = [b'[', b']', b'{', b'"', b'9', b'-', b',', 0xff][self.below(8)];
                }
                2 => b.truncate(self.below(b.len() + 1)),
                3 if b.len() > 8 => {
                    let v = [0u64, 1, 7, u64::MAX, (b.len() as u64) * 2, self.next()][self.below(6)];
                    b[..8].copy_from_slice(&v.to_le_bytes());
                }
                4 if !b.is_empty() => {
                    let (i, j) = (self.below(b.len()), self.below(b.len()));
                    let chunk: Vec<u8> = b[i.min(j)..i.max(j)].to_vec();
                    let at = self.below(b.len());
                    b.splice(at..at, chunk);
                }
                _ => {
                    let i = self.below(b.len() + 1);
                    b.insert(i, self.next() as u8);
                }
            }
        }
        b
    }
}

#[test]
fn mutated_safetensors_never_panic_the_loaders() {
    let seeds = [
        std::fs::read(golden_dir().join("g2-bias-nonsquare.model.safetensors")).unwrap(),
        std::fs::read(golden_dir().join("t1-train10.model.safetensors")).unwrap(),
    ];
    let mut m = Mutator(7);
    let (mut ok, mut rejected) = (0, 0);
    for i in 0..6000 {
        let bytes = m.mutate(&seeds[i % 2]);
        let result = catch_unwind(|| match TensorFile::from_bytes(&bytes) {
            Ok(f) => from_tensor_file(f, None).map(|_| ()),
            Err(e) => Err(e),
        });
        match result {
            Ok(Ok(())) => ok += 1,
            Ok(Err(e)) => {
                assert!(!e.0.is_empty());
                rejected += 1
            }
            Err(_) => panic!("loader panicked on mutation {i}"),
        }
    }
    assert!(rejected > 3000, "mutations should mostly be rejected: {ok} ok, {rejected} rejected");
}

#[test]
fn mutated_configs_never_panic_the_parsers() {
    let model = r#"{"in_channels":1,"patch_size":2,"hidden_size":64,"depth":4,"num_heads":2,"mlp_hidden_dim":128,"qkv_bias":false,"context_dim":32,"rope_base":10000}"#;
    let train = serde_json::to_string(&mvdit_train::config::preset("tiny").unwrap()).unwrap();
    let train_toml = toml_text();
    let dir = tempfile_dir();
    let mut m = Mutator(11);
    for i in 0..30000 {
        let seed = [model.as_bytes(), train.as_bytes(), train_toml.as_bytes()][i % 3];
        let bytes = m.mutate(seed);
        let text = String::from_utf8_lossy(&bytes).to_string();
        let r = catch_unwind(|| {
            let _ = parse_config(&text, "fuzz");
            if i % 3 != 0 && i % 50 == 1 {
                // through the file reader too (extension picks the parser)
                let path = dir.join(if i % 3 == 2 { "c.toml" } else { "c.json" });
                std::fs::write(&path, &bytes).unwrap();
                let _ = mvdit_train::config::TrainConfig::read(&path);
            } else if i % 3 != 0 {
                let _ = serde_json::from_str::<mvdit_train::config::TrainConfig>(&text).map(|c| c.validate());
            }
        });
        assert!(r.is_ok(), "config parser panicked on mutation {i}: {text}");
    }
}

fn toml_text() -> String {
    let dir = tempfile_dir();
    let p = dir.join("seed.toml");
    // Round trip through the public reader: the preset as TOML.
    let json = serde_json::to_value(mvdit_train::config::preset("tiny").unwrap()).unwrap();
    let text = json_to_toml(&json);
    std::fs::write(&p, &text).unwrap();
    assert!(mvdit_train::config::TrainConfig::read(&p).is_ok(), "seed TOML must parse:\n{text}");
    text
}

/// Minimal JSON → TOML for the config's shape (tables of scalars and arrays).
fn json_to_toml(v: &serde_json::Value) -> String {
    let obj = v.as_object().unwrap();
    let mut top = String::new();
    let mut tables = String::new();
    for (k, v) in obj {
        match v {
            serde_json::Value::Object(inner) => {
                tables.push_str(&format!("\n[{k}]\n"));
                for (ik, iv) in inner {
                    if !iv.is_null() {
                        tables.push_str(&format!("{ik} = {iv}\n"));
                    }
                }
            }
            serde_json::Value::Null => {}
            _ => top.push_str(&format!("{k} = {v}\n")),
        }
    }
    top + &tables
}

fn tempfile_dir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("mvdit-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

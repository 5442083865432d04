//! Diagnostics in a real (tiny) training run, `mvdit report` end to end, and the page loaded in
//! headless Chromium (Debian package `chromium`; the browser check is skipped with a message
//! when it is not installed).

use mvdit_backend_cpu::Cpu;
use mvdit_core::Residual;
use mvdit_train::config::{preset, TrainConfig};
use mvdit_train::config::{DiagConfig, SpikeConfig};
use mvdit_train::diagnostics::read_diagnostics;
use mvdit_train::observe::{Progress, Quiet};
use mvdit_train::run::{read_metrics, train};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::AtomicBool;

fn tiny(residual: Residual, diagnostics: bool) -> TrainConfig {
    let mut c = preset("tiny").unwrap();
    c.model.residual = residual;
    c.model.depth = 4;
    c.steps = 6;
    c.checkpoint_every = 6;
    c.diagnostics = diagnostics.then(|| DiagConfig { anchors: vec![0, 2, 3], ..DiagConfig::new(2) });
    c
}

fn run(dir: &Path, cfg: TrainConfig) {
    train(&Cpu::new(1), dir, cfg, false, &AtomicBool::new(false), &mut Quiet).unwrap();
}

const LAYER_KEYS: [&str; 29] = [
    "tcs", "rho", "wo_g_mean", "wo_g_ctr", "wo_ratio", "wo_amp", "wo_coh", "w2_g_mean", "w2_g_ctr", "w2_ratio", "w2_amp", "w2_coh",
    "attn_rho_t", "ffn_rho_t", "attn_tr", "ffn_tr", "attn_vargain", "ffn_vargain", "mu_eff", "q_grad_rms", "k_grad_rms", "layer",
    "tcs", "mu_eff_pap", "attn_rowdiv", "attn_retention", "attn_leakage", "rho_text", "rho_all",
];

/// Record-level keys (depth 4: one block per stage; deep = blocks 2 and 3) and the per-layer
/// W_O/W_Q ratio: left out where ‖∇W_Q‖ = 0, as at step 1 with zero-initialised writers.
const RECORD_KEYS: [&str; 6] = ["wo_q_ratio", "wo_q_ratio_s0", "wo_q_ratio_s1", "wo_q_ratio_s2", "wo_q_ratio_s3", "wo_q_ratio_deep"];

#[test]
fn diagnostics_are_logged_for_every_kind_and_change_no_number() {
    let tmp = tempfile::tempdir().unwrap();
    for (residual, merge_keys) in [
        (Residual::Mvsplit, &["attn_alpha_mean", "attn_beta_mean", "ffn_alpha_max"][..]),
        (Residual::Layerscale, &["attn_lambda_mean", "ffn_lambda_max"][..]),
        (Residual::Postnorm, &[][..]),
    ] {
        let with = tmp.path().join(format!("{residual}-diag"));
        let without = tmp.path().join(format!("{residual}-plain"));
        run(&with, tiny(residual, true));
        run(&without, tiny(residual, false));
        assert_eq!(read_metrics(&with), read_metrics(&without), "{residual}: diagnostics must not change training");
        assert!(!without.join("diagnostics.jsonl").exists());
        let (recs, _) = read_diagnostics(&with);
        let steps: Vec<u64> = recs.iter().map(|r| r["step"].as_u64().unwrap()).collect();
        assert_eq!(steps, vec![1, 2, 4, 6], "{residual}");
        for r in &recs {
            assert!(r["grad_norm"].as_f64().unwrap() > 0.0 && r["loss"].as_f64().unwrap().is_finite());
            let later = r["step"] != 1;
            for k in RECORD_KEYS {
                assert!(r[k].as_f64().is_some_and(|v| v.is_finite() && v >= 0.0) || (!later && r[k].is_null()), "{residual}: record lacks {k}: {}", r[k]);
            }
            let layers = r["layers"].as_array().unwrap();
            assert_eq!(layers.iter().map(|l| l["layer"].as_u64().unwrap()).collect::<Vec<_>>(), vec![0, 2, 3]);
            for l in layers {
                for k in LAYER_KEYS.iter().chain(merge_keys) {
                    let v = l[*k].as_f64().unwrap_or_else(|| panic!("{residual}: layer lacks {k}: {l}"));
                    assert!(v.is_finite(), "{residual}: {k} = {v}");
                }
                let tcs = l["tcs"].as_f64().unwrap();
                assert!((-1.0..=1.0).contains(&tcs));
                assert!(l["wo_g_mean"].as_f64().unwrap() >= 0.0 && l["mu_eff"].as_f64().unwrap() >= 0.0);
                let ratio = &l["wo_q_grad_ratio"];
                assert!(ratio.as_f64().is_some_and(|v| v.is_finite() && v >= 0.0) || (!later && ratio.is_null()), "{residual}: {l}");
                let num = |k: &str| l[k].as_f64().unwrap();
                assert!(num("mu_eff_pap") <= num("mu_eff") + 1e-9, "‖PAP‖ ≤ ‖AP‖: {l}");
                assert!((0.0..=1.0).contains(&num("attn_rowdiv")) && num("attn_retention") >= 0.0 && num("attn_leakage") >= 0.0);
                if residual == Residual::Postnorm {
                    assert!(l.get("attn_alpha_mean").is_none() && l.get("attn_lambda_mean").is_none());
                }
            }
        }
    }
}

/// Keeps the progress messages.
#[derive(Default)]
struct Messages(Vec<String>);
impl Progress for Messages {
    fn message(&mut self, msg: &str) {
        self.0.push(msg.to_string());
    }
}

#[test]
fn a_gradient_spike_gets_an_autopsy_event_and_changes_no_number() {
    let tmp = tempfile::tempdir().unwrap();
    // A rule every step after the first meets (any norm is above 1e-9 × the median): one spike
    // at step 2, then the excursion goes on.
    let mut cfg = tiny(Residual::Postnorm, true);
    cfg.diagnostics.as_mut().unwrap().spike = SpikeConfig { factor: 1e-9, window: 10, min_history: 1, cross: 0.0 };
    let (with, without) = (tmp.path().join("spike"), tmp.path().join("plain"));
    let mut msgs = Messages::default();
    train(&Cpu::new(1), &with, cfg, false, &AtomicBool::new(false), &mut msgs).unwrap();
    run(&without, tiny(Residual::Postnorm, false));
    assert_eq!(read_metrics(&with), read_metrics(&without), "the autopsy must not change training");
    let (recs, events) = read_diagnostics(&with);
    let spikes: Vec<&Value> = events.iter().filter(|e| e["event"] == "spike").collect();
    assert_eq!(spikes.len(), 1, "{events:?}");
    let e = spikes[0];
    assert_eq!(e["step"], 2);
    let rec2 = recs.iter().find(|r| r["step"] == 2).unwrap();
    assert_eq!(e["grad_norm"], rec2["grad_norm"], "the step's global norm");
    let top = e["top"].as_array().unwrap();
    assert_eq!(top.len(), 15);
    let shares: Vec<f64> = top.iter().map(|g| g["share"].as_f64().unwrap()).collect();
    let norms: Vec<f64> = top.iter().map(|g| g["norm"].as_f64().unwrap()).collect();
    assert!(shares.iter().all(|s| (0.0..=1.0).contains(s)) && shares.iter().sum::<f64>() <= 1.0 + 1e-12, "{shares:?}");
    assert!(norms.windows(2).all(|w| w[0] >= w[1]), "largest first: {norms:?}");
    // Shares are of the squared global norm: the listed groups' squares are at most its square.
    let g = e["grad_norm"].as_f64().unwrap();
    for (n, s) in norms.iter().zip(&shares) {
        assert!((n * n / (g * g) - s).abs() < 1e-4 * s.max(1e-12), "{n} {s} {g}");
    }
    assert!(top.iter().all(|t| t["family"].is_string() && (t["layer"].is_null() || t["layer"].as_u64().unwrap() < 4)));
    assert!(e.get("hypothesis").is_some());
    assert_eq!(msgs.0.iter().filter(|m| m.contains("gradient-norm spike at step 2")).count(), 1, "{:?}", msgs.0);
}

/// Two tiny runs with diagnostics, plus an MMS event written into one of them.
fn two_runs(root: &Path) -> Vec<PathBuf> {
    let a = root.join("postnorm");
    let b = root.join("mvsplit");
    run(&a, tiny(Residual::Postnorm, true));
    run(&b, tiny(Residual::Mvsplit, true));
    let event = r#"{"kind":"event","event":"mms","step":4,"onset_step":4,"deep_tcs":0.999,"loss":1.6}"#;
    let path = a.join("diagnostics.jsonl");
    let text = std::fs::read_to_string(&path).unwrap() + event + "\n";
    std::fs::write(path, text).unwrap();
    vec![a, b]
}

fn chromium() -> Option<PathBuf> {
    ["chromium", "chromium-browser", "google-chrome"].iter().find_map(|name| {
        let ok = Command::new(name).arg("--version").output().map(|o| o.status.success()).unwrap_or(false);
        ok.then(|| PathBuf::from(name))
    })
}

#[test]
fn report_is_self_contained_and_renders_in_headless_chromium() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = two_runs(tmp.path());
    let out = tmp.path().join("out/report.html");
    let figs = tmp.path().join("out/figures");
    let o = Command::new(env!("CARGO_BIN_EXE_mvdit"))
        .arg("report")
        .args(&runs)
        .arg("--out")
        .arg(&out)
        .arg("--figures")
        .arg(&figs)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let html = std::fs::read_to_string(&out).unwrap();
    // Self-contained: no external script, style, image or font, no fetch.
    for bad in ["<script src", "<link", "@import", "url(", "fetch(", "XMLHttpRequest", "https://"] {
        assert!(!html.contains(bad), "report references `{bad}`");
    }
    assert_eq!(html.matches("http://").count(), html.matches("http://www.w3.org/2000/svg").count(), "only the SVG namespace");
    let data_start = html.find(r#"<script id="data" type="application/json">"#).unwrap();
    let data_text = &html[data_start..];
    let data_text = &data_text[data_text.find('>').unwrap() + 1..data_text.find("</script>").unwrap()];
    let data: Value = serde_json::from_str(data_text).unwrap();
    assert_eq!(data["runs"].as_array().unwrap().len(), 2);
    assert_eq!(data["runs"][0]["summary"]["mms_onset"], 4);
    assert_eq!(data["runs"][1]["diag"]["anchors"], serde_json::json!([0, 2, 3]));
    assert_eq!(data["runs"][1]["diag"]["layer"]["tcs"].as_array().unwrap().len(), 4, "one row per record");
    for f in ["loss.png", "deep_ratio.png", "deep_tcs.png", "tcs_heatmap.png", "ratio_heatmap.png"] {
        let img = image::open(figs.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
        assert!(img.width() >= 400 && img.height() >= 300, "{f}");
    }

    let Some(browser) = chromium() else {
        eprintln!("SKIPPED the browser check: no chromium on PATH (Debian: apt-get install chromium)");
        return;
    };
    let profile = tmp.path().join("chromium-profile");
    let url = format!("file://{}#selftest", out.canonicalize().unwrap().display());
    let o = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--enable-logging=stderr",
            "--v=0",
            "--virtual-time-budget=10000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("--dump-dom")
        .arg(&url)
        .output()
        .unwrap();
    let dom = String::from_utf8_lossy(&o.stdout);
    let log = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "chromium failed: {log}");
    let console: Vec<&str> = log.lines().filter(|l| l.contains("CONSOLE") || l.contains("Uncaught")).collect();
    assert!(console.is_empty(), "console messages: {console:#?}");
    assert!(dom.contains(r#"data-rendered="1""#), "page did not render: {}", &dom[..dom.len().min(2000)]);
    assert!(dom.contains(r#"data-status="ok""#), "self test: {}", dom.split("data-status=").nth(1).unwrap_or("(none)").chars().take(600).collect::<String>());
    let attr = |name: &str| -> usize {
        let s = dom.split(&format!("{name}=\"")).nth(1).unwrap_or("0");
        s[..s.find('"').unwrap_or(0)].parse().unwrap_or(0)
    };
    // 2 runs × 4 records × 3 anchors heat-map cells; the MMS event line drawn.
    assert_eq!(attr("data-cells"), 24);
    assert!(attr("data-events") >= 1);
    assert!(dom.contains("<svg"), "charts are SVG");
}

#[test]
fn report_refuses_a_folder_that_is_not_a_run() {
    let tmp = tempfile::tempdir().unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_mvdit"))
        .arg("report")
        .arg(tmp.path())
        .arg("--out")
        .arg(tmp.path().join("r.html"))
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("no metrics.jsonl"));
}

//! Diagnostics in a real (tiny) training run, `mvdit report` end to end, and the page loaded in
//! headless Chromium (Debian package `chromium`; the browser check is skipped with a message
//! when it is not installed).

use mvdit_backend_cpu::Cpu;
use mvdit_core::Residual;
use mvdit_train::config::{preset, TrainConfig};
use mvdit_train::config::{DiagConfig, DiagSetting, SpikeConfig};
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
    c.diagnostics = if diagnostics { DiagSetting::On(DiagConfig { anchors: vec![0, 2, 3], ..DiagConfig::new(2) }) } else { DiagSetting::Off };
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
    let DiagSetting::On(d) = &mut cfg.diagnostics else { unreachable!() };
    d.spike = SpikeConfig { factor: 1e-9, window: 10, min_history: 1, cross: 0.0 };
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

/// Two tiny runs with diagnostics. The post-norm run's records get known grad norms, deep
/// G_mean/G_ctr and deep ρ (layers 2 and 3 are deep at depth 4), and an MMS and a writer-shock
/// event, so its event log is known: see [`POSTNORM_LOG`].
fn two_runs(root: &Path) -> Vec<PathBuf> {
    let a = root.join("postnorm");
    let b = root.join("mvsplit");
    run(&a, tiny(Residual::Postnorm, true));
    run(&b, tiny(Residual::Mvsplit, true));
    let path = a.join("diagnostics.jsonl");
    let (records, _) = read_diagnostics(&a);
    let grad = [0.5, 1.5, 0.8, 2.5];
    let ratio = [1.0, 1.0, 3.0, 3.0];
    let rho = [1.0, 1.0, 5.0, 5.0];
    let mut text = String::new();
    for (i, mut r) in records.into_iter().enumerate() {
        r["grad_norm"] = grad[i].into();
        r["deep_ratio"] = ratio[i].into();
        for l in r["layers"].as_array_mut().unwrap() {
            if l["layer"].as_u64().unwrap() >= 2 {
                l["rho"] = rho[i].into();
            }
        }
        text += &format!("{r}\n");
    }
    text += r#"{"kind":"event","event":"writer_shock","step":4,"ratio":3.0,"baseline_ratio":1.0}"#;
    text += "\n";
    text += r#"{"kind":"event","event":"mms","step":6,"onset_step":4,"deep_tcs":0.999,"loss":1.6}"#;
    text += "\n";
    std::fs::write(path, text).unwrap();
    vec![a, b]
}

/// (step, kind, level) of the post-norm run's event log, with `--threshold deep_rho=4,4.5`
/// (deep ρ 5 is crit then).
const POSTNORM_LOG: [(u64, &str, &str); 6] = [
    (2, "grad_spike", "warn"),
    (4, "ratio_cross", "warn"),
    (4, "rho_cross", "crit"),
    (4, "writer_shock", "warn"),
    (4, "mms", "crit"),
    (6, "grad_spike", "crit"),
];

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
        .args(["--threshold", "deep_rho=4,4.5", "--threshold", "loss=1.2,3"])
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
    // Thresholds: the defaults with the overrides; the live series; the seeded event log.
    let th = |k: &str| data["thresholds"].as_array().unwrap().iter().find(|t| t["key"] == k).map(|t| (t["warn"].as_f64().unwrap(), t["crit"].as_f64().unwrap()));
    assert_eq!((th("loss"), th("grad_norm"), th("deep_ratio"), th("deep_rho"), th("deep_mu_eff")), (Some((1.2, 3.0)), Some((1.0, 2.0)), Some((2.0, 3.5)), Some((4.0, 4.5)), Some((2.0, 3.0))));
    assert_eq!(data["runs"][0]["deep"], serde_json::json!([2, 3]));
    assert_eq!(data["runs"][0]["diag"]["global"]["deep_rho"], serde_json::json!([1.0, 1.0, 5.0, 5.0]));
    assert_eq!(data["runs"][0]["diag"]["global"]["deep_mu_eff"].as_array().unwrap().len(), 4);
    let log: Vec<(u64, String, String)> = data["runs"][0]["log"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["step"].as_u64().unwrap(), e["kind"].as_str().unwrap().to_string(), e["level"].as_str().unwrap().to_string()))
        .collect();
    let want: Vec<(u64, String, String)> = POSTNORM_LOG.iter().map(|(s, k, l)| (*s, k.to_string(), l.to_string())).collect();
    assert_eq!(log, want);
    let logged = data["runs"].as_array().unwrap().iter().map(|r| r["log"].as_array().unwrap().len()).sum::<usize>();
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
            "--virtual-time-budget=30000",
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
    assert!(dom.contains(r#"data-status="ok""#), "self test: {}", dom.split("data-status=").nth(1).unwrap_or("(none)").chars().take(1500).collect::<String>());
    // The self test's verdict: every check passed; the event log and playback as expected.
    let verdict = dom.split(r#"<pre id="selftest-verdict" hidden="">"#).nth(1).and_then(|v| v.split("</pre>").next()).expect("no verdict element");
    let verdict = verdict.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&amp;", "&");
    let v: Value = serde_json::from_str(&verdict).unwrap_or_else(|e| panic!("verdict is not JSON ({e}): {verdict}"));
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["failures"], serde_json::json!([]), "{v}");
    let checks = v["checks"].as_object().unwrap();
    for name in [
        "metric_switch", "scrub_live", "step_forward", "step_back", "thresholds", "threshold_refused", "threshold_reset", "events", "event_click",
        "heatmap_hover", "heatmap_click", "loss_hover", "play", "play_moves", "play_ends", "play_live", "play_cursor", "play_restarts", "pause", "speed_slow", "speed",
    ] {
        assert_eq!(checks.get(name), Some(&Value::Bool(true)), "check {name}: {v}");
    }
    let events = v["events"].as_array().unwrap();
    assert_eq!(events.len(), logged, "one event-log row per entry: {v}");
    let shown: Vec<(u64, String, String)> = events
        .iter()
        .filter(|e| e["run"] == "postnorm")
        .map(|e| (e["step"].as_u64().unwrap(), e["kind"].as_str().unwrap().to_string(), e["level"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(shown, want, "the page's event log");
    let played: Vec<u64> = v["played"].as_array().unwrap().iter().map(|s| s.as_u64().unwrap()).collect();
    assert_eq!(played.last(), Some(&6), "playback ends at the last step: {played:?}");
    assert!(played.windows(2).all(|w| w[0] <= w[1]) && played.len() >= 3, "playback goes forward record by record: {played:?}");
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

#[test]
fn report_refuses_a_bad_threshold_in_one_line_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("metrics.jsonl"), "{\"kind\":\"train\",\"step\":1,\"loss\":1.0}\n").unwrap();
    let ok = tmp.path().join("ok.html");
    let o = Command::new(env!("CARGO_BIN_EXE_mvdit")).arg("report").arg(&dir).arg("--out").arg(&ok).args(["--threshold", "grad_norm=1,3"]).output().unwrap();
    assert!(o.status.success() && ok.exists(), "{}", String::from_utf8_lossy(&o.stderr));
    for (bad, says) in [("grad_norm=2", "two numbers"), ("speed=1,2", "unknown key `speed`"), ("deep_rho=6,4", "WARN 6 is above CRIT 4"), ("loss", "KEY=WARN,CRIT")] {
        let out = tmp.path().join("r.html");
        let o = Command::new(env!("CARGO_BIN_EXE_mvdit")).arg("report").arg(&dir).arg("--out").arg(&out).args(["--threshold", bad]).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{bad}");
        assert_eq!(err.trim().lines().count(), 1, "{bad}: {err}");
        assert!(err.contains(&format!("--threshold {bad}")) && err.contains(says), "{bad}: {err}");
        assert!(!out.exists(), "{bad}: nothing is written");
    }
}

//! `bitkit audit verify | diff | lineage | replay`: prove what a run read and wrote, compare
//! two training runs step by step, trace a checkpoint back to its shards, and re-run a
//! recorded command to check it gives the same bytes.

use super::record::{self, hash_path, hash_path_limited, FileRecord};
use super::{print_json, Outcome};
use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use serde_json::{json, Value};
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Re-hash every input and output a run record names (and a dataset's parts); exit 0 only if all match
    #[command(
        after_help = "PATH: a run directory or dataset or dedup output holding run.json, a run.json itself, or a
dataset directory (its parts are checked against the blake3 in dataset.json).

Examples:
  bitkit audit verify run/
  bitkit audit verify i21k/ --json"
    )]
    Verify(VerifyArgs),
    /// Compare two training runs step by step and name the first step and cause where they differ
    #[command(
        after_help = "Causes, in the order they are checked at each update: different data (another set of samples),
different order, different augmentation (crops, flips, MixUp), different pixels (same keys and
augmentation, other bytes), different numerics (same data, another loss); then the weight hashes at
checkpoints. Exit 0 when the common updates are identical, 1 otherwise.

Example:
  bitkit audit diff run-a/ run-b/"
    )]
    Diff(DiffArgs),
    /// Print the chain from a checkpoint back to the source shards
    #[command(after_help = "Examples:
  bitkit audit lineage run/checkpoints/step-0000500
  bitkit audit lineage run/ --json")]
    Lineage(LineageArgs),
    /// Re-run a recorded command into a fresh directory and compare every output byte for byte
    #[command(
        after_help = "Training runs are compared by their weights, checkpoints and per-update metrics (loss, lr and
data hashes; timings excluded); CPU runs reproduce exactly.

Example:
  bitkit audit replay run/ --into /tmp/replay"
    )]
    Replay(ReplayArgs),
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    pub path: PathBuf,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DiffArgs {
    pub run_a: PathBuf,
    pub run_b: PathBuf,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct LineageArgs {
    /// A checkpoint directory, or a run directory (its newest checkpoint)
    pub checkpoint: PathBuf,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// A directory with run.json
    pub run: PathBuf,
    /// Where the replay writes (default: RUN.replay next to it; must not exist)
    #[arg(long)]
    pub into: Option<PathBuf>,
    #[arg(long)]
    pub json: bool,
}

pub fn run(command: AuditCommand) -> anyhow::Result<Outcome> {
    match command {
        AuditCommand::Verify(a) => verify(a),
        AuditCommand::Diff(a) => diff(a),
        AuditCommand::Lineage(a) => lineage(a),
        AuditCommand::Replay(a) => replay(a),
    }
}

/// A recorded path, resolved against the record's working directory.
fn resolve(recorded: &Path, cwd: Option<&Path>) -> PathBuf {
    match cwd {
        Some(cwd) if recorded.is_relative() => cwd.join(recorded),
        _ => recorded.to_owned(),
    }
}

#[derive(serde::Serialize)]
struct Check {
    path: PathBuf,
    role: String,
    /// "ok", "changed", "missing", "size-only" (an input recorded without a hash).
    status: &'static str,
    detail: Option<String>,
}

fn check_file(f: &FileRecord, cwd: Option<&Path>) -> Check {
    let path = resolve(&f.path, cwd);
    let mk = |status, detail: Option<String>| Check { path: f.path.clone(), role: f.role.clone(), status, detail };
    if !path.exists() {
        return mk("missing", Some(format!("{} does not exist", path.display())));
    }
    let Some(want) = &f.blake3 else {
        let size = record::size_of(&path);
        return if size == f.size {
            mk("size-only", None)
        } else {
            mk("changed", Some(format!("size {size}, recorded {}", f.size)))
        };
    };
    match hash_path_limited(&path, f.size) {
        Ok((size, got)) if &got == want && size == f.size => mk("ok", None),
        Ok((size, got)) => {
            mk("changed", Some(format!("blake3 {got} ({size} bytes), recorded {want} ({} bytes)", f.size)))
        }
        Err(e) => mk("missing", Some(format!("{e:#}"))),
    }
}

fn verify(args: VerifyArgs) -> anyhow::Result<Outcome> {
    let VerifyArgs { path, json } = args;
    let mut checks = Vec::new();
    let record_path = if path.is_dir() { path.join("run.json") } else { path.clone() };
    let dir = if path.is_dir() { path.clone() } else { path.parent().map(Path::to_owned).unwrap_or_default() };
    let mut had_record = false;
    // Present but not a regular file (a directory, a link to a device): an error, not a skip.
    if std::fs::symlink_metadata(&record_path).is_ok_and(|m| !m.is_file()) {
        bail!("{} is not a regular file", record_path.display());
    }
    if record_path.is_file() {
        let rec = record::read(&record_path)?;
        had_record = true;
        let cwd = rec["cwd"].as_str().map(PathBuf::from);
        for key in ["inputs", "outputs"] {
            let files: Vec<FileRecord> = serde_json::from_value(rec[key].clone())
                .with_context(|| format!("{}: bad {key}", record_path.display()))?;
            checks.extend(files.iter().map(|f| check_file(f, cwd.as_deref())));
        }
        if rec["status"] == "running" {
            checks.push(Check {
                path: record_path.clone(),
                role: "record".into(),
                status: "changed",
                detail: Some("the run never finished (status running: killed or still going)".into()),
            });
        }
    }
    if dir.join("dataset.json").is_file() {
        let manifest = bitkit_ingest::dataset::Manifest::read(&dir)?;
        for part in &manifest.parts {
            let f = FileRecord::known(&dir.join(&part.file), "part (manifest)", part.bytes, &part.blake3);
            checks.push(check_file(&f, None));
        }
    } else if !had_record {
        bail!("{}: no run.json and no dataset.json: nothing to verify", path.display());
    }
    let bad = checks.iter().filter(|c| c.status == "changed" || c.status == "missing").count();
    if json {
        print_json(&json!({"path": path, "files": checks.len(), "mismatches": bad, "checks": checks}))?;
    } else {
        let mut o = std::io::stdout().lock();
        for c in &checks {
            let label = match c.status {
                "ok" => "ok      ",
                "size-only" => "size ok ",
                "missing" => "MISSING ",
                _ => "CHANGED ",
            };
            writeln!(
                o,
                "{label}{} ({}){}",
                c.path.display(),
                c.role,
                c.detail.as_ref().map_or(String::new(), |d| format!(": {d}"))
            )?;
        }
        writeln!(o, "{} files checked, {} mismatches", checks.len(), bad)?;
    }
    if bad > 0 {
        bail!("{}: {bad} of {} files do not match the record", path.display(), checks.len());
    }
    Ok(Outcome::Success)
}

fn metrics(run: &Path) -> anyhow::Result<Vec<Value>> {
    let path = run.join("metrics.jsonl");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    Ok(text.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()).collect())
}

/// Flattens a JSON object into `a.b.c = value` pairs.
fn flatten(prefix: &str, v: &Value, out: &mut Vec<(String, Value)>) {
    match v {
        Value::Object(map) => {
            for (k, x) in map {
                flatten(&if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") }, x, out);
            }
        }
        other => out.push((prefix.to_owned(), other.clone())),
    }
}

fn diff(args: DiffArgs) -> anyhow::Result<Outcome> {
    let DiffArgs { run_a, run_b, json } = args;
    let (ma, mb) = (metrics(&run_a)?, metrics(&run_b)?);
    let updates = |m: &[Value]| -> Vec<Value> { m.iter().filter(|v| v.get("loss").is_some()).cloned().collect() };
    let ckpts = |m: &[Value]| -> Vec<(u64, String)> {
        m.iter()
            .filter(|v| v.get("weights").is_some() && v.get("loss").is_none())
            .filter_map(|v| Some((v["step"].as_u64()?, v["weights"].as_str()?.to_owned())))
            .collect()
    };
    let (ua, ub) = (updates(&ma), updates(&mb));
    // Configuration differences, for context.
    let config_diff: Vec<String> = match (record::read(&run_a), record::read(&run_b)) {
        (Ok(a), Ok(b)) => {
            let (mut fa, mut fb) = (Vec::new(), Vec::new());
            flatten("", &a["config"], &mut fa);
            flatten("", &b["config"], &mut fb);
            let mut keys: Vec<&String> = fa.iter().chain(&fb).map(|(k, _)| k).collect();
            keys.sort();
            keys.dedup();
            keys.into_iter()
                .filter(|k| !k.starts_with("runtime.") && k.as_str() != "out")
                .filter_map(|k| {
                    let va = fa.iter().find(|(x, _)| x == k).map(|(_, v)| v.clone()).unwrap_or(Value::Null);
                    let vb = fb.iter().find(|(x, _)| x == k).map(|(_, v)| v.clone()).unwrap_or(Value::Null);
                    (va != vb).then(|| format!("{k}: {va} vs {vb}"))
                })
                .collect()
        }
        _ => Vec::new(),
    };
    let checks: [(&str, &str); 5] = [
        ("data_keys", "different data (another set of samples)"),
        ("data_order", "different order"),
        ("data_augment", "different augmentation (crop boxes, flips or MixUp)"),
        ("data", "different pixels (same samples and augmentation, other image bytes or decode)"),
        ("loss", "different numerics (same data, another loss)"),
    ];
    let mut first: Option<(u64, String)> = None;
    for (a, b) in ua.iter().zip(&ub) {
        let step = a["step"].as_u64().unwrap_or(0);
        if let Some((_, cause)) = checks.iter().find(|(field, _)| a[*field] != b[*field]) {
            first = Some((step, (*cause).to_owned()));
            break;
        }
    }
    if first.is_none() {
        let cb = ckpts(&mb);
        for (step, w) in ckpts(&ma) {
            if let Some((_, wb)) = cb.iter().find(|(s, _)| *s == step) {
                if *wb != w {
                    first = Some((step, "different weights at a checkpoint (numerics)".into()));
                    break;
                }
            }
        }
    }
    let common = ua.len().min(ub.len());
    let lengths = (ua.len() != ub.len())
        .then(|| format!("{} has {} updates, {} has {}", run_a.display(), ua.len(), run_b.display(), ub.len()));
    if json {
        print_json(&json!({
            "identical": first.is_none(), "common_updates": common,
            "first_difference": first.as_ref().map(|(s, c)| json!({"step": s, "cause": c})),
            "lengths": lengths, "config_differences": config_diff,
        }))?;
    } else {
        let mut o = std::io::stdout().lock();
        match &first {
            None => writeln!(
                o,
                "identical over {common} updates (data, order, augmentation, pixels, loss, checkpoint weights)"
            )?,
            Some((step, cause)) => writeln!(o, "first difference at step {step}: {cause}")?,
        }
        if let Some(l) = &lengths {
            writeln!(o, "{l}")?;
        }
        for d in &config_diff {
            writeln!(o, "config differs: {d}")?;
        }
    }
    if first.is_some() {
        bail!("the runs differ");
    }
    Ok(Outcome::Success)
}

fn lineage(args: LineageArgs) -> anyhow::Result<Outcome> {
    let LineageArgs { checkpoint, json } = args;
    let ck = if checkpoint.join("state.json").is_file() {
        checkpoint.clone()
    } else {
        let list = bitkit_train_checkpoints(&checkpoint)?;
        list.last().cloned().with_context(|| format!("{}: no checkpoint", checkpoint.display()))?
    };
    let state: Value = serde_json::from_slice(&std::fs::read(ck.join("state.json"))?)?;
    let run =
        ck.parent().and_then(Path::parent).map(Path::to_owned).context("a checkpoint sits in RUN/checkpoints/")?;
    let rec = record::read(&run)?;
    let cwd = rec["cwd"].as_str().map(PathBuf::from);
    let mut chain = json!({
        "checkpoint": ck, "step": state["step"], "weights": state["weights"], "loader_seed": state["seed"],
        "loader_step": state["loader_step"], "run": run, "command": rec["argv"],
        "loader": rec["config"]["train"]["loader"],
    });
    let mut datasets = Vec::new();
    let mut exclusions = Vec::new();
    let mut init = Value::Null;
    for input in rec["inputs"].as_array().into_iter().flatten() {
        let path = resolve(Path::new(input["path"].as_str().unwrap_or("")), cwd.as_deref());
        match input["role"].as_str().unwrap_or("") {
            "train-dataset" | "eval-dataset" => {
                let dir = path.parent().map(Path::to_owned).unwrap_or_default();
                datasets.push(dataset_lineage(&dir, input)?);
            }
            "exclude" => {
                let dir = path.parent().map(Path::to_owned).unwrap_or_default();
                let dedup = record::read(&dir).ok();
                exclusions.push(json!({
                    "file": path, "blake3": input["blake3"],
                    "dedup_run": dedup.as_ref().map(|_| dir.clone()),
                    "against": dedup.as_ref().map(|d| d["config"]["against"].clone()),
                    "dedup_dataset": dedup.as_ref().map(|d| d["config"]["dataset"].clone()),
                    "excluded": dedup.as_ref().map(|d| d["counts"]["excluded"].clone()),
                }));
            }
            "init" => init = json!({"file": path, "blake3": input["blake3"]}),
            _ => {}
        }
    }
    chain["datasets"] = json!(datasets);
    chain["exclusions"] = json!(exclusions);
    chain["init"] = init;
    if json {
        print_json(&chain)?;
        return Ok(Outcome::Success);
    }
    let mut o = std::io::stdout().lock();
    writeln!(
        o,
        "checkpoint {} (step {}, weights {})",
        ck.display(),
        state["step"],
        state["weights"].as_str().unwrap_or("?")
    )?;
    writeln!(
        o,
        "  run {}: {}",
        run.display(),
        rec["argv"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(" "))
            .unwrap_or_default()
    )?;
    writeln!(
        o,
        "  loader: seed {}, {} batches consumed, mode {}",
        state["seed"], state["loader_step"], rec["config"]["train"]["loader"]["transform"]["mode"]
    )?;
    let text = |v: &Value| v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string());
    if !chain["init"].is_null() {
        writeln!(o, "  init weights {} (blake3 {})", text(&chain["init"]["file"]), text(&chain["init"]["blake3"]))?;
    }
    for e in &exclusions {
        let from = if e["dedup_run"].is_null() {
            "no dedup run.json beside it".to_owned()
        } else {
            format!("dedup of {} against {} ({} keys)", text(&e["dedup_dataset"]), e["against"], e["excluded"])
        };
        writeln!(o, "  excluding the keys of {} (blake3 {}): {from}", text(&e["file"]), text(&e["blake3"]))?;
    }
    for d in &datasets {
        writeln!(
            o,
            "  {} {} ({} rows, manifest blake3 {})",
            text(&d["role"]),
            text(&d["dataset"]),
            d["rows"],
            text(&d["manifest_blake3"])
        )?;
        if let Some(cmd) = d["ingest_command"].as_array() {
            writeln!(o, "    ingested by: {}", cmd.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(" "))?;
        }
        for s in d["sources"].as_array().into_iter().flatten() {
            writeln!(
                o,
                "    shard {} ({} bytes, {} records, {} rejected){}",
                s["path"].as_str().unwrap_or(""),
                s["bytes"],
                s["records_read"],
                s["rejected"],
                s["blake3"].as_str().map_or(String::new(), |b| format!(" blake3 {b}"))
            )?;
        }
    }
    Ok(Outcome::Success)
}

fn bitkit_train_checkpoints(run: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let dir = run.join("checkpoints");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| format!("{}: no checkpoints", run.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("state.json").is_file())
        .collect();
    v.sort();
    Ok(v)
}

/// A dataset's manifest, its ingest record (when present) and its shards.
fn dataset_lineage(dir: &Path, input: &Value) -> anyhow::Result<Value> {
    let manifest = bitkit_ingest::dataset::Manifest::read(dir).with_context(|| format!("reading {}", dir.display()))?;
    let ingest = record::read(dir).ok();
    let hashes: Vec<(String, Value)> = ingest
        .as_ref()
        .and_then(|r| r["inputs"].as_array().cloned())
        .unwrap_or_default()
        .into_iter()
        .map(|i| (i["path"].as_str().unwrap_or("").to_owned(), i["blake3"].clone()))
        .collect();
    let sources: Vec<Value> = manifest
        .sources
        .iter()
        .map(|s| {
            let blake3 =
                hashes.iter().find(|(p, _)| p.ends_with(&s.path)).map(|(_, h)| h.clone()).unwrap_or(Value::Null);
            json!({"path": s.path, "bytes": s.bytes, "records_read": s.records_read, "written": s.written,
                   "rejected": s.rejected, "blake3": blake3})
        })
        .collect();
    Ok(json!({
        "role": input["role"], "dataset": dir, "manifest_blake3": input["blake3"], "rows": manifest.rows,
        "ingest_command": ingest.as_ref().map(|r| r["argv"].clone()), "sources": sources,
    }))
}

/// Whether a JSON field is a measurement of this run rather than a result: timings, and
/// dedup's split between hashes computed now and read from the cache.
fn is_circumstantial(key: &str) -> bool {
    key.ends_with("seconds")
        || key.ends_with("_per_s")
        || matches!(key, "time_s" | "data_wait" | "hashed_now" | "hashed_from_cache")
}

fn strip_circumstantial(v: &mut Value) {
    match v {
        Value::Object(map) => {
            map.retain(|k, _| !is_circumstantial(k));
            map.values_mut().for_each(strip_circumstantial);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_circumstantial),
        _ => {}
    }
}

fn replay(args: ReplayArgs) -> anyhow::Result<Outcome> {
    let ReplayArgs { run, into, json } = args;
    let rec = record::read(&run)?;
    let argv: Vec<String> = rec["argv"]
        .as_array()
        .context("run.json has no argv")?
        .iter()
        .filter_map(|a| a.as_str().map(str::to_owned))
        .collect();
    let cwd = rec["cwd"].as_str().map(PathBuf::from);
    let into = into.unwrap_or_else(|| {
        let mut name = run.file_name().map(|n| n.to_os_string()).unwrap_or_default();
        name.push(".replay");
        run.with_file_name(name)
    });
    anyhow::ensure!(!into.exists(), "{} exists: replay writes into a fresh directory", into.display());
    let into_abs = if into.is_absolute() { into.clone() } else { std::env::current_dir()?.join(&into) };
    // The same command with --out pointing at the fresh directory (and no --resume: a replay
    // runs from the start).
    let mut args: Vec<String> = Vec::new();
    let mut replaced = false;
    let mut i = 1;
    while i < argv.len() {
        let a = &argv[i];
        if a == "--out" && i + 1 < argv.len() {
            args.push("--out".into());
            args.push(into_abs.display().to_string());
            replaced = true;
            i += 2;
            continue;
        }
        if a.starts_with("--out=") {
            args.push(format!("--out={}", into_abs.display()));
            replaced = true;
        } else if a != "--resume" {
            args.push(a.clone());
        }
        i += 1;
    }
    anyhow::ensure!(replaced, "the recorded command has no --out to redirect");
    let exe = std::env::current_exe()?;
    let status = std::process::Command::new(&exe)
        .args(&args)
        .current_dir(cwd.as_deref().unwrap_or(Path::new(".")))
        .stdout(std::process::Stdio::null())
        .status()
        .with_context(|| format!("running {}", exe.display()))?;
    anyhow::ensure!(status.success() || status.code() == Some(3), "the replayed command failed ({status})");

    let original_out = rec["config"]["out"].as_str().map(PathBuf::from).unwrap_or_else(|| run.clone());
    let original_out = resolve(&original_out, cwd.as_deref());
    let original_out = original_out.canonicalize().unwrap_or(original_out);
    let outputs: Vec<FileRecord> = serde_json::from_value(rec["outputs"].clone())?;
    let mut results = Vec::new();
    for f in &outputs {
        let old = resolve(&f.path, cwd.as_deref());
        let old = old.canonicalize().unwrap_or(old);
        let rel = old.strip_prefix(&original_out).map(Path::to_owned);
        let Ok(rel) = rel else { continue };
        let new = into_abs.join(&rel);
        let json_like = rel.extension().is_some_and(|e| e == "json" || e == "jsonl");
        let same = if json_like {
            comparable_json(&old)? == comparable_json(&new)?
        } else {
            match (&f.blake3, hash_path(&new)) {
                (Some(want), Ok((_, got))) => *want == got,
                _ => false,
            }
        };
        results.push(json!({"file": rel, "identical": same}));
    }
    let differing: Vec<&Value> = results.iter().filter(|r| r["identical"] == false).collect();
    if json {
        print_json(
            &json!({"replay": into_abs, "files": results.len(), "differing": differing.len(), "results": results}),
        )?;
    } else {
        let mut o = std::io::stdout().lock();
        for r in &results {
            writeln!(
                o,
                "{} {}",
                if r["identical"] == true { "same     " } else { "DIFFERENT" },
                r["file"].as_str().unwrap_or("")
            )?;
        }
        writeln!(
            o,
            "replayed into {}: {} of {} outputs identical",
            into_abs.display(),
            results.len() - differing.len(),
            results.len()
        )?;
    }
    if !differing.is_empty() {
        bail!("{} outputs differ from the recorded run", differing.len());
    }
    Ok(Outcome::Success)
}

/// A JSON or JSON-lines file without its circumstantial fields (a missing file is empty).
fn comparable_json(path: &Path) -> anyhow::Result<Option<Vec<Value>>> {
    let Ok(text) = std::fs::read_to_string(path) else { return Ok(None) };
    let values: Vec<Value> = if path.extension().is_some_and(|e| e == "jsonl") {
        text.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()).collect()
    } else {
        vec![serde_json::from_str(&text).with_context(|| format!("{}: not JSON", path.display()))?]
    };
    Ok(Some(
        values
            .into_iter()
            .map(|mut v| {
                strip_circumstantial(&mut v);
                v
            })
            .collect(),
    ))
}

//! `bitkit model info | forward | export`: the BiT ResNet-v2 family from the command line.

use super::{print_json, Outcome};
use anyhow::{bail, Context};
use bitkit_train::npz::{self, Array};
use bitkit_train::tch::{Device, Kind, Tensor};
use bitkit_train::variant::Variant;
use bitkit_train::weights::{self, export_bit_npz, model_from_file};
use clap::{Args, Subcommand};
use std::io::Write;
use std::path::PathBuf;

#[derive(Debug, Subcommand)]
pub enum ModelCommand {
    /// Print the layer table and parameter count of a variant
    #[command(after_help = "Variants: r50x1 r50x3 r101x1 r101x3 r152x2 r152x4 tiny

Examples:
  bitkit model info --model r50x1 --classes 1000
  bitkit model info --model r152x4 --classes 21843 --json | jq .params")]
    Info(InfoArgs),
    /// Run a float32 NCHW batch (.npy, pixels in [-1, 1]) through a model, write the logits (.npy)
    #[command(after_help = "The variant is inferred from the weights (block units from the highest unitNN per block,
width from the root kernel, classes from the head) unless --model is given.

Examples:
  bitkit model forward --init BiT-M-R50x1.npz --input x.npy --out logits.npy
  bitkit model forward --init run/ --input x.npy --out logits.npy --device cuda")]
    Forward(ForwardArgs),
    /// Write a checkpoint (or any weights) in the official BiT .npz layout (opens in big_transfer and timm)
    #[command(after_help = "Examples:
  bitkit model export --init run/checkpoints/step-0000500 --out BiT-M-R50x1-cifar10.npz")]
    Export(ExportArgs),
}

#[derive(Debug, Args)]
pub struct InfoArgs {
    /// r50x1, r50x3, r101x1, r101x3, r152x2, r152x4 or tiny
    #[arg(long)]
    pub model: String,
    /// Head size
    #[arg(long, default_value_t = 1000)]
    pub classes: i64,
    /// One JSON object (with `params`) instead of the table
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ForwardArgs {
    /// Weights: a BiT .npz, a .safetensors, a checkpoint directory or a run directory
    #[arg(long)]
    pub init: PathBuf,
    /// float32 array [N, 3, H, W]
    #[arg(long)]
    pub input: PathBuf,
    /// float32 logits [N, classes]
    #[arg(long)]
    pub out: PathBuf,
    /// Check the weights are this variant
    #[arg(long)]
    pub model: Option<String>,
    /// auto, cpu, cuda or cuda:N
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Images per forward pass
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// A checkpoint directory, run directory, .safetensors or .npz
    #[arg(long)]
    pub init: PathBuf,
    /// The .npz to write
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run(command: ModelCommand) -> anyhow::Result<Outcome> {
    match command {
        ModelCommand::Info(args) => info(args),
        ModelCommand::Forward(args) => forward(args),
        ModelCommand::Export(args) => export(args),
    }
}

fn info(args: InfoArgs) -> anyhow::Result<Outcome> {
    let InfoArgs { model, classes, json } = args;
    let variant: Variant = model.parse()?;
    if classes < 1 {
        bail!("--classes must be at least 1");
    }
    let params = variant.parameters(classes);
    let numel = |s: &[i64]| s.iter().product::<i64>() as u64;
    let total = variant.param_count(classes);
    if json {
        let units: Vec<_> = variant
            .unit_shapes()
            .iter()
            .map(|u| {
                let prefix = u.prefix('.');
                let p: u64 =
                    params.iter().filter(|(n, _)| n.starts_with(&format!("{prefix}."))).map(|(_, s)| numel(s)).sum();
                serde_json::json!({"name": u.prefix('/'), "cin": u.cin, "cmid": u.cmid, "cout": u.cout,
                    "stride": u.stride, "projection": u.projection, "params": p})
            })
            .collect();
        let layers: Vec<_> = params
            .iter()
            .map(|(n, s)| serde_json::json!({"name": n, "npz_key": format!("resnet/{}", n.replace('.', "/")), "shape": s, "params": numel(s)}))
            .collect();
        print_json(&serde_json::json!({
            "model": variant.name, "classes": classes, "params": total,
            "block_units": variant.units, "width_factor": variant.width_factor(),
            "feature_dim": variant.feature_dim(), "units": units, "layers": layers,
        }))?;
        return Ok(Outcome::Success);
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "{} (BiT ResNet-v2, GroupNorm(32) + Weight Standardization), {classes}-class head", variant.name)?;
    writeln!(
        out,
        "{:<14} {:>6} {:>6} {:>6} {:>6} {:>5} {:>12}",
        "layer", "cin", "cmid", "cout", "stride", "proj", "params"
    )?;
    let root = numel(&params[0].1);
    writeln!(out, "{:<14} {:>6} {:>6} {:>6} {:>6} {:>5} {:>12}", "root_block", 3, "", variant.root_width, 2, "", root)?;
    for u in variant.unit_shapes() {
        let prefix = format!("{}.", u.prefix('.'));
        let p: u64 = params.iter().filter(|(n, _)| n.starts_with(&prefix)).map(|(_, s)| numel(s)).sum();
        writeln!(
            out,
            "{:<14} {:>6} {:>6} {:>6} {:>6} {:>5} {:>12}",
            u.prefix('/'),
            u.cin,
            u.cmid,
            u.cout,
            u.stride,
            if u.projection { "yes" } else { "" },
            p
        )?;
    }
    let head: u64 = params
        .iter()
        .filter(|(n, _)| n.starts_with("head.") || n.starts_with("group_norm."))
        .map(|(_, s)| numel(s))
        .sum();
    writeln!(
        out,
        "{:<14} {:>6} {:>6} {:>6} {:>6} {:>5} {:>12}",
        "head",
        variant.feature_dim(),
        "",
        classes,
        "",
        "",
        head
    )?;
    writeln!(out, "total parameters: {total} ({:.2}M)", total as f64 / 1e6)?;
    Ok(Outcome::Success)
}

fn forward(args: ForwardArgs) -> anyhow::Result<Outcome> {
    let ForwardArgs { init, input, out, model, device, batch } = args;
    let device = bitkit_train::device::select(&device)?;
    let file = bitkit_train::checkpoint::resolve_weights(&init)?;
    let (m, _) = model_from_file(&file, None, false, device).with_context(|| format!("loading {}", file.display()))?;
    if let Some(name) = model {
        let want: Variant = name.parse()?;
        if want != m.net.variant {
            bail!("--model {want} but {} holds a {} model", file.display(), m.net.variant);
        }
    }
    let x = npz::read_npy(&input)?;
    if x.shape.len() != 4 || x.shape[1] != 3 {
        bail!("{}: expected a float32 NCHW batch [N, 3, H, W], got shape {:?}", input.display(), x.shape);
    }
    let shape: Vec<i64> = x.shape.iter().map(|&d| d as i64).collect();
    let xs = Tensor::from_slice(&x.data).view(shape.as_slice());
    let mut logits = Vec::new();
    for chunk in xs.split(batch.max(1) as i64, 0) {
        let y = bitkit_train::eval::forward_batch(&m.net, &chunk.to_device(device));
        logits.push(y.to_device(Device::Cpu).to_kind(Kind::Float));
    }
    let y = Tensor::cat(&logits, 0).contiguous();
    let dims: Vec<usize> = y.size().iter().map(|&d| d as usize).collect();
    let data = Vec::<f32>::try_from(y.flatten(0, -1))?;
    let tmp = out.with_extension("npy.tmp");
    npz::write_npy(&tmp, &Array::new(dims, data)?)?;
    std::fs::rename(&tmp, &out).with_context(|| format!("writing {}", out.display()))?;
    Ok(Outcome::Success)
}

fn export(args: ExportArgs) -> anyhow::Result<Outcome> {
    let ExportArgs { init, out } = args;
    let file = bitkit_train::checkpoint::resolve_weights(&init)?;
    let (m, _) = weights::model_from_file(&file, None, false, Device::Cpu)?;
    export_bit_npz(&m, &out)?;
    Ok(Outcome::Success)
}

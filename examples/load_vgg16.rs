//! Peak memory while loading VGG-16 (138M parameters, a 528 MB file), for
//! `docs/performance.md`. Writes a seeded network's weights, then loads
//! them in a fresh process, either as `load` does or as a reader that holds
//! the whole file in memory first (the baseline):
//!
//! ```text
//! cargo build --example load_vgg16
//! target/debug/examples/load_vgg16 write /tmp/vgg16.safetensors
//! /usr/bin/time -v target/debug/examples/load_vgg16 load /tmp/vgg16.safetensors
//! /usr/bin/time -v target/debug/examples/load_vgg16 baseline /tmp/vgg16.safetensors
//! ```
//!
//! "Maximum resident set size" is the figure; `write` prints the tensor
//! bytes to compare it with.

use netdsl::candle::Device;
use netdsl::network;

include!("networks/vgg16.rs");

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (mode, path) = match &args[..] {
        [_, mode, path] => (mode.as_str(), path.as_str()),
        _ => return Err("usage: load_vgg16 write|load|baseline PATH".into()),
    };
    let start = std::time::Instant::now();
    let net = match mode {
        "write" => {
            let net = Vgg16::new_seeded(0, &Device::Cpu)?;
            net.save(path)?;
            let bytes: usize = Vgg16::MANIFEST.iter().map(|s| s.numel() * 4).sum();
            println!("wrote {bytes} bytes of tensors to {path}");
            net
        }
        "load" => Vgg16::load(path, &Device::Cpu)?,
        "baseline" => {
            let bytes = std::fs::read(path)?;
            let tensors = netdsl::candle::safetensors::load_buffer(&bytes, &Device::Cpu)?;
            drop(bytes);
            Vgg16::from_tensors(tensors, &Device::Cpu)?
        }
        other => return Err(format!("unknown mode `{other}`").into()),
    };
    println!(
        "{mode}: {:.2} s, {} tensors",
        start.elapsed().as_secs_f64(),
        net.named_tensors().len()
    );
    Ok(())
}

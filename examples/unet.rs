//! The original U-Net (Ronneberger et al., 2015) in `network!`: prints the
//! compile-time summary with every level's size (572 -> 388 through valid
//! convolutions, copy-and-crop skips), the dataflow as Mermaid (and writes it
//! and the DOT text next to the output), and runs one forward pass.
//!
//! Then it runs the restoration variant (same padding, residual output; it
//! trains in `examples/restore.rs`) on eight noisy held-out digits, with the
//! weights `restore` saves in `target/restore/restore_unet.safetensors`, or
//! untrained (seed 0) when that file is missing.
//!
//! Files written under `target/unet/`:
//! - `unet.mmd` and `unet.dot`: the original U-Net's graph;
//! - `restoration.png`: the digits clean, noisy and restored by the
//!   restoration U-Net (enlarged x4), each captioned with its PSNR.
//!
//! ```text
//! cargo run --release --example unet
//! ```

use std::path::Path;
use std::time::Instant;

use netdsl::candle::{Device, Tensor};
use netdsl::data::Digits;
use netdsl::network;

#[path = "common/restore_unet.rs"]
mod restore_unet;

use restore_unet::{held_out, psnr, Restorer, SHOWN};

include!("networks/unet.rs");

fn main() -> Result<(), restore_unet::Error> {
    println!("{}", UNet::SUMMARY);
    println!("{}", UNet::GRAPH_MERMAID);
    let out = Path::new("target/unet");
    std::fs::create_dir_all(out)?;
    std::fs::write(out.join("unet.mmd"), UNet::GRAPH_MERMAID)?;
    std::fs::write(out.join("unet.dot"), UNet::GRAPH_DOT)?;
    println!(
        "wrote target/unet/unet.mmd and target/unet/unet.dot (dot -Tsvg target/unet/unet.dot)"
    );

    let device = Device::Cpu;
    let net = UNet::new_seeded(0, &device)?;
    let x = Tensor::rand(0f32, 1.0, (1, 1, 572, 572), &device)?;
    let start = Instant::now();
    let y = net.forward(&x)?;
    println!(
        "forward: {:?} -> {:?} in {:.0} ms ({} parameters)",
        x.dims(),
        y.dims(),
        start.elapsed().as_secs_f64() * 1e3,
        UNet::PARAMETERS
    );

    // The restoration variant on the digits `restore` holds out (seed 0),
    // with the same noise: the input here is the noisy row of restore's
    // `restore.png`.
    println!();
    println!("{}", Restorer::SUMMARY);
    let weights = Path::new(restore_unet::WEIGHTS);
    let (restorer, trained) = if weights.exists() {
        (Restorer::load(weights, &device)?, true)
    } else {
        (Restorer::new_seeded(0, &device)?, false)
    };
    if trained {
        println!("restoration U-Net: weights from {}", weights.display());
    } else {
        println!(
            "restoration U-Net: {} not found, so the output is UNTRAINED (seed 0); \
             run `cargo run --release --example restore` first",
            weights.display()
        );
    }
    let data = Digits::load(restore_unet::DIGITS)?;
    let (_, clean, noisy, _) = held_out(&data, 0, restore_unet::SIGMA, &device)?;
    let shown = SHOWN.min(clean.dim(0)?);
    let (clean, noisy) = (clean.narrow(0, 0, shown)?, noisy.narrow(0, 0, shown)?);
    let start = Instant::now();
    let restored = restorer.forward(&noisy)?;
    println!(
        "forward: {:?} -> {:?} in {:.0} ms; PSNR of these {shown} digits: noisy {:.2} dB, output {:.2} dB (sigma {})",
        noisy.dims(),
        restored.dims(),
        start.elapsed().as_secs_f64() * 1e3,
        psnr(&noisy, &clean)?,
        psnr(&restored, &clean)?,
        restore_unet::SIGMA
    );
    let path = out.join("restoration.png");
    let title = if trained {
        "Restoration U-Net, trained by `restore`: clean, noisy, restored"
    } else {
        "Restoration U-Net, UNTRAINED (run `restore` first): clean, noisy, output"
    };
    restore_unet::sheet(title.to_string(), &clean, &noisy, &restored)?.save(&path)?;
    println!("wrote {}", path.display());
    Ok(())
}

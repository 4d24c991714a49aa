//! The original U-Net (Ronneberger et al., 2015) in `network!`: prints the
//! compile-time summary with every level's size (572 -> 388 through valid
//! convolutions, copy-and-crop skips), the dataflow as Mermaid (and writes it
//! and the DOT text next to the output), and runs one forward pass.
//!
//! ```text
//! cargo run --release --example unet
//! ```
//! The restoration variant (same padding, residual output) trains in
//! `examples/restore.rs`.

use std::time::Instant;

use netdsl::candle::{Device, Tensor};
use netdsl::network;

include!("../tests/networks/unet.rs");

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("{}", UNet::SUMMARY);
    println!("{}", UNet::GRAPH_MERMAID);
    let out = std::path::Path::new("target/unet");
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
    Ok(())
}

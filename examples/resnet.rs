//! ResNet-18 in `network!` with torchvision's module names, from eight uses
//! of one `BasicBlock` block (identity or 1x1-projection shortcut, chosen per
//! use by an `if`): prints the summary and the fusions (every batch norm folds
//! into its convolution), runs a forward pass and prints the top-5 classes.
//!
//! ```text
//! cargo run --release --example resnet
//! cargo run --release --example resnet -- resnet18.safetensors   # torchvision's weights
//! ```
//! (`python3 -c "import torchvision; from safetensors.torch import save_file;
//! save_file({k: v.contiguous() for k, v in torchvision.models.resnet18(weights='DEFAULT').state_dict().items()}, 'resnet18.safetensors')"`)

use std::time::Instant;

use netdsl::candle::{Device, Tensor};
use netdsl::network;

include!("networks/resnet18.rs");

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let device = Device::Cpu;
    println!("{}", ResNet18::SUMMARY);
    println!("fusions:\n{}\n", ResNet18::FUSIONS);
    let net = match std::env::args().nth(1) {
        Some(path) => ResNet18::load(path, &device)?,
        None => ResNet18::new_seeded(0, &device)?,
    };
    let x = Tensor::rand(0f32, 1.0, (1, 3, 224, 224), &device)?;
    net.forward(&x)?; // warm-up (computes the folded weights once)
    let start = Instant::now();
    let logits = net.forward(&x)?;
    let ms = start.elapsed().as_secs_f64() * 1e3;
    let probs: Vec<f32> = netdsl::candle_nn::ops::softmax(&logits.squeeze(0)?, 0)?.to_vec1()?;
    let mut idx: Vec<usize> = (0..probs.len()).collect();
    idx.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]));
    println!(
        "top-5: {:?}",
        idx.iter()
            .take(5)
            .map(|&i| (i, probs[i]))
            .collect::<Vec<_>>()
    );
    println!("forward: {ms:.1} ms");
    Ok(())
}

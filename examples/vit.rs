//! ViT-B/16 in torchvision's layout, written in `network!` (the network is
//! `examples/networks/vit.rs`): prints the compile-time summary, classifies
//! an image (or a seeded random one) and prints the top five ImageNet
//! classes and the time.
//!
//! ```text
//! cargo run --release --example vit
//! cargo run --release --example vit -- --weights vit_b_16.safetensors --image cat.jpg
//! ```
//!
//! torchvision's pretrained weights load unchanged once saved as safetensors
//! (one line of Python, with torch, torchvision and safetensors installed):
//!
//! ```text
//! python3 -c "import torchvision; from safetensors.torch import save_file; save_file({k: v.contiguous() for k, v in torchvision.models.vit_b_16(weights='DEFAULT').state_dict().items()}, 'vit_b_16.safetensors')"
//! ```
//!
//! The pretrained weights could not be downloaded where this example was
//! written, so it has not been run on them. Its loading path
//! (`examples/common/vit.rs`) is tested in `tests/vit.rs` on a file written
//! from a randomly initialised, width-reduced torchvision ViT, whose outputs
//! it matches. A checkpoint trained at another image size loads too: its
//! position embedding is interpolated to the network's 14x14 grid of patches
//! as torchvision's `interpolate_embeddings` does.

use netdsl::network;

#[path = "common/imagenet.rs"]
mod imagenet;
#[path = "common/vit.rs"]
mod vit;

include!("networks/vit.rs");

fn main() -> Result<(), imagenet::Error> {
    imagenet::run(
        VitB16::SUMMARY,
        |p, d| vit::load(p, VitB16::MANIFEST, d, VitB16::from_tensors),
        VitB16::new_seeded,
        VitB16::forward,
    )
}

//! Vgg16 in torchvision's layout, written in `network!` (the network is
//! `examples/networks/vgg16.rs`): prints the compile-time summary, classifies
//! an image (or a random one) and prints the top five ImageNet classes and the
//! time.
//!
//! ```text
//! cargo run --release --example vgg16
//! cargo run --release --example vgg16 -- --weights vgg16.safetensors --image cat.jpg
//! ```
//!
//! torchvision's pretrained weights load unchanged once saved as safetensors
//! (one line of Python, with torch, torchvision and safetensors installed):
//!
//! ```text
//! python3 -c "import torchvision; from safetensors.torch import save_file; save_file({k: v.contiguous() for k, v in torchvision.models.vgg16(weights='DEFAULT').state_dict().items()}, 'vgg16.safetensors')"
//! ```

use netdsl::network;

#[path = "common/imagenet.rs"]
mod imagenet;

include!("networks/vgg16.rs");

fn main() -> Result<(), imagenet::Error> {
    imagenet::run(
        Vgg16::SUMMARY,
        |p, d| Vgg16::load(p, d),
        Vgg16::new_seeded,
        Vgg16::forward,
    )
}

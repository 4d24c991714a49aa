//! AlexNet in torchvision's layout, written in `network!` (the network is
//! `examples/networks/alexnet.rs`): prints the compile-time summary, classifies
//! an image (or a random one) and prints the top five ImageNet classes and the
//! time.
//!
//! ```text
//! cargo run --release --example alexnet
//! cargo run --release --example alexnet -- --weights alexnet.safetensors --image cat.jpg
//! ```
//!
//! torchvision's pretrained weights load unchanged once saved as safetensors
//! (one line of Python, with torch, torchvision and safetensors installed):
//!
//! ```text
//! python3 -c "import torchvision; from safetensors.torch import save_file; save_file({k: v.contiguous() for k, v in torchvision.models.alexnet(weights='DEFAULT').state_dict().items()}, 'alexnet.safetensors')"
//! ```

use netdsl::network;

#[path = "common/imagenet.rs"]
mod imagenet;

include!("networks/alexnet.rs");

fn main() -> Result<(), imagenet::Error> {
    imagenet::run(
        AlexNet::SUMMARY,
        |p, d| AlexNet::load(p, d),
        AlexNet::new_seeded,
        AlexNet::forward,
    )
}

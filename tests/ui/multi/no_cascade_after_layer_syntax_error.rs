use netdsl::candle::Device;
use netdsl::network;

network! {
    pub Net(x: [B, 784]) -> [B, 10] {
        x -> fc1: Linear(128,) -> relu -> fc2: Linear(10 bias = false)
    }
}

fn main() -> netdsl::Result<()> {
    let net = Net::new_seeded(0, &Device::Cpu)?;
    let _ = (net.named_tensors(), Net::MANIFEST, Net::OUTPUT_SHAPE);
    Ok(())
}

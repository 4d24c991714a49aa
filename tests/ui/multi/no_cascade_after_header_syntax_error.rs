use netdsl::candle::Device;
use netdsl::network;

network! {
    pub Net(x: [B, 784] y: [B, 10]) -> [B, 10] {
        x -> fc1: Linear(10)
    }
}

fn main() -> netdsl::Result<()> {
    let net = Net::new(&Device::Cpu)?;
    println!("{}", Net::SUMMARY);
    let _ = net;
    Ok(())
}

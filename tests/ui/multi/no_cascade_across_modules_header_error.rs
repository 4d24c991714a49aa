mod nets {
    use netdsl::network;

    network! {
        pub Net(x: [B, 784] y: [B, 10]) -> [B, 10] {
            x -> fc1: Linear(10)
        }
    }
}

use netdsl::candle::Device;
use nets::Net;

fn main() -> netdsl::Result<()> {
    let net: Net = Net::new(&Device::Cpu)?;
    println!("{}", Net::SUMMARY);
    let _ = net;
    Ok(())
}

mod nets {
    use netdsl::network;

    network! {
        pub Net(x: [B, 1, 28, 28]) -> [B, 10] {
            x -> conv1: Conv2d(3 -> 6, kernel = 5) -> relu -> max_pool(2)
              -> flatten
              -> fc1: Linear(10)
        }
    }
}

use netdsl::candle::{DType, Device, Tensor};
use nets::Net;

fn run(net: &Net, x: &Tensor) -> netdsl::Result<Tensor> {
    net.forward(x)
}

fn main() -> netdsl::Result<()> {
    let net = Net::new(&Device::Cpu)?;
    let x = Tensor::zeros((2, 1, 28, 28), DType::F32, &Device::Cpu)?;
    let y: Tensor = run(&net, &x)?;
    let summary: &'static str = Net::SUMMARY;
    println!("{:?} {summary}", y.dims());
    Ok(())
}

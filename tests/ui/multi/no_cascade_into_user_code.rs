use netdsl::candle::{DType, Device, Tensor};
use netdsl::network;

network! {
    pub Net(x: [B, 1, 28, 28]) -> [B, 10] {
        x -> conv1: Conv2d(3 -> 6, kernel = 5) -> relu -> max_pool(2)
          -> flatten
          -> fc1: Linear(10)
    }
}

fn main() -> netdsl::Result<()> {
    let net = Net::new(&Device::Cpu)?;
    let x = Tensor::zeros((2, 1, 28, 28), DType::F32, &Device::Cpu)?;
    let y = net.forward(&x)?;
    println!("{:?} {} {}", y.dims(), Net::SUMMARY, Net::PARAMETERS);
    net.save("net.safetensors")?;
    Ok(())
}

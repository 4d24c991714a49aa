use netdsl::candle::{DType, Device, Tensor};
use netdsl::network;

network! {
    pub Good(x: [B, 784]) -> [B, 10] {
        x -> fc1: Linear(10)
    }

    pub Bad(x: [B, 784]) -> [B, 10] {
        x -> fc1: Linear(10) -> fc1: Linear(10)
    }
}

fn main() -> netdsl::Result<()> {
    let x = Tensor::zeros((2, 784), DType::F32, &Device::Cpu)?;
    let y = Good::new(&Device::Cpu)?.forward(&x)?;
    let z = Bad::new(&Device::Cpu)?.forward(&x)?;
    assert_eq!(y.dims(), z.dims());
    Ok(())
}

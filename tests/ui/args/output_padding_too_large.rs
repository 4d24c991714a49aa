use netdsl::network;

network! {
    pub Up(x: [B, 8, 16, 16]) {
        x -> up: ConvTranspose2d(4, kernel = 2, stride = 2, output_padding = 2)
    }
}

fn main() {}

use netdsl::network;

// Two skips over a symbolic H: the first joins H and 2*(H/2), equal only
// for an even H; the second joins H - 1 and 2*((H - 1)/2), equal only for
// an odd H. No size takes both: the second merge is the error, and it
// names the first.
network! {
    pub Parity(x: [B, 1, H, 8]) -> [B, 1, H - 1, 7] {
        let a = x -> pool: max_pool(2) -> up: ConvTranspose2d(1, kernel = 2, stride = 2);
        let even = x + a;
        let c = even -> shrink: Conv2d(1, kernel = 2);
        let d = c -> pool2: max_pool(2) -> up2: ConvTranspose2d(1, kernel = 2, stride = 2);
        c + d
    }
}

fn main() {}

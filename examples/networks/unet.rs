network! {
    /// Two valid 3x3 convolutions with ReLU: one level of the original
    /// U-Net. A `seq` body numbers the children like `nn.Sequential`
    /// (`down1.0.weight`); one struct serves all nine uses at five widths.
    pub block DoubleConv(x: [B, C, H, W], out: usize) -> [B, out, H - 4, W - 4] {
        x -> seq { Conv2d(out, kernel = 3) -> ReLU -> Conv2d(out, kernel = 3) -> ReLU }
    }

    /// U-Net, original (Ronneberger et al., 2015): valid 3x3 convolutions,
    /// 2x2 max pooling, 2x2 up-convolutions, and copy-and-crop skips from the
    /// contracting path into the expanding one. 572x572 in, 388x388x2 out.
    /// Strict: every pooling divides its input exactly, so no row or column
    /// is dropped (at 570x570 the third pooling would drop one, an error).
    #[netdsl(strict)]
    pub UNet(x: [B, 1, 572, 572]) -> [B, 2, 388, 388] {
        let d1 = x -> down1: DoubleConv(64)                       : [B, 64, 568, 568];
        let d2 = d1 -> max_pool(2) -> down2: DoubleConv(128)      : [B, 128, 280, 280];
        let d3 = d2 -> max_pool(2) -> down3: DoubleConv(256)      : [B, 256, 136, 136];
        let d4 = d3 -> max_pool(2) -> down4: DoubleConv(512)      : [B, 512, 64, 64];
        let b = d4 -> max_pool(2) -> bottom: DoubleConv(1024)     : [B, 1024, 28, 28];
        let u4 = b -> up4: ConvTranspose2d(512, kernel = 2, stride = 2);
        let y4 = cat(crop(d4, like = u4), u4, dim = 1) -> dec4: DoubleConv(512) : [B, 512, 52, 52];
        let u3 = y4 -> up3: ConvTranspose2d(256, kernel = 2, stride = 2);
        let y3 = cat(crop(d3, like = u3), u3, dim = 1) -> dec3: DoubleConv(256) : [B, 256, 100, 100];
        let u2 = y3 -> up2: ConvTranspose2d(128, kernel = 2, stride = 2);
        let y2 = cat(crop(d2, like = u2), u2, dim = 1) -> dec2: DoubleConv(128) : [B, 128, 196, 196];
        let u1 = y2 -> up1: ConvTranspose2d(64, kernel = 2, stride = 2);
        cat(crop(d1, like = u1), u1, dim = 1) -> dec1: DoubleConv(64) -> out: Conv2d(2, kernel = 1)
    }
}

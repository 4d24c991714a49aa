network! {
    /// MobileNetV2's inverted residual with expansion `t` (Sandler et al.,
    /// 2018), torchvision's layout: `conv.0` the 1x1 expansion, `conv.1` the
    /// 3x3 depthwise convolution (`groups` = its channels), each with batch
    /// norm and ReLU6, `conv.2` the linear 1x1 projection, `conv.3` its batch
    /// norm; the input is added back where stride and width allow.
    pub block InvertedResidual(x: [B, C, H, W], out: usize, stride: usize = 1, t: usize = 6) -> [B, out, (H - 1) / stride + 1, (W - 1) / stride + 1] {
        let y = x -> conv: seq {
                seq { Conv2d(t * C, kernel = 1, bias = false) -> BatchNorm2d -> ReLU6 }
                -> seq { Conv2d(t * C, kernel = 3, stride = stride, padding = 1, groups = t * C, bias = false) -> BatchNorm2d -> ReLU6 }
                -> Conv2d(out, kernel = 1, bias = false) -> BatchNorm2d
            };
        if stride == 1 && C == out { x + y } else { y }
    }

    /// The first inverted residual, expansion 1: torchvision leaves out the
    /// expansion convolution, which shifts the numbering (`conv.0` is the
    /// depthwise convolution). Never residual here (32 -> 16 channels).
    pub block InvertedResidualT1(x: [B, C, H, W], out: usize) -> [B, out, H, W] {
        x -> conv: seq {
            seq { Conv2d(C, kernel = 3, padding = 1, groups = C, bias = false) -> BatchNorm2d -> ReLU6 }
            -> Conv2d(out, kernel = 1, bias = false) -> BatchNorm2d
        }
    }

    /// torchvision's `mobilenet_v2` (width 1.0): a strided stem, seventeen
    /// inverted residuals with the paper's (t, c, n, s) table, a 1x1
    /// convolution to 1280 channels, global average pooling and a
    /// dropout-regularised classifier. Parameter names are torchvision's.
    pub MobileNetV2(x: [B, 3, 224, 224]) -> [B, 1000] {
        x -> features: seq {
                seq { Conv2d(32, kernel = 3, stride = 2, padding = 1, bias = false) -> BatchNorm2d -> ReLU6 }
                -> InvertedResidualT1(16)                                            : [B, 16, 112, 112]
                -> InvertedResidual(24, stride = 2) -> InvertedResidual(24)          : [B, 24, 56, 56]
                -> InvertedResidual(32, stride = 2) -> repeat 2 InvertedResidual(32) : [B, 32, 28, 28]
                -> InvertedResidual(64, stride = 2) -> repeat 3 InvertedResidual(64) : [B, 64, 14, 14]
                -> repeat 3 InvertedResidual(96)                                     : [B, 96, 14, 14]
                -> InvertedResidual(160, stride = 2) -> repeat 2 InvertedResidual(160) : [B, 160, 7, 7]
                -> InvertedResidual(320)
                -> seq { Conv2d(1280, kernel = 1, bias = false) -> BatchNorm2d -> ReLU6 }
             }                                                                       : [B, 1280, 7, 7]
          -> adaptive_avg_pool2d(1) -> flatten
          -> classifier: seq { Dropout(0.2) -> Linear(1000) }
    }
}

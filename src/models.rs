//! The model zoo (feature `models`): the lecture's classic networks, written
//! once in `network!` from shared blocks, each with torchvision's module
//! names so that its state_dict loads unchanged (`ResNet18::load("resnet18.safetensors", &dev)`).
//!
//! | network | input | torchvision | built from |
//! | --- | --- | --- | --- |
//! | [`LeNet5`] | `[B, 1, 28, 28]` | (none) | |
//! | [`AlexNet`] | `[B, 3, 224, 224]` | `alexnet` | |
//! | [`Vgg16`] | `[B, 3, 224, 224]` | `vgg16` | `VggStage`, `VggClassifier` spliced |
//! | [`Vgg16Bn`] | `[B, 3, 224, 224]` | `vgg16_bn` | `VggStageBn`, `VggClassifier` spliced |
//! | [`ResNet18`], [`ResNet34`] | `[B, 3, H, W]` | `resnet18`, `resnet34` | [`BasicBlock`] |
//! | [`MobileNetV2`] | `[B, 3, H, W]` | `mobilenet_v2` | [`ConvBNReLU`], [`InvertedResidual`] |
//! | [`UNet`] | `[B, 1, 572, 572]` | (none; Ronneberger et al.) | [`DoubleConv`] |
//!
//! ResNet-18/34 and MobileNetV2 take any image size, as torchvision's do:
//! every strided layer rounds down as PyTorch's, so 97 x 113 runs and
//! equals torchvision (`tests/models.rs`). AlexNet and VGG keep their
//! 224 x 224 declaration, the size their classifiers were made for.
//!
//! The classifiers have ImageNet's 1000 classes (LeNet-5: 10, U-Net: 2
//! segmentation classes). The blocks are public: build one alone for a
//! configuration the zoo uses (`BasicBlock::new_seeded(0, &dev, 64, 128, 2)`,
//! `BasicBlock::CONFIGURATIONS` lists them), or build your own networks
//! from them in your own `network!` by writing the block there (a block is
//! used inside the invocation that defines it).
//!
//! No pretrained weights ship with netdsl: load torchvision's, saved as
//! safetensors (`save_file(model.state_dict(), "resnet18.safetensors")`).

use crate::network;

network! {
    /// ResNet's basic block (He et al., 2016): two 3x3 convolutions with
    /// batch norm, and a shortcut that is the identity, or a strided 1x1
    /// projection (`downsample`) where the width or the size changes.
    pub block BasicBlock(x: [B, C, H, W], out: usize, stride: usize = 1) -> [B, out, (H - 1) / stride + 1, (W - 1) / stride + 1] {
        let y = x -> conv1: Conv2d(out, kernel = 3, stride = stride, padding = 1, bias = false)
                  -> bn1: BatchNorm2d -> relu
                  -> conv2: Conv2d(out, kernel = 3, padding = 1, bias = false) -> bn2: BatchNorm2d;
        let shortcut = if stride != 1 || C != out {
            x -> downsample: seq { Conv2d(out, kernel = 1, stride = stride, bias = false) -> BatchNorm2d }
        } else {
            x
        };
        (y + shortcut) -> relu
    }

    /// torchvision's `Conv2dNormActivation` with ReLU6 (MobileNetV2): the
    /// convolution (padding `(kernel - 1) / 2`), its batch norm, ReLU6.
    pub block ConvBNReLU(x: [B, C, H, W], out: usize, kernel: usize = 3, stride: usize = 1, groups: usize = 1) {
        x -> seq {
            Conv2d(out, kernel = kernel, stride = stride, padding = (kernel - 1) / 2, groups = groups, bias = false)
            -> BatchNorm2d -> ReLU6
        }
    }

    /// MobileNetV2's inverted residual (Sandler et al., 2018), as
    /// torchvision builds it: a 1x1 expansion to `C * t` channels (only
    /// when `t != 1`), a depthwise 3x3, a linear 1x1 projection; the input
    /// added back when the stride is 1 and the width is kept.
    pub block InvertedResidual(x: [B, C, H, W], out: usize, stride: usize, t: usize) {
        let hidden = C * t;
        let y = x -> conv: seq {
            if t != 1 { ConvBNReLU(hidden, kernel = 1) }
            -> ConvBNReLU(hidden, stride = stride, groups = hidden)
            -> Conv2d(out, kernel = 1, bias = false)
            -> BatchNorm2d
        };
        if stride == 1 && C == out { x + y } else { y }
    }

    /// A VGG stage: `convs` same-padded 3x3 convolutions with ReLU, then
    /// 2x2 max pooling, as one flat list (spliced into `features`).
    pub block VggStage(x: [B, C, H, W], out: usize, convs: usize) {
        x -> ..repeat convs { Conv2d(out, kernel = 3, padding = 1) -> ReLU } -> MaxPool2d(2)
    }

    /// A VGG-BN stage: each convolution followed by its batch norm.
    pub block VggStageBn(x: [B, C, H, W], out: usize, convs: usize) {
        x -> ..repeat convs { Conv2d(out, kernel = 3, padding = 1) -> BatchNorm2d -> ReLU } -> MaxPool2d(2)
    }

    /// VGG's classifier: two 4096-wide layers with ReLU and dropout, then
    /// the 1000 classes (spliced into `classifier`).
    pub block VggClassifier(x: [B, F]) {
        x -> Linear(4096) -> ReLU -> Dropout(0.5) -> Linear(4096) -> ReLU -> Dropout(0.5) -> Linear(1000)
    }

    /// Two valid 3x3 convolutions with ReLU: one level of the original
    /// U-Net, children numbered like `nn.Sequential` (`down1.0.weight`).
    pub block DoubleConv(x: [B, C, H, W], out: usize) -> [B, out, H - 4, W - 4] {
        x -> seq { Conv2d(out, kernel = 3) -> ReLU -> Conv2d(out, kernel = 3) -> ReLU }
    }

    /// LeNet-5 (LeCun et al., 1998) for 28x28 digits: two 5x5
    /// convolutions with max pooling, three fully connected layers.
    pub LeNet5(x: [B, 1, 28, 28]) -> [B, 10] {
        x -> conv1: Conv2d(6, kernel = 5, padding = 2) -> relu -> max_pool(2)
          -> conv2: Conv2d(16, kernel = 5) -> relu -> max_pool(2)  : [B, 16, 5, 5]
          -> flatten
          -> fc1: Linear(120) -> relu
          -> fc2: Linear(84) -> relu
          -> fc3: Linear(10)
    }

    /// AlexNet (Krizhevsky et al., 2012) as torchvision lays it out.
    pub AlexNet(x: [B, 3, 224, 224]) -> [B, 1000] {
        x -> features: seq {
                Conv2d(64, kernel = 11, stride = 4, padding = 2) -> ReLU -> MaxPool2d(3, stride = 2)
                -> Conv2d(192, kernel = 5, padding = 2) -> ReLU -> MaxPool2d(3, stride = 2)
                -> Conv2d(384, kernel = 3, padding = 1) -> ReLU
                -> Conv2d(256, kernel = 3, padding = 1) -> ReLU
                -> Conv2d(256, kernel = 3, padding = 1) -> ReLU -> MaxPool2d(3, stride = 2)
             }                                                            : [B, 256, 6, 6]
          -> avgpool: AdaptiveAvgPool2d(6)
          -> flatten
          -> classifier: seq {
                Dropout(0.5) -> Linear(4096) -> ReLU
                -> Dropout(0.5) -> Linear(4096) -> ReLU
                -> Linear(1000)
             }
    }

    /// VGG-16 (Simonyan & Zisserman, 2014), configuration D: five stages
    /// spliced into torchvision's flat `features` (`features.0`, `.2`, `.5`,
    /// .. hold the convolutions).
    pub Vgg16(x: [B, 3, 224, 224]) -> [B, 1000] {
        x -> features: seq {
                ..VggStage(64, convs = 2) -> ..VggStage(128, convs = 2) -> ..VggStage(256, convs = 3)
                -> ..VggStage(512, convs = 3) -> ..VggStage(512, convs = 3)
             }                                                            : [B, 512, 7, 7]
          -> avgpool: AdaptiveAvgPool2d(7) -> flatten
          -> classifier: seq { ..VggClassifier }
    }

    /// VGG-16 with batch norm after every convolution (torchvision's
    /// `vgg16_bn`).
    pub Vgg16Bn(x: [B, 3, 224, 224]) -> [B, 1000] {
        x -> features: seq {
                ..VggStageBn(64, convs = 2) -> ..VggStageBn(128, convs = 2) -> ..VggStageBn(256, convs = 3)
                -> ..VggStageBn(512, convs = 3) -> ..VggStageBn(512, convs = 3)
             }                                                            : [B, 512, 7, 7]
          -> avgpool: AdaptiveAvgPool2d(7) -> flatten
          -> classifier: seq { ..VggClassifier }
    }

    /// ResNet-18: a stem with padded max pooling, four stages of two basic
    /// blocks, adaptive average pooling and a classifier.
    pub ResNet18(x: [B, 3, H, W]) -> [B, 1000] {
        x -> conv1: Conv2d(64, kernel = 7, stride = 2, padding = 3, bias = false) -> bn1: BatchNorm2d -> relu
          -> maxpool: MaxPool2d(3, stride = 2, padding = 1)
          -> layer1: repeat 2 BasicBlock(64)
          -> layer2: seq { BasicBlock(128, stride = 2) -> BasicBlock(128) }
          -> layer3: seq { BasicBlock(256, stride = 2) -> BasicBlock(256) }
          -> layer4: seq { BasicBlock(512, stride = 2) -> BasicBlock(512) }      : [B, 512, (H + 31) / 32, (W + 31) / 32]
          -> avgpool: AdaptiveAvgPool2d(1) -> flatten -> fc: Linear(1000)
    }

    /// ResNet-34: 3, 4, 6 and 3 basic blocks per stage.
    pub ResNet34(x: [B, 3, H, W]) -> [B, 1000] {
        x -> conv1: Conv2d(64, kernel = 7, stride = 2, padding = 3, bias = false) -> bn1: BatchNorm2d -> relu
          -> maxpool: MaxPool2d(3, stride = 2, padding = 1)
          -> layer1: repeat 3 BasicBlock(64)
          -> layer2: seq { BasicBlock(128, stride = 2) -> repeat 3 BasicBlock(128) }
          -> layer3: seq { BasicBlock(256, stride = 2) -> repeat 5 BasicBlock(256) }
          -> layer4: seq { BasicBlock(512, stride = 2) -> repeat 2 BasicBlock(512) } : [B, 512, (H + 31) / 32, (W + 31) / 32]
          -> avgpool: AdaptiveAvgPool2d(1) -> flatten -> fc: Linear(1000)
    }

    /// MobileNetV2 (width 1.0) as torchvision lays it out: a strided stem,
    /// seventeen inverted residuals in seven groups (t, c, n, s: 1 16 1 1,
    /// 6 24 2 2, 6 32 3 2, 6 64 4 2, 6 96 3 1, 6 160 3 2, 6 320 1 1), a 1x1
    /// convolution to 1280, pooling and a dropout-regularised classifier.
    pub MobileNetV2(x: [B, 3, H, W]) -> [B, 1000] {
        x -> features: seq {
                ConvBNReLU(32, stride = 2)
                -> InvertedResidual(16, stride = 1, t = 1)
                -> InvertedResidual(24, stride = 2, t = 6) -> InvertedResidual(24, stride = 1, t = 6)
                -> InvertedResidual(32, stride = 2, t = 6) -> repeat 2 InvertedResidual(32, stride = 1, t = 6)
                -> InvertedResidual(64, stride = 2, t = 6) -> repeat 3 InvertedResidual(64, stride = 1, t = 6)
                -> repeat 3 InvertedResidual(96, stride = 1, t = 6)
                -> InvertedResidual(160, stride = 2, t = 6) -> repeat 2 InvertedResidual(160, stride = 1, t = 6)
                -> InvertedResidual(320, stride = 1, t = 6)
                -> ConvBNReLU(1280, kernel = 1)
             }                                                            : [B, 1280, (H + 31) / 32, (W + 31) / 32]
          -> AdaptiveAvgPool2d(1) -> flatten
          -> classifier: seq { Dropout(0.2) -> Linear(1000) }
    }

    /// U-Net, original (Ronneberger et al., 2015): valid 3x3 convolutions,
    /// 2x2 max pooling, 2x2 up-convolutions, copy-and-crop skips. 572x572
    /// in, 388x388x2 out. Strict: no pooling drops a row or a column.
    #[netdsl(strict)]
    pub UNet(x: [B, 1, 572, 572]) -> [B, 2, 388, 388] {
        let d1 = x -> down1: DoubleConv(64);
        let d2 = d1 -> max_pool(2) -> down2: DoubleConv(128);
        let d3 = d2 -> max_pool(2) -> down3: DoubleConv(256);
        let d4 = d3 -> max_pool(2) -> down4: DoubleConv(512);
        let b = d4 -> max_pool(2) -> bottom: DoubleConv(1024);
        let u4 = b -> up4: ConvTranspose2d(512, kernel = 2, stride = 2);
        let y4 = cat(crop(d4, like = u4), u4, dim = 1) -> dec4: DoubleConv(512);
        let u3 = y4 -> up3: ConvTranspose2d(256, kernel = 2, stride = 2);
        let y3 = cat(crop(d3, like = u3), u3, dim = 1) -> dec3: DoubleConv(256);
        let u2 = y3 -> up2: ConvTranspose2d(128, kernel = 2, stride = 2);
        let y2 = cat(crop(d2, like = u2), u2, dim = 1) -> dec2: DoubleConv(128);
        let u1 = y2 -> up1: ConvTranspose2d(64, kernel = 2, stride = 2);
        cat(crop(d1, like = u1), u1, dim = 1) -> dec1: DoubleConv(64) -> out: Conv2d(2, kernel = 1)
    }
}
